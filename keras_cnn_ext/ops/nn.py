"""Public functional ops: argument normalisation in one place, then an implementation.

`corr2d`, `max_pool2d` and `mean_pool2d` accept NumPy arrays or tensors, normalise every
argument with `geometry`, validate shapes (rank 4, channel match, window fits the padded
input) and hand the normalised call to one of the three implementations, all called the same
way: `reference_tf` (the NumPy formulas of `reference` as TF ops), `composite` or `native`
(the pattern of Keras' `ops/nn.py` over `backend/*/nn.py`). Under the JAX and torch backends
of Keras they call `keras_cnn_ext.ops.portable` instead (keras.ops, hand-written gradients);
there `implementation` must be 'auto'.
"""

import numpy as np
import tensorflow as tf

from keras_cnn_ext.ops import composite, dispatch, geometry, native, portable, reference_tf


def _as_float_tensor(value, name, dtype=None):
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"Invalid value for argument `{name}`. Expected a floating-point tensor or array. "
            f"Received: {name}={value!r}"
        )
    if not tf.is_tensor(value):
        array = np.asarray(value)
        # ml_dtypes' bfloat16 (what `bfloat16_tensor.numpy()` returns) has dtype kind "V".
        floating = array.dtype.kind == "f" or array.dtype.name == "bfloat16"
        if not floating and array.dtype.kind not in "iub":
            raise TypeError(
                f"Invalid value for argument `{name}`. Expected a floating-point tensor or "
                f"array. Received: {name} of dtype {array.dtype}"
            )
        if not floating:
            array = array.astype(dtype.as_numpy_dtype if dtype is not None else "float32")
        value = tf.convert_to_tensor(array, dtype=dtype)
    elif value.dtype == tf.string:
        raise TypeError(
            f"Invalid value for argument `{name}`. Expected a floating-point tensor. "
            f"Received: {name} of dtype string"
        )
    elif not value.dtype.is_floating:
        value = tf.cast(value, dtype or tf.float32)
    if dtype is not None and value.dtype != dtype:
        value = tf.cast(value, dtype)
    return value


def _check_rank(x, name="x"):
    if x.shape.rank != 4:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a 4-D tensor (batch, height, "
            f"width, channels) or (batch, channels, height, width). Received: {name} with "
            f"shape {tuple(x.shape)}"
        )


def _check_channels(x, data_format):
    if _channels(x.shape, data_format) == 0:
        raise ValueError(
            f"Invalid value for argument `x`. Expected at least one channel. Received: x "
            f"with shape {tuple(x.shape)}"
        )


def _channels(shape, data_format):
    return shape[geometry.channel_axis(data_format)]


# The three implementations of each op: modules with the same functions and signatures, all
# taking the arguments as `geometry.normalize_corr_args` / `normalize_pool_args` return them.
IMPLEMENTATIONS = {"reference": reference_tf, "composite": composite, "native": native}


def _implementation(implementation, op_name, x, channels):
    """The module that runs `op_name` ("auto" resolved by `dispatch`)."""
    name = dispatch.resolve(implementation, op_name, x, channels)
    if name == "native":
        dispatch.native_required(op_name)  # a clear error when the library is unavailable
    return IMPLEMENTATIONS[name]


def _portable(op, x, implementation, *args, **kwargs):
    """JAX / torch: `portable.<op>` after the checks of the TensorFlow path that the tier does
    not make itself (implementation 'auto' only, at least one channel)."""
    portable.check_implementation(implementation)
    x = portable._tensor(x, "x")
    portable._check_rank(x)
    _check_channels(x, kwargs.get("data_format"))
    return getattr(portable, op)(x, *args, **kwargs)


# Library code with no tensor-dependent Python control flow: AutoGraph need not convert it.
@tf.autograph.experimental.do_not_convert
def corr2d(x, kernel, strides=1, padding=0, *, padding_mode="zeros",
           mode="cross_correlation", data_format=None, implementation="auto",
           dilation_rate=1, groups=1):
    """Textbook 2-D cross-correlation (definition 24.1) of a batch with a kernel bank.

    Args:
        x: (batch, H, W, C) for channels_last, (batch, C, H, W) for channels_first.
        kernel: (M, N, C, F), like the kernel of `keras.layers.Conv2D`.
        strides: S or (S_h, S_w).
        padding: P (all sides), (P, Q), ((top, bottom), (left, right)), 'valid', 'same'
            (textbook/PyTorch: (M-1)//2 before, the rest after) or 'full' (M-1 each side).
        padding_mode: 'zeros', 'replicate' or 'reflect'.
        mode: 'cross_correlation', or 'convolution' for the kernel flipped in both axes.
        data_format: 'channels_last' or 'channels_first' (default: Keras' setting).
        implementation: 'auto', 'reference', 'composite' or 'native'.
        dilation_rate: D or (D_h, D_w), PyTorch's `dilation`: kernel taps D cells apart, the
            kernel spans D*(M-1)+1 cells (any stride; 'same' / 'full' on that span).
        groups: PyTorch's `groups`: C and F split into this many independent correlations;
            the kernel is then (M, N, C/groups, F) (groups == C: depthwise).

    Returns:
        A tensor of shape (batch, K, L, F) (or channels_first), K = floor((H + P_top +
        P_bottom - D_h*(M-1) - 1) / S_h) + 1.

    Example (the book's example 24.3, zero padding 1):

    >>> import numpy as np
    >>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
    >>> W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]], "float32")
    >>> y = corr2d(X[None, :, :, None], W[:, :, None, None], padding=1,
    ...            data_format="channels_last")
    >>> y[0, :, :, 0].numpy().astype(int).tolist()
    [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]]
    """
    if not portable.on_tensorflow():
        return _portable("corr2d", x, implementation, kernel, strides, padding,
                         padding_mode=padding_mode, mode=mode,
                         data_format=geometry.normalize_data_format(data_format),
                         dilations=dilation_rate, groups=groups)
    kernel = _as_float_tensor(kernel, "kernel")
    x = _as_float_tensor(x, "x", kernel.dtype)
    if kernel.shape.rank != 4:
        raise ValueError(
            "Invalid value for argument `kernel`. Expected a 4-D tensor (M, N, C_in, C_out). "
            f"Received: kernel with shape {tuple(kernel.shape)}"
        )
    (window, strides, pads, padding_mode, mode, data_format, implementation, dilations,
     groups) = geometry.normalize_corr_args(tuple(kernel.shape[:2]), strides, padding,
                                            padding_mode, mode, data_format, implementation,
                                            dilation_rate, groups)
    _check_rank(x)
    channels = _channels(x.shape, data_format)
    if groups == 1 and channels is not None and channels != kernel.shape[2]:
        raise ValueError(
            f"Invalid value for argument `x`. Expected {kernel.shape[2]} input channels to "
            f"match the kernel of shape {tuple(kernel.shape)}. Received: x with shape "
            f"{tuple(x.shape)}"
        )
    _check_channels(x, data_format)
    if dilations == (1, 1) and groups == 1:
        _check_fits(x, window, strides, pads, data_format)
        return _implementation(implementation, "corr2d", x, channels).corr2d(
            x, kernel, strides, pads, padding_mode, mode, data_format)
    geometry.check_groups(groups, channels, kernel.shape[3], kernel_channels=kernel.shape[2])
    geometry.check_dilated_fits(geometry.spatial_dims(x.shape, data_format), window, dilations,
                                strides, pads)
    name = dispatch.resolve(implementation, "corr2d", x, channels)
    if name == "native":
        if implementation == "auto" and not native.supports_dilation_groups():
            name = "composite"  # a library built before dilation / groups: never an error
        else:
            dispatch.native_required("corr2d")
    return IMPLEMENTATIONS[name].corr2d(x, kernel, strides, pads, padding_mode, mode,
                                        data_format, dilations, groups)


def _check_fits(x, window, strides, pads, data_format):
    """A window that cannot fit a known input size is a ValueError here, before any kernel."""
    geometry.spatial_output_shape(geometry.spatial_dims(x.shape, data_format), window,
                                  strides, pads)


def _pool_args(x, pool_size, strides, padding, padding_mode, data_format, implementation,
               ceil_mode):
    """The normalised arguments of a pooling and the checked input tensor."""
    x = _as_float_tensor(x, "x")
    window, strides, pads, padding_mode, data_format, implementation, ceil_mode = (
        geometry.normalize_pool_args(pool_size, strides, padding, padding_mode, data_format,
                                     implementation, ceil_mode))
    _check_rank(x)
    _check_channels(x, data_format)
    _check_fits(x, window, strides, pads, data_format)
    return x, (window, strides, pads, padding_mode, data_format, ceil_mode), implementation


@tf.autograph.experimental.do_not_convert
def max_pool2d(x, pool_size, strides=None, padding=0, *, padding_mode="zeros",
               data_format=None, implementation="auto", ceil_mode=False):
    """Max pooling (definition 24.2) with textbook zero padding or ignored padding.

    Args:
        x: (batch, H, W, C) or (batch, C, H, W).
        pool_size: the window M or (M, N).
        strides: defaults to the window (non-overlapping pooling).
        padding: as for `corr2d`; each side must be smaller than the window.
        padding_mode: 'zeros' (padded cells hold 0 and take part in the max) or 'ignore'.
        data_format: 'channels_last' or 'channels_first'.
        implementation: 'auto', 'reference', 'composite' or 'native'.
        ceil_mode: PyTorch's output rounding, `ceil((H + P_top + P_bottom - M) / S) + 1` less
            a last window that would start in the bottom padding (likewise for the width);
            the cells of the last windows past the padded input never win.

    Example (the book's example 24.7):

    >>> import numpy as np
    >>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
    >>> max_pool2d(X[None, :, :, None], 2, data_format="channels_last")[0, :, :, 0].numpy()
    array([[3., 2.],
           [3., 3.]], dtype=float32)
    """
    if not portable.on_tensorflow():
        return _portable("max_pool2d", x, implementation, pool_size, strides, padding,
                         padding_mode=padding_mode,
                         data_format=geometry.normalize_data_format(data_format),
                         ceil_mode=ceil_mode)
    x, args, implementation = _pool_args(x, pool_size, strides, padding, padding_mode,
                                         data_format, implementation, ceil_mode)
    return _implementation(implementation, "max_pool2d", x, _channels(x.shape, args[4])
                           ).max_pool2d(x, *args)


@tf.autograph.experimental.do_not_convert
def mean_pool2d(x, pool_size, strides=None, padding=0, *, padding_mode="zeros",
                data_format=None, implementation="auto", ceil_mode=False):
    """Mean pooling (definition 24.2); the divisor is M*N ('zeros') or the number of real
    cells in the window ('ignore', like Keras 'same' / PyTorch count_include_pad=False).
    `ceil_mode` as for `max_pool2d`; the cells past the padded input are never counted (as
    PyTorch's `avg_pool2d` with either `count_include_pad`).

    Example:

    >>> import numpy as np
    >>> X = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> mean_pool2d(X, 2, data_format="channels_last")[0, :, :, 0].numpy()
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    if not portable.on_tensorflow():
        return _portable("mean_pool2d", x, implementation, pool_size, strides, padding,
                         padding_mode=padding_mode,
                         data_format=geometry.normalize_data_format(data_format),
                         ceil_mode=ceil_mode)
    x, args, implementation = _pool_args(x, pool_size, strides, padding, padding_mode,
                                         data_format, implementation, ceil_mode)
    return _implementation(implementation, "mean_pool2d", x, _channels(x.shape, args[4])
                           ).mean_pool2d(x, *args)
