"""`MaxPooling2D` and `MeanPooling2D`: textbook pooling (definition 24.2); and
`AdaptiveAveragePooling2D`, PyTorch's adaptive average pooling to a fixed output size."""

import keras
import numpy as np

from keras_cnn_ext.layers import _base
from keras_cnn_ext.ops import dispatch, geometry, nn, portable


class _Pooling2D(_base.ExportGuard, keras.layers.Layer):
    """Shared argument handling of the two pooling layers."""

    _op = None  # the functional op of `keras_cnn_ext.ops.nn`
    _portable_op = None  # its `keras_cnn_ext.ops.portable` twin (JAX / torch)

    def __init__(self, pool_size=2, strides=None, padding=0, padding_mode="zeros",
                 data_format=None, implementation="auto", ceil_mode=False, **kwargs):
        super().__init__(**kwargs)
        (self.pool_size, resolved_strides, _, self.padding_mode, self.data_format,
         self.implementation, self.ceil_mode) = geometry.normalize_pool_args(
            pool_size, strides, padding, padding_mode, data_format, implementation, ceil_mode)
        self.strides = None if strides is None else resolved_strides
        self.padding = geometry.validate_padding(padding)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        if not _base.on_tensorflow():
            _base.check_portable(self, self.implementation)
        self.supports_jit = dispatch.supports_jit(self.implementation)

    @property
    def pads(self):
        """The padding resolved to ((top, bottom), (left, right))."""
        return geometry.resolve_padding(self.padding, self.pool_size)

    def _strides(self):
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape):
        axis = geometry.channel_axis(self.data_format)
        if input_shape[axis] == 0:
            raise ValueError(
                f"Layer '{self.name}' needs at least one input channel (axis {axis}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.compute_output_shape(input_shape)

    def call(self, inputs):
        if not _base.on_tensorflow():
            return self._portable_op(inputs, self.pool_size, self._strides(), self.pads,
                                     self.padding_mode, self.data_format, self.ceil_mode)
        _base.check_not_in_xla(self, self.implementation)
        return self._op(inputs, self.pool_size, self._strides(), self.pads,
                        padding_mode=self.padding_mode, data_format=self.data_format,
                        implementation=self.implementation, ceil_mode=self.ceil_mode)

    def compute_output_shape(self, input_shape):
        channels = input_shape[geometry.channel_axis(self.data_format)] if len(
            input_shape) == 4 else None
        return _base.output_shape(input_shape, self.pool_size, self._strides(), self.pads,
                                  channels, self.data_format, self.name,
                                  ceil_mode=self.ceil_mode)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "padding_mode": self.padding_mode,
            "data_format": self.data_format,
            "implementation": self.implementation,
            "ceil_mode": self.ceil_mode,
        })
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class MaxPooling2D(_Pooling2D):
    """Max pooling over M x N windows, with the book's zero padding or ignored padding.

    Args:
        pool_size: the window M or (M, N).
        strides: defaults to the window (non-overlapping pooling, as in the book).
        padding: P, (P, Q), ((top, bottom), (left, right)), 'valid', 'same' or 'full';
            each side must be smaller than the window.
        padding_mode: 'zeros' (the book: padded cells hold 0 and take part in the max) or
            'ignore' (padded cells never win: Keras 'same' / PyTorch behaviour).
        data_format: 'channels_last' or 'channels_first'.
        implementation: 'auto', 'composite', 'native' or 'reference'.
        ceil_mode: PyTorch's (and Caffe's) output rounding: `ceil((I + P_top + P_bottom - M)
            / S) + 1` rows instead of `floor`, less a last window that would start in the
            bottom padding; the cells of the last windows past the padded input never win.

    The gradient goes to the first maximal cell of each window in row-major order.

    Example (the book's example 24.7):

    >>> import numpy as np
    >>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
    >>> MaxPooling2D(2, data_format="channels_last")(X[None, :, :, None])[0, :, :, 0].numpy()
    array([[3., 2.],
           [3., 3.]], dtype=float32)

    With `ceil_mode`, a 5x5 input gives 3x3 windows of 2x2 (the last ones 1 cell wide):

    >>> MaxPooling2D(2, ceil_mode=True).compute_output_shape((1, 5, 5, 1))
    (1, 3, 3, 1)
    """

    _op = staticmethod(nn.max_pool2d)
    _portable_op = staticmethod(portable.max_pool2d)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class MeanPooling2D(_Pooling2D):
    """Mean (average) pooling; the divisor is M*N ('zeros') or the real-cell count ('ignore').

    Args: as for `MaxPooling2D`; with `ceil_mode`, the cells of the last windows past the
    padded input are not counted (PyTorch's `avg_pool2d`: 'zeros' is its
    `count_include_pad=True`, 'ignore' its `False`).

    Example (d2l: a 3x3 input, 2x2 window, stride 1):

    >>> import numpy as np
    >>> X = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> MeanPooling2D(2, strides=1, data_format="channels_last")(X)[0, :, :, 0].numpy()
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """

    _op = staticmethod(nn.mean_pool2d)
    _portable_op = staticmethod(portable.mean_pool2d)


MaxPool2D = MaxPooling2D
MeanPool2D = MeanPooling2D


def adaptive_bins(input_size, output_size):
    """PyTorch's adaptive-pooling bins of one axis: bin ``i`` covers ``[floor(i * I / O),
    ceil((i + 1) * I / O))``; bins overlap when ``O`` does not divide ``I`` and repeat cells
    when ``O > I``.

    >>> adaptive_bins(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    >>> adaptive_bins(1, 2)
    [(0, 1), (0, 1)]
    """
    return [((i * input_size) // output_size, -((-(i + 1) * input_size) // output_size))
            for i in range(output_size)]


def adaptive_average_matrix(input_size, output_size):
    """The ``(O, I)`` matrix whose row ``i`` averages bin ``i`` of `adaptive_bins`."""
    matrix = np.zeros((output_size, input_size))
    for i, (start, end) in enumerate(adaptive_bins(input_size, output_size)):
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average pooling to a fixed output size: PyTorch's ``nn.AdaptiveAvgPool2d``.

    Output cell ``(i, j)`` is the mean of the input rows ``floor(i * H / O_h)`` ..
    ``ceil((i + 1) * H / O_h) - 1`` and the columns likewise (`adaptive_bins`). Written as
    two averaging matrices, ``out = A X B^T`` over the spatial axes (one `einsum`), so it is
    exact, differentiable and XLA-compilable; the matrices are fixed by the input size, which
    must therefore be static (known when the layer is built or called). No weights.

    Args:
        output_size: ``O`` or ``(O_h, O_w)``; an entry None keeps that input size (as
            PyTorch's None).
        data_format: "channels_last" or "channels_first".

    torchvision's VGG pools to 7x7 and AlexNet to 6x6 before the classifier, so that any
    input size reaches it (at 224x224 both pools are the identity):

    >>> import numpy as np
    >>> pool = AdaptiveAveragePooling2D(2, data_format="channels_last")
    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> pool(x)[0, :, :, 0].numpy()
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _adaptive_output_size(output_size)
        self.data_format = geometry.normalize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self._cache = {}

    def _target(self, hw):
        return tuple(i if o is None else o for i, o in zip(hw, self.output_size))

    def _matrices(self, input_shape):
        """The (rows, columns) averaging matrices of a static input size (kept per size)."""
        hw = geometry.spatial_dims(tuple(input_shape), self.data_format)
        if any(d is None for d in hw):
            raise ValueError(
                f"Layer '{self.name}' (AdaptiveAveragePooling2D) needs a static spatial input "
                f"size: its averaging matrices depend on it. Received: input_shape="
                f"{tuple(input_shape)}")
        if hw not in self._cache:
            out = self._target(hw)
            self._cache[hw] = (adaptive_average_matrix(hw[0], out[0]),
                               adaptive_average_matrix(hw[1], out[1]))
        return self._cache[hw]

    def build(self, input_shape):
        self._rows, self._cols = self._matrices(input_shape)
        self.built = True

    def call(self, inputs):
        rows, cols = self._matrices(inputs.shape)
        rows = keras.ops.convert_to_tensor(rows, dtype=inputs.dtype)
        cols = keras.ops.convert_to_tensor(cols, dtype=inputs.dtype)
        spec = "oh,nhwc,pw->nopc" if self.data_format == "channels_last" else (
            "oh,nchw,pw->ncop")
        return keras.ops.einsum(spec, rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"Invalid input shape for layer '{self.name}'. Expected a 4-D input. "
                f"Received: input_shape={input_shape}")
        hw = geometry.spatial_dims(input_shape, self.data_format)
        out = tuple(o if o is not None else i for i, o in zip(hw, self.output_size))
        channels = input_shape[geometry.channel_axis(self.data_format)]
        return geometry.with_spatial(input_shape, out, channels, self.data_format)

    def receptive_field(self):
        """(receptive field, jump) over the input the layer was built on: the widest bin, the
        smallest bin step."""
        field, jump = [], []
        for matrix in (self._rows, self._cols):
            starts = [int(np.argmax(row > 0)) for row in matrix]
            field.append(max(int(np.count_nonzero(row)) for row in matrix))
            steps = [b - a for a, b in zip(starts, starts[1:])]
            jump.append(max(1, min(steps)) if steps else 1)
        return tuple(field), tuple(jump)

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size, "data_format": self.data_format})
        return config


def _adaptive_output_size(value):
    expected = "a positive integer or a pair of positive integers (or None)"
    if geometry._is_int(value):
        value = (value, value)
    if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2
            or not all(v is None or (geometry._is_int(v) and v >= 1) for v in value)):
        raise geometry._invalid("output_size", expected, value)
    return tuple(None if v is None else int(v) for v in value)


AdaptiveAvgPool2D = AdaptiveAveragePooling2D
