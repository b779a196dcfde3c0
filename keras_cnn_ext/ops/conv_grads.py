"""Exact formulations of the correlation's forward and backward passes, for the composite path.

Every function here computes one of the three pieces of `y = corr(x̂, w)` — the zero-padded
cross-correlation of an NHWC input `x` with a kernel `w` (M, N, C, F), strides (S_h, S_w) and
explicit pads ((top, bottom), (left, right)) — in one of several ways that give the same numbers
(up to float rounding). `ops/dispatch.py` picks one per shape; they exist because TensorFlow's
CPU kernels for the gradients are, on some shapes and machines, far slower than the same
arithmetic written another way (docs/toolchain.md: `Conv2DBackpropInput` in TensorFlow's own
(Eigen) kernels takes 100x the forward time on 1x1 maps with 512 channels).

Forward and correlation engines (`correlate`):
  * "conv" — `tf.nn.conv2d` (TF 'SAME' where it equals the pads, else pad + 'VALID');
  * "gemm" — im2col: the patches of the padded input (one strided slice per kernel tap) times
    the kernel reshaped to (M·N·C, F), one matmul: no per-call convolution set-up, cheap to
    unpack for small maps.

Input gradient (`input_grad`), the book's dX = correlation of the stride-dilated upstream
gradient, zero-padded, with the 180°-rotated kernel whose two channel axes are swapped:
  * "tf" — `Conv2DBackpropInput` (TensorFlow's transposed convolution);
  * "dilate" — exactly the book's formula: dilate, pad (or crop), `correlate` with rot180(w)ᵀ;
  * "phase" — for strides > 1 without the mostly-zero dilated map: the output cells with row
    i ≡ φ (mod S_h) and column j ≡ ψ (mod S_w) only meet the kernel taps m ≡ φ + top (mod S_h),
    n ≡ ψ + left (mod S_w), so each of the S_h·S_w phases is a dense stride-1 correlation of
    the upstream gradient with a sub-kernel; the phases are interleaved at the end;
  * "subpixel" — the same phases as one correlation: the sub-kernels, aligned on a common
    window, are stacked along the output channels (S_h·S_w·C), then a pixel shuffle.

Kernel gradient (`kernel_grad`), dW = correlation of the padded input with the dilated upstream
gradient:
  * "tf" — `Conv2DBackpropFilter`;
  * "gemm" — patchesᵀ × upstream as one matmul ((M·N·C, B·K·L) × (B·K·L, F));
  * "swap" — that correlation literally, as one forward convolution of the C input maps
    (images as channels) with the dilated upstream gradient (K, L, B, F) as the kernel: fast
    where the kernel is small and the maps large with few channels (LeNet's first layer).

`live_taps` removes kernel rows/columns that only ever meet zero padding (a 3x3 'same'
correlation of a 1x1 map is its centre tap: a matmul); exact for zero padding.

All functions need the spatial sizes known at trace time (the batch may be unknown); the
dispatch falls back to "conv"/"tf" otherwise.

The book's example 24.3 (zero padding 1) as one matmul, and the input gradient of its stride-2
version by every method:

>>> X = tf.constant([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
>>> W = tf.constant([[2, 1, 2], [0, 0, 3], [0, 0, 2]], "float32")
>>> X, W = X[None, :, :, None], W[:, :, None, None]
>>> correlate(X, W, pads=((1, 1), (1, 1)), engine="gemm")[0, :, :, 0].numpy().tolist()
[[10.0, 2.0, 7.0, 0.0], [13.0, 11.0, 18.0, 1.0], [10.0, 6.0, 22.0, 4.0], [11.0, 7.0, 12.0, 3.0]]
>>> g = tf.ones((1, 2, 2, 1))
>>> for method in INPUT_GRADS:
...     dx = input_grad(g, W, (4, 4), (2, 2), ((1, 1), (1, 1)), method)
...     print(method, dx[0, :, :, 0].numpy().astype(int).tolist())
tf [[0, 3, 0, 3], [1, 6, 1, 4], [0, 3, 0, 3], [0, 2, 0, 2]]
dilate [[0, 3, 0, 3], [1, 6, 1, 4], [0, 3, 0, 3], [0, 2, 0, 2]]
phase [[0, 3, 0, 3], [1, 6, 1, 4], [0, 3, 0, 3], [0, 2, 0, 2]]
subpixel [[0, 3, 0, 3], [1, 6, 1, 4], [0, 3, 0, 3], [0, 2, 0, 2]]
"""

import tensorflow as tf

from keras_cnn_ext.ops import geometry

CORRELATE = ("conv", "gemm")
INPUT_GRADS = ("tf", "dilate", "phase", "subpixel")
KERNEL_GRADS = ("tf", "gemm", "swap")


# ----------------------------------------------------------------------------- helpers


def _pad_or_crop(t, pads):
    """Zero-pads the spatial axes of an NHWC tensor; negative amounts crop instead."""
    (top, bottom), (left, right) = pads
    if min(top, bottom, left, right) < 0:
        h, w = t.shape[1], t.shape[2]
        t = t[:, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0), :]
    positive = ((max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)))
    if any(p for pair in positive for p in pair):
        t = tf.pad(t, ((0, 0),) + positive + ((0, 0),))
    return t


def _same_matches(hw, window, strides, pads):
    """Whether TF 'SAME' pads exactly `pads` (False for sizes unknown at trace time)."""
    if not all(isinstance(size, int) for size in hw):
        return False
    return all(geometry.tf_same_pads(size, m, s) == tuple(p)
               for size, m, s, p in zip(hw, window, strides, pads))


def _remainders(hw, window, strides, pads):
    """Rows / columns at the far end that no window reaches ((H + P - M) mod S)."""
    return tuple((size + p[0] + p[1] - m) % s
                 for size, m, s, p in zip(hw, window, strides, pads))


def _out_hw(hw, window, strides, pads):
    return tuple((size + p[0] + p[1] - m) // s + 1
                 for size, m, s, p in zip(hw, window, strides, pads))


def rotated(w):
    """rot180 in both spatial axes with the channel axes swapped: (M, N, C, F) -> (M, N, F, C)."""
    return tf.transpose(tf.reverse(w, (0, 1)), (0, 1, 3, 2))


def _batch(t):
    return tf.shape(t)[0]


# ----------------------------------------------------------------------------- forward


def _taps(x, window, strides, pads):
    """The M·N strided slices of the zero-padded input, one per kernel tap, each (B, K, L, C)."""
    out = _out_hw(tuple(x.shape[1:3]), window, strides, pads)
    x = _pad_or_crop(x, pads)
    (sh, sw), (k, l) = strides, out
    return [x[:, m:m + (k - 1) * sh + 1:sh, n:n + (l - 1) * sw + 1:sw, :]
            for m in range(window[0]) for n in range(window[1])]


def _patch_matrix(x, window, strides, pads):
    """im2col: the patches as a matrix and whether it is stored transposed.

    Returns (P, False) with P (B·K·L, M·N·C) rows ordered like a reshaped kernel, or, for one
    input channel, (Pᵀ, True) with Pᵀ (M·N, B·K·L): stacking whole slices is a plain copy,
    where interleaving one value per tap along the channels is not (5x slower measured).
    """
    taps = _taps(x, window, strides, pads)
    if x.shape[3] == 1 and len(taps) > 1:
        return tf.reshape(tf.stack(taps, axis=0), (len(taps), -1)), True
    p = taps[0] if len(taps) == 1 else tf.concat(taps, axis=3)
    return tf.reshape(p, (-1, p.shape[3])), False


def _with_shape(t, batch_like, hw, channels):
    """`t` reshaped to (batch, H, W, channels): restores the static shape that dynamic
    reshapes lose, and fixes oneDNN's wrongly shaped empty results for an empty batch
    (reshaping an empty tensor is free)."""
    if not all(isinstance(d, int) for d in hw):
        return t
    t = tf.reshape(t, tf.stack([_batch(batch_like), hw[0], hw[1], channels]))
    t.set_shape((batch_like.shape[0],) + tuple(hw) + (channels,))
    return t


def correlate(x, w, strides=(1, 1), pads=((0, 0), (0, 0)), engine="conv"):
    """Zero-padded cross-correlation of NHWC `x` with `w` (M, N, C, F), no bias."""
    strides = tuple(strides)
    y = _correlate(x, w, strides, pads, engine)
    out = _out_hw(tuple(x.shape[1:3]), tuple(w.shape[:2]), strides, pads) if all(
        isinstance(d, int) for d in x.shape[1:3]) else (None, None)
    return _with_shape(y, x, out, w.shape[3])


def _correlate(x, w, strides, pads, engine):
    window = tuple(w.shape[:2])
    if engine == "gemm":
        p, transposed = _patch_matrix(x, window, strides, pads)
        out = tf.matmul(p, tf.reshape(w, (-1, w.shape[3])), transpose_a=transposed)
        out_hw = _out_hw(tuple(x.shape[1:3]), window, strides, pads)
        return tf.reshape(out, tf.stack([_batch(x), out_hw[0], out_hw[1], w.shape[3]]))
    if _same_matches(tuple(x.shape[1:3]), window, strides, pads):
        return tf.nn.conv2d(x, w, (1,) + strides + (1,), "SAME")
    return tf.nn.conv2d(_pad_or_crop(x, pads), w, (1,) + strides + (1,), "VALID")


def live_taps(hw, window, strides, pads):
    """The kernel range that can meet real input, and the pads that keep the output size.

    Returns ((row_lo, row_hi), (col_lo, col_hi)), new pads. Taps outside the range only ever
    multiply zero padding, so dropping them is exact (zero padding only).
    """
    ranges, new_pads = [], []
    for size, m, s, (before, after), k in zip(hw, window, strides, pads,
                                              _out_hw(hw, window, strides, pads)):
        lo = max(0, before - (k - 1) * s)
        hi = min(m - 1, before + size - 1)
        if lo > hi:  # no window meets the input along this axis: keep the kernel whole
            lo, hi = 0, m - 1
        ranges.append((lo, hi))
        new_pads.append((before - lo, after - (m - 1 - hi)))
    return tuple(ranges), tuple(new_pads)


# ----------------------------------------------------------------------------- input grad


def _dilate(g, strides):
    """Inserts S-1 zeros between the upstream cells: (B, K, L, F) -> (B, (K-1)S+1, (L-1)S+1, F)."""
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return g
    k, l, f = g.shape[1], g.shape[2], g.shape[3]
    spread = tf.pad(g[:, :, None, :, None, :],
                    ((0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1), (0, 0)))
    spread = tf.reshape(spread, tf.stack([_batch(g), k * sh, l * sw, f]))
    return spread[:, :(k - 1) * sh + 1, :(l - 1) * sw + 1, :]


def _input_grad_dilate(g, w, hw, strides, pads, engine):
    window = tuple(w.shape[:2])
    rem = _remainders(hw, window, strides, pads)
    g_pads = tuple((m - 1 - p[0], m - 1 - p[1] + r) for m, p, r in zip(window, pads, rem))
    return correlate(_pad_or_crop(_dilate(g, strides), g_pads), rotated(w), engine=engine)


def _phase_plan(size, m, s, before, k):
    """Per phase φ of one axis: (first tap m0, taps T, upstream front pad, output length Q)."""
    plan = []
    for phi in range(s):
        m0 = (phi + before) % s
        taps = max(0, -(-(m - m0) // s))
        c = (phi + before - m0) // s
        q = -(-(size - phi) // s) if size > phi else 0
        plan.append((m0, taps, taps - 1 - c, q))
    return plan


def _interleave(phases, hw, strides, q_max):
    """phases[φ][ψ]: (B, Qφ, Qψ, C) -> the (B, H, W, C) map with cell (Sq+φ, Sp+ψ) from φ, ψ."""
    sh, sw = strides
    rows = []
    for row in phases:
        cols = [_pad_or_crop(t, ((0, q_max[0] - t.shape[1]), (0, q_max[1] - t.shape[2])))
                for t in row]
        rows.append(tf.stack(cols, axis=3))               # (B, Qh, Qw, Sw, C)
    full = tf.stack(rows, axis=2)                         # (B, Qh, Sh, Qw, Sw, C)
    c = full.shape[-1]
    full = tf.reshape(full, tf.stack([tf.shape(full)[0], q_max[0] * sh, q_max[1] * sw, c]))
    return full[:, :hw[0], :hw[1], :]


def _input_grad_phase(g, w, hw, strides, pads, engine):
    window = tuple(w.shape[:2])
    out = _out_hw(hw, window, strides, pads)
    plans = [_phase_plan(size, m, s, p[0], k)
             for size, m, s, p, k in zip(hw, window, strides, pads, out)]
    q_max = tuple(-(-size // s) for size, s in zip(hw, strides))
    c = w.shape[2]
    phases = []
    for m0h, th, fh, qh in plans[0]:
        row = []
        for m0w, tw, fw, qw in plans[1]:
            if th == 0 or tw == 0 or qh == 0 or qw == 0:
                row.append(tf.zeros(tf.stack([_batch(g), qh, qw, c]), g.dtype))
                continue
            sub = w[m0h::strides[0], m0w::strides[1]]
            g_pads = ((fh, qh + th - 1 - fh - out[0]), (fw, qw + tw - 1 - fw - out[1]))
            row.append(correlate(_pad_or_crop(g, g_pads), rotated(sub), engine=engine))
        phases.append(row)
    return _interleave(phases, hw, strides, q_max)


def _input_grad_subpixel(g, w, hw, strides, pads, engine):
    """All phases in one correlation: sub-kernels placed on a shared window, stacked along the
    output channels, then shuffled back into place."""
    window = tuple(w.shape[:2])
    out = _out_hw(hw, window, strides, pads)
    plans = [_phase_plan(size, m, s, p[0], k)
             for size, m, s, p, k in zip(hw, window, strides, pads, out)]
    q_max = tuple(-(-size // s) for size, s in zip(hw, strides))
    # a shared front pad; each phase's sub-kernel is shifted by its own pad's shortfall
    front = tuple(max(f for _, t, f, _ in plan if t) for plan in plans)
    span = tuple(max(front_a - f + t for _, t, f, _ in plan if t)
                 for front_a, plan in zip(front, plans))
    f_out, c = w.shape[3], w.shape[2]
    blocks = []
    for m0h, th, fh, _ in plans[0]:
        for m0w, tw, fw, _ in plans[1]:
            if th == 0 or tw == 0:
                blocks.append(tf.zeros(span + (f_out, c), w.dtype))
                continue
            sub = rotated(w[m0h::strides[0], m0w::strides[1]])
            oh, ow = front[0] - fh, front[1] - fw
            blocks.append(tf.pad(sub, ((oh, span[0] - oh - th), (ow, span[1] - ow - tw),
                                       (0, 0), (0, 0))))
    kernel = tf.concat(blocks, axis=3)                    # (span_h, span_w, F, Sh·Sw·C)
    g_pads = tuple((fr, q + sp - 1 - fr - k)
                   for fr, q, sp, k in zip(front, q_max, span, out))
    y = correlate(_pad_or_crop(g, g_pads), kernel, engine=engine)   # (B, Qh, Qw, Sh·Sw·C)
    sh, sw = strides
    y = tf.reshape(y, tf.stack([_batch(g), q_max[0], q_max[1], sh, sw, c]))
    y = tf.transpose(y, (0, 1, 3, 2, 4, 5))
    y = tf.reshape(y, tf.stack([_batch(g), q_max[0] * sh, q_max[1] * sw, c]))
    return y[:, :hw[0], :hw[1], :]


def _input_grad_tf(g, w, hw, strides, pads):
    window = tuple(w.shape[:2])
    tf_strides = (1,) + tuple(strides) + (1,)
    sizes = tf.stack([_batch(g), hw[0], hw[1], w.shape[2]])
    if _same_matches(hw, window, strides, pads):
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=sizes, filter=w, out_backprop=g,
                                              strides=tf_strides, padding="SAME")
    padded = sizes + tf.constant([0, pads[0][0] + pads[0][1], pads[1][0] + pads[1][1], 0])
    dxp = tf.raw_ops.Conv2DBackpropInput(input_sizes=padded, filter=w, out_backprop=g,
                                         strides=tf_strides, padding="VALID")
    return dxp[:, pads[0][0]:pads[0][0] + hw[0], pads[1][0]:pads[1][0] + hw[1], :]


def input_grad(g, w, hw, strides, pads, method="tf", engine="conv"):
    """dL/dx of `correlate(x, w, strides, pads)` for x of spatial size `hw`, upstream `g`.

    Args:
        g: upstream gradient (B, K, L, F), NHWC.
        w: the kernel (M, N, C, F) that the forward used.
        hw: the static spatial size (H, W) of x.
        strides, pads: as the forward.
        method: one of INPUT_GRADS.
        engine: the correlation engine of "dilate" / "phase" / "subpixel" (CORRELATE).
    """
    strides = tuple(strides)
    if method == "tf":
        dx = _input_grad_tf(g, w, hw, strides, pads)
    elif method == "dilate" or (strides == (1, 1) and method in INPUT_GRADS):
        dx = _input_grad_dilate(g, w, hw, strides, pads, engine)
    elif method == "phase":
        dx = _input_grad_phase(g, w, hw, strides, pads, engine)
    elif method == "subpixel":
        dx = _input_grad_subpixel(g, w, hw, strides, pads, engine)
    else:
        raise ValueError(f"Invalid value for argument `method`. Expected one of {INPUT_GRADS}. "
                     f"Received: method={method!r}")
    return _with_shape(dx, g, tuple(hw), w.shape[2])


# ----------------------------------------------------------------------------- kernel grad


def _kernel_grad_swap(x, g, window, strides, pads):
    """The book's dW = correlation of the padded input with the dilated upstream gradient,
    as one forward convolution with batch and channels swapped: the C input maps, each with
    the B images as channels, correlated with the (K, L, B, F) upstream gradient dilated by S."""
    (k, l), (sh, sw) = tuple(g.shape[1:3]), strides
    xp = _pad_or_crop(x, pads)[:, :(k - 1) * sh + window[0], :(l - 1) * sw + window[1], :]

    def correlate_swapped():
        out = tf.nn.conv2d(tf.transpose(xp, (3, 1, 2, 0)), tf.transpose(g, (1, 2, 0, 3)),
                           (1, 1, 1, 1), "VALID", dilations=(1, sh, sw, 1))
        return tf.transpose(out, (1, 2, 0, 3))

    if isinstance(x.shape[0], int) and x.shape[0] > 0:
        return correlate_swapped()
    # an empty batch would be a kernel without elements, which conv2d rejects: dW = 0
    zeros = tf.zeros(tuple(window) + (x.shape[3], g.shape[3]), x.dtype)
    return tf.cond(_batch(x) > 0, correlate_swapped, lambda: zeros)


def kernel_grad(x, g, window, strides, pads, method="tf"):
    """dL/dw (M, N, C, F) of `correlate(x, w, strides, pads)` for NHWC x, upstream `g`."""
    window, strides = tuple(window), tuple(strides)
    # channel counts unknown at trace time (an upstream gradient of unknown shape) are read
    # when the graph runs
    c = x.shape[3] if x.shape[3] is not None else tf.shape(x)[3]
    f = g.shape[3] if g.shape[3] is not None else tf.shape(g)[3]
    sizes = window + (c, f)
    if not all(isinstance(v, int) for v in sizes):
        sizes = tf.stack(sizes)
    if method == "gemm":
        p, transposed = _patch_matrix(x, window, strides, pads)
        dw = tf.matmul(p, tf.reshape(g, (-1, f)), transpose_a=not transposed)
        return tf.reshape(dw, sizes)
    if method == "swap":
        return _kernel_grad_swap(x, g, window, strides, pads)
    if method != "tf":
        raise ValueError(f"Invalid value for argument `method`. Expected one of "
                         f"{KERNEL_GRADS}. Received: method={method!r}")
    tf_strides = (1,) + strides + (1,)
    if _same_matches(tuple(x.shape[1:3]), window, strides, pads):
        xp, padding = x, "SAME"
    else:
        xp, padding = _pad_or_crop(x, pads), "VALID"
    return tf.raw_ops.Conv2DBackpropFilter(input=xp, filter_sizes=sizes,
                                           out_backprop=g, strides=tf_strides,
                                           padding=padding)
