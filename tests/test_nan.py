"""NaN in every op and every implementation (docs/semantics.md: NaN).

Cross-correlation and mean pooling propagate NaN to exactly the outputs whose window reads a
NaN cell. Max pooling follows NumPy, PyTorch and IEEE 754's maximum: a window holding NaN gives
NaN, NaN counting as larger than every number; the gradient goes to the *first* NaN cell of the
window in row-major order (the first-max rule extended; PyTorch's CPU kernel picks the last).
Without NaN nothing changes. Max pooling is checked against a brute-force oracle written here,
cell by cell, not against `reference` (which is itself one of the implementations under test).
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import native, reference

_NEEDS_NATIVE = pytest.mark.skipif(not native.available(), reason=native.status())
IMPLEMENTATIONS = ["reference", "composite", pytest.param("native", marks=_NEEDS_NATIVE)]
NAN_CELLS = [(0, 2, 3, 0), (1, 0, 0, 1), (1, 4, 5, 0)]


def _nan_input(rng, shape, cells, extra=()):
    x = rng.uniform(-1, 1, size=shape)
    for cell in list(cells) + list(extra):
        x[cell] = np.nan
    return x


def _max_pool_oracle(x, pool, strides, pads, padding_mode):
    """Per output cell: (value, winning input cell or None for a padded cell). NHWC."""
    batch, height, width, channels = x.shape
    (top, bottom), (left, right) = pads
    out_h = (height + top + bottom - pool[0]) // strides[0] + 1
    out_w = (width + left + right - pool[1]) // strides[1] + 1
    y = np.empty((batch, out_h, out_w, channels))
    winners = {}
    for n in range(batch):
        for k in range(out_h):
            for l in range(out_w):
                for c in range(channels):
                    cells = []  # the window's members in row-major order
                    for m in range(pool[0]):
                        for q in range(pool[1]):
                            i, j = k * strides[0] + m - top, l * strides[1] + q - left
                            if 0 <= i < height and 0 <= j < width:
                                cells.append((x[n, i, j, c], (n, i, j, c)))
                            elif padding_mode == "zeros":
                                cells.append((0.0, None))
                    nans = [cell for cell in cells if np.isnan(cell[0])]
                    if nans:
                        value, where = np.nan, nans[0][1]
                    else:
                        value = max(v for v, _ in cells)
                        where = next(w for v, w in cells if v == value)
                    y[n, k, l, c] = value
                    winners[(n, k, l, c)] = where
    return y, winners


def _oracle_grad(x, upstream, winners):
    dx = np.zeros_like(x)
    for out, where in winners.items():
        if where is not None:
            dx[where] += upstream[out]
    return dx


def _to(a, data_format):
    return a if data_format == "channels_last" else np.transpose(a, (0, 3, 1, 2))


def _back(a, data_format):
    a = np.asarray(a)
    return a if data_format == "channels_last" else np.transpose(a, (0, 2, 3, 1))


def _max_pool_step(implementation, data_format="channels_last", **kwargs):
    def step(xt, gt):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = kce.ops.max_pool2d(xt, implementation=implementation, data_format=data_format,
                                   **kwargs)
        return y, tape.gradient(y, xt, output_gradients=gt)
    return step


def _max_pool_and_grad(x, upstream, implementation, data_format="channels_last", **kwargs):
    step = _max_pool_step(implementation, data_format, **kwargs)
    y, dx = step(tf.constant(_to(x, data_format)), tf.constant(_to(upstream, data_format)))
    return _back(y, data_format), _back(dx, data_format)


MAX_CASES = [
    dict(pool_size=3, strides=2, padding=1, padding_mode="zeros"),
    dict(pool_size=3, strides=2, padding=1, padding_mode="ignore"),
    dict(pool_size=(2, 3), strides=(1, 2), padding=((1, 0), (0, 1)), padding_mode="zeros"),
    dict(pool_size=2, strides=1, padding=0, padding_mode="zeros"),  # overlapping windows
    dict(pool_size=2, padding="same", padding_mode="ignore"),        # TF 'SAME' path
]


def _case_id(case):
    return ",".join(f"{k}={v}" for k, v in case.items())


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_max_pool_nan_forward_and_gradient(implementation, case, data_format, rng):
    # two NaN cells in one window (first one wins) and a window of NaN only
    x = _nan_input(rng, (2, 5, 6, 2), NAN_CELLS, extra=[(0, 2, 4, 0), (1, 4, 4, 0),
                                                        (1, 3, 4, 0), (1, 3, 5, 0)])
    window = kce.ops.geometry.normalize_tuple(case["pool_size"], "pool_size")
    strides = kce.ops.geometry.normalize_tuple(case.get("strides") or window, "strides")
    pads = kce.ops.geometry.resolve_padding(case["padding"], window)
    expected, winners = _max_pool_oracle(x, window, strides, pads, case["padding_mode"])
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    upstream = rng.uniform(0.5, 1.5, size=expected.shape)
    y, dx = _max_pool_and_grad(x, upstream, implementation, data_format, **case)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_allclose(dx, _oracle_grad(x, upstream, winners), rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_max_pool_all_nan_window_is_nan_not_the_lowest_float(implementation):
    """The issue's example: TensorFlow's own kernel returns -3.4028235e+38 here."""
    x = np.full((1, 2, 2, 1), np.nan, "float32")
    y, dx = _max_pool_and_grad(x, np.ones((1, 1, 1, 1), "float32"), implementation,
                               pool_size=2)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])  # the first NaN cell


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_max_pool_nan_beats_infinity_and_padded_zeros(implementation):
    x = np.array([[np.inf, 1.0], [np.nan, -np.inf]], "float32")[None, :, :, None]
    y, dx = _max_pool_and_grad(x, np.full((1, 1, 1, 1), 2.0, "float32"), implementation,
                               pool_size=2)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0], [2, 0]])
    # padded zeros ('zeros' mode) take part: they lose to NaN, and win over -1 (passing no
    # gradient); padded 3x3 input [[0, 0, 0], [0, -1, nan], [0, -1, -1]], 2x2 windows, stride 1
    x = np.array([[-1.0, np.nan], [-1.0, -1.0]], "float32")[None, :, :, None]
    y, dx = _max_pool_and_grad(x, np.ones((1, 2, 2, 1), "float32"), implementation,
                               pool_size=2, strides=1, padding=((1, 0), (1, 0)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, np.nan], [0, np.nan]])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 2], [0, 0]])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_max_pool_without_nan_is_unchanged(implementation, rng):
    """Ties without NaN: the first maximal cell, as before."""
    x = rng.integers(0, 3, size=(2, 5, 6, 2)).astype("float64")
    expected, winners = _max_pool_oracle(x, (3, 3), (2, 2), ((1, 1), (1, 1)), "zeros")
    upstream = rng.uniform(0.5, 1.5, size=expected.shape)
    y, dx = _max_pool_and_grad(x, upstream, implementation, pool_size=3, strides=2, padding=1)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_allclose(dx, _oracle_grad(x, upstream, winners), atol=1e-12)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf.function", "xla"])
@pytest.mark.parametrize("implementation", ["composite", "auto"])
def test_max_pool_nan_in_a_tf_function_and_under_xla(implementation, jit_compile, rng):
    """The composite path decides on NaN inside the graph (`tf.cond`), so one traced function
    serves inputs with and without NaN; "auto" is composite inside XLA."""
    step = tf.function(_max_pool_step(implementation, pool_size=3, strides=2, padding=1),
                       jit_compile=jit_compile)
    for x in (_nan_input(rng, (2, 5, 6, 2), NAN_CELLS), rng.uniform(-1, 1, (2, 5, 6, 2))):
        expected, winners = _max_pool_oracle(x, (3, 3), (2, 2), ((1, 1), (1, 1)), "zeros")
        upstream = rng.uniform(0.5, 1.5, size=expected.shape)
        y, dx = step(tf.constant(x), tf.constant(upstream))
        np.testing.assert_array_equal(y, expected)
        np.testing.assert_allclose(dx, _oracle_grad(x, upstream, winners), atol=1e-12)
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_max_pool_nan_low_precision_composite(dtype):
    x = tf.cast(tf.constant([[1.0, np.nan, 3.0, 4.0]]), dtype)[None, :, :, None]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = kce.ops.max_pool2d(x, (1, 2), implementation="composite")
    dx = tape.gradient(y, x)
    assert y.dtype == dtype
    assert np.isnan(tf.cast(y, tf.float32)[0, 0, 0, 0]) and float(y[0, 0, 1, 0]) == 4.0
    np.testing.assert_array_equal(tf.cast(dx, tf.float32)[0, 0, :, 0], [0, 1, 0, 1])


def test_max_pool_layer_propagates_nan():
    """A diverged activation is not hidden by the layer either."""
    layer = kce.layers.MaxPooling2D(2, data_format="channels_last")
    x = np.ones((1, 4, 4, 1), "float32")
    x[0, 3, 3, 0] = np.nan
    y = np.asarray(layer(x))[0, :, :, 0]
    np.testing.assert_array_equal(np.isnan(y), [[False, False], [False, True]])


def test_tensorflow_max_pool_skips_nan():
    """What TensorFlow's own kernel does, the reason for the explicit NaN path in composite
    (if this starts failing, TensorFlow changed and the fast path may need no NaN check)."""
    x = np.array([[1.0, np.nan], [0.5, 0.25]])[None, :, :, None]
    assert tf.nn.max_pool2d(x, 2, 2, "VALID").numpy()[0, 0, 0, 0] == 1.0
    assert np.isnan(reference.max_pool2d(x, 2)[0, 0, 0, 0])


# --------------------------------------------- cross-correlation and mean pooling: propagation
def _windows_containing_nan(x, fn):
    """Which outputs read a NaN cell: run the op on the NaN indicator (0/1) with a positive
    kernel (or a mean): an output is positive exactly where its window holds a NaN."""
    return fn(np.isnan(x).astype(float)) > 0


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "reflect"])
def test_nan_propagates_to_exactly_the_windows_containing_it_corr2d(padding_mode,
                                                                    implementation, rng):
    x = _nan_input(rng, (2, 6, 7, 2), NAN_CELLS)
    kernel = rng.uniform(-1, 1, size=(3, 2, 2, 2))
    kernel[0, 0] = 0.0  # 0 * NaN is NaN: a zero weight does not hide the NaN
    kwargs = dict(strides=(1, 2), padding=((1, 2), (1, 0)), padding_mode=padding_mode)
    y = kce.ops.corr2d(x, kernel, implementation=implementation, **kwargs).numpy()
    mask = _windows_containing_nan(
        x, lambda ind: reference.corr2d(ind, np.ones((3, 2, 2, 2)), **kwargs))
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(np.isnan(y), mask)
    finite = reference.corr2d(np.nan_to_num(x), kernel, **kwargs)
    np.testing.assert_allclose(y[~mask], finite[~mask], rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("padding_mode", ["zeros", "ignore"])
def test_nan_propagates_to_exactly_the_windows_containing_it_mean_pool(padding_mode,
                                                                        implementation, rng):
    x = _nan_input(rng, (2, 6, 7, 2), NAN_CELLS)
    kwargs = dict(pool_size=3, strides=2, padding=1, padding_mode=padding_mode)
    y = kce.ops.mean_pool2d(x, implementation=implementation, **kwargs).numpy()
    mask = _windows_containing_nan(x, lambda ind: reference.mean_pool2d(ind, **kwargs))
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(np.isnan(y), mask)
    finite = reference.mean_pool2d(np.nan_to_num(x), **kwargs)
    np.testing.assert_allclose(y[~mask], finite[~mask], rtol=0, atol=1e-12)
