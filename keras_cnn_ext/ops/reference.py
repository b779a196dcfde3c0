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


def _corr_args(w, strides, padding, padding_mode, mode, data_format):
    window, strides, pads, padding_mode, mode, data_format, _ = geometry.normalize_corr_args(
        w.shape[:2], strides, padding, padding_mode, mode, data_format, "reference")
    return window, strides, pads, padding_mode, mode, data_format


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
    index = np.arange(-pads[0], size + pads[1])
    if padding_mode == "replicate":
        return np.clip(index, 0, size - 1)
    return (size - 1) - np.abs((size - 1) - np.abs(index))




def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last"):
    """y[k, l, f] = sum_c sum_m sum_n W[m, n, c, f] * X̂[k*S_h + m, l*S_w + n, c].

    The signature is that of `composite.corr2d` and `native.corr2d`; here `strides` and
    `padding` may also be any spelling `keras_cnn_ext.ops.corr2d` accepts.

    Args:
        x: (I, J), or 4-D: (batch, I, J, C) channels_last, (batch, C, I, J) channels_first.
        kernel: (M, N) or (M, N, C, F).
        strides: S, an int or (S_h, S_w).
        padding: ((top, bottom), (left, right)) or any spelling of `geometry.resolve_padding`.
        padding_mode: 'zeros', 'replicate' or 'reflect'.
        mode: 'cross_correlation' (the book's convolution) or 'convolution' (kernel flipped).
        data_format: the layout of a 4-D `x` and of the result.

    Returns:
        float64 array, (K, L) for 2-D input, else (batch, K, L, F) in `data_format`.
    """
    w = _kernel_4d(kernel)
    window, strides, pads, padding_mode, mode, data_format = _corr_args(
        w, strides, padding, padding_mode, mode, data_format)
    x4, matrix = _as_4d(x, "x", data_format)
    if mode == "convolution":
        w = w[::-1, ::-1]
    out_h, out_w = geometry.spatial_output_shape(x4.shape[1:3], window, strides, pads)
    xp = pad(x4, pads, padding_mode)
    y = np.zeros((x4.shape[0], out_h, out_w, w.shape[3]))
    for k in range(out_h):
        for l in range(out_w):
            patch = xp[:, k * strides[0]:k * strides[0] + window[0],
                       l * strides[1]:l * strides[1] + window[1], :]
            y[:, k, l, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return _finish(y, matrix, data_format)


def dilate(g, strides):
    """Inserts S - 1 zeros between neighbouring cells of the spatial axes."""
    n, h, w, c = g.shape
    out = np.zeros((n, (h - 1) * strides[0] + 1 if h else 0,
                    (w - 1) * strides[1] + 1 if w else 0, c))
    out[:, ::strides[0], ::strides[1], :] = g
    return out


def corr2d_grad(x, kernel, upstream, strides=(1, 1), padding=geometry.NO_PADDING, *,
                padding_mode="zeros", mode="cross_correlation", data_format="channels_last"):
    """The backprop formulas of corr2d: returns (dL/dx, dL/dkernel).

    dX̂ is the stride-dilated upstream gradient, zero-padded 'full' (M - 1 rows and N - 1
    columns on each side) and correlated with the kernel rotated by 180°; dX is dX̂ with the
    padding cropped (zeros) or folded back (replicate / reflect). dW is the correlation of the
    padded input with the dilated upstream gradient. Arguments as for `corr2d`; `upstream` has
    the shape of its result.
    """
    w = _kernel_4d(kernel)
    window, strides, pads, padding_mode, mode, data_format = _corr_args(
        w, strides, padding, padding_mode, mode, data_format)
    x4, matrix = _as_4d(x, "x", data_format)
    g = _as_4d(upstream, "upstream", data_format)[0]
    flip = mode == "convolution"
    w_used = w[::-1, ::-1] if flip else w
    xp = pad(x4, pads, padding_mode)
    gd = dilate(g, strides)
    # (batch, Hd, Wd, F) -> correlate with the rotated kernel (M, N, F, C)
    rotated = np.transpose(w_used[::-1, ::-1], (0, 1, 3, 2))
    full = pad(gd, ((window[0] - 1,) * 2, (window[1] - 1,) * 2))
    dxp_core = corr2d(full, rotated)
    dxp = np.zeros_like(xp)
    dxp[:, :dxp_core.shape[1], :dxp_core.shape[2], :] = dxp_core
    dx = unpad(dxp, pads, x4.shape[1:3], padding_mode)
    # dW[m, n, c, f] = sum_b sum_k sum_l X̂[b, m + k, n + l, c] * gd[b, k, l, f]
    dw = np.zeros_like(w)
    for m in range(window[0]):
        for n in range(window[1]):
            patch = xp[:, m:m + gd.shape[1], n:n + gd.shape[2], :]
            dw[m, n] = np.tensordot(patch, gd, axes=([0, 1, 2], [0, 1, 2]))
    if flip:
        dw = dw[::-1, ::-1]
    return _finish(dx, matrix, data_format), (dw[:, :, 0, 0] if np.ndim(kernel) == 2 else dw)


class _PoolGeometry:
    """The padded input of a pooling and its windows, shared by the forward and backward."""

    def __init__(self, x, pool_size, strides, padding, padding_mode, data_format):
        self.window, self.strides, self.pads, self.padding_mode, self.data_format, _ = (
            geometry.normalize_pool_args(pool_size, strides, padding, padding_mode, data_format,
                                         "reference"))
        self.x, self.matrix = _as_4d(x, "x", self.data_format)
        self.out = geometry.spatial_output_shape(self.x.shape[1:3], self.window, self.strides,
                                                 self.pads)
        self.padded = pad(self.x, self.pads, "zeros")
        # which cells of the padded input take part: all of them for the book's zero padding,
        # only the real ones for 'ignore'
        real = pad(np.ones_like(self.x), self.pads, "zeros") > 0
        self.member = real if self.padding_mode == "ignore" else np.ones_like(real)

    def windows(self):
        """Yields (k, l, rows, cols): each output cell and the slices of its window."""
        for k in range(self.out[0]):
            for l in range(self.out[1]):
                yield (k, l, slice(k * self.strides[0], k * self.strides[0] + self.window[0]),
                       slice(l * self.strides[1], l * self.strides[1] + self.window[1]))

    def divisor(self, rows, cols):
        """M*N for the book's zero padding, else the number of real cells (per batch, channel)."""
        return self.member[:, rows, cols, :].sum(axis=(1, 2))

    def new_output(self):
        return np.zeros((self.x.shape[0],) + tuple(self.out) + (self.x.shape[3],))

    def upstream(self, upstream):
        return _as_4d(upstream, "upstream", self.data_format)[0]

    def finish(self, y):
        return _finish(y, self.matrix, self.data_format)

    def finish_grad(self, dxp):
        return self.finish(unpad(dxp, self.pads, self.x.shape[1:3]))

    def winner(self, rows, cols):
        """The row-major index of the winning cell of each window: (batch, channels) ints.

        The rule of max pooling (README, Semantics): NaN counts as larger than every number,
        so the first NaN cell wins; without NaN the first maximal cell; a cell outside the
        window's members ('ignore' padding) never wins.
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
               data_format="channels_last"):
    """y[k, l, c] = max over the M x N window at (k*S_h, l*S_w) of the padded input.

    `padding_mode='zeros'` is the book's: padded cells hold 0 and take part in the max.
    `'ignore'` leaves padded cells out (the Keras / PyTorch behaviour). A window holding NaN
    gives NaN (as NumPy, PyTorch and IEEE 754's maximum do). Arguments and signature as for
    `corr2d` (`strides` defaults to the window).

    >>> max_pool2d(np.array([[1.0, np.nan], [3.0, 2.0]]), 2)
    array([[nan]])
    """
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format)
    y = p.new_output()
    for k, l, rows, cols in p.windows():
        y[:, k, l, :] = _take(p.padded[:, rows, cols, :], p.winner(rows, cols))
    return p.finish(y)


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last"):
    """y[k, l, c] = the mean of the window; the divisor is M*N ('zeros') or the number of
    real cells in the window ('ignore'). Arguments as for `max_pool2d`."""
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format)
    y = p.new_output()
    for k, l, rows, cols in p.windows():
        y[:, k, l, :] = p.padded[:, rows, cols, :].sum(axis=(1, 2)) / p.divisor(rows, cols)
    return p.finish(y)


def max_pool2d_grad(x, upstream, pool_size, strides=None, padding=geometry.NO_PADDING, *,
                    padding_mode="zeros", data_format="channels_last"):
    """Routes each upstream value to the winning cell of its window (see `max_pool2d`: the
    first NaN, else the first maximal cell, row-major); a winner that is a padded zero passes
    nothing; overlapping windows add up."""
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format)
    g = p.upstream(upstream)
    dxp = np.zeros_like(p.padded)
    batch, channel = np.indices((p.x.shape[0], p.x.shape[3]))
    for k, l, rows, cols in p.windows():
        m, n = np.unravel_index(p.winner(rows, cols), p.window)
        np.add.at(dxp, (batch, rows.start + m, cols.start + n, channel), g[:, k, l, :])
    return p.finish_grad(dxp)


def mean_pool2d_grad(x, upstream, pool_size, strides=None, padding=geometry.NO_PADDING, *,
                     padding_mode="zeros", data_format="channels_last"):
    """Every real cell of a window receives upstream / divisor."""
    p = _PoolGeometry(x, pool_size, strides, padding, padding_mode, data_format)
    g = p.upstream(upstream)
    dxp = np.zeros_like(p.padded)
    for k, l, rows, cols in p.windows():
        dxp[:, rows, cols, :] += (g[:, k, l, :] / p.divisor(rows, cols))[:, None, None, :]
    return p.finish_grad(dxp)
