"""Composite implementations: TensorFlow ops forward, hand-written backward passes.

The forward pass pads explicitly (or, when the textbook padding coincides with TensorFlow's
'SAME', lets the framework's kernel pad) and calls TensorFlow's optimized VALID/SAME
convolution and pooling kernels. The backward pass is written out with `tf.custom_gradient`
from the backprop formulas (DESIGN §3) rather than left to autodiff:

* corr2d: dX̂ = full correlation of the stride-dilated upstream gradient with the 180°-rotated
  kernel (`Conv2DBackpropInput` computes exactly that), then the padding is cropped (zeros) or
  folded back onto the cells it copied (replicate / reflect); dW = correlation of the padded
  input with the dilated upstream gradient (`Conv2DBackpropFilter`).
* max pooling: the upstream value goes to the first maximal cell of its window in row-major
  order (`MaxPoolGrad` over the padded input, so a padded zero that wins passes nothing).
* mean pooling: every cell of a window receives upstream / divisor.

Why explicit padding instead of `tf.nn.conv2d(padding=[...])`: on the CPU the explicit-padding
backward is 2-3x slower than pad + VALID (measured, DESIGN §6).

All functions take normalised arguments (see `keras_cnn_ext.ops.nn`): `strides` (S_h, S_w),
`pads` ((top, bottom), (left, right)), a lower-case `padding_mode` / `mode` / `data_format`.
"""

import tensorflow as tf

from keras_cnn_ext.ops import geometry


def _to_nhwc(x, data_format):
    return x if data_format == "channels_last" else tf.transpose(x, (0, 2, 3, 1))


def _from_nhwc(x, data_format):
    return x if data_format == "channels_last" else tf.transpose(x, (0, 3, 1, 2))


def _static_hw(x):
    return tuple(x.shape[1:3])


def _is_tf_same(spatial, window, strides, pads):
    """Whether TensorFlow's 'SAME' padding equals `pads` (only checkable for known sizes)."""
    return all(
        geometry.tf_same_pads(size, m, s) == tuple(p)
        for size, m, s, p in zip(spatial, window, strides, pads)
    )


def _no_pads(pads):
    return all(p == 0 for pair in pads for p in pair)


def _source_index(size, before, after, padding_mode):
    """For each padded position along one axis, the input cell it copies."""
    index = tf.range(-before, size + after)
    if padding_mode == "replicate":
        return tf.clip_by_value(index, 0, size - 1)
    # reflect, edge not repeated: -1 -> 1, size -> size - 2
    return (size - 1) - tf.abs((size - 1) - tf.abs(index))


def _check_reflect(x, pads):
    """Reflect padding needs each side smaller than the axis; static sizes fail at trace time."""
    checks = []
    for axis, (before, after) in zip((1, 2), pads):
        need = max(before, after)
        if need == 0:
            continue
        size = x.shape[axis]
        if size is not None:
            if need >= size:
                raise ValueError(
                    "Invalid value for argument `padding`. Reflect padding needs each side "
                    f"smaller than the input size {size} along spatial axis {axis - 1}. "
                    f"Received: padding={pads}"
                )
        else:
            checks.append(tf.debugging.assert_less(
                need, tf.shape(x)[axis],
                message="Reflect padding needs each side smaller than the input size"))
    return checks


def pad(x, pads, padding_mode, fill=0.0):
    """Pads the spatial axes of an NHWC tensor ('zeros'/'ignore' use the constant `fill`)."""
    if _no_pads(pads):
        return x
    if padding_mode in ("zeros", "ignore"):
        return tf.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    with tf.control_dependencies(_check_reflect(x, pads) if padding_mode == "reflect" else []):
        shape = tf.shape(x)
        for axis, (before, after) in zip((1, 2), pads):
            if before or after:
                x = tf.gather(x, _source_index(shape[axis], before, after, padding_mode),
                              axis=axis)
    return x


def unpad(g, pads, input_shape, padding_mode):
    """The adjoint of `pad`: crop, or fold padded gradients back onto their source cells."""
    if _no_pads(pads):
        return g
    if padding_mode in ("zeros", "ignore"):
        (top, _), (left, _) = pads
        return g[:, top:top + input_shape[1], left:left + input_shape[2], :]
    for axis, (before, after) in zip((1, 2), pads):
        if not (before or after):
            continue
        size = input_shape[axis]
        perm = (axis,) + tuple(a for a in range(4) if a != axis)
        moved = tf.transpose(g, perm)
        summed = tf.math.unsorted_segment_sum(
            moved, _source_index(size, before, after, padding_mode), size)
        g = tf.transpose(summed, tf.argsort(perm))
    return g


def _conv_padding(x, window, strides, pads, padding_mode):
    """Chooses between TF 'SAME' and explicit pad + 'VALID' for the forward and backward."""
    if padding_mode == "zeros" and not _no_pads(pads) and _is_tf_same(
            _static_hw(x), window, strides, pads):
        return "SAME"
    return "VALID"


def corr2d(x, kernel, strides, pads, padding_mode="zeros", mode="cross_correlation",
           data_format="channels_last"):
    """Textbook cross-correlation (no bias) with an explicit gradient. See module docstring."""
    strides = tuple(strides)
    pads = tuple(tuple(p) for p in pads)
    flip = mode == "convolution"
    tf_strides = (1,) + strides + (1,)

    @tf.custom_gradient
    def _corr(x, kernel):
        x_nhwc = _to_nhwc(x, data_format)
        window = tuple(kernel.shape[:2])
        used = tf.reverse(kernel, (0, 1)) if flip else kernel
        tf_padding = _conv_padding(x_nhwc, window, strides, pads, padding_mode)
        xp = x_nhwc if tf_padding == "SAME" else pad(x_nhwc, pads, padding_mode)
        y = tf.nn.conv2d(xp, used, tf_strides, tf_padding)

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            dxp = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(xp), filter=used, out_backprop=g, strides=tf_strides,
                padding=tf_padding)
            dx = dxp if tf_padding == "SAME" else unpad(
                dxp, pads, tf.shape(x_nhwc), padding_mode)
            dw = tf.raw_ops.Conv2DBackpropFilter(
                input=xp, filter_sizes=tf.shape(used), out_backprop=g, strides=tf_strides,
                padding=tf_padding)
            if flip:
                dw = tf.reverse(dw, (0, 1))
            return _from_nhwc(dx, data_format), dw

        return _from_nhwc(y, data_format), grad

    return _corr(x, kernel)


def _lowest(dtype):
    return tf.constant(float("-inf"), dtype)


def max_pool2d(x, pool_size, strides, pads, padding_mode="zeros",
               data_format="channels_last"):
    """Max pooling; 'zeros' lets padded zeros compete, 'ignore' never lets them win."""
    ksize = (1,) + tuple(pool_size) + (1,)
    tf_strides = (1,) + tuple(strides) + (1,)
    pads = tuple(tuple(p) for p in pads)

    @tf.custom_gradient
    def _pool(x):
        x_nhwc = _to_nhwc(x, data_format)
        if padding_mode == "ignore" and _is_tf_same(_static_hw(x_nhwc), pool_size, strides,
                                                    pads):
            tf_padding, xp = "SAME", x_nhwc
        else:
            fill = _lowest(x.dtype) if padding_mode == "ignore" else 0.0
            tf_padding, xp = "VALID", pad(x_nhwc, pads, "zeros", fill=fill)
        y = tf.nn.max_pool2d(xp, ksize, tf_strides, tf_padding)

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            dxp = tf.raw_ops.MaxPoolGrad(orig_input=xp, orig_output=y, grad=g, ksize=ksize,
                                         strides=tf_strides, padding=tf_padding)
            dx = dxp if tf_padding == "SAME" else unpad(dxp, pads, tf.shape(x_nhwc), "zeros")
            return _from_nhwc(dx, data_format)

        return _from_nhwc(y, data_format), grad

    return _pool(x)


def _window_counts(x_nhwc, pool_size, strides, pads, dtype):
    """Number of real (unpadded) cells in every window, shaped (1, K, L, 1)."""
    shape = tf.shape(x_nhwc)
    ones = tf.ones((1, shape[1], shape[2], 1), dtype)
    window_cells = pool_size[0] * pool_size[1]
    return tf.nn.avg_pool2d(pad(ones, pads, "zeros"), (1,) + tuple(pool_size) + (1,),
                            (1,) + tuple(strides) + (1,), "VALID") * window_cells


def mean_pool2d(x, pool_size, strides, pads, padding_mode="zeros",
                data_format="channels_last"):
    """Mean pooling; divisor M*N ('zeros', the book) or the real-cell count ('ignore')."""
    ksize = (1,) + tuple(pool_size) + (1,)
    tf_strides = (1,) + tuple(strides) + (1,)
    pads = tuple(tuple(p) for p in pads)
    window_cells = pool_size[0] * pool_size[1]

    @tf.custom_gradient
    def _pool(x):
        x_nhwc = _to_nhwc(x, data_format)
        same = padding_mode == "ignore" and _is_tf_same(_static_hw(x_nhwc), pool_size,
                                                        strides, pads)
        rescale = padding_mode == "ignore" and not same and not _no_pads(pads)
        if same:
            tf_padding, xp = "SAME", x_nhwc
        else:
            tf_padding, xp = "VALID", pad(x_nhwc, pads, "zeros")
        y = tf.nn.avg_pool2d(xp, ksize, tf_strides, tf_padding)
        scale = (window_cells / _window_counts(x_nhwc, pool_size, strides, pads, x.dtype)
                 if rescale else None)
        if rescale:
            y = y * scale

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            if rescale:
                g = g * scale
            dxp = tf.raw_ops.AvgPoolGrad(orig_input_shape=tf.shape(xp), grad=g, ksize=ksize,
                                         strides=tf_strides, padding=tf_padding)
            dx = dxp if same else unpad(dxp, pads, tf.shape(x_nhwc), "zeros")
            return _from_nhwc(dx, data_format)

        return _from_nhwc(y, data_format), grad

    return _pool(x)
