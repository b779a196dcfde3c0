"""Gradients: numerical checks in float64 for every op x padding mode x pooling mode, the max
pooling tie rule (docs/semantics.md), and equality of eager / `tf.function` / `jit_compile=True`.

`tf.test.compute_gradient` differentiates numerically; every hand-written backward pass
(composite, and the NumPy one behind `implementation="reference"`) must agree to < 1e-6.
Max pooling inputs have distinct values spaced far wider than the finite-difference step and
away from 0 (the padded value), so no window's arg-max switches inside the step.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import reference

IMPLEMENTATIONS = ["composite", "reference"]
MAX_ERROR = 1e-6


def max_gradient_error(fn, args):
    theoretical, numerical = tf.test.compute_gradient(fn, args)
    errors = [np.max(np.abs(t - n)) for t, n in zip(theoretical, numerical) if t.size]
    assert errors, "nothing was differentiated"
    assert any(np.any(t != 0) for t in theoretical), "the gradient is identically zero"
    return max(errors)


def _layout(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def distinct_values(shape, rng, spacing=0.05):
    """Distinct values spaced by `spacing`, none closer than spacing/2 to zero."""
    n = int(np.prod(shape))
    values = (rng.permutation(n) - n / 2 + 0.5) * spacing
    return values.reshape(shape)


# --------------------------------------------------------------------------------- corr2d
CORR_GEOMETRIES = {
    "stride1-pad1": dict(x_shape=(1, 5, 4, 2), kernel=(3, 3), strides=1, padding=1,
                         data_format="channels_last"),
    "stride2-asym-pad-cf": dict(x_shape=(1, 6, 5, 2), kernel=(3, 2), strides=(2, 1),
                                padding=((2, 0), (1, 1)), data_format="channels_first"),
    "same-even-kernel": dict(x_shape=(1, 5, 5, 1), kernel=(2, 4), strides=(1, 2),
                             padding="same", data_format="channels_last"),
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["cross_correlation", "convolution"])
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "reflect"])
@pytest.mark.parametrize("geometry", CORR_GEOMETRIES)
def test_corr2d_numerical_gradient(geometry, padding_mode, mode, implementation, rng):
    g = CORR_GEOMETRIES[geometry]
    channels = g["x_shape"][3]
    x = _layout(rng.uniform(-1, 1, size=g["x_shape"]), g["data_format"])
    kernel = rng.uniform(-1, 1, size=g["kernel"] + (channels, 2))

    def fn(x, kernel):
        return kce.ops.corr2d(x, kernel, g["strides"], g["padding"], padding_mode=padding_mode,
                              mode=mode, data_format=g["data_format"],
                              implementation=implementation)

    assert max_gradient_error(fn, [tf.constant(x), tf.constant(kernel)]) < MAX_ERROR


def test_corr2d_layer_numerical_gradient(rng):
    layer = kce.layers.CrossCorrelation2D(2, 3, strides=2, padding=1, padding_mode="reflect",
                                          activation="tanh", dtype="float64",
                                          bias_initializer="glorot_uniform")
    x = tf.constant(rng.uniform(-1, 1, size=(1, 5, 5, 2)))
    layer.build(x.shape)
    assert max_gradient_error(layer, [x]) < MAX_ERROR


# -------------------------------------------------------------------------------- pooling
POOL_GEOMETRIES = {
    "2x2-non-overlapping": dict(x_shape=(2, 4, 4, 2), pool_size=2, strides=None, padding=0,
                                data_format="channels_last"),
    "3x3-stride2-pad1-overlap": dict(x_shape=(1, 5, 6, 2), pool_size=3, strides=2, padding=1,
                                     data_format="channels_last"),
    "3x2-asym-pad-cf": dict(x_shape=(1, 5, 5, 2), pool_size=(3, 2), strides=(1, 2),
                            padding=((2, 0), (1, 1)), data_format="channels_first"),
    "same-stride1": dict(x_shape=(1, 4, 5, 1), pool_size=(2, 3), strides=1, padding="same",
                         data_format="channels_last"),
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("padding_mode", ["zeros", "ignore"])
@pytest.mark.parametrize("op", ["max_pool2d", "mean_pool2d"])
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_pool_numerical_gradient(geometry, op, padding_mode, implementation, rng):
    g = POOL_GEOMETRIES[geometry]
    x = _layout(distinct_values(g["x_shape"], rng), g["data_format"])

    def fn(x):
        return getattr(kce.ops, op)(x, g["pool_size"], g["strides"], g["padding"],
                                    padding_mode=padding_mode, data_format=g["data_format"],
                                    implementation=implementation)

    assert max_gradient_error(fn, [tf.constant(x)]) < MAX_ERROR


# ------------------------------------------------------------------ the max-pool tie rule
def _grad_composite(x, upstream, **kwargs):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = kce.ops.max_pool2d(xt, implementation="composite", **kwargs)
    return y.numpy(), tape.gradient(y, xt, output_gradients=tf.constant(upstream)).numpy()


def _grad_function(jit):
    @tf.function(jit_compile=jit)
    def run(xt, upstream, pool_size, strides, padding, padding_mode):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = kce.ops.max_pool2d(xt, pool_size, strides, padding, padding_mode=padding_mode,
                                   implementation="composite")
        return y, tape.gradient(y, xt, output_gradients=upstream)

    def grad(x, upstream, pool_size, strides=None, padding=0, padding_mode="zeros"):
        y, dx = run(tf.constant(x), tf.constant(upstream), pool_size, strides, padding,
                    padding_mode)
        return y.numpy(), dx.numpy()
    return grad


def _grad_reference_impl(x, upstream, **kwargs):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = kce.ops.max_pool2d(xt, implementation="reference", **kwargs)
    return y.numpy(), tape.gradient(y, xt, output_gradients=tf.constant(upstream)).numpy()


def _grad_numpy(x, upstream, **kwargs):
    return (reference.max_pool2d(x, **kwargs),
            reference.max_pool2d_grad(x, upstream, **kwargs))


RUNNERS = {
    "composite-eager": _grad_composite,
    "composite-tf.function": _grad_function(False),
    "composite-xla": _grad_function(True),
    "reference-impl": _grad_reference_impl,
    "numpy-reference": _grad_numpy,
}


def _4d(matrix):
    return np.asarray(matrix, "float64")[None, :, :, None]


TIE_CASES = {
    # all-equal, non-overlapping windows: each window's first cell (row-major) gets it all
    "all-equal-2x2": dict(
        x=np.ones((4, 4)), kwargs=dict(pool_size=2),
        upstream=[[1, 2], [3, 4]],
        y=[[1, 1], [1, 1]],
        dx=[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]),
    # all-equal, overlapping windows (stride 1): window (k, l) sends to cell (k, l)
    "all-equal-overlapping": dict(
        x=np.full((3, 4), 7.0), kwargs=dict(pool_size=2, strides=1),
        upstream=[[1, 2, 3], [4, 5, 6]],
        y=[[7, 7, 7], [7, 7, 7]],
        dx=[[1, 2, 3, 0], [4, 5, 6, 0], [0, 0, 0, 0]]),
    # first maximal cell in row-major order, not the last or a random one
    "partial-tie": dict(
        x=[[1, 5], [5, 5]], kwargs=dict(pool_size=2),
        upstream=[[3]], y=[[5]], dx=[[0, 3], [0, 0]]),
    # one maximum shared by four overlapping windows: the four upstream values add up
    "overlapping-add-up": dict(
        x=[[1, 2, 3], [4, 9, 5], [6, 7, 8]], kwargs=dict(pool_size=2, strides=1),
        upstream=[[1, 2], [3, 4]], y=[[9, 9], [9, 9]],
        dx=[[0, 0, 0], [0, 10, 0], [0, 0, 0]]),
    # all inputs negative, zero padding: the padded zeros win and pass nothing
    "padded-zero-wins": dict(
        x=[[-1, -2], [-3, -4]], kwargs=dict(pool_size=2, padding=1),
        upstream=[[1, 2], [3, 4]], y=[[0, 0], [0, 0]], dx=[[0, 0], [0, 0]]),
    # the same with padding_mode='ignore': padded cells never win
    "ignore-padding": dict(
        x=[[-1, -2], [-3, -4]], kwargs=dict(pool_size=2, padding=1, padding_mode="ignore"),
        upstream=[[1, 2], [3, 4]], y=[[-1, -2], [-3, -4]], dx=[[1, 2], [3, 4]]),
    # real zeros tie with padded zeros: the first cell in row-major order decides; only the
    # bottom-right window starts on a real cell
    "zero-ties-padding": dict(
        x=[[0, 0], [0, 0]], kwargs=dict(pool_size=2, padding=1),
        upstream=[[1, 2], [3, 4]], y=[[0, 0], [0, 0]], dx=[[0, 0], [0, 4]]),
    # 3x3 windows, stride 2, zero padding 1, all-equal positive input
    "all-equal-3x3-stride2-pad1": dict(
        x=np.ones((4, 4)), kwargs=dict(pool_size=3, strides=2, padding=1),
        upstream=[[1, 2], [3, 4]], y=[[1, 1], [1, 1]],
        # window (k, l) starts at padded (2k, 2l); its first real cell is input (k, l)
        dx=[[1, 2, 0, 0], [3, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("case", TIE_CASES)
def test_max_pool_tie_rule(case, runner):
    c = TIE_CASES[case]
    y, dx = RUNNERS[runner](_4d(c["x"]), _4d(c["upstream"]), **c["kwargs"])
    np.testing.assert_array_equal(y[0, :, :, 0], c["y"])
    np.testing.assert_array_equal(dx[0, :, :, 0], c["dx"])


def test_tie_rule_per_channel_and_per_batch():
    x = np.ones((2, 2, 2, 3))
    x[1, 1, 1, 2] = 2.0
    upstream = np.arange(1.0, 7.0).reshape(2, 1, 1, 3)
    _, dx = _grad_composite(x, upstream, pool_size=2)
    expected = np.zeros_like(x)
    expected[0, 0, 0, :] = [1, 2, 3]
    expected[1, 0, 0, :2] = [4, 5]
    expected[1, 1, 1, 2] = 6
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_array_equal(reference.max_pool2d_grad(x, upstream, 2), expected)


def test_mean_pool_gradient_is_upstream_over_divisor():
    x = np.zeros((1, 3, 3, 1))
    upstream = np.array([[[[4.0], [8.0]], [[12.0], [16.0]]]])
    for padding_mode, expected in [
        # zeros: divisor 4 for every window
        ("zeros", [[1, 2], [3, 4]]),
        # ignore: the 2x2 windows at stride 2 with padding (0, 1) hold 4, 2, 2, 1 real cells
        ("ignore", [[1, 4], [6, 16]]),
    ]:
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = kce.ops.mean_pool2d(xt, 2, padding=((0, 1), (0, 1)),
                                    padding_mode=padding_mode)
        dx = tape.gradient(y, xt, output_gradients=tf.constant(upstream))[0, :, :, 0].numpy()
        e = np.asarray(expected, float)
        full = np.array([[e[0, 0], e[0, 0], e[0, 1]],
                         [e[0, 0], e[0, 0], e[0, 1]],
                         [e[1, 0], e[1, 0], e[1, 1]]])
        np.testing.assert_allclose(dx, full, rtol=0, atol=1e-12)


# ----------------------------------------------- eager == tf.function == jit_compile=True
def _values_and_grads(fn, args):
    args = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = fn(*args)
        loss = tf.reduce_sum(y * tf.cos(tf.reshape(tf.range(tf.size(y), dtype=y.dtype),
                                                   tf.shape(y))))
    return [y] + tape.gradient(loss, args)


GRAPH_CASES = {
    "corr-zeros-stride2": (lambda x, k: kce.ops.corr2d(x, k, 2, 1), "corr"),
    "corr-same": (lambda x, k: kce.ops.corr2d(x, k, 1, "same"), "corr"),
    "corr-replicate-conv": (lambda x, k: kce.ops.corr2d(
        x, k, (1, 2), ((2, 1), (0, 2)), padding_mode="replicate", mode="convolution"), "corr"),
    "corr-reflect-cf": (lambda x, k: kce.ops.corr2d(
        tf.transpose(x, (0, 3, 1, 2)), k, 1, 2, padding_mode="reflect",
        data_format="channels_first"), "corr"),
    "max-zeros-pad": (lambda x: kce.ops.max_pool2d(x, 3, 2, 1), "pool"),
    "max-ignore-same": (lambda x: kce.ops.max_pool2d(x, 3, 2, "same", padding_mode="ignore"),
                        "pool"),
    "max-ties": (lambda x: kce.ops.max_pool2d(x, 2, 1), "ties"),
    "mean-zeros": (lambda x: kce.ops.mean_pool2d(x, 2, 1, 1), "pool"),
    "mean-ignore": (lambda x: kce.ops.mean_pool2d(x, 3, 2, 1, padding_mode="ignore"), "pool"),
    "mean-ignore-same": (lambda x: kce.ops.mean_pool2d(x, 3, 2, "same",
                                                        padding_mode="ignore"), "pool"),
}


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_tf_function_and_xla_match_eager(case, rng):
    fn, kind = GRAPH_CASES[case]
    x = rng.uniform(-2, 2, size=(2, 6, 7, 3))
    if kind == "ties":
        x = np.round(x)  # few distinct values: many tied windows
    args = [x, rng.uniform(-1, 1, size=(3, 3, 3, 2))] if kind == "corr" else [x]
    eager = _values_and_grads(fn, args)
    graph = _values_and_grads(tf.function(fn), args)
    xla = _values_and_grads(tf.function(fn, jit_compile=True), args)
    for e, g, j in zip(eager, graph, xla):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(j.numpy(), e.numpy(), rtol=0, atol=1e-12)
