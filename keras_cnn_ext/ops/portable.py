"""Backend-independent implementations: `keras.ops` forward, hand-written backward passes.

The tier that serves the JAX and PyTorch backends of Keras 3 (and runs on TensorFlow too).
It imports only Keras, NumPy and `geometry` at the top; a framework is called directly only
by the gradient adapter `_with_gradient` (below) and where a backend's own primitive computes
one of the formulas faster than `keras.ops` (imported inside, only on that backend): on JAX
the zero padding and the stride dilation of dX̂ as `lax.conv_general_dilated`'s padding /
`lhs_dilation` (the zeros never built) and dW with named axes; on torch corr2d and max
pooling in torch calls on NCHW tensors (`_torch_corr2d`, `_torch_max_pool`: see there).
Every backward pass is the book's formula written out (docs/semantics.md, docs/backends.md),
never autodiff of the forward:

* corr2d: the forward pads (zeros: `ops.pad`; replicate / reflect: index gathers, exact on
  every backend), flips the kernel for `mode="convolution"` and runs `ops.conv` VALID with
  the strides, the dilation and the groups (a kernel of C/G input channels). Backward:
  dX̂ = the stride-dilated upstream gradient, zero-padded 'full' (D*(M-1) rows / columns each
  side) and correlated with the 180°-rotated kernel (in / out channels swapped within each
  group) at dilation D; dX = dX̂ cropped (zeros) or folded back onto the cells the padding
  copied (replicate / reflect: the transposed gather, a one-hot matrix product).
  dW = the correlation of the padded input with the upstream gradient, taps S apart
  (dilation S, stride D), per group: the channels of the input become a batch and its
  (group, batch) pairs the channels of a grouped correlation.
* max pooling: the M*N window cells are strided slices of the padded input; the winner of a
  window is its first NaN cell, else its first maximal cell in row-major order (an integer
  minimum: ties are deterministic on every backend); padded cells under 'ignore' and
  ceil_mode's cells past the padded input never win. Backward: the upstream value goes to the
  winner (the adjoint of the slices: zero-inserted, shifted and summed), and a winner in the
  padding passes nothing.
* windows that tile the input (stride = window, no padding, no ceil_mode overhang) are two
  axes of a reshape instead (`_tiled_max`, `_tiled_mean`: the same rules, no stacked copies).
* mean pooling: the window sum over the divisor (the window's cells of the padded input for
  'zeros', its real cells for 'ignore', never ceil_mode's overhang); backward: every cell of
  a window receives upstream / divisor.

All sizes come from `geometry`. Spatial sizes must be known when the op runs (they are under
`jax.jit`, in torch and in eager TensorFlow); the batch may be unknown.

The functions have the signatures of `reference`, `composite` and `native`, and like
`reference` accept every spelling of `strides` / `padding` / `dilations` that
`keras_cnn_ext.ops.corr2d` accepts.

>>> import numpy as np
>>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
>>> W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]], "float32")
>>> y = corr2d(X[None, :, :, None], W[:, :, None, None])
>>> keras.ops.convert_to_numpy(y)[0, :, :, 0].tolist()
[[11.0, 18.0], [6.0, 22.0]]
"""

import keras
import numpy as np
from keras import ops

from keras_cnn_ext.ops import geometry


def on_tensorflow():
    """Whether Keras runs on TensorFlow. The one backend test of the package's layers and
    functional ops: on TensorFlow they keep their TensorFlow paths (composite / native /
    reference, `tf.nn.local_response_normalization`); on JAX and torch they call this tier."""
    return keras.backend.backend() == "tensorflow"


def check_implementation(implementation, owner=""):
    """Off TensorFlow only ``implementation="auto"`` exists (this tier): 'native', 'composite'
    and 'reference' run TensorFlow ops, and are a clear error. `owner` completes "argument
    `implementation`..." (e.g. " of layer 'conv1'")."""
    if implementation != "auto":
        raise ValueError(
            f"Invalid value for argument `implementation`{owner}. Expected 'auto' on the "
            f"{keras.backend.backend()} backend ('{implementation}' runs TensorFlow ops: "
            f"native, composite and reference exist on TensorFlow only). "
            f"Received: implementation={implementation!r}")


# ------------------------------------------------------------------ the gradient adapter
def _with_gradient(forward, backward):
    """A function of tensors whose gradient is `backward`, not autodiff of `forward`.

    Args:
        forward: `forward(*inputs) -> (output, residuals)`; residuals a tuple of tensors.
        backward: `backward(residuals, upstream) -> (d_input, ...)`, one per input.

    TensorFlow and JAX: `keras.ops.custom_gradient` (tf.custom_gradient / jax.custom_gradient,
    `jax.jit`-safe). torch: a `torch.autograd.Function` of our own, because Keras 3.15.1's
    torch `custom_gradient` saves its inputs with `save_for_backward` (a Keras variable fails
    there), calls the forward a second time when it raises, and replaces a failing gradient
    by NaN.
    """
    if keras.backend.backend() == "torch":
        return _torch_function(forward, backward)

    @ops.custom_gradient
    def fn(*inputs):
        output, residuals = forward(*inputs)

        def grad(*upstream, **kwargs):
            g = upstream[0] if upstream else kwargs["upstream"]
            return tuple(backward(residuals, g))

        return output, grad

    return fn


def _torch_function(forward, backward):
    global _TorchFunction
    if _TorchFunction is None:
        import torch

        # one class for every op (the pair rides along as arguments): defining a class per
        # call cost more than the arithmetic of a small layer
        class _Function(torch.autograd.Function):
            @staticmethod
            def forward(ctx, forward, backward, *inputs):
                output, ctx.residuals = forward(*inputs)
                ctx.backward = backward
                return output

            @staticmethod
            def backward(ctx, upstream):
                grads = tuple(ctx.backward(ctx.residuals, upstream))
                ctx.residuals = ctx.backward = None
                return (None, None) + grads

        _TorchFunction = _Function
    return lambda *inputs: _TorchFunction.apply(forward, backward, *inputs)


_TorchFunction = None


# ----------------------------------------------------------------------------- helpers
def _tensor(value, name):
    if isinstance(value, (str, bytes)):
        raise TypeError(f"Invalid value for argument `{name}`. Expected a floating-point tensor "
                        f"or array. Received: {name}={value!r}")
    value = ops.convert_to_tensor(value)
    if "float" not in str(value.dtype):
        value = ops.cast(value, keras.config.floatx())
    return value


def _check_rank(x, name="x"):
    if len(x.shape) != 4:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a 4-D tensor (batch, height, "
            f"width, channels) or (batch, channels, height, width). Received: {name} with "
            f"shape {tuple(x.shape)}")


def _to_nhwc(x, data_format):
    return x if data_format == "channels_last" else ops.transpose(x, geometry.TO_CHANNELS_LAST)


def _from_nhwc(x, data_format):
    return x if data_format == "channels_last" else ops.transpose(x, geometry.TO_CHANNELS_FIRST)


def _static_hw(x, data_format="channels_last"):
    hw = geometry.spatial_dims(tuple(x.shape), data_format)
    if any(size is None for size in hw):
        raise ValueError(
            "Invalid value for argument `x`. The portable implementation needs the spatial "
            f"size known when it runs. Received: x with shape {tuple(x.shape)}")
    return tuple(int(size) for size in hw)


def _constant(array, like):
    return ops.convert_to_tensor(np.asarray(array), dtype=like.dtype)


def _check_reflect(hw, pads):
    for axis, (size, (before, after)) in enumerate(zip(hw, pads)):
        if max(before, after) >= size:
            raise ValueError(
                "Invalid value for argument `padding`. Reflect padding needs each side smaller "
                f"than the input size {size} along spatial axis {axis}. Received: padding={pads}")


def _spatial_pads(pads, axes):
    """The `ops.pad` widths of a 4-D tensor whose spatial axes are `axes`."""
    widths = [(0, 0)] * 4
    for axis, sides in zip(axes, pads):
        widths[axis] = tuple(sides)
    return tuple(widths)


def pad(x, pads, padding_mode="zeros", axes=(1, 2)):
    """Pads the spatial `axes` (NHWC's by default): zeros, or gathers of the source cells."""
    if geometry.no_padding(pads):
        return x
    if padding_mode in ("zeros", "ignore"):
        return ops.pad(x, _spatial_pads(pads, axes))
    hw = tuple(int(x.shape[axis]) for axis in axes)
    if padding_mode == "reflect":
        _check_reflect(hw, pads)
    for axis, size, sides in zip(axes, hw, pads):
        if sides[0] or sides[1]:
            index = geometry.pad_source_index(size, sides, padding_mode).astype("int32")
            x = ops.take(x, ops.convert_to_tensor(index), axis=axis)
    return x


def unpad(g, pads, hw, padding_mode="zeros", axes=(1, 2)):
    """The adjoint of `pad`: crops, or adds each padded cell's gradient to its source cell
    (the transposed gather: a product with the one-hot matrix of the source indices)."""
    if geometry.no_padding(pads):
        return g
    if padding_mode in ("zeros", "ignore"):
        index = [slice(None)] * 4
        for axis, size, (before, _) in zip(axes, hw, pads):
            index[axis] = slice(before, before + size)
        return g[tuple(index)]
    letters = "bxyz"
    for axis, size, sides in zip(axes, hw, pads):
        if sides[0] or sides[1]:
            index = geometry.pad_source_index(size, sides, padding_mode)
            fold = np.zeros((index.size, size))
            fold[np.arange(index.size), index] = 1.0
            padded = letters[:axis] + "p" + letters[axis + 1:]
            g = ops.einsum(f"{padded},p{letters[axis]}->{letters}", g, _constant(fold, g))
    return g


def _dilate(g, strides, lengths, axes=(1, 2)):
    """Inserts S - 1 zeros after every cell of `axes` and keeps the first `lengths` cells."""
    for axis, s, length in zip(axes, strides, lengths):
        if s > 1:
            shape = list(g.shape)
            stacked = ops.stack([g] + [ops.zeros_like(g)] * (s - 1), axis=axis + 1)
            shape[axis] = shape[axis] * s
            shape[0] = -1  # the batch may be unknown
            g = ops.reshape(stacked, shape)
        index = [slice(None)] * len(g.shape)
        index[axis] = slice(0, length)
        g = g[tuple(index)]
    return g


def _conv(x, w, strides, dilations, implicit=geometry.NO_PADDING):
    """VALID correlation of NHWC `x` with an (M, N, C/G, F) kernel (G = C / kernel channels),
    on JAX of `x` zero-padded by `implicit` (the convolution's own padding).

    TensorFlow's convolution rejects strides > 1 together with dilation > 1: there it runs at
    stride 1 and the output is subsampled (the same numbers)."""
    if not geometry.no_padding(implicit):
        from jax import lax

        return lax.conv_general_dilated(
            x, w, tuple(strides), [tuple(sides) for sides in implicit],
            rhs_dilation=tuple(dilations), dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[3] // w.shape[2])
    if (on_tensorflow() and max(strides) > 1
            and max(dilations) > 1):
        y = ops.conv(x, w, 1, "valid", "channels_last", tuple(dilations))
        return y[:, ::strides[0], ::strides[1], :]
    return ops.conv(x, w, tuple(strides), "valid", "channels_last", tuple(dilations))


# ------------------------------------------------------------------------- correlation
def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last", dilations=(1, 1), groups=1):
    """Textbook cross-correlation (no bias) with the book's backward pass; see the module
    docstring. Arguments as for `reference.corr2d`."""
    kernel = _tensor(kernel, "kernel")
    x = _tensor(x, "x")
    if x.dtype != kernel.dtype:
        x = ops.cast(x, kernel.dtype)
    _check_rank(x)
    if len(kernel.shape) != 4:
        raise ValueError(
            "Invalid value for argument `kernel`. Expected a 4-D tensor (M, N, C_in, C_out). "
            f"Received: kernel with shape {tuple(kernel.shape)}")
    (window, strides, pads, padding_mode, mode, data_format, _, dilations,
     groups) = geometry.normalize_corr_args(tuple(kernel.shape[:2]), strides, padding,
                                            padding_mode, mode, data_format, "auto",
                                            dilations, groups)
    hw = _static_hw(x, data_format)
    channels = x.shape[geometry.channel_axis(data_format)]
    geometry.check_groups(groups, channels, kernel.shape[3], kernel_channels=kernel.shape[2])
    geometry.check_dilated_fits(hw, window, dilations, strides, pads)
    flip = mode == "convolution"
    frame_hw = tuple(size + p[0] + p[1] for size, p in zip(hw, pads))
    if keras.backend.backend() == "torch":
        return _with_gradient(*_torch_corr2d(hw, strides, pads, padding_mode, flip,
                                             data_format, dilations, groups))(x, kernel)

    # JAX: zero padding is the convolution's own (XLA then skips the taps on it: forward +
    # backward of ResNet-18's 3x3 layers at 2x2-8x8 maps measured 1.25-1.9x faster)
    implicit = (pads if keras.backend.backend() == "jax" and padding_mode == "zeros"
                else geometry.NO_PADDING)
    explicit = tuple((b - i, a - j) for (b, a), (i, j) in zip(pads, implicit))

    def forward(x, kernel):
        frame = pad(_to_nhwc(x, data_format), explicit, padding_mode)
        used = ops.flip(kernel, axis=(0, 1)) if flip else kernel
        y = _conv(frame, used, strides, dilations, implicit)
        return _from_nhwc(y, data_format), (frame, used)

    def backward(residuals, upstream):
        frame, used = residuals
        g = _to_nhwc(upstream, data_format)
        d_frame = corr2d_input_grad(g, used, frame_hw, strides, dilations, groups, implicit)
        dw = corr2d_kernel_grad(frame, g, window, strides, dilations, groups, implicit)
        if flip:
            dw = ops.flip(dw, axis=(0, 1))
        return _from_nhwc(unpad(d_frame, explicit, hw, padding_mode), data_format), dw

    return _with_gradient(forward, backward)(x, kernel)


def corr2d_input_grad(g, kernel, frame_hw, strides, dilations=(1, 1), groups=1,
                      implicit=geometry.NO_PADDING):
    """dX̂ (the gradient on the padded input, NHWC): the stride-dilated upstream `g`,
    zero-padded 'full' and correlated with the rotated kernel at dilation D, per group;
    JAX only: the `implicit` zero padding's rows / columns already cropped."""
    m, n, group_channels, filters = kernel.shape
    span = geometry.effective_window((m, n), dilations)
    # rotated[m, n, j, g*C/G + c] = kernel[M-1-m, N-1-n, c, g*F/G + j]
    rotated = ops.reshape(ops.flip(kernel, axis=(0, 1)),
                          (m, n, group_channels, groups, filters // groups))
    rotated = ops.reshape(ops.transpose(rotated, (0, 1, 4, 3, 2)),
                          (m, n, filters // groups, groups * group_channels))
    if keras.backend.backend() == "jax":
        # the same correlation with the zeros of the stride dilation left implicit
        # (lhs_dilation): at stride 2 XLA then does not multiply the 3/4 inserted zeros
        from jax import lax

        reach = [(k - 1) * s + 1 for k, s in zip(g.shape[1:3], strides)]
        return lax.conv_general_dilated(
            g, rotated, (1, 1), [(e - 1 - b, size - r - a) for e, size, r, (b, a) in
                                 zip(span, frame_hw, reach, implicit)],
            lhs_dilation=tuple(strides), rhs_dilation=tuple(dilations),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    kept = tuple(min(k * s, size) for k, s, size in zip(g.shape[1:3], strides, frame_hw))
    gd = _dilate(g, strides, kept)
    full = ops.pad(gd, ((0, 0), (span[0] - 1, frame_hw[0] - kept[0]),
                        (span[1] - 1, frame_hw[1] - kept[1]), (0, 0)))
    return _conv(full, rotated, (1, 1), dilations)


def corr2d_kernel_grad(frame, g, window, strides, dilations=(1, 1), groups=1,
                       implicit=geometry.NO_PADDING):
    """dW[m, n, c, f] = sum_b sum_k sum_l X̂[b, k*S_h + D_h*m, l*S_w + D_w*n, g*C/G + c] *
    g[b, k, l, f] (f in group g): the padded input correlated with the upstream gradient."""
    _, height, width, channels = frame.shape
    group_channels = channels // groups
    if keras.backend.backend() == "jax":
        # the same correlation with the roles of the axes named, not transposed: batch <- the
        # input's channels, channels <- its batch, the kernel's layout coming out directly;
        # batch_group_count pairs each group's channels with its filters
        from jax import lax

        reach = [(k - 1) * s + 1 + d * (m - 1) for k, s, d, m in
                 zip(g.shape[1:3], strides, dilations, window)]
        return lax.conv_general_dilated(
            frame, g, tuple(dilations),
            [(b, r - size - b) for r, size, (b, _) in zip(reach, (height, width), implicit)],
            rhs_dilation=tuple(strides), dimension_numbers=("CHWN", "IHWO", "HWNC"),
            batch_group_count=groups)
    # batch <- the group's channels c, channels <- (group, batch): one grouped correlation
    xt = ops.reshape(frame, (-1, height, width, groups, group_channels))
    xt = ops.reshape(ops.transpose(xt, (4, 1, 2, 3, 0)), (group_channels, height, width, -1))
    gk = ops.transpose(g, (1, 2, 0, 3))  # (K, L, batch, F): taps S apart
    dw = _conv(xt, gk, dilations, strides)[:, :window[0], :window[1], :]
    return ops.transpose(dw, (1, 2, 0, 3))


def _torch_corr2d(hw, strides, pads, padding_mode, flip, data_format, dilations, groups):
    """corr2d's forward and backward on torch, NCHW, with torch's convolution primitives.

    The same formulas as the `keras.ops` path, written with torch calls: there the Python of
    some thirty `keras.ops` dispatches per step cost more than the arithmetic on LeNet-5's
    maps, and materialising the stride-dilated, 'full'-padded upstream gradient and the
    images-as-channels correlation ran two plain convolutions per layer where oneDNN has
    dedicated kernels for exactly these two correlations. Both gradients come from one
    `aten::convolution_backward` call given our residuals (X̂ and the used kernel) and the
    upstream gradient — the correlation kernels only, no autograd graph of the forward:

    * dX̂ = the stride-dilated upstream correlated 'full' with the rotated kernel (oneDNN's
      backward-data kernel, the inserted zeros never materialised);
    * dW = the correlation of X̂ with the upstream gradient, taps S apart (its
      backward-weights kernel).

    Symmetric zero padding is the convolution's own `padding` (the same zero frame, never
    built); the rest of the padding (asymmetric zeros, replicate, reflect) is `pad` / `unpad`
    on the NCHW tensors.

    Returns:
        `(forward, backward)` for `_with_gradient`.
    """
    import torch
    from torch.nn import functional

    channels_last = data_format == "channels_last"
    # the zeros both sides share are the convolution's own padding (an explicit 3x3 frame
    # round a 1x1 map cost oneDNN nine times the work); the rest is padded here
    inner = [min(sides) if padding_mode == "zeros" else 0 for sides in pads]
    outer = tuple((before - i, after - i) for (before, after), i in zip(pads, inner))

    def forward(x, kernel):
        # contiguous NCHW as stock Keras passes it: oneDNN's kernels for the permuted view
        # (channels_last memory) measured about twice as slow here on one thread
        frame = pad(_torch_nchw(x, channels_last), outer, padding_mode, (2, 3))
        used = kernel.permute(3, 2, 0, 1)  # (F, C/G, M, N)
        used = (torch.flip(used, (2, 3)) if flip else used).contiguous()
        y = functional.conv2d(frame, used, stride=strides, padding=inner, dilation=dilations,
                              groups=groups)
        # a network's first layer needs no dX̂ (its images need no gradient): not computed
        return (y.permute(0, 2, 3, 1) if channels_last else y), (frame, used, x.requires_grad)

    def backward(residuals, upstream):
        frame, used, needs_dx = residuals
        g = _torch_nchw(upstream, channels_last)
        d_frame, dw, _ = torch.ops.aten.convolution_backward(
            g, frame, used, None, list(strides), inner, list(dilations), False, [0, 0],
            groups, [needs_dx, True, False])
        if flip:
            dw = torch.flip(dw, (2, 3))
        if not needs_dx:
            return None, dw.permute(2, 3, 1, 0)
        dx = unpad(d_frame, outer, hw, padding_mode, (2, 3))
        return (dx.permute(0, 2, 3, 1) if channels_last else dx), dw.permute(2, 3, 1, 0)

    return forward, backward


def _torch_nchw(x, channels_last):
    return x.permute(0, 3, 1, 2).contiguous() if channels_last else x


# ----------------------------------------------------------------------------- pooling
class _Windows:
    """A pooling's padded input and its windows as M*N strided slices, one per window cell.

    `member[t]` (numpy, (K, L)) says which windows' cell t takes part: cells of the padded
    input for the book's zero padding, only real cells for 'ignore'; never ceil_mode's cells
    past the padded input (appended after the padding so that every window has M*N cells).
    """

    def __init__(self, x, pool_size, strides, padding, padding_mode, data_format, ceil_mode):
        x = _tensor(x, "x")
        _check_rank(x)
        (self.window, self.strides, self.pads, self.padding_mode, self.data_format, _,
         ceil_mode) = geometry.normalize_pool_args(pool_size, strides, padding, padding_mode,
                                                   data_format, "auto", ceil_mode)
        self.x = x
        self.hw = _static_hw(x, self.data_format)
        self.out = geometry.spatial_output_shape(self.hw, self.window, self.strides, self.pads,
                                                 ceil_mode)
        overhang = [geometry.ceil_overhang(size, m, s, p, ceil_mode) for size, m, s, p in
                    zip(self.hw, self.window, self.strides, self.pads)]
        self.grid = ((self.pads[0][0], self.pads[0][1] + overhang[0]),
                     (self.pads[1][0], self.pads[1][1] + overhang[1]))
        self.grid_hw = tuple(size + a + b for size, (a, b) in zip(self.hw, self.grid))
        counted = np.zeros(self.grid_hw, bool)
        if self.padding_mode == "zeros":
            counted[:self.grid_hw[0] - overhang[0], :self.grid_hw[1] - overhang[1]] = True
        else:
            (top, _), (left, _) = self.pads
            counted[top:top + self.hw[0], left:left + self.hw[1]] = True
        self.member = np.stack([counted[rows, cols] for rows, cols in self._slices()])

    def _slices(self):
        """The (rows, cols) slices of every window cell t = m*N + n, row-major."""
        (sh, sw), (k, l) = self.strides, self.out
        for m in range(self.window[0]):
            for n in range(self.window[1]):
                yield (slice(m, m + (k - 1) * sh + 1, sh), slice(n, n + (l - 1) * sw + 1, sw))

    def cells(self, x):
        """(T, batch, K, L, C): cell t of every window of the zero-padded NHWC input."""
        xp = ops.pad(_to_nhwc(x, self.data_format), ((0, 0),) + self.grid + ((0, 0),))
        return ops.stack([xp[:, rows, cols, :] for rows, cols in self._slices()])

    def scatter(self, values):
        """The adjoint of `cells`: (T, batch, K, L, C) back onto the input (NHWC -> caller's
        layout): each cell's values zero-inserted to the stride, shifted to the cell's place
        in the window and summed; the padding and the overhang cropped."""
        (sh, sw), (k, l) = self.strides, self.out
        spread = _dilate(values, self.strides, ((k - 1) * sh + 1, (l - 1) * sw + 1),
                         axes=(2, 3))
        total = None
        for t, (rows, cols) in enumerate(self._slices()):
            placed = ops.pad(spread[t], ((0, 0), (rows.start, self.grid_hw[0] - rows.stop),
                                         (cols.start, self.grid_hw[1] - cols.stop), (0, 0)))
            total = placed if total is None else total + placed
        (top, _), (left, _) = self.pads
        dx = total[:, top:top + self.hw[0], left:left + self.hw[1], :]
        return _from_nhwc(dx, self.data_format)

    def tiled(self):
        """Whether the windows tile the input (stride = window, no padding, no overhang): then
        they are axes of a reshape, with no stacked copies and no scatter."""
        return (tuple(self.strides) == tuple(self.window)
                and all(side == 0 for sides in self.grid for side in sides))

    def cell_axes(self):
        """The axes of a window's rows and columns in `blocks`."""
        return (2, 4) if self.data_format == "channels_last" else (3, 5)

    def blocks(self, x):
        """The tiled windows of `x` (caller's layout): (batch, K, M, L, N, C) channels_last,
        (batch, C, K, M, L, N) channels_first; rows / columns past the last window dropped."""
        (k, l), (m, n) = self.out, self.window
        if self.data_format == "channels_last":
            return ops.reshape(x[:, :k * m, :l * n, :], (-1, k, m, l, n, x.shape[3]))
        return ops.reshape(x[:, :, :k * m, :l * n], (-1, x.shape[1], k, m, l, n))

    def unblocks(self, values):
        """The adjoint of `blocks`: back to the input's shape, zeros past the last window."""
        (k, l), (m, n), (h, w) = self.out, self.window, self.hw
        if self.data_format == "channels_last":
            dx = ops.reshape(values, (-1, k * m, l * n, values.shape[5]))
            return pad(dx, ((0, h - k * m), (0, w - l * n)))
        dx = ops.reshape(values, (-1, values.shape[1], k * m, l * n))
        return pad(dx, ((0, h - k * m), (0, w - l * n)), axes=(2, 3))

    def block_taps(self):
        """t = m*N + n (row-major) at window cell (m, n), shaped to broadcast on `blocks`."""
        shape = [1] * 6
        for axis, size in zip(self.cell_axes(), self.window):
            shape[axis] = size
        return ops.convert_to_tensor(
            np.arange(len(self.member), dtype="int32").reshape(shape))

    def members(self):
        """`member` as a (T, 1, K, L, 1) bool tensor."""
        return ops.convert_to_tensor(self.member[:, None, :, :, None])

    def divisor(self, like):
        """(1, K, L, 1): the counted cells of every window."""
        return _constant(self.member.sum(axis=0)[None, :, :, None].astype(float), like)


def _taps(count):
    """0, 1, ..., T - 1 as a (T, 1, 1, 1, 1) int32 tensor: the row-major window cells."""
    return ops.convert_to_tensor(np.arange(count, dtype="int32").reshape(-1, 1, 1, 1, 1))


def _first(mask, count):
    """The first cell t (row-major) where `mask` holds, per window; T where none does."""
    return ops.min(ops.where(mask, _taps(count), count), axis=0)


def _winner(cells, member):
    """The rule of max pooling (docs/semantics.md): the first NaN cell of a window, else its
    first maximal cell; a cell that is not a member never wins. (batch, K, L, C) int32."""
    count = cells.shape[0]
    nan = ops.logical_and(ops.isnan(cells), member)
    number = ops.logical_and(member, ops.logical_not(nan))
    numbers = ops.where(number, cells, ops.full_like(cells, float("-inf")))
    best = ops.max(numbers, axis=0, keepdims=True)
    first_max = _first(ops.logical_and(number, ops.equal(numbers, best)), count)
    return ops.where(ops.any(nan, axis=0), _first(nan, count), first_max)


def _tiled_max(win):
    """Max pooling's forward / backward when the windows tile the input: the same rule as
    `_winner` (first NaN, else first maximal cell, row-major) over the window axes of
    `win.blocks`; the backward routes the upstream value to the winner by a one-hot mask."""
    axes = win.cell_axes()

    def forward(x):
        blocks = win.blocks(x)
        nan = ops.isnan(blocks)
        any_nan = ops.any(nan, axis=axes, keepdims=True)
        numbers = ops.where(nan, ops.full_like(blocks, float("-inf")), blocks)
        best = ops.max(numbers, axis=axes, keepdims=True)
        taps = win.block_taps()
        candidate = ops.where(any_nan, nan, ops.equal(numbers, best))
        first = ops.min(ops.where(candidate, taps, len(win.member)), axis=axes, keepdims=True)
        y = ops.where(any_nan, ops.full_like(best, float("nan")), best)
        return ops.squeeze(y, axes), (ops.equal(taps, first),)

    def backward(residuals, upstream):
        (winner,) = residuals
        g = ops.expand_dims(upstream, axes)
        return (win.unblocks(ops.where(winner, g, ops.zeros_like(g))),)

    return forward, backward


def _torch_max_pool(win):
    """Max pooling with torch calls: the M*N window cells as strided views of the padded
    input (no stacked copies, no `keras.ops` dispatch: several times the arithmetic on
    LeNet-5's maps) and one `scatter_add_` back. The same rule: `torch.maximum` over a
    window's members is NaN where one is NaN, so its candidates are the members equal to
    the maximum, or its NaN members (none then equals it), and the first candidate
    (row-major) wins.

    Where every cell of the padded grid takes part (the book's zero padding or none, no
    ceil overhang) and the input holds no NaN, torch's own kernel computes exactly that
    (``max_pool2d`` over the padded input keeps the first of equal maxima: it replaces the
    running maximum only on a strictly larger cell) in one pass, and is taken: about 2.5x
    faster on LeNet-5's maps. With a NaN it would keep the last NaN of a window, not the
    first, so NaN inputs stay on the strided views. Both paths hand the backward the same
    thing: each output's winner as its flat index in the padded grid."""
    import torch

    channels_last = win.data_format == "channels_last"
    (k, l), (sh, sw), width = win.out, win.strides, win.grid_hw[1]
    spatial = 1 if channels_last else 2
    padded = not geometry.no_padding(win.grid)
    member = [None if row.all() else torch.from_numpy(row[:, :, None] if channels_last else row)
              for row in win.member]
    whole_grid = all(counted is None for counted in member)
    # the winner's flat index in the padded grid: its window's corner + its place in it
    corner = torch.from_numpy(np.arange(k)[:, None] * sh * width + np.arange(l) * sw)
    corner = corner[:, :, None] if channels_last else corner
    offset = torch.from_numpy(np.array([rows.start * width + cols.start
                                        for rows, cols in win._slices()]))

    def torch_kernel(xp):
        # NHWC as an NCHW view in channels-last memory: torch's channels-last kernel, no copy
        nchw = xp.permute(0, 3, 1, 2) if channels_last else xp
        y, place = torch.nn.functional.max_pool2d(nchw, win.window, win.strides,
                                                  return_indices=True)
        if channels_last:
            y, place = y.permute(0, 2, 3, 1), place.permute(0, 2, 3, 1)
        return y, (place,)

    def forward(x):
        xp = ops.pad(x, _spatial_pads(win.grid, (spatial, spatial + 1))) if padded else x
        if whole_grid and not bool(torch.isnan(xp).any()):
            return torch_kernel(xp)
        cells = [xp[:, rows, cols] if channels_last else xp[:, :, rows, cols]
                 for rows, cols in win._slices()]
        best = None
        for cell, counted in zip(cells, member):
            number = cell if counted is None else cell.masked_fill(~counted, float("-inf"))
            best = number if best is None else torch.maximum(best, number)
        if best is cells[0]:  # a 1x1 window: a fresh output, not a view of the input
            best = best.clone()
        # every window has a candidate: the last cell wins where no earlier one is one
        winner = torch.full(best.shape, len(cells) - 1, dtype=torch.int32, device=best.device)
        for t in reversed(range(len(cells) - 1)):
            candidate = torch.eq(cells[t], best) | torch.isnan(cells[t])
            if member[t] is not None:
                candidate &= member[t]
            winner = torch.where(candidate, t, winner)
        return best, (offset[winner] + corner,)

    def backward(residuals, upstream):
        (place,) = residuals
        batch = upstream.shape[0]
        channels = upstream.shape[3] if channels_last else upstream.shape[1]
        place = place.flatten(spatial, spatial + 1)
        values = upstream.flatten(spatial, spatial + 1)
        if channels_last:
            shape = (batch, win.grid_hw[0] * width, channels)
        else:
            shape = (batch, channels, win.grid_hw[0] * width)
        dx = torch.zeros(shape, dtype=upstream.dtype, device=upstream.device)
        dx.scatter_add_(spatial, place, values)
        dx = dx.reshape((batch,) + win.grid_hw + (channels,) if channels_last
                        else (batch, channels) + win.grid_hw)
        return (unpad(dx, win.grid, win.hw, "zeros", (1, 2) if channels_last else (2, 3)),)

    return forward, backward


def _tiled_mean(win):
    """Mean pooling's forward / backward when the windows tile the input: every cell counts
    (no padding, no overhang), the divisor is M*N."""
    axes = win.cell_axes()
    count = float(len(win.member))

    def forward(x):
        return ops.sum(win.blocks(x), axis=axes) / count, ()

    def backward(residuals, upstream):
        g = ops.expand_dims(upstream / count, axes)
        shape = list(g.shape)
        for axis, size in zip(axes, win.window):
            shape[axis] = size
        return (win.unblocks(ops.broadcast_to(g, shape)),)

    return forward, backward


def max_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
               data_format="channels_last", ceil_mode=False):
    """Max pooling with the book's rules (first NaN, else first maximal cell); see the module
    docstring. Arguments as for `reference.max_pool2d`."""
    win = _Windows(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    if keras.backend.backend() == "torch":
        return _with_gradient(*_torch_max_pool(win))(win.x)
    if win.tiled():
        return _with_gradient(*_tiled_max(win))(win.x)

    def forward(x):
        cells = win.cells(x)
        winner = _winner(cells, win.members())
        y = ops.take_along_axis(cells, ops.expand_dims(winner, 0), axis=0)[0]
        return _from_nhwc(y, win.data_format), (winner,)

    def backward(residuals, upstream):
        (winner,) = residuals
        g = _to_nhwc(upstream, win.data_format)
        routed = ops.where(ops.equal(ops.expand_dims(winner, 0), _taps(len(win.member))),
                           ops.expand_dims(g, 0), ops.zeros_like(ops.expand_dims(g, 0)))
        return (win.scatter(routed),)

    return _with_gradient(forward, backward)(win.x)


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last", ceil_mode=False):
    """Mean pooling: the window sum over the divisor (see `_Windows.member`); backward every
    cell of a window receives upstream / divisor. Arguments as for `reference.mean_pool2d`."""
    win = _Windows(x, pool_size, strides, padding, padding_mode, data_format, ceil_mode)
    if win.tiled():
        return _with_gradient(*_tiled_mean(win))(win.x)

    def forward(x):
        y = ops.sum(win.cells(x), axis=0) / win.divisor(x)
        return _from_nhwc(y, win.data_format), ()

    def backward(residuals, upstream):
        g = _to_nhwc(upstream, win.data_format) / win.divisor(upstream)
        share = ops.broadcast_to(ops.expand_dims(g, 0), (len(win.member),) + tuple(g.shape))
        return (win.scatter(share),)

    return _with_gradient(forward, backward)(win.x)


# ------------------------------------------------------------- local response normalisation
def local_response_normalization(x, size=5, alpha=1e-4, beta=0.75, k=2.0,
                                 data_format="channels_last"):
    """AlexNet's LRN across channels (`keras_cnn_ext.layers.LocalResponseNormalization`):
    ``x_i / (k + alpha * sum_{|j - i| <= size // 2} x_j^2) ^ beta``, with alpha not divided by
    `size`. The window sum is `size` shifted slices of the zero-padded squares; the gradient is
    the backend's autodiff of these ops (smooth, no rule to choose), in the input's dtype
    (TensorFlow's kernel computes float64 in float32; this one does not).
    """
    x = _tensor(x, "x")
    _check_rank(x)
    axis = geometry.channel_axis(geometry.normalize_data_format(data_format))
    radius = size // 2
    channels = x.shape[axis]
    pads = [[0, 0]] * 4
    pads[axis] = [radius, radius]
    squares = ops.pad(ops.square(x), pads)
    index = [slice(None)] * 4
    total = None
    for start in range(size):
        index[axis] = slice(start, start + channels)
        part = squares[tuple(index)]
        total = part if total is None else total + part
    scale = ops.cast(k, x.dtype) + ops.cast(alpha, x.dtype) * total
    return x / ops.power(scale, ops.cast(beta, x.dtype))
