"""Dilated and grouped correlations for the composite path: forward and explicit backward.

PyTorch's `Conv2d` geometry (issue 16): kernel taps `D` cells apart, and `groups` G that split
the C input channels and the F filters into G independent correlations (the kernel is
(M, N, C/G, F)). TensorFlow's CPU kernels compute neither gradient (`Conv2DBackpropInput` /
`Filter` reject dilations and grouped kernels outside XLA), so both are written out here from
the book's formulas; the forward passes run TensorFlow's undilated kernels on a rearranged input.

**Dilation as a stride-free rearrangement ("space to batch").** Along one axis, output k reads
the padded rows `k·S + D·m`. With `g = gcd(S, D)`, `S = g·s`, `D = g·d` (s, d coprime) and
`k = k'·d + φ` (φ < d, the output phase), those rows are `g·(φ·s + d·(k'·s + m))`: on the
sub-grid `t ↦ g·(φ·s + d·t)` output phase φ is an ordinary (undilated) correlation with stride
`s`. Gathering the d sub-grids of each axis into the batch turns the problem into ONE
undilated correlation of a (d_h·d_w·B)-image batch; its outputs interleave back. The gather is
injective (each input cell lands in at most one place), so its adjoint — the input gradient's
last step — is the gather with the inverse index. Stride 1 and dilation 2 is the classic atrous
"space to batch"; stride 2 with dilation 2 is a subsampled input and a stride-1 correlation.

**Groups.** The undilated sub-problem then runs one correlation per shape class:
  * depthwise (G == C): `tf.nn.depthwise_conv2d` and its two gradient kernels;
  * other G: TensorFlow's grouped forward convolution (one op, CPU included); the input gradient
    is the book's formula as one grouped correlation — the stride-dilated upstream gradient,
    zero-padded "full", correlated with each group's 180°-rotated kernel whose channel axes are
    swapped; the kernel gradient is each group's correlation of its padded input channels with
    the dilated upstream gradient (`conv_grads.kernel_grad` per group);
  * G == 1: the formulations of `conv_grads`, chosen by `dispatch` as for the plain op.

Spatial sizes unknown at trace time use the dilated kernel itself (`dilate_kernel`: D-1 zeros
between taps), whose gradient keeps every D-th tap: the same numbers, more arithmetic.

>>> x = tf.reshape(tf.range(25.0), (1, 5, 5, 1))
>>> y = correlate(x, tf.ones((2, 2, 1, 1)), (1, 1), ((0, 0), (0, 0)), (2, 2), 1)
>>> y[0, :, :, 0].numpy().tolist()
[[24.0, 28.0, 32.0], [44.0, 48.0, 52.0], [64.0, 68.0, 72.0]]
"""

import math

import tensorflow as tf

from keras_cnn_ext.ops import conv_grads, dispatch, geometry


# ----------------------------------------------------------------------------- the dilated kernel


def dilate_kernel(w, dilations):
    """(M, N, C, F) -> (D_h·(M-1)+1, D_w·(N-1)+1, C, F) with D-1 zeros between the taps."""
    dh, dw = dilations
    m, n, c, f = w.shape
    spread = tf.pad(w[:, None, :, None], ((0, 0), (0, dh - 1), (0, 0), (0, dw - 1), (0, 0),
                                          (0, 0)))
    spread = tf.reshape(spread, (m * dh, n * dw, c, f))
    return spread[:(m - 1) * dh + 1, :(n - 1) * dw + 1]


# ----------------------------------------------------------------------------- the rearrangement


class _AxisPlan:
    """One spatial axis of the space-to-batch rearrangement (see the module docstring)."""

    def __init__(self, size, m, s, d, pads):
        before, after = pads
        k = (size + before + after - d * (m - 1) - 1) // s + 1
        g = math.gcd(s, d)
        self.stride, self.phases = s // g, d // g
        self.out, self.q = k, -(-k // self.phases)                 # outputs, per phase
        self.t = (self.q - 1) * self.stride + m                   # sub-grid length
        # stride 1: the sub-grids are TensorFlow's space_to_batch blocks of the padded axis
        self.blocks = s == 1
        self.before, self.size = before, size
        self.extra = self.phases * self.t - size - before         # < 0: rows never read
        index = []
        for phi in range(self.phases):
            for t in range(self.t):
                src = g * (phi * self.stride + self.phases * t) - before
                index.append(src if 0 <= src < size else size)   # `size`: the zero cell
        self.index = index
        inverse = [len(index)] * size                            # unused cells: zero
        for position, src in enumerate(index):
            if src < size:
                inverse[src] = position
        self.inverse = inverse


class SpaceToBatch:
    """The rearrangement of a static-size NHWC frame for kernel `window`, strides, zero pads
    and dilations: `gather` (frame -> sub-problem batch), `scatter` (its adjoint), `merge`
    (sub-problem outputs -> the output) and `split` (the adjoint of `merge`)."""

    def __init__(self, hw, window, strides, pads, dilations):
        self.axes = [_AxisPlan(size, m, s, d, p)
                     for size, m, s, p, d in zip(hw, window, strides, pads, dilations)]
        self.hw = tuple(hw)
        self.strides = tuple(a.stride for a in self.axes)

    def _blocks(self):
        return all(a.blocks for a in self.axes)

    def gather(self, x):
        ah, aw = self.axes
        if self._blocks():
            x = x[:, :ah.size + min(ah.extra, 0), :aw.size + min(aw.extra, 0), :]
            return tf.space_to_batch_nd(
                x, (ah.phases, aw.phases),
                ((ah.before, max(ah.extra, 0)), (aw.before, max(aw.extra, 0))))
        x = tf.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        x = tf.gather(tf.gather(x, ah.index, axis=1), aw.index, axis=2)
        b, c = tf.shape(x)[0], x.shape[3]
        x = tf.reshape(x, tf.stack([b, ah.phases, ah.t, aw.phases, aw.t, c]))
        x = tf.transpose(x, (1, 3, 0, 2, 4, 5))
        return tf.reshape(x, tf.stack([ah.phases * aw.phases * b, ah.t, aw.t, c]))

    def scatter(self, d_sub, batch):
        ah, aw = self.axes
        if self._blocks():
            d = tf.batch_to_space(d_sub, (ah.phases, aw.phases),
                                  ((ah.before, max(ah.extra, 0)), (aw.before, max(aw.extra, 0))))
            return tf.pad(d, ((0, 0), (0, max(-ah.extra, 0)), (0, max(-aw.extra, 0)), (0, 0)))
        c = d_sub.shape[3]
        d = tf.reshape(d_sub, tf.stack([ah.phases, aw.phases, batch, ah.t, aw.t, c]))
        d = tf.transpose(d, (2, 0, 3, 1, 4, 5))
        d = tf.reshape(d, tf.stack([batch, ah.phases * ah.t, aw.phases * aw.t, c]))
        d = tf.pad(d, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return tf.gather(tf.gather(d, ah.inverse, axis=1), aw.inverse, axis=2)

    def merge(self, y_sub, batch):
        ah, aw = self.axes
        if self._blocks():
            return tf.batch_to_space(y_sub, (ah.phases, aw.phases),
                                     ((0, ah.q * ah.phases - ah.out),
                                      (0, aw.q * aw.phases - aw.out)))
        f = y_sub.shape[3]
        y = tf.reshape(y_sub, tf.stack([ah.phases, aw.phases, batch, ah.q, aw.q, f]))
        y = tf.transpose(y, (2, 3, 0, 4, 1, 5))
        y = tf.reshape(y, tf.stack([batch, ah.q * ah.phases, aw.q * aw.phases, f]))
        return y[:, :ah.out, :aw.out, :]

    def split(self, g):
        ah, aw = self.axes
        if self._blocks():
            return tf.space_to_batch_nd(g, (ah.phases, aw.phases),
                                        ((0, ah.q * ah.phases - ah.out),
                                         (0, aw.q * aw.phases - aw.out)))
        f, batch = g.shape[3], tf.shape(g)[0]
        g = tf.pad(g, ((0, 0), (0, ah.q * ah.phases - ah.out), (0, aw.q * aw.phases - aw.out),
                       (0, 0)))
        g = tf.reshape(g, tf.stack([batch, ah.q, ah.phases, aw.q, aw.phases, f]))
        g = tf.transpose(g, (2, 4, 0, 1, 3, 5))
        return tf.reshape(g, tf.stack([ah.phases * aw.phases * batch, ah.q, aw.q, f]))


# ----------------------------------------------------------------------------- undilated, grouped


def _spread(g, strides):
    """S-1 zeros between neighbouring upstream cells (sizes may be unknown at trace time)."""
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return g
    shape = tf.shape(g)
    spread = tf.pad(g[:, :, None, :, None, :],
                    ((0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1), (0, 0)))
    spread = tf.reshape(spread, tf.stack([shape[0], shape[1] * sh, shape[2] * sw, shape[3]]))
    return spread[:, :(shape[1] - 1) * sh + 1, :(shape[2] - 1) * sw + 1, :]


def _padded(x, pads):
    return x if geometry.no_padding(pads) else tf.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))


def _tf_strides(strides):
    return (1,) + tuple(strides) + (1,)


def _depthwise(groups, channels, strides):
    """TensorFlow's depthwise kernels: one group per channel, equal strides only."""
    return groups > 1 and groups == channels and strides[0] == strides[1]


def group_rotated(w, groups):
    """rot180 of each group's kernel with its channel axes swapped: (M, N, C/G, F) ->
    (M, N, F/G, C), the kernel of the input gradient as one grouped correlation."""
    m, n, cg, f = w.shape
    w = tf.reshape(tf.reverse(w, (0, 1)), (m, n, cg, groups, f // groups))
    return tf.reshape(tf.transpose(w, (0, 1, 4, 3, 2)), (m, n, f // groups, groups * cg))


def _tf_padding(x, window, strides, pads):
    """(input, 'SAME' or 'VALID'): TensorFlow pads itself where its 'SAME' equals `pads`
    (no padded copy, no crop of the gradient)."""
    hw = tuple(x.shape[1:3])
    if all(isinstance(d, int) for d in hw) and geometry.is_tf_same(hw, window, strides, pads):
        return x, "SAME"
    return _padded(x, pads), "VALID"


def _forward(x, w, strides, pads, groups, how):
    if groups == 1:
        return conv_grads.correlate(x, w, strides, pads, how.forward)
    xp, padding = _tf_padding(x, tuple(w.shape[:2]), strides, pads)
    if _depthwise(groups, x.shape[3], strides):
        c, f = x.shape[3], w.shape[3]
        return tf.nn.depthwise_conv2d(xp, tf.reshape(w, w.shape[:2] + (c, f // c)),
                                      _tf_strides(strides), padding)
    return tf.nn.conv2d(xp, w, _tf_strides(strides), padding)


def _input_grad(g, w, hw, channels, strides, pads, groups, how):
    if groups == 1:
        return conv_grads.input_grad(g, w, hw, strides, pads, how.input_grad, how.input_engine)
    padded_hw = tuple(size + p[0] + p[1] for size, p in zip(hw, pads))
    if _depthwise(groups, channels, strides):
        c, f = channels, w.shape[3]
        same = all(isinstance(d, int) for d in hw) and geometry.is_tf_same(
            hw, tuple(w.shape[:2]), strides, pads)
        size_hw = hw if same else padded_hw
        sizes = tf.stack([tf.shape(g)[0], size_hw[0], size_hw[1], c])
        dxp = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
            input_sizes=sizes, filter=tf.reshape(w, w.shape[:2] + (c, f // c)),
            out_backprop=g, strides=_tf_strides(strides), padding="SAME" if same else "VALID")
        if same:
            return dxp
    else:
        # the book's dX̂: the stride-dilated upstream gradient, padded 'full' (plus the rows a
        # stride never reached), correlated group by group with the rotated kernels
        window = tuple(w.shape[:2])
        rem = [(size - m) % s for size, m, s in zip(padded_hw, window, strides)]
        full = tf.pad(_spread(g, strides),
                      [[0, 0], [window[0] - 1, window[0] - 1 + rem[0]],
                       [window[1] - 1, window[1] - 1 + rem[1]], [0, 0]])
        dxp = tf.nn.conv2d(full, group_rotated(w, groups), 1, "VALID")
    return dxp[:, pads[0][0]:pads[0][0] + hw[0], pads[1][0]:pads[1][0] + hw[1], :]


def _kernel_grad(x, g, w, strides, pads, groups, how):
    window = tuple(w.shape[:2])
    if groups == 1:
        return conv_grads.kernel_grad(x, g, window, strides, pads, how.kernel_grad)
    c, f = x.shape[3], w.shape[3]
    if _depthwise(groups, c, strides):
        xp, padding = _tf_padding(x, window, strides, pads)
        dw = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=xp, filter_sizes=window + (c, f // c), out_backprop=g,
            strides=_tf_strides(strides), padding=padding)
        return tf.reshape(dw, window + (1, f))
    xp = _padded(x, pads)
    cg, fg = c // groups, f // groups
    return tf.concat([
        conv_grads.kernel_grad(xp[..., i * cg:(i + 1) * cg], g[..., i * fg:(i + 1) * fg],
                               window, strides, geometry.NO_PADDING, "tf")
        for i in range(groups)], axis=3)


def _formulation(x, w, strides, pads, groups):
    if groups != 1:
        return None
    return dispatch.corr2d_formulation(
        x, w, strides, pads, static=all(isinstance(d, int) for d in x.shape[1:4]))


# ----------------------------------------------------------------------------- the op


def correlate(frame, w, strides, pads, dilations, groups):
    """Forward only: the zero-padded correlation of an NHWC `frame` (see `Plan`)."""
    return Plan(frame, w, strides, pads, dilations, groups).forward(frame, w)


class Plan:
    """How one dilated / grouped correlation of an NHWC frame with zero pads `pads` runs.

    `forward(frame, w)` -> y (B, K, L, F); `backward(frame, w, g)` -> (d_frame, d_w), the
    explicit gradients. `w` is the kernel as used (already flipped for convolution mode).
    """

    def __init__(self, frame, w, strides, pads, dilations, groups):
        self.window = tuple(w.shape[:2])
        self.strides, self.pads = tuple(strides), tuple(tuple(p) for p in pads)
        self.dilations, self.groups = tuple(dilations), groups
        hw = tuple(frame.shape[1:3])
        self.static = all(isinstance(d, int) for d in hw)
        self.rearrange = None
        self.explicit = False
        if self.dilations != (1, 1):
            if self.static:
                self.rearrange = SpaceToBatch(hw, self.window, self.strides, self.pads,
                                              self.dilations)
            else:
                self.explicit = True

    def _sub(self, frame, w):
        """(sub-problem input, kernel, strides, pads) of the undilated correlation."""
        if self.rearrange is not None:
            return (self.rearrange.gather(frame), w, self.rearrange.strides,
                    geometry.NO_PADDING)
        if self.explicit:
            return frame, dilate_kernel(w, self.dilations), self.strides, self.pads
        return frame, w, self.strides, self.pads

    def forward(self, frame, w):
        sub, kernel, strides, pads = self._sub(frame, w)
        how = _formulation(sub, kernel, strides, pads, self.groups)
        y = _forward(sub, kernel, strides, pads, self.groups, how)
        if self.rearrange is not None:
            y = self.rearrange.merge(y, tf.shape(frame)[0])
        return y

    def backward(self, frame, w, g):
        sub, kernel, strides, pads = self._sub(frame, w)
        how = _formulation(sub, kernel, strides, pads, self.groups)
        if self.rearrange is not None:
            g = self.rearrange.split(g)
        hw = tuple(sub.shape[1:3])
        if not all(isinstance(d, int) for d in hw):
            hw = tuple(tf.unstack(tf.shape(sub)[1:3]))
        d_sub = _input_grad(g, kernel, hw, sub.shape[3], strides, pads, self.groups, how)
        dw = _kernel_grad(sub, g, kernel, strides, pads, self.groups, how)
        if self.rearrange is not None:
            d_sub = self.rearrange.scatter(d_sub, tf.shape(frame)[0])
        if self.explicit:
            dw = dw[::self.dilations[0], ::self.dilations[1]]
        return d_sub, dw
