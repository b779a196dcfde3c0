"""Composite implementations: TensorFlow ops forward, hand-written backward passes.

The forward pass pads explicitly (or, when the textbook padding coincides with TensorFlow's
'SAME', lets the framework's kernel pad) and calls TensorFlow's optimized VALID/SAME
convolution and pooling kernels. The backward pass is written out with `tf.custom_gradient`
from the backprop formulas (docs/semantics.md) rather than left to autodiff:

* corr2d: dX̂ = full correlation of the stride-dilated upstream gradient with the 180°-rotated
  kernel, then the padding is cropped (zeros) or folded back onto the cells it copied
  (replicate / reflect); dW = correlation of the padded input with the dilated upstream
  gradient. Each of the three pieces (forward too) runs in the formulation `dispatch`'s rule
  table picks for the shape — TensorFlow's kernels (`Conv2DBackpropInput` /
  `Conv2DBackpropFilter`) or one of the exact rewrites of `conv_grads` (im2col GEMM, the
  forward correlation of the formula itself, a phase decomposition for strides, a
  batch-as-channels correlation for dW) — and kernel taps that only ever meet zero padding are
  dropped first (a 3x3 'same' correlation of a 1x1 map is a matmul).
* max pooling: the upstream value goes to the first maximal cell of its window in row-major
  order (`MaxPoolGrad` over the padded input, so a padded zero that wins passes nothing).
  A window holding NaN gives NaN and its gradient goes to its first NaN cell (NumPy / PyTorch
  / IEEE; TensorFlow's own kernels skip NaN). One reduction over the input decides whether any
  NaN is present; only then does a `tf.cond` take the exact path (`_max_pool_nan`).
* mean pooling: every cell of a window receives upstream / divisor.
* `ceil_mode` (PyTorch's rounding): the last windows reach `geometry.ceil_overhang` cells past
  the padded input; those cells are appended as -inf (max: they never win) or 0 (mean, whose
  divisor then counts only the cells inside the padded input), and the pooling runs VALID.

Why explicit padding instead of `tf.nn.conv2d(padding=[...])`: on the CPU the explicit-padding
backward is 2-3x slower than pad + VALID (measured on the project's CPUs; docs/toolchain.md).

All functions take the normalised arguments of `geometry.normalize_corr_args` /
`normalize_pool_args` and have the signatures of `reference` and `native`: `strides` (S_h, S_w),
`padding` ((top, bottom), (left, right)), a lower-case `padding_mode` / `mode` / `data_format`.

>>> x = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
>>> y = max_pool2d(x, (2, 2), (2, 2), ((1, 1), (1, 1)), "ignore", "channels_last")
>>> y[0, :, :, 0].numpy()
array([[ 0.,  2.,  3.],
       [ 8., 10., 11.],
       [12., 14., 15.]], dtype=float32)
"""

import tensorflow as tf

from keras_cnn_ext.ops import conv_dilated, conv_grads, dispatch, geometry
from keras_cnn_ext.ops._custom_gradient import custom_gradient




def _to_nhwc(x, data_format):
    return x if data_format == "channels_last" else tf.transpose(x, geometry.TO_CHANNELS_LAST)


def _from_nhwc(x, data_format):
    return x if data_format == "channels_last" else tf.transpose(x, geometry.TO_CHANNELS_FIRST)


def _static_hw(x):
    return geometry.spatial_dims(x.shape, "channels_last")




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
    if geometry.no_padding(pads):
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
    if geometry.no_padding(pads):
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


def _check_window_fits(x, window, pads):
    """Returns `x`, guarded by a run-time check of the sizes unknown at trace time (known
    sizes were already checked by `nn` with a ValueError)."""
    checks = []
    for axis, m, (before, after) in zip((1, 2), window, pads):
        if x.shape[axis] is None:
            checks.append(tf.debugging.assert_greater_equal(
                tf.shape(x)[axis] + before + after, m,
                message=(f"The window does not fit into the padded input along spatial axis "
                         f"{axis - 1}: kernel size {m}, padding {(before, after)}")))
    if not checks:
        return x
    with tf.control_dependencies(checks):
        return tf.identity(x)


def _frame(x, window, strides, pads, padding_mode):
    """What the forward correlates: (frame, live kernel slices, strides, zero pads, crop).

    Replicate / reflect padding is materialised (the frame is the padded input, zero pads);
    zero padding stays implicit in the pads. With all sizes known, kernel taps that only ever
    meet zero padding are dropped (`conv_grads.live_taps`: a 3x3 'same' correlation of a 1x1
    map is a matmul), and an output axis of size 1 is computed with stride 1 over the frame
    cropped to the window (`crop` rows / columns kept): the same numbers, and it avoids a
    oneDNN float32 defect in TF 2.21 (wrong values for one-column outputs with stride > 1).
    """
    if padding_mode != "zeros":
        x, pads = pad(x, pads, padding_mode), ((0, 0), (0, 0))
    hw = _static_hw(x)
    taps = tuple((0, m - 1) for m in window)
    if any(size is None for size in hw):
        return x, taps, strides, pads, None
    if dispatch.drop_dead_taps():
        taps, pads = conv_grads.live_taps(hw, window, strides, pads)
    live = tuple(hi - lo + 1 for lo, hi in taps)
    crop, new_strides, new_pads = [], [], []
    for size, m, s, p in zip(hw, live, strides, pads):
        if s > 1 and geometry.window_output_size(size, m, s, p) == 1 and m > p[0]:
            keep = min(size, m - p[0])
            crop.append(keep)
            new_strides.append(1)
            new_pads.append((p[0], m - p[0] - keep))
        else:
            crop.append(size)
            new_strides.append(s)
            new_pads.append(p)
    x = x[:, :crop[0], :crop[1], :]
    return x, taps, tuple(new_strides), tuple(new_pads), hw


def _output_shape(x, kernel, window, strides, pads):
    """(N, K, L, F) from the formula, as a tensor: some oneDNN kernels return a wrongly shaped
    empty tensor for an empty batch, and reshaping an empty tensor is free and always valid."""
    shape = tf.shape(x)
    out = [geometry.padded_output_size(shape[axis], m, s, p)
           for axis, m, s, p in zip((1, 2), window, strides, pads)]
    return tf.stack([shape[0], out[0], out[1], tf.shape(kernel)[3]])


def _restore(d_frame, full_hw):
    """Zero rows / columns for the part of the frame the forward cropped away."""
    if full_hw is None or tuple(d_frame.shape[1:3]) == tuple(full_hw):
        return d_frame
    return tf.pad(d_frame, ((0, 0), (0, full_hw[0] - d_frame.shape[1]),
                            (0, full_hw[1] - d_frame.shape[2]), (0, 0)))


def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last", dilations=(1, 1), groups=1):
    """Textbook cross-correlation (no bias) with an explicit gradient. See module docstring.

    `dilations` and `groups` (PyTorch's `Conv2d` geometry) run `conv_dilated`; the default
    (1, 1) and 1 take the path below unchanged."""
    strides = tuple(strides)
    pads = tuple(tuple(p) for p in padding)
    flip = mode == "convolution"
    if tuple(dilations) != (1, 1) or groups != 1:
        return _corr2d_dilated_grouped(x, kernel, strides, pads, padding_mode, flip,
                                       data_format, tuple(dilations), groups)

    @custom_gradient
    def _corr(x, kernel):
        x_nhwc = _check_window_fits(_to_nhwc(x, data_format), tuple(kernel.shape[:2]), pads)
        window = tuple(kernel.shape[:2])
        used = tf.reverse(kernel, (0, 1)) if flip else kernel
        frame, taps, run_strides, run_pads, full_hw = _frame(x_nhwc, window, strides, pads,
                                                             padding_mode)
        (r0, r1), (c0, c1) = taps
        live = used[r0:r1 + 1, c0:c1 + 1]
        how = dispatch.corr2d_formulation(
            frame, live, run_strides, run_pads,
            static=all(isinstance(d, int) for d in frame.shape[1:4]))
        y = conv_grads.correlate(frame, live, run_strides, run_pads, how.forward)
        y = tf.reshape(y, _output_shape(x_nhwc, used, window, strides, pads))

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            hw = _static_hw(frame)
            if any(d is None for d in hw):
                hw = tf.unstack(tf.shape(frame)[1:3])
            d_frame = conv_grads.input_grad(g, live, hw, run_strides, run_pads,
                                            how.input_grad, how.input_engine)
            d_frame = _restore(d_frame, full_hw)
            dx = d_frame if padding_mode == "zeros" else unpad(
                d_frame, pads, tf.shape(x_nhwc), padding_mode)
            dw = conv_grads.kernel_grad(frame, g, live.shape[:2], run_strides, run_pads,
                                        how.kernel_grad)
            if (r0, r1, c0, c1) != (0, window[0] - 1, 0, window[1] - 1):
                dw = tf.pad(dw, ((r0, window[0] - 1 - r1), (c0, window[1] - 1 - c1),
                                 (0, 0), (0, 0)))
            if flip:
                dw = tf.reverse(dw, (0, 1))
            return _from_nhwc(dx, data_format), dw

        return _from_nhwc(y, data_format), grad

    return _corr(x, kernel)


def _corr2d_dilated_grouped(x, kernel, strides, pads, padding_mode, flip, data_format,
                            dilations, groups):
    """`corr2d` with dilation and / or groups: replicate / reflect padding materialised as
    above, then `conv_dilated.Plan` forward and its explicit backward."""

    @custom_gradient
    def _corr(x, kernel):
        window = tuple(kernel.shape[:2])
        x_nhwc = _check_window_fits(_to_nhwc(x, data_format),
                                    geometry.effective_window(window, dilations), pads)
        used = tf.reverse(kernel, (0, 1)) if flip else kernel
        if padding_mode == "zeros":
            frame, run_pads = x_nhwc, pads
        else:
            frame, run_pads = pad(x_nhwc, pads, padding_mode), geometry.NO_PADDING
        plan = conv_dilated.Plan(frame, used, strides, run_pads, dilations, groups)
        y = plan.forward(frame, used)
        out_hw = [geometry.padded_output_size(size, m, s, p) for size, m, s, p in zip(
            _static_hw(x_nhwc), geometry.effective_window(window, dilations), strides, pads)
            ] if all(isinstance(d, int) for d in _static_hw(x_nhwc)) else (None, None)
        y.set_shape((x_nhwc.shape[0], out_hw[0], out_hw[1], kernel.shape[3]))

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            d_frame, dw = plan.backward(frame, used, g)
            dx = d_frame if padding_mode == "zeros" else unpad(
                d_frame, pads, tf.shape(x_nhwc), padding_mode)
            if flip:
                dw = tf.reverse(dw, (0, 1))
            return _from_nhwc(dx, data_format), dw

        return _from_nhwc(y, data_format), grad

    return _corr(x, kernel)


def _lowest(dtype):
    return tf.constant(float("-inf"), dtype)


class _MaxPoolKernels:
    """TensorFlow's max pool and its gradient for one geometry ('SAME' or 'VALID')."""

    def __init__(self, pool_size, strides, tf_padding):
        self.ksize = (1,) + tuple(pool_size) + (1,)
        self.strides = (1,) + tuple(strides) + (1,)
        self.padding = tf_padding

    def pool(self, xp):
        return tf.nn.max_pool2d(xp, self.ksize, self.strides, self.padding)

    def grad(self, xp, y, g):
        """`g` to the first maximal cell of each window (TF's rule: NaN cells are skipped)."""
        return tf.raw_ops.MaxPoolGrad(orig_input=xp, orig_output=y, grad=g, ksize=self.ksize,
                                      strides=self.strides, padding=self.padding)


def _max_pool_nan(kernels, xp, y, g=None):
    """The exact max pooling of an input holding NaN (docs/semantics.md).

    Forward: the windows holding a NaN cell output NaN, the others TensorFlow's maximum `y`.
    Backward (with the upstream `g`): a NaN window sends its gradient to its first NaN cell in
    row-major order (TF's first-max rule on the 0/1 NaN indicator), every other window to its
    first maximal cell (TF's rule on the input with NaN replaced by 0, which changes none of
    those windows).
    """
    is_nan = tf.math.is_nan(xp)
    indicator = tf.cast(is_nan, xp.dtype)
    nan_window = kernels.pool(indicator)
    in_nan_window = nan_window > 0
    if g is None:
        return tf.where(in_nan_window, tf.constant(float("nan"), y.dtype), y)
    zero = tf.zeros((), g.dtype)
    clean = tf.where(is_nan, tf.zeros((), xp.dtype), xp)
    to_numbers = kernels.grad(clean, kernels.pool(clean), tf.where(in_nan_window, zero, g))
    to_nans = kernels.grad(indicator, nan_window, tf.where(in_nan_window, g, zero))
    return to_numbers + to_nans


def _overhang(x_nhwc, pool_size, strides, pads, ceil_mode):
    """ceil_mode's cells past the padded input per spatial axis: ints, or size tensors where
    the size is unknown at trace time (None without ceil_mode)."""
    if not ceil_mode:
        return None
    shape = tf.shape(x_nhwc)
    out = []
    for axis, m, s, p in zip((1, 2), pool_size, strides, pads):
        size = x_nhwc.shape[axis]
        if size is not None:
            out.append(geometry.ceil_overhang(size, m, s, p, True))
            continue
        size = shape[axis]
        k = geometry.padded_output_size(size, m, s, p, True)
        out.append(tf.maximum(0, (k - 1) * s + m - (size + p[0] + p[1])))
    if all(isinstance(e, int) and e == 0 for e in out):
        return None  # the last windows end inside the padded input: as without ceil_mode
    return out


def _pad_overhang(xp, overhang, fill):
    """Appends ceil_mode's overhang cells (bottom, right) to the padded input."""
    if overhang is None:
        return xp
    return tf.pad(xp, ((0, 0), (0, overhang[0]), (0, overhang[1]), (0, 0)),
                  constant_values=fill)


def _crop_overhang(dxp, overhang):
    """The adjoint of `_pad_overhang`: drops the gradient of the overhang cells (always 0)."""
    if overhang is None:
        return dxp
    shape = tf.shape(dxp)
    return dxp[:, :shape[1] - overhang[0], :shape[2] - overhang[1], :]


def max_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
               data_format="channels_last", ceil_mode=False):
    """Max pooling; 'zeros' lets padded zeros compete, 'ignore' never lets them win; a window
    holding NaN gives NaN (see `_max_pool_nan`); ceil_mode's cells past the padded input hold
    -inf (they never win: each window starts on a cell of the padded input)."""
    strides = tuple(geometry.pool_strides(pool_size, strides))
    pads = tuple(tuple(p) for p in padding)

    @custom_gradient
    def _pool(x):
        x_nhwc = _to_nhwc(x, data_format)
        overhang = _overhang(x_nhwc, pool_size, strides, pads, ceil_mode)
        if overhang is None and padding_mode == "ignore" and geometry.is_tf_same(
                _static_hw(x_nhwc), pool_size, strides, pads):
            tf_padding, xp = "SAME", x_nhwc
        else:
            fill = _lowest(x.dtype) if padding_mode == "ignore" else 0.0
            x_nhwc = _check_window_fits(x_nhwc, pool_size, pads)
            tf_padding, xp = "VALID", _pad_overhang(pad(x_nhwc, pads, "zeros", fill=fill),
                                                    overhang, _lowest(x.dtype))
        kernels = _MaxPoolKernels(pool_size, strides, tf_padding)
        y_tf = kernels.pool(xp)
        # One pass over the input (a sum is NaN if any cell is; inf - inf only costs speed)
        # keeps inputs without NaN on TensorFlow's kernels alone.
        has_nan = tf.math.is_nan(tf.reduce_sum(x_nhwc))
        y = tf.cond(has_nan, lambda: _max_pool_nan(kernels, xp, y_tf), lambda: y_tf)

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            # TF's gradient stays outside the cond: inside a branch, oneDNN cannot pair it with
            # the forward pool and TensorFlow falls back to a kernel 5-10x slower (measured).
            dxp_tf = kernels.grad(xp, y_tf, g)
            dxp = tf.cond(has_nan, lambda: _max_pool_nan(kernels, xp, y_tf, g),
                          lambda: dxp_tf)
            dx = dxp if tf_padding == "SAME" else unpad(
                _crop_overhang(dxp, overhang), pads, tf.shape(x_nhwc), "zeros")
            return _from_nhwc(dx, data_format)

        return _from_nhwc(y, data_format), grad

    return _pool(x)


def _window_counts(x_nhwc, pool_size, strides, pads, dtype, overhang=None, count_pads=False):
    """Number of counted cells in every window, shaped (1, K, L, 1): the real (unpadded) ones,
    or with `count_pads` those of the padded input; never ceil_mode's overhang."""
    shape = tf.shape(x_nhwc)
    ones = tf.ones((1, shape[1], shape[2], 1), dtype)
    window_cells = pool_size[0] * pool_size[1]
    counted = pad(ones, pads, "zeros", fill=1.0 if count_pads else 0.0)
    return tf.nn.avg_pool2d(_pad_overhang(counted, overhang, 0.0),
                            (1,) + tuple(pool_size) + (1,), (1,) + tuple(strides) + (1,),
                            "VALID") * window_cells


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last", ceil_mode=False):
    """Mean pooling; divisor M*N ('zeros', the book) or the real-cell count ('ignore');
    ceil_mode's cells past the padded input are not counted (PyTorch's avg_pool2d)."""
    strides = tuple(geometry.pool_strides(pool_size, strides))
    ksize = (1,) + tuple(pool_size) + (1,)
    tf_strides = (1,) + strides + (1,)
    pads = tuple(tuple(p) for p in padding)
    window_cells = pool_size[0] * pool_size[1]

    @custom_gradient
    def _pool(x):
        x_nhwc = _to_nhwc(x, data_format)
        overhang = _overhang(x_nhwc, pool_size, strides, pads, ceil_mode)
        same = overhang is None and padding_mode == "ignore" and geometry.is_tf_same(
            _static_hw(x_nhwc), pool_size, strides, pads)
        rescale = overhang is not None or (
            padding_mode == "ignore" and not same and not geometry.no_padding(pads))
        if same:
            tf_padding, xp = "SAME", x_nhwc
        else:
            x_nhwc = _check_window_fits(x_nhwc, pool_size, pads)
            tf_padding, xp = "VALID", _pad_overhang(pad(x_nhwc, pads, "zeros"), overhang, 0.0)
        y = tf.nn.avg_pool2d(xp, ksize, tf_strides, tf_padding)
        scale = (window_cells / _window_counts(x_nhwc, pool_size, strides, pads, x.dtype,
                                               overhang, count_pads=padding_mode == "zeros")
                 if rescale else None)
        if rescale:
            y = y * scale

        def grad(upstream):
            g = _to_nhwc(upstream, data_format)
            if rescale:
                g = g * scale
            dxp = tf.raw_ops.AvgPoolGrad(orig_input_shape=tf.shape(xp), grad=g, ksize=ksize,
                                         strides=tf_strides, padding=tf_padding)
            dx = dxp if same else unpad(_crop_overhang(dxp, overhang), pads,
                                        tf.shape(x_nhwc), "zeros")
            return _from_nhwc(dx, data_format)

        return _from_nhwc(y, data_format), grad

    return _pool(x)
