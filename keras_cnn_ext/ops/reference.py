"""NumPy reference implementations: the book's definitions as float64 loops.

These functions are the ground truth of the test suite and the engine of
`keras-cnn-ext explain`. They favour reading like the formulas over speed: each output cell is
computed by the sum / max / mean of definition 24.1 / 24.2 over its window of the padded input.

Arrays are either a 2-D matrix in the book's notation (`x` of shape (I, J), `w` of shape
(M, N)) or 4-D tensors in channels_last layout (`x` (batch, I, J, C), `w` (M, N, C, F)).

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


def _as_4d(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[None, :, :, None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(
        f"Invalid value for argument `{name}`. Expected a 2-D matrix or a 4-D array. "
        f"Received: {name} with shape {x.shape}"
    )


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


def _geometry(spatial, window, strides, padding, pooling=False):
    window = geometry.normalize_tuple(window, "pool_size" if pooling else "kernel_size")
    strides = window if (pooling and strides is None) else geometry.normalize_tuple(
        strides, "strides")
    pads = geometry.resolve_padding(padding, window)
    if pooling:
        geometry.check_pool_padding(pads, window, received=padding)
    out = geometry.spatial_output_shape(spatial, window, strides, pads)
    return window, strides, pads, out


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


def corr2d(x, kernel, strides=1, padding=0, *, padding_mode="zeros",
           mode="cross_correlation"):
    """y[k, l, f] = sum_c sum_m sum_n W[m, n, c, f] * X̂[k*S_h + m, l*S_w + n, c].

    Args:
        x: (I, J) or (batch, I, J, C).
        kernel: (M, N) or (M, N, C, F).
        strides: S, an int or (S_h, S_w).
        padding: any spelling accepted by `geometry.resolve_padding`.
        padding_mode: 'zeros', 'replicate' or 'reflect'.
        mode: 'cross_correlation' (the book's convolution) or 'convolution' (kernel flipped).

    Returns:
        float64 array, (K, L) for 2-D input, else (batch, K, L, F).
    """
    x4, matrix = _as_4d(x, "x")
    w = _kernel_4d(kernel)
    if mode == "convolution":
        w = w[::-1, ::-1]
    window, strides, pads, (out_h, out_w) = _geometry(x4.shape[1:3], w.shape[:2], strides,
                                                      padding)
    xp = pad(x4, pads, padding_mode)
    y = np.zeros((x4.shape[0], out_h, out_w, w.shape[3]))
    for k in range(out_h):
        for l in range(out_w):
            patch = xp[:, k * strides[0]:k * strides[0] + window[0],
                       l * strides[1]:l * strides[1] + window[1], :]
            y[:, k, l, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return y[0, :, :, 0] if matrix else y


def dilate(g, strides):
    """Inserts S - 1 zeros between neighbouring cells of the spatial axes."""
    n, h, w, c = g.shape
    out = np.zeros((n, (h - 1) * strides[0] + 1 if h else 0,
                    (w - 1) * strides[1] + 1 if w else 0, c))
    out[:, ::strides[0], ::strides[1], :] = g
    return out


def corr2d_grad(x, kernel, upstream, strides=1, padding=0, *, padding_mode="zeros",
                mode="cross_correlation"):
    """The backprop formulas of corr2d: returns (dL/dx, dL/dkernel).

    dX̂ is the stride-dilated upstream gradient, zero-padded 'full' (M - 1 rows and N - 1
    columns on each side) and correlated with the kernel rotated by 180°; dX is dX̂ with the
    padding cropped (zeros) or folded back (replicate / reflect). dW is the correlation of the
    padded input with the dilated upstream gradient.
    """
    x4, matrix = _as_4d(x, "x")
    w = _kernel_4d(kernel)
    g = np.asarray(upstream, dtype=np.float64)
    g = g[None, :, :, None] if matrix else g
    flip = mode == "convolution"
    w_used = w[::-1, ::-1] if flip else w
    window, strides, pads, _ = _geometry(x4.shape[1:3], w.shape[:2], strides, padding)
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
    if matrix:
        return dx[0, :, :, 0], dw[:, :, 0, 0]
    return dx, (dw if np.ndim(kernel) == 4 else dw[:, :, 0, 0])


def _pool_windows(x, pool_size, strides, padding, padding_mode):
    x4, matrix = _as_4d(x, "x")
    window, strides, pads, (out_h, out_w) = _geometry(
        x4.shape[1:3], pool_size, strides, padding, pooling=True)
    fill = -np.inf if padding_mode == "ignore" else 0.0
    xp = pad(x4, pads, "zeros", fill=fill)
    real = pad(np.ones_like(x4), pads, "zeros")
    return x4, matrix, window, strides, pads, (out_h, out_w), xp, real


def _nan_never_wins(patch):
    return np.where(np.isnan(patch), -np.inf, patch)


def max_pool2d(x, pool_size, strides=None, padding=0, *, padding_mode="zeros"):
    """y[k, l, c] = max over the M x N window at (k*S_h, l*S_w) of the padded input.

    `padding_mode='zeros'` is the book's: padded cells hold 0 and take part in the max.
    `'ignore'` leaves padded cells out (the Keras / PyTorch behaviour).

    NaN cells never win the max (TensorFlow's rule, which the composite and native paths
    share); the result of a window holding only NaN is unspecified (here NaN).
    """
    x4, matrix, window, strides, _, (out_h, out_w), xp, _ = _pool_windows(
        x, pool_size, strides, padding, padding_mode)
    y = np.zeros((x4.shape[0], out_h, out_w, x4.shape[3]))
    for k in range(out_h):
        for l in range(out_w):
            patch = xp[:, k * strides[0]:k * strides[0] + window[0],
                       l * strides[1]:l * strides[1] + window[1], :]
            y[:, k, l, :] = _nan_never_wins(patch).max(axis=(1, 2))
            all_nan = np.isnan(patch).all(axis=(1, 2))
            y[:, k, l, :][all_nan] = np.nan
    return y[0, :, :, 0] if matrix else y


def mean_pool2d(x, pool_size, strides=None, padding=0, *, padding_mode="zeros"):
    """y[k, l, c] = the mean of the window; the divisor is M*N ('zeros') or the number of
    real cells in the window ('ignore')."""
    x4, matrix, window, strides, _, (out_h, out_w), xp, real = _pool_windows(
        x, pool_size, strides, padding, padding_mode)
    xp = np.where(real > 0, xp, 0.0)
    y = np.zeros((x4.shape[0], out_h, out_w, x4.shape[3]))
    for k in range(out_h):
        for l in range(out_w):
            rows = slice(k * strides[0], k * strides[0] + window[0])
            cols = slice(l * strides[1], l * strides[1] + window[1])
            divisor = (real[:, rows, cols, :].sum(axis=(1, 2))
                       if padding_mode == "ignore" else window[0] * window[1])
            y[:, k, l, :] = xp[:, rows, cols, :].sum(axis=(1, 2)) / divisor
    return y[0, :, :, 0] if matrix else y


def max_pool2d_grad(x, upstream, pool_size, strides=None, padding=0, *,
                    padding_mode="zeros"):
    """Routes each upstream value to the first maximal cell (row-major) of its window; a max
    that is a padded cell passes nothing; overlapping windows add up."""
    x4, matrix, window, strides, pads, (out_h, out_w), xp, _ = _pool_windows(
        x, pool_size, strides, padding, padding_mode)
    g = np.asarray(upstream, dtype=np.float64)
    g = g[None, :, :, None] if matrix else g
    dxp = np.zeros_like(xp)
    for b in range(x4.shape[0]):
        for c in range(x4.shape[3]):
            for k in range(out_h):
                for l in range(out_w):
                    r0, c0 = k * strides[0], l * strides[1]
                    patch = xp[b, r0:r0 + window[0], c0:c0 + window[1], c]
                    m, n = np.unravel_index(np.argmax(_nan_never_wins(patch)), patch.shape)
                    dxp[b, r0 + m, c0 + n, c] += g[b, k, l, c]
    dx = unpad(dxp, pads, x4.shape[1:3])
    return dx[0, :, :, 0] if matrix else dx


def mean_pool2d_grad(x, upstream, pool_size, strides=None, padding=0, *,
                     padding_mode="zeros"):
    """Every real cell of a window receives upstream / divisor."""
    x4, matrix, window, strides, pads, (out_h, out_w), xp, real = _pool_windows(
        x, pool_size, strides, padding, padding_mode)
    g = np.asarray(upstream, dtype=np.float64)
    g = g[None, :, :, None] if matrix else g
    dxp = np.zeros_like(xp)
    for k in range(out_h):
        for l in range(out_w):
            rows = slice(k * strides[0], k * strides[0] + window[0])
            cols = slice(l * strides[1], l * strides[1] + window[1])
            divisor = (real[:, rows, cols, :].sum(axis=(1, 2))
                       if padding_mode == "ignore" else window[0] * window[1])
            dxp[:, rows, cols, :] += (g[:, k, l, :] / divisor)[:, None, None, :]
    dx = unpad(dxp, pads, x4.shape[1:3])
    return dx[0, :, :, 0] if matrix else dx
