"""NumPy reference implementations: the book's definitions as float64 loops.

These functions are the ground truth of the test suite and the engine of
`keras-cnn-ext explain`. They favour reading like the formulas over speed: each output cell is
computed by the sum / max / mean of definition 24.1 / 24.2 over its window of the padded input.

Arrays are either a 2-D matrix in the book's notation (`x` of shape (I, J), `w` of shape
(M, N)) or 4-D tensors (`x` (batch, I, J, C) or, with `data_format="channels_first"`, (batch, C,
I, J); `w` (M, N, C, F)). The functions have the signatures of the `composite` and `native`
implementations; `keras_cnn_ext.ops.reference_tf` runs them as TensorFlow ops.

Example 24.2 of the book:

>>> import numpy as np
>>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]])
>>> W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]])
>>> corr2d(X, W)
array([[11., 18.],
       [ 6., 22.]])
>>> max_pool2d(X, 2)
array([[3., 2.],
       [3., 3.]])
"""

import numpy as np

from keras_cnn_ext.ops import geometry

_NUMPY_PAD_MODES = {"zeros": "constant", "replicate": "edge", "reflect": "reflect"}


def _as_4d(x, name, data_format="channels_last"):
    """(array in channels_last float64, whether `x` was a 2-D matrix)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[None, :, :, None], True
    if x.ndim == 4:
        return _to_nhwc(x, data_format), False
    raise ValueError(
        f"Invalid value for argument `{name}`. Expected a 2-D matrix or a 4-D array. "
        f"Received: {name} with shape {x.shape}"
    )


def _to_nhwc(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, geometry.TO_CHANNELS_LAST)


def _finish(y, matrix, data_format):
    """Back to the caller's layout: a 2-D matrix, or 4-D in `data_format`."""
    if matrix:
        return y[0, :, :, 0]
    return y if data_format == "channels_last" else np.transpose(y, geometry.TO_CHANNELS_FIRST)


def _kernel_4d(w):
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        return w[:, :, None, None]
    if w.ndim == 4:
        return w
    raise ValueError(
        "Invalid value for argument `kernel`. Expected a 2-D matrix or a 4-D array. "
        f"Received: kernel with shape {w.shape}"
    )


def _corr_args(w, strides, padding, padding_mode, mode, data_format, dilations=(1, 1),
               groups=1):
    (window, strides, pads, padding_mode, mode, data_format, _, dilations,
     groups) = geometry.normalize_corr_args(w.shape[:2], strides, padding, padding_mode, mode,
                                            data_format, "reference", dilations, groups)
    return window, strides, pads, padding_mode, mode, data_format, dilations, groups


def _check_groups(x4, w, groups):
    geometry.check_groups(groups, x4.shape[3], w.shape[3], kernel_channels=w.shape[2])


def pad(x, pads, padding_mode="zeros", fill=0.0):
    """Pads the two spatial axes of a 4-D channels_last array.

    `replicate` repeats the edge cell (复制填充); `reflect` mirrors without repeating the edge.
    """
    width = ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0))
    if padding_mode in ("zeros", "ignore"):
        return np.pad(x, width, mode="constant", constant_values=fill)
    if padding_mode == "reflect":
        for axis, (before, after) in zip((1, 2), pads):
            if max(before, after) >= x.shape[axis]:
                raise ValueError(
                    f"Invalid value for argument `padding`. Reflect padding needs each side "
                    f"smaller than the input size {x.shape[axis]}. Received: padding={pads}"
                )
    return np.pad(x, width, mode=_NUMPY_PAD_MODES[padding_mode])


def unpad(g, pads, spatial, padding_mode="zeros"):
    """The adjoint of `pad`: folds a gradient on the padded array back onto the input.

    Zero (and ignored) padding just crops; replicate / reflect padding adds each padded cell's
    gradient to the input cell it was copied from.
    """
    (top, _), (left, _) = pads
    height, width = spatial
    if padding_mode in ("zeros", "ignore"):
        return g[:, top:top + height, left:left + width, :].copy()
    out = np.zeros((g.shape[0], height, width, g.shape[3]))
    rows = _source_index(height, pads[0], padding_mode)
    cols = _source_index(width, pads[1], padding_mode)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[:, r, c, :] += g[:, i, j, :]
    return out


def _source_index(size, pads, padding_mode):
    return geometry.pad_source_index(size, pads, padding_mode)




def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last", dilations=(1, 1), groups=1):
    """y[k, l, f] = sum_c sum_m sum_n W[m, n, c, f] * X̂[k*S_h + D_h*m, l*S_w + D_w*n, c].

    With `groups` G the channels split into G consecutive groups: filter f belongs to group
    g = f // (F/G) and sums only over that group's input channels c = g*(C/G) + c', with
    the kernel's channel index c' (the kernel is (M, N, C/G, F), as PyTorch's `Conv2d`).
    Kernel taps sit D cells apart (`dilations`, PyTorch's `dilation`): the kernel spans
    D*(M-1)+1 cells. The signature is that of `composite.corr2d` and `native.corr2d`; here
    `strides`, `padding` and `dilations` may also be any spelling `keras_cnn_ext.ops.corr2d`
    accepts.

    Args:
        x: (I, J), or 4-D: (batch, I, J, C) channels_last, (batch, C, I, J) channels_first.
        kernel: (M, N) or (M, N, C/groups, F).
        strides: S, an int or (S_h, S_w).
        padding: ((top, bottom), (left, right)) or any spelling of `geometry.resolve_padding`
            ('same' and 'full' on the dilated kernel).
        padding_mode: 'zeros', 'replicate' or 'reflect'.
        mode: 'cross_correlation' (the book's convolution) or 'convolution' (kernel flipped).
        data_format: the layout of a 4-D `x` and of the result.
        dilations: D, an int or (D_h, D_w).
        groups: G, dividing C and F.

    Returns:
        float64 array, (K, L) for 2-D input, else (batch, K, L, F) in `data_format`, with
        K = floor((I + P_top + P_bottom - D_h*(M-1) - 1) / S_h) + 1.

    >>> corr2d(np.arange(25.0).reshape(5, 5), np.ones((2, 2)), dilations=2)
    array([[24., 28., 32.],
           [44., 48., 52.],
           [64., 68., 72.]])
    """
    w = _kernel_4d(kernel)
    window, strides, pads, padding_mode, mode, data_format, dilations, groups = _corr_args(
        w, strides, padding, padding_mode, mode, data_format, dilations, groups)
    x4, matrix = _as_4d(x, "x", data_format)
    _check_groups(x4, w, groups)
    if mode == "convolution":
        w = w[::-1, ::-1]
    span = geometry.effective_window(window, dilations)
    out_h, out_w = geometry.check_dilated_fits(x4.shape[1:3], window, dilations, strides,
                                               pads)
    xp = pad(x4, pads, padding_mode)
    (sh, sw), (dh, dw) = strides, dilations
    c_in, f_out = w.shape[2], w.shape[3] // groups   # per group
    y = np.zeros((x4.shape[0], out_h, out_w, w.shape[3]))
    for k in range(out_h):
        for l in range(out_w):
            # the M x N taps of window (k, l): rows k*S_h + D_h*m, columns l*S_w + D_w*n
            patch = xp[:, k * sh:k * sh + span[0]:dh, l * sw:l * sw + span[1]:dw, :]
            for g in range(groups):
                y[:, k, l, g * f_out:(g + 1) * f_out] = np.tensordot(
                    patch[..., g * c_in:(g + 1) * c_in], w[..., g * f_out:(g + 1) * f_out],
                    axes=([1, 2, 3], [0, 1, 2]))
    return _finish(y, matrix, data_format)


def dilate(g, strides):
    """Inserts S - 1 zeros between neighbouring cells of the spatial axes."""
    n, h, w, c = g.shape
    out = np.zeros((n, (h - 1) * strides[0] + 1 if h else 0,
                    (w - 1) * strides[1] + 1 if w else 0, c))
    out[:, ::strides[0], ::strides[1], :] = g
    return out


def dilate_kernel(w, dilations):
    """The dilated kernel: D - 1 zeros between neighbouring taps, (M, N, ...) ->
    (D_h*(M-1)+1, D_w*(N-1)+1, ...). Correlating with it is correlating with dilation D."""
    m, n = w.shape[:2]
    out = np.zeros(geometry.effective_window((m, n), dilations) + w.shape[2:])
    out[::dilations[0], ::dilations[1]] = w
    return out


def corr2d_grad(x, kernel, upstream, strides=(1, 1), padding=geometry.NO_PADDING, *,
                padding_mode="zeros", mode="cross_correlation", data_format="channels_last",
                dilations=(1, 1), groups=1):
    """The backprop formulas of corr2d: returns (dL/dx, dL/dkernel).

    dX̂ is the stride-dilated upstream gradient, zero-padded 'full' (M - 1 rows and N - 1
    columns on each side) and correlated with the kernel rotated by 180°; dX is dX̂ with the
    padding cropped (zeros) or folded back (replicate / reflect). dW is the correlation of the
    padded input with the dilated upstream gradient. Arguments as for `corr2d`; `upstream` has
    the shape of its result.

    With dilation D the formulas use the dilated kernel (`dilate_kernel`: M becomes
    D*(M-1)+1) and dW keeps its taps (every D-th cell); with groups, each group's input
    channels, filters and kernel slice form their own correlation.
    """
    w = _kernel_4d(kernel)
    window, strides, pads, padding_mode, mode, data_format, dilations, groups = _corr_args(
        w, strides, padding, padding_mode, mode, data_format, dilations, groups)
    x4, matrix = _as_4d(x, "x", data_format)
    _check_groups(x4, w, groups)
    g = _as_4d(upstream, "upstream", data_format)[0]
    flip = mode == "convolution"
    w_used = dilate_kernel(w[::-1, ::-1] if flip else w, dilations)
    window = w_used.shape[:2]
    xp = pad(x4, pads, padding_mode)
    gd = dilate(g, strides)
    full = pad(gd, ((window[0] - 1,) * 2, (window[1] - 1,) * 2))
    c_in, f_out = w.shape[2], w.shape[3] // groups
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w_used)
    for grp in range(groups):
        cs, fs = slice(grp * c_in, (grp + 1) * c_in), slice(grp * f_out, (grp + 1) * f_out)
        # (batch, Hd, Wd, F/G) -> correlate with the group's rotated kernel (M, N, F/G, C/G)
        rotated = np.transpose(w_used[::-1, ::-1, :, fs], (0, 1, 3, 2))
        dxp_core = corr2d(full[..., fs], rotated)
        dxp[:, :dxp_core.shape[1], :dxp_core.shape[2], cs] = dxp_core
        # dW[m, n, c, f] = sum_b sum_k sum_l X̂[b, m + k, n + l, c] * gd[b, k, l, f]
        for m in range(window[0]):
            for n in range(window[1]):
                patch = xp[:, m:m + gd.shape[1], n:n + gd.shape[2], cs]
                dw[m, n, :, fs] = np.tensordot(patch, gd[..., fs], axes=([0, 1, 2], [0, 1, 2]))
    dx = unpad(dxp, pads, x4.shape[1:3], padding_mode)
    dw = dw[::dilations[0], ::dilations[1]]
    if flip:
        dw = dw[::-1, ::-1]
    return _finish(dx, matrix, data_format), (dw[:, :, 0, 0] if np.ndim(kernel) == 2 else dw)


class _PoolGeometry:
    """The padded input of a pooling and its windows, shared by the forward and backward."""

    def __init__(self, x, pool_size, strides, padding, padding_mode, data_format,
                 ceil_mode=False):
        (self.window, self.strides, self.pads, self.padding_mode, self.data_format, _,
         ceil_mode) = geometry.normalize_pool_args(pool_size, strides, padding, padding_mode,
                                                   data_format, "reference", ceil_mode)
        self.x, self.matrix = _as_4d(x, "x", self.data_format)
        self.out = geometry.spatial_output_shape(self.x.shape[1:3], self.window, self.strides,
                                                 self.pads, ceil_mode)
        # ceil_mode's last windows reach `overhang` cells past the padded input: those cells
        # are appended after the padding and are members of no window
        overhang = [geometry.ceil_overhang(size, m, s, p, ceil_mode)
                    for size, m, s, p in zip(self.x.shape[1:3], self.window, self.strides,
                                             self.pads)]
        beyond = ((0, overhang[0]), (0, overhang[1]))
        self.padded = pad(pad(self.x, self.pads, "zeros"), beyond, "zeros")
        # which cells take part: the padded input for the book's zero padding, only the real
        # cells for 'ignore'
        ones = np.ones_like(self.x)
        real = pad(pad(ones, self.pads, "zeros"), beyond, "zeros") > 0
        in_padded = pad(pad(ones, self.pads, "zeros", fill=1.0), beyond, "zeros") > 0
        self.member = real if self.padding_mode == "ignore" else in_padded

    def windows(self):
        """Yields (k, l, rows, cols): each output cell and the slices of its window."""
        for k in range(self.out[0]):
            for l in range(self.out[1]):
                yield (k, l, slice(k * self.strides[0], k * self.strides[0] + self.window[0]),
                       slice(l * self.strides[1], l * self.strides[1] + self.window[1]))

    def divisor(self, rows, cols):
        """The window's cells in the padded input for the book's zero padding (M*N but in
        ceil_mode's last windows), else its real cells (per batch, channel)."""
        return self.member[:, rows, cols, :].sum(axis=(1, 2))

    def new_output(self):
        return np.zeros((self.x.shape[0],) + tuple(self.out) + (self.x.shape[3],))

    def upstream(self, upstream):
        return _as_4d(upstream, "upstream", self.data_format)[0]

    def finish(self, y):
        return _finish(y, self.matrix, self.data_format)

    def finish_grad(self, dxp):
        return self.finish(unpad(dxp, self.pads, self.x.shape[1:3]))  # crops the overhang too

    def winner(self, rows, cols):
        """The row-major index of the winning cell of each window: (batch, channels) ints.

        The rule of max pooling (docs/semantics.md): NaN counts as larger than every number,
        so the first NaN cell wins; without NaN the first maximal cell; a cell outside the
        window's members ('ignore' padding, ceil_mode's cells past the padding) never wins.
        """
        patch = self.padded[:, rows, cols, :]
        member = self.member[:, rows, cols, :]
        flat = _cells(patch)
        member = _cells(member)
        nan = np.isnan(flat) & member
        numbers = np.where(member & ~nan, flat, -np.inf)
        is_max = member & (numbers == numbers.max(axis=1, keepdims=True))
        return np.where(nan.any(axis=1), nan.argmax(axis=1), is_max.argmax(axis=1))


def _cells(patch):
    """(batch, M, N, channels) -> (batch, M*N, channels): the window's cells in row-major order."""
    return patch.reshape(patch.shape[0], patch.shape[1] * patch.shape[2], patch.shape[3])


def _take(patch, index):
    """patch (batch, M, N, channels), index (batch, channels) row-major -> (batch, channels)."""
    return np.take_along_axis(_cells(patch), index[:, None, :], axis=1)[:, 0, :]


def max_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
               data_format="channels_last", ceil_mode=False):
    """y[k, l, c] = max over the M x N window at (k*S_h, l*S_w) of the padded input.

    `padding_mode='zeros'` is the book's: padded cells hold 0 and take part in the max.
    `'ignore'` leaves padded cells out (the Keras / PyTorch behaviour). A window holding NaN
    gives NaN (as NumPy, PyTorch and IEEE 754's maximum do). Arguments and signature as for
    `corr2d` (`strides` defaults to the window). `ceil_mode=True` is PyTorch's output rounding
    (`geometry.padded_output_size`); the cells of the last windows past the padded input never
    win.

    >>> max_pool2d(np.array([[1.0, np.nan], [3.0, 2.0]]), 2)
    array([[nan]])
    """
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    y = p.new_output()
    for k, l, rows, cols in p.windows():
        y[:, k, l, :] = _take(p.padded[:, rows, cols, :], p.winner(rows, cols))
    return p.finish(y)


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last", ceil_mode=False):
    """y[k, l, c] = the mean of the window; the divisor is M*N ('zeros') or the number of
    real cells in the window ('ignore'). Arguments as for `max_pool2d`; with `ceil_mode`, the
    cells of the last windows past the padded input are not counted ('zeros' then divides by
    the window's cells inside the padded input, as PyTorch's count_include_pad=True does).

    >>> mean_pool2d(np.arange(9.0).reshape(3, 3), 2, ceil_mode=True)
    array([[2. , 3.5],
           [6.5, 8. ]])
    """
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    y = p.new_output()
    for k, l, rows, cols in p.windows():
        y[:, k, l, :] = p.padded[:, rows, cols, :].sum(axis=(1, 2)) / p.divisor(rows, cols)
    return p.finish(y)


def max_pool2d_grad(x, upstream, pool_size, strides=None, padding=geometry.NO_PADDING, *,
                    padding_mode="zeros", data_format="channels_last", ceil_mode=False):
    """Routes each upstream value to the winning cell of its window (see `max_pool2d`: the
    first NaN, else the first maximal cell, row-major); a winner that is a padded zero passes
    nothing; overlapping windows add up."""
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    g = p.upstream(upstream)
    dxp = np.zeros_like(p.padded)
    batch, channel = np.indices((p.x.shape[0], p.x.shape[3]))
    for k, l, rows, cols in p.windows():
        m, n = np.unravel_index(p.winner(rows, cols), p.window)
        np.add.at(dxp, (batch, rows.start + m, cols.start + n, channel), g[:, k, l, :])
    return p.finish_grad(dxp)


def mean_pool2d_grad(x, upstream, pool_size, strides=None, padding=geometry.NO_PADDING, *,
                     padding_mode="zeros", data_format="channels_last", ceil_mode=False):
    """Every real cell of a window receives upstream / divisor."""
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    g = p.upstream(upstream)
    dxp = np.zeros_like(p.padded)
    for k, l, rows, cols in p.windows():
        dxp[:, rows, cols, :] += (g[:, k, l, :] / p.divisor(rows, cols))[:, None, None, :]
    return p.finish_grad(dxp)
