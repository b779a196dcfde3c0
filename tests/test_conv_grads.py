"""Every formulation of the composite correlation (`ops/conv_grads.py`) gives the textbook
numbers: forward, input gradient and kernel gradient against the NumPy reference in float64,
numerical gradients, under `tf.function` and XLA, in float16 / bfloat16 (mixed precision), in
both data formats and with every padding mode; and the dispatch rule of `ops/dispatch.py`
picks what its table says."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext import layers
from keras_cnn_ext.ops import composite, conv_grads, dispatch, reference

# (x shape NHWC, kernel shape, strides, pads): stride 1 and strided, remainders, pads larger
# than the kernel, 1x1 maps (dead taps), a window that only meets padding along one axis
GEOMETRIES = [
    ((2, 5, 6, 3), (3, 3, 3, 4), (1, 1), ((1, 1), (1, 1))),
    ((2, 7, 8, 2), (3, 2, 2, 3), (2, 3), ((1, 0), (2, 1))),
    ((1, 9, 9, 2), (5, 5, 2, 2), (3, 2), ((2, 2), (0, 3))),
    ((2, 1, 1, 4), (3, 3, 4, 3), (1, 1), ((1, 1), (1, 1))),
    ((2, 2, 2, 3), (3, 3, 3, 2), (2, 2), ((1, 1), (1, 1))),
    ((2, 6, 5, 2), (1, 1, 2, 3), (2, 2), ((0, 0), (0, 0))),
    ((2, 4, 4, 1), (1, 3, 1, 1), (1, 2), ((0, 0), (0, 0))),
    ((1, 3, 3, 1), (2, 2, 1, 1), (4, 4), ((4, 4), (1, 5))),
    ((2, 6, 6, 2), (2, 2, 2, 2), (3, 3), ((0, 0), (0, 0))),
    ((3, 8, 8, 1), (5, 5, 1, 2), (1, 1), ((2, 2), (2, 2))),
]
INPUT_VARIANTS = [("tf", "conv")] + list(itertools.product(
    ("dilate", "phase", "subpixel"), conv_grads.CORRELATE))
FORMULATIONS = [dispatch.Formulation(f, i, e, k) for f, (i, e), k in itertools.product(
    conv_grads.CORRELATE, INPUT_VARIANTS, conv_grads.KERNEL_GRADS)]


def _problem(rng, x_shape, w_shape, strides, pads, padding_mode="zeros"):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    y = reference.corr2d(x, w, strides=strides, padding=pads, padding_mode=padding_mode)
    g = rng.standard_normal(y.shape)
    dx, dw = reference.corr2d_grad(x, w, g, strides=strides, padding=pads,
                                   padding_mode=padding_mode)
    return (x, w, g), (y, dx, dw)


@pytest.mark.parametrize("x_shape,w_shape,strides,pads", GEOMETRIES)
def test_every_piece_matches_the_reference_in_float64(rng, x_shape, w_shape, strides, pads):
    (x, w, g), (y_ref, dx_ref, dw_ref) = _problem(rng, x_shape, w_shape, strides, pads)
    x, w, g = (tf.constant(a) for a in (x, w, g))

    @tf.function
    def pieces():
        ys = [conv_grads.correlate(x, w, strides, pads, e) for e in conv_grads.CORRELATE]
        dxs = [conv_grads.input_grad(g, w, x_shape[1:3], strides, pads, m, e)
               for m, e in INPUT_VARIANTS]
        dws = [conv_grads.kernel_grad(x, g, w_shape[:2], strides, pads, m)
               for m in conv_grads.KERNEL_GRADS]
        return ys, dxs, dws

    ys, dxs, dws = pieces()
    for got, want, names in ((ys, y_ref, conv_grads.CORRELATE), (dxs, dx_ref, INPUT_VARIANTS),
                             (dws, dw_ref, conv_grads.KERNEL_GRADS)):
        for value, name in zip(got, names):
            np.testing.assert_allclose(value.numpy(), want, rtol=1e-12, atol=1e-12,
                                       err_msg=str(name))


def _composite_grads(x, w, g, strides, pads, padding_mode, data_format, formulation):
    with dispatch.force_formulation(formulation):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = composite.corr2d(x, w, strides, pads, padding_mode, data_format=data_format)
        dx, dw = tape.gradient(y, [x, w], output_gradients=g)
    return y, dx, dw


def _channels_first(a):
    return np.transpose(a, (0, 3, 1, 2))


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "reflect"])
def test_composite_with_every_formulation_and_both_data_formats(rng, padding_mode):
    geometries = [((2, 5, 6, 3), (3, 3, 3, 2), (1, 1), ((1, 2), (2, 1))),
                  ((2, 7, 6, 2), (3, 3, 2, 3), (2, 2), ((1, 1), (1, 0)))]
    for (x_shape, w_shape, strides, pads), data_format in zip(
            geometries, ("channels_last", "channels_first")):
        (x, w, g), want = _problem(rng, x_shape, w_shape, strides, pads, padding_mode)
        if data_format == "channels_first":
            x, g = _channels_first(x), _channels_first(g)
            want = (_channels_first(want[0]), _channels_first(want[1]), want[2])
        x, w, g = (tf.constant(a) for a in (x, w, g))
        for formulation in FORMULATIONS:
            got = _composite_grads(x, w, g, strides, pads, padding_mode, data_format,
                                   formulation)
            for value, expected in zip(got, want):
                np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{formulation} {data_format}")


@pytest.mark.parametrize("formulation", [
    dispatch.Formulation("gemm", "phase", "conv", "gemm"),
    dispatch.Formulation("conv", "subpixel", "gemm", "tf"),
    dispatch.Formulation("gemm", "dilate", "gemm", "gemm"),
])
def test_numerical_gradients(rng, formulation):
    x = tf.constant(rng.standard_normal((1, 5, 4, 2)))
    w = tf.constant(rng.standard_normal((3, 2, 2, 2)))

    def f(x, w):
        with dispatch.force_formulation(formulation):
            return composite.corr2d(x, w, (2, 1), ((1, 1), (0, 1)), "reflect")

    theoretical, numerical = tf.test.compute_gradient(f, [x, w])
    for t, n in zip(theoretical, numerical):
        assert np.any(t != 0)
        np.testing.assert_allclose(t, n, atol=1e-6)


def test_second_order_gradients_flow_through_the_formulations(rng):
    """The backward is made of differentiable TF ops: d/dw of |dx|² agrees across them."""
    x = tf.constant(rng.standard_normal((2, 6, 6, 2)))
    w = tf.constant(rng.standard_normal((3, 3, 2, 3)))
    results = []
    for formulation in (dispatch.TF_KERNELS,
                        dispatch.Formulation("gemm", "subpixel", "gemm", "gemm")):
        with dispatch.force_formulation(formulation):
            with tf.GradientTape() as outer:
                outer.watch(w)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    loss = tf.reduce_sum(composite.corr2d(x, w, (2, 2), ((1, 1), (1, 1))) ** 2)
                penalty = tf.reduce_sum(inner.gradient(loss, x) ** 2)
            results.append(outer.gradient(penalty, w).numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10)


def test_xla_compiles_every_formulation(rng):
    x_shape, w_shape, strides, pads = (2, 7, 6, 2), (3, 3, 2, 3), (2, 2), ((1, 1), (0, 1))
    (x, w, g), want = _problem(rng, x_shape, w_shape, strides, pads)
    x, w, g = (tf.constant(a) for a in (x, w, g))
    for formulation in [dispatch.TF_KERNELS] + [
            dispatch.Formulation("gemm", i, e, "gemm") for i, e in INPUT_VARIANTS[1:]]:
        step = tf.function(
            lambda f=formulation: _composite_grads(x, w, g, strides, pads, "zeros",
                                                   "channels_last", f),
            jit_compile=True)
        for value, expected in zip(step(), want):
            np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-10,
                                       err_msg=str(formulation))


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 1e-1)])
def test_half_precision_formulations(rng, dtype, tol):
    x_shape, w_shape, strides, pads = (2, 6, 6, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1))
    (x, w, g), want = _problem(rng, x_shape, w_shape, strides, pads)
    scale = [np.max(np.abs(a)) for a in want]
    x, w, g = (tf.constant(a, dtype) for a in (x, w, g))
    for formulation in (dispatch.Formulation("gemm", "phase", "conv", "gemm"),
                        dispatch.Formulation("conv", "subpixel", "conv", "gemm"),
                        dispatch.Formulation("gemm", "dilate", "gemm", "tf")):
        got = _composite_grads(x, w, g, strides, pads, "zeros", "channels_last", formulation)
        for value, expected, s in zip(got, want, scale):
            assert value.dtype == dtype
            np.testing.assert_allclose(tf.cast(value, tf.float64).numpy(), expected,
                                       atol=tol * s, err_msg=str(formulation))


def test_mixed_precision_layer_trains_with_the_dispatched_formulation(rng):
    """A composite layer under the mixed_float16 policy: float16 compute, float32 weights,
    and the same gradient as the float32 layer to half precision."""
    x = rng.uniform(-1, 1, size=(4, 2, 2, 8)).astype("float32")
    grads = []
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        layer = layers.CrossCorrelation2D(6, 3, padding=1, implementation="composite")
        layer.build(x.shape)
        layer.set_weights([np.linspace(-1, 1, 3 * 3 * 8 * 6).reshape(3, 3, 8, 6)
                           .astype("float32"), np.zeros(6, "float32")])
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        grads.append(tape.gradient(loss, layer.kernel).numpy())
        assert y.dtype == ("float16" if policy == "mixed_float16" else "float32")
    np.testing.assert_allclose(grads[1], grads[0], rtol=2e-2, atol=2e-2 * np.abs(grads[0]).max())


def test_dead_taps_are_dropped_exactly():
    """A 3x3 'same' correlation of a 1x1 map only uses the centre tap: the plan keeps that
    tap and the other taps' gradients are exact zeros."""
    assert conv_grads.live_taps((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1))) == (
        ((1, 1), (1, 1)), ((0, 0), (0, 0)))
    assert conv_grads.live_taps((2, 5), (3, 3), (2, 1), ((1, 1), (1, 1))) == (
        ((1, 2), (0, 2)), ((0, 1), (1, 1)))
    x = tf.constant(np.arange(1, 9, dtype="float64").reshape(2, 1, 1, 4))
    w = tf.constant(np.arange(3 * 3 * 4 * 2, dtype="float64").reshape(3, 3, 4, 2))
    with tf.GradientTape() as tape:
        tape.watch(w)
        y = composite.corr2d(x, w, (1, 1), ((1, 1), (1, 1)))
    dw = tape.gradient(y, w).numpy()
    np.testing.assert_array_equal(y.numpy()[:, 0, 0], x.numpy()[:, 0, 0] @ w.numpy()[1, 1])
    mask = np.ones((3, 3), bool)
    mask[1, 1] = False
    assert np.all(dw[mask] == 0) and np.all(dw[1, 1] != 0)


def test_unknown_spatial_sizes_use_tensorflow_kernels(rng):
    x = tf.constant(rng.standard_normal((2, 5, 5, 2)))
    w = tf.constant(rng.standard_normal((3, 3, 2, 2)))
    want = reference.corr2d(x.numpy(), w.numpy(), padding=1)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 2), tf.float64)])
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = composite.corr2d(x, w, (1, 1), ((1, 1), (1, 1)))
        return y, tape.gradient(y, x)

    y, dx = f(x)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12)
    dx_ref, _ = reference.corr2d_grad(x.numpy(), w.numpy(), np.ones(want.shape), padding=1)
    np.testing.assert_allclose(dx.numpy(), dx_ref, rtol=1e-12)


# ----------------------------------------------------------------------------- dispatch rule


def test_rule_table_is_well_formed():
    inputs = {f"{m}:{e}" for m, e in INPUT_VARIANTS}
    valid = {"forward": set(conv_grads.CORRELATE), "input": inputs,
             "kernel": set(conv_grads.KERNEL_GRADS)}
    sizes = {"HW": 4, "KL": 4, "C": 256, "T": 9, "S": 1}
    for kernels, piece, formulation, condition in dispatch.CORR2D_RULES:
        assert kernels in ("onednn", "eigen")
        assert formulation in valid[piece], (piece, formulation)
        assert dispatch.rule_holds(condition, sizes) in (True, False)
    assert dispatch.rule_holds("64*KL <= C and T > 1", sizes)
    assert not dispatch.rule_holds("64*KL <= C and T == 1", sizes)


@pytest.mark.parametrize("kernels,hw,out_hw,channels,window,strides,expected", [
    # a 1x1 map with 512 channels (ResNet-18 at 32x32, stage 5; runs as a 1x1 kernel):
    # matmuls on both families
    ("onednn", (1, 1), (1, 1), 512, (1, 1), (1, 1), ("gemm", "phase", "gemm", "gemm")),
    ("eigen", (1, 1), (1, 1), 512, (1, 1), (1, 1), ("conv", "phase", "gemm", "gemm")),
    # 2x2 maps with 256 channels: Eigen's transposed convolution is avoided
    ("eigen", (2, 2), (2, 2), 256, (3, 3), (1, 1), ("conv", "phase", "gemm", "gemm")),
    ("eigen", (4, 4), (2, 2), 128, (3, 3), (2, 2), ("conv", "phase", "conv", "gemm")),
    ("eigen", (14, 14), (7, 7), 256, (3, 3), (2, 2), tuple(dispatch.TF_KERNELS)),
    # large maps, few channels: TensorFlow's kernels, except Eigen's slow kernel gradient
    ("onednn", (56, 56), (56, 56), 64, (3, 3), (1, 1), tuple(dispatch.TF_KERNELS)),
    ("onednn", (28, 28), (28, 28), 1, (5, 5), (1, 1), tuple(dispatch.TF_KERNELS)),
    ("eigen", (32, 32), (28, 28), 1, (5, 5), (1, 1), ("conv", "tf", "conv", "swap")),
    ("eigen", (56, 56), (56, 56), 256, (1, 1), (1, 1), tuple(dispatch.TF_KERNELS)),
])
def test_rule_choices(kernels, hw, out_hw, channels, window, strides, expected):
    assert tuple(dispatch.choose_formulation(kernels, hw, out_hw, channels, window,
                                             strides)) == expected


def test_rule_applies_per_dtype_and_device():
    assert dispatch.cpu_kernels() in ("onednn", "eigen")
    assert dispatch.rule_kernels("float32") == dispatch.cpu_kernels()
    assert dispatch.rule_kernels("float64") == "eigen"   # no oneDNN float64 convolutions
    assert dispatch.rule_kernels("bfloat16") is None     # not measured: TensorFlow's kernels
    assert dispatch.rule_kernels("float32", "GPU") is None
    x = tf.zeros((2, 1, 1, 512))
    w = tf.zeros((1, 1, 512, 8))
    assert dispatch.corr2d_formulation(tf.zeros((2, 1, 1, 512), tf.bfloat16), w, (1, 1),
                                       ((0, 0), (0, 0))) == dispatch.TF_KERNELS
    assert dispatch.corr2d_formulation(x, w, (1, 1), ((0, 0), (0, 0))).kernel_grad == "gemm"
    with dispatch.force_formulation(dispatch.TF_KERNELS, drop_dead_taps=False):
        assert dispatch.corr2d_formulation(x, w, (1, 1), ((0, 0), (0, 0))) == (
            dispatch.TF_KERNELS)
        assert not dispatch.drop_dead_taps()
    assert dispatch.drop_dead_taps()


def test_empty_batch_with_every_formulation():
    x = tf.zeros((0, 5, 6, 2))
    w = tf.ones((3, 3, 2, 4))
    for formulation in FORMULATIONS:
        y, dx, dw = _composite_grads(x, w, tf.zeros((0, 5, 6, 4)), (1, 1), ((1, 1), (1, 1)),
                                     "zeros", "channels_last", formulation)
        assert y.shape == (0, 5, 6, 4) and dx.shape == x.shape, formulation
        np.testing.assert_array_equal(dw.numpy(), np.zeros((3, 3, 2, 4)))
