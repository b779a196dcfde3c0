"""Randomised comparison of the composite ops against the NumPy reference (the definitions).

250 random geometries per op (seeded): batch sizes 1-3, odd and even sizes, kernels/windows
1x1 to 4x4 (also non-square), strides 1-3 per axis, every padding spelling (int, pair, pair of
pairs, 'valid', 'same', 'full'), every padding mode, mode='convolution', channels_first.
Tolerances: float64 <= 1e-10, float32 <= 1e-5 (relative to the size of the terms summed).
A subset also compares the hand-written gradients with `reference.*_grad`, a subset runs
`implementation="reference"` through `kce.ops`, and float16 / bfloat16 run at their precision.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import geometry, reference

N_CASES = 250
GRAD_EVERY = 5        # gradients on 50 cases per op
REFERENCE_EVERY = 10  # implementation="reference" through kce.ops on 25 cases per op
LOW_PRECISION_CASES = range(0, N_CASES, 25)


def _spell_padding(rng, window):
    """A random padding spelling and its per-side resolution."""
    kind = rng.integers(0, 6)
    if kind == 0:
        p = int(rng.integers(0, 3))
        return p, ((p, p), (p, p))
    if kind == 1:
        p, q = (int(v) for v in rng.integers(0, 3, size=2))
        return (p, q), ((p, p), (q, q))
    if kind == 2:
        sides = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2))
        return sides, sides
    word = ("valid", "same", "full")[kind - 3]
    return word, geometry.resolve_padding(word, window)


def _layout(x, data_format):
    if data_format == "channels_last":
        return x
    return tf.transpose(x, (0, 3, 1, 2)) if tf.is_tensor(x) else np.transpose(x, (0, 3, 1, 2))


def _unlayout(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 2, 3, 1))


def corr_case(i):
    rng = np.random.default_rng(10_000 + i)
    while True:
        batch = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 10, size=2))
        c, f = (int(v) for v in rng.integers(1, 4, size=2))
        window = tuple(int(v) for v in rng.integers(1, 5, size=2))
        strides = tuple(int(v) for v in rng.integers(1, 4, size=2))
        if rng.random() < 0.3:
            strides = strides[0]
        padding, pads = _spell_padding(rng, window)
        padding_mode = ("zeros", "replicate", "reflect")[i % 3]
        if padding_mode == "reflect" and any(
                max(p) >= size for p, size in zip(pads, (h, w))):
            continue
        if h + sum(pads[0]) < window[0] or w + sum(pads[1]) < window[1]:
            continue
        return dict(
            x_shape=(batch, h, w, c), kernel_shape=window + (c, f), strides=strides,
            padding=padding, padding_mode=padding_mode,
            mode=("cross_correlation", "convolution")[(i // 3) % 2],
            data_format=("channels_last", "channels_first")[(i // 6) % 2],
            seed=20_000 + i)


def pool_case(i):
    rng = np.random.default_rng(30_000 + i)
    while True:
        batch = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 10, size=2))
        c = int(rng.integers(1, 4))
        window = tuple(int(v) for v in rng.integers(1, 5, size=2))
        strides = None if rng.random() < 0.3 else tuple(
            int(v) for v in rng.integers(1, 4, size=2))
        padding, pads = _spell_padding(rng, window)
        if any(max(p) >= m for p, m in zip(pads, window)):
            continue
        if h + sum(pads[0]) < window[0] or w + sum(pads[1]) < window[1]:
            continue
        return dict(
            x_shape=(batch, h, w, c), pool_size=window, strides=strides, padding=padding,
            padding_mode=("zeros", "ignore")[i % 2],
            data_format=("channels_last", "channels_first")[(i // 2) % 2],
            seed=40_000 + i)


CORR_CASES = [corr_case(i) for i in range(N_CASES)]
POOL_CASES = [pool_case(i) for i in range(N_CASES)]


def test_the_cases_cover_the_space():
    assert len({(c["padding_mode"], c["mode"], c["data_format"]) for c in CORR_CASES}) == 12
    words = {c["padding"] for c in CORR_CASES + POOL_CASES if isinstance(c["padding"], str)}
    assert words == {"valid", "same", "full"}
    assert any(isinstance(c["padding"], tuple) and isinstance(c["padding"][0], tuple)
               for c in CORR_CASES)
    assert {c["x_shape"][0] for c in CORR_CASES} == {1, 2, 3}
    assert any(c["strides"] is None for c in POOL_CASES)
    assert len({(c["padding_mode"], c["data_format"]) for c in POOL_CASES}) == 4
    assert any(max(c["kernel_shape"][:2]) > 1 and c["strides"] not in (1, (1, 1))
               for c in CORR_CASES)


def _scale(values):
    return max(1.0, float(np.max(np.abs(values), initial=0.0)))


def _corr_inputs(case, dtype="float64"):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, size=case["x_shape"]).astype(dtype)
    kernel = rng.uniform(-1, 1, size=case["kernel_shape"]).astype(dtype)
    return x, kernel


def _corr_reference(case, x, kernel):
    return reference.corr2d(x, kernel, case["strides"], case["padding"],
                            padding_mode=case["padding_mode"], mode=case["mode"])


def _corr_call(case, x, kernel, implementation="composite", laid_out=False):
    """`x` is NHWC, or already in the case's data format when `laid_out`."""
    x = x if laid_out else _layout(x, case["data_format"])
    return kce.ops.corr2d(x, kernel, case["strides"],
                          case["padding"], padding_mode=case["padding_mode"],
                          mode=case["mode"], data_format=case["data_format"],
                          implementation=implementation)


def _case_id(i):
    return str(i)


# ---------------------------------------------------------------------------------- corr2d
@pytest.mark.parametrize("i", range(N_CASES), ids=_case_id)
def test_corr2d_composite_matches_reference(i):
    case = CORR_CASES[i]
    x, kernel = _corr_inputs(case)
    expected = _corr_reference(case, x, kernel)

    y64 = _corr_call(case, x, kernel)
    assert y64.dtype == tf.float64
    np.testing.assert_allclose(_unlayout(y64.numpy(), case["data_format"]), expected,
                               rtol=0, atol=1e-10)

    x32, k32 = x.astype("float32"), kernel.astype("float32")
    expected32 = _corr_reference(case, x32, k32)
    y32 = _corr_call(case, x32, k32)
    assert y32.dtype == tf.float32
    bound = reference.corr2d(np.abs(x32), np.abs(k32), case["strides"], case["padding"],
                             padding_mode=case["padding_mode"], mode=case["mode"])
    np.testing.assert_allclose(_unlayout(y32.numpy(), case["data_format"]), expected32,
                               rtol=0, atol=1e-5 * _scale(bound))


@pytest.mark.parametrize("i", range(0, N_CASES, GRAD_EVERY), ids=_case_id)
def test_corr2d_gradient_matches_reference_grad(i):
    case = CORR_CASES[i]
    x, kernel = _corr_inputs(case)
    upstream = np.random.default_rng(case["seed"] + 1).uniform(
        -1, 1, size=_corr_reference(case, x, kernel).shape)
    expected_dx, expected_dw = reference.corr2d_grad(
        x, kernel, upstream, case["strides"], case["padding"],
        padding_mode=case["padding_mode"], mode=case["mode"])
    xt, kt = tf.constant(_layout(x, case["data_format"])), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = _corr_call(case, xt, kt, laid_out=True)
        loss = tf.reduce_sum(y * _layout(upstream, case["data_format"]))
    dx, dw = tape.gradient(loss, [xt, kt])
    np.testing.assert_allclose(_unlayout(dx.numpy(), case["data_format"]), expected_dx,
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(dw.numpy(), expected_dw, rtol=0, atol=1e-10)


@pytest.mark.parametrize("i", range(1, N_CASES, REFERENCE_EVERY), ids=_case_id)
def test_corr2d_reference_implementation_through_ops(i):
    case = CORR_CASES[i]
    x, kernel = _corr_inputs(case)
    y = _corr_call(case, x, kernel, implementation="reference")
    np.testing.assert_allclose(_unlayout(y.numpy(), case["data_format"]),
                               _corr_reference(case, x, kernel), rtol=0, atol=1e-12)
    upstream = np.random.default_rng(case["seed"] + 1).uniform(-1, 1, size=y.shape)
    xt, kt = tf.constant(_layout(x, case["data_format"])), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y_ref = _corr_call(case, xt, kt, implementation="reference", laid_out=True)
        loss = tf.reduce_sum(y_ref * upstream)
    dx, dw = tape.gradient(loss, [xt, kt])
    expected_dx, expected_dw = reference.corr2d_grad(
        x, kernel, _unlayout(upstream, case["data_format"]), case["strides"],
        case["padding"], padding_mode=case["padding_mode"], mode=case["mode"])
    np.testing.assert_allclose(_unlayout(dx.numpy(), case["data_format"]), expected_dx,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw.numpy(), expected_dw, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------- pooling
POOL_OPS = ["max_pool2d", "mean_pool2d"]


def _pool_input(case, dtype="float64"):
    return np.random.default_rng(case["seed"]).uniform(-1, 1, size=case["x_shape"]).astype(
        dtype)


def _pool_reference(op, case, x):
    return getattr(reference, op)(x, case["pool_size"], case["strides"], case["padding"],
                                  padding_mode=case["padding_mode"])


def _pool_call(op, case, x, implementation="composite", laid_out=False):
    x = x if laid_out else _layout(x, case["data_format"])
    return getattr(kce.ops, op)(x, case["pool_size"],
                                case["strides"], case["padding"],
                                padding_mode=case["padding_mode"],
                                data_format=case["data_format"],
                                implementation=implementation)


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("i", range(N_CASES), ids=_case_id)
def test_pool_composite_matches_reference(i, op):
    case = POOL_CASES[i]
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-5)):
        x = _pool_input(case, dtype)
        y = _pool_call(op, case, x)
        assert y.dtype == dtype
        np.testing.assert_allclose(_unlayout(y.numpy(), case["data_format"]),
                                   _pool_reference(op, case, x), rtol=0, atol=tol)


def _pool_grad_reference(op, case, x, upstream):
    return getattr(reference, op + "_grad")(
        x, upstream, case["pool_size"], case["strides"], case["padding"],
        padding_mode=case["padding_mode"])


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("i", range(0, N_CASES, GRAD_EVERY), ids=_case_id)
def test_pool_gradient_matches_reference_grad(i, op):
    case = POOL_CASES[i]
    x = _pool_input(case)
    expected_y = _pool_reference(op, case, x)
    upstream = np.random.default_rng(case["seed"] + 1).uniform(-1, 1, size=expected_y.shape)
    xt = tf.constant(_layout(x, case["data_format"]))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = _pool_call(op, case, xt, laid_out=True)
        loss = tf.reduce_sum(y * _layout(upstream, case["data_format"]))
    dx = tape.gradient(loss, xt)
    np.testing.assert_allclose(_unlayout(dx.numpy(), case["data_format"]),
                               _pool_grad_reference(op, case, x, upstream), rtol=0, atol=1e-10)


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("i", range(1, N_CASES, REFERENCE_EVERY), ids=_case_id)
def test_pool_reference_implementation_through_ops(i, op):
    case = POOL_CASES[i]
    x = _pool_input(case)
    expected = _pool_reference(op, case, x)
    y = _pool_call(op, case, x, implementation="reference")
    np.testing.assert_allclose(_unlayout(y.numpy(), case["data_format"]), expected, rtol=0,
                               atol=1e-12)
    upstream = np.random.default_rng(case["seed"] + 1).uniform(-1, 1, size=expected.shape)
    xt = tf.constant(_layout(x, case["data_format"]))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(_pool_call(op, case, xt, implementation="reference", laid_out=True)
                             * _layout(upstream, case["data_format"]))
    dx = tape.gradient(loss, xt)
    np.testing.assert_allclose(_unlayout(dx.numpy(), case["data_format"]),
                               _pool_grad_reference(op, case, x, upstream), rtol=0, atol=1e-12)


# -------------------------------------------------------------------- float16 / bfloat16
LOW_PRECISION = {"float16": (tf.float16, 2.0**-10), "bfloat16": (tf.bfloat16, 2.0**-7)}


def _round_to(x, tf_dtype):
    """The input as the low-precision dtype sees it, back in float64."""
    return tf.cast(tf.cast(x, tf_dtype), tf.float64).numpy()


@pytest.mark.parametrize("dtype", sorted(LOW_PRECISION))
@pytest.mark.parametrize("i", LOW_PRECISION_CASES, ids=_case_id)
def test_corr2d_low_precision(i, dtype):
    tf_dtype, eps = LOW_PRECISION[dtype]
    case = CORR_CASES[i]
    x, kernel = _corr_inputs(case)
    x, kernel = _round_to(x, tf_dtype), _round_to(kernel, tf_dtype)
    y = _corr_call(case, tf.cast(x, tf_dtype), tf.cast(kernel, tf_dtype))
    assert y.dtype == tf_dtype
    expected = _corr_reference(case, x, kernel)
    bound = reference.corr2d(np.abs(x), np.abs(kernel), case["strides"], case["padding"],
                             padding_mode=case["padding_mode"], mode=case["mode"])
    got = _unlayout(tf.cast(y, tf.float64).numpy(), case["data_format"])
    assert np.all(np.abs(got - expected) <= 4 * eps * bound + 1e-12)


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("dtype", sorted(LOW_PRECISION))
@pytest.mark.parametrize("i", LOW_PRECISION_CASES, ids=_case_id)
def test_pool_low_precision(i, dtype, op):
    tf_dtype, eps = LOW_PRECISION[dtype]
    case = POOL_CASES[i]
    x = _round_to(_pool_input(case), tf_dtype)
    y = _pool_call(op, case, tf.cast(x, tf_dtype))
    assert y.dtype == tf_dtype
    got = _unlayout(tf.cast(y, tf.float64).numpy(), case["data_format"])
    expected = _pool_reference(op, case, x)
    if op == "max_pool2d":
        np.testing.assert_array_equal(got, expected)  # the max is one of the inputs
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=4 * eps)


@pytest.mark.parametrize("dtype", sorted(LOW_PRECISION))
def test_low_precision_gradients(dtype):
    tf_dtype, eps = LOW_PRECISION[dtype]
    case = CORR_CASES[3]
    x, kernel = _corr_inputs(case)
    x, kernel = _round_to(x, tf_dtype), _round_to(kernel, tf_dtype)
    y64 = _corr_reference(case, x, kernel)
    upstream = _round_to(np.random.default_rng(7).uniform(-1, 1, size=y64.shape), tf_dtype)
    xt = tf.cast(_layout(x, case["data_format"]), tf_dtype)
    kt = tf.cast(kernel, tf_dtype)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        loss = tf.reduce_sum(_corr_call(case, xt, kt, laid_out=True)
                             * tf.cast(_layout(upstream, case["data_format"]), tf_dtype))
    dx, dw = tape.gradient(loss, [xt, kt])
    assert dx.dtype == tf_dtype and dw.dtype == tf_dtype
    expected_dx, expected_dw = reference.corr2d_grad(
        x, kernel, upstream, case["strides"], case["padding"],
        padding_mode=case["padding_mode"], mode=case["mode"])
    bound_dx, bound_dw = reference.corr2d_grad(
        np.abs(x), np.abs(kernel), np.abs(upstream), case["strides"], case["padding"],
        padding_mode=case["padding_mode"], mode=case["mode"])
    got_dx = _unlayout(tf.cast(dx, tf.float64).numpy(), case["data_format"])
    assert np.all(np.abs(got_dx - expected_dx) <= 4 * eps * bound_dx + 1e-12)
    assert np.all(np.abs(tf.cast(dw, tf.float64).numpy() - expected_dw)
                  <= 4 * eps * bound_dw + 1e-12)
