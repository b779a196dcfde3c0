"""Dilation and groups in the compiled correlation ops (`native.corr2d(..., dilations, groups)`),
checked against PyTorch's `torch.nn.functional.conv2d`, the peer whose geometry they copy.

Asymmetric and replicate / reflect padding are applied on the torch side with `F.pad`, then
`conv2d(padding=0)`; `mode="convolution"` is torch's correlation with the kernel flipped. Both CPU
algorithms are run: "fast" (im2col + GEMM, per-group GEMMs, the depthwise loops) and "direct" (the
per-element functors the CUDA kernels run).
"""

import numpy as np
import pytest
import tensorflow as tf

import torch_peer
from native_layouts import ALGO_ENV, algo, from_format, to_format  # noqa: F401 (algo: a fixture)
from keras_cnn_ext.ops import native

requires_native = pytest.mark.skipif(
    not (native.available() and native.supports_dilation_groups()),
    reason=f"native ops without dilation/groups: {native.status()}")


def torch_corr(x, k, g, strides, pads, pmode, mode, dilations, groups):
    """torch's output, input gradient and kernel gradient (upstream g) for NHWC x and kernel k of
    shape (M, N, C / groups, F), in the native op's layouts."""
    torch = torch_peer.torch()
    fn = torch.nn.functional
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kk = k[::-1, ::-1] if mode == "convolution" else k
    wt = torch.tensor(np.copy(kk.transpose(3, 2, 0, 1), order="C"), requires_grad=True)
    (top, bottom), (left, right) = pads
    xp = fn.pad(xt, (left, right, top, bottom), mode={"zeros": "constant"}.get(pmode, pmode))
    y = fn.conv2d(xp, wt, stride=strides, dilation=dilations, groups=groups)
    y.backward(torch.tensor(np.ascontiguousarray(g.transpose(0, 3, 1, 2))))
    dk = wt.grad.numpy().transpose(2, 3, 1, 0)
    if mode == "convolution":
        dk = dk[::-1, ::-1]
    return y.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1), dk


def native_corr(x, k, g, strides, pads, pmode, mode, fmt, dilations, groups, dtype=tf.float64):
    xt = tf.constant(to_format(x, fmt), dtype)
    kt = tf.constant(k, dtype)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = native.corr2d(xt, kt, strides, pads, pmode, mode, fmt, dilations, groups)
    dx, dk = tape.gradient(y, [xt, kt], output_gradients=tf.constant(to_format(g, fmt), dtype))
    as64 = lambda t: tf.cast(t, tf.float64).numpy()  # noqa: E731
    return from_format(as64(y), fmt), from_format(as64(dx), fmt), as64(dk)


def _random_case(rng):
    """A random valid geometry: dilation 1-3, groups among the divisors (depthwise and channel
    multipliers included), stride 1-3, per-side padding in every mode, both modes and layouts."""
    while True:
        groups = int(rng.choice([1, 2, 3, 4, 6]))
        cg = int(rng.choice([1, 1, 2, 3]))
        fg = int(rng.choice([1, 2, 3]))
        c, f = groups * cg, groups * fg
        n = int(rng.integers(1, 3))
        h, w = (int(v) for v in rng.integers(1, 12, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
        dil = tuple(int(v) for v in rng.integers(1, 4, size=2))
        strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
        pmode = str(rng.choice(["zeros", "replicate", "reflect"]))
        lh, lw = (h - 1, w - 1) if pmode == "reflect" else (4, 4)
        pads = ((int(rng.integers(0, lh + 1)), int(rng.integers(0, lh + 1))),
                (int(rng.integers(0, lw + 1)), int(rng.integers(0, lw + 1))))
        if (h + sum(pads[0]) >= dil[0] * (kh - 1) + 1
                and w + sum(pads[1]) >= dil[1] * (kw - 1) + 1):
            return dict(shape=(n, h, w, c), kernel=(kh, kw, cg, f), strides=strides, pads=pads,
                        pmode=pmode, mode=str(rng.choice(["cross_correlation", "convolution"])),
                        fmt=str(rng.choice(["channels_last", "channels_first"])),
                        dilations=dil, groups=groups)


def _check(case, rng, dtype=tf.float64, tol=1e-10):
    x = rng.standard_normal(case["shape"])
    k = rng.standard_normal(case["kernel"])
    args = (case["strides"], case["pads"], case["pmode"], case["mode"])
    # the upstream gradient has the output shape, PyTorch's formula
    (top, bottom), (left, right) = case["pads"]
    (h, w), (kh, kw) = case["shape"][1:3], case["kernel"][:2]
    (dh, dw), (sh, sw) = case["dilations"], case["strides"]
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    g = rng.standard_normal((case["shape"][0], oh, ow, case["kernel"][3]))
    expected = torch_corr(x, k, g, *args, case["dilations"], case["groups"])
    got = native_corr(x, k, g, *args, case["fmt"], case["dilations"], case["groups"], dtype)
    for name, a, b in zip(("y", "dx", "dkernel"), got, expected):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name} {case}")


@requires_native
def test_matches_torch_on_random_geometries_float64(algo):
    rng = np.random.default_rng(1616)
    for _ in range(120):
        _check(_random_case(rng), rng)


@requires_native
def test_matches_torch_float32_and_the_depthwise_register_blocks(algo):
    # The depthwise forward runs channels in blocks of 16 and a remainder: 16, 20, 33, 48 reach
    # both; a channel multiplier (F = 2C) and a grouped case beside them.
    rng = np.random.default_rng(1617)
    for c, f, groups in [(16, 16, 16), (20, 20, 20), (33, 33, 33), (48, 96, 48), (32, 32, 8)]:
        for fmt in ("channels_last", "channels_first"):
            case = dict(shape=(2, 9, 8, c), kernel=(3, 3, c // groups, f), strides=(2, 1),
                        pads=((2, 1), (1, 2)), pmode="reflect", mode="convolution", fmt=fmt,
                        dilations=(2, 3), groups=groups)
            _check(case, rng, tf.float32, tol=1e-4)


@requires_native
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_depthwise_and_grouped(dtype):
    rng = np.random.default_rng(1618)
    for groups, cg in ((8, 1), (2, 4)):
        case = dict(shape=(1, 7, 6, 8), kernel=(3, 3, cg, 8), strides=(1, 2),
                    pads=((1, 1), (2, 0)), pmode="replicate", mode="cross_correlation",
                    fmt="channels_last", dilations=(2, 1), groups=groups)
        _check(case, rng, dtype, tol={tf.float16: 3e-2, tf.bfloat16: 2e-1}[dtype])


@requires_native
def test_second_order_gradient_with_dilation_and_groups():
    rng = np.random.default_rng(1619)
    x = tf.constant(rng.standard_normal((1, 6, 7, 4)))
    k = tf.constant(rng.standard_normal((2, 3, 2, 4)))

    def fn(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = native.corr2d(a, b, (1, 2), ((1, 1), (2, 1)), "reflect", "convolution",
                              "channels_last", (2, 2), 2)
            loss = tf.reduce_sum(y * y)
        da, db = tape.gradient(loss, [a, b])
        return tf.reduce_sum(da * da) + tf.reduce_sum(db)

    theoretical, numerical = tf.test.compute_gradient(fn, [x, k])
    for t, n in zip(theoretical, numerical):
        assert np.max(np.abs(t - n)) / max(1.0, np.max(np.abs(n))) < 1e-6


@requires_native
def test_graph_mode_shapes_and_gradients_carry_the_attributes():
    module = native.load()

    @tf.function(input_signature=[tf.TensorSpec((None, 11, 10, 6), tf.float64)])
    def fn(x):
        k = tf.ones((3, 3, 2, 9), tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = module.keras_cnn_ext_corr2d(x, k, strides=[2, 1], pads=[1, 1, 0, 2],
                                            dilations=[2, 3], groups=3)
        assert y.shape.as_list() == [None, 5, 6, 9], y.shape
        return y, tape.gradient(y, x)

    x = np.random.default_rng(5).standard_normal((2, 11, 10, 6))
    y, dx = fn(tf.constant(x))
    k = np.ones((3, 3, 2, 9))
    ty, tdx, _ = torch_corr(x, k, np.ones(y.shape), (2, 1), ((1, 1), (0, 2)), "zeros",
                            "cross_correlation", (2, 3), 3)
    np.testing.assert_allclose(y, ty, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tdx, rtol=1e-10, atol=1e-10)


BAD = [
    (dict(groups=3), (1, 5, 5, 8), (3, 3, 2, 6), "groups=3 must divide the input channels 8"),
    (dict(groups=2), (1, 5, 5, 8), (3, 3, 4, 3), "groups=2 must divide the filters 3"),
    (dict(groups=2), (1, 5, 5, 8), (3, 3, 8, 4), "input channels per group"),
    (dict(groups=0), (1, 5, 5, 8), (3, 3, 8, 4), "groups=0"),
    (dict(groups=-2), (1, 5, 5, 8), (3, 3, 8, 4), "groups=-2"),
    (dict(dilations=[0, 1]), (1, 5, 5, 2), (3, 3, 2, 4), "`dilations`"),
    (dict(dilations=[1, -3]), (1, 5, 5, 2), (3, 3, 2, 4), "`dilations`"),
    (dict(dilations=[2]), (1, 5, 5, 2), (3, 3, 2, 4), "`dilations` must have 2 entries"),
    (dict(dilations=[3, 1]), (1, 5, 5, 2), (3, 3, 2, 4), "dilated kernel does not fit"),
    (dict(dilations=[1, 2 ** 30]), (1, 5, 5, 2), (3, 3, 2, 4), "dilated kernel is too large"),
]


@requires_native
@pytest.mark.parametrize("attrs,xs,ks,message", BAD)
def test_bad_attributes_raise_invalid_argument(attrs, xs, ks, message):
    module = native.load()
    # eagerly (the kernel's own checks) ...
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        module.keras_cnn_ext_corr2d(tf.ones(xs), tf.ones(ks), strides=[1, 1], pads=[0, 0, 0, 0],
                                    **attrs)
    # ... and at graph construction (the shape function), with unknown batch size
    fn = tf.function(lambda x: module.keras_cnn_ext_corr2d(
        x, tf.ones(ks), strides=[1, 1], pads=[0, 0, 0, 0], **attrs))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
        fn.get_concrete_function(tf.TensorSpec((None,) + xs[1:]))


@requires_native
def test_backprop_ops_validate_groups_at_run_time():
    # Sizes given as tensors: only the kernels can check them.
    module = native.load()
    dy = tf.ones((1, 3, 3, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="groups=3 must divide"):
        module.keras_cnn_ext_corr2d_backprop_input(tf.constant([1, 5, 5, 8]), tf.ones((3, 3, 2, 4)),
                                                   dy, strides=[1, 1], pads=[0, 0, 0, 0], groups=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="dilated kernel does not fit"):
        module.keras_cnn_ext_corr2d_backprop_filter(tf.ones((1, 5, 5, 2)),
                                                    tf.constant([3, 3, 2, 4]), dy, strides=[1, 1],
                                                    pads=[0, 0, 0, 0], dilations=[1, 3])
