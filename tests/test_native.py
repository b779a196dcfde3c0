"""Tests of the compiled custom ops (`keras_cnn_ext.ops.native`, sources in `custom_ops/`).

The ops are checked against the NumPy reference (`keras_cnn_ext.ops.reference`) on random
geometries, for both CPU algorithms: "fast" (im2col + GEMM, fused pooling) and "direct" (the
per-element functors the CUDA kernels run, selected by KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct).
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from native_layouts import ALGO_ENV, algo, from_format, to_format  # noqa: F401 (algo: a fixture)
from keras_cnn_ext.ops import native, native_config
from keras_cnn_ext.ops import reference

requires_native = pytest.mark.skipif(not native.available(), reason=f"{native.status()}")

X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], dtype=np.float32)
W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]], dtype=np.float32)


# ----------------------------------------------------------------------------- loader


def test_loader_api_is_lazy_and_reports_status():
    code = (
        "import sys, keras_cnn_ext; "
        "assert 'keras_cnn_ext.ops.native' not in sys.modules or "
        "not sys.modules['keras_cnn_ext.ops.native']._state['tried']; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert isinstance(native.status(), str) and native.status()


def test_missing_library_gives_reason_and_one_warning(tmp_path):
    code = (
        "import warnings, os\n"
        "from keras_cnn_ext.ops import native\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    assert not native.available(); assert not native.available()\n"
        "    try:\n"
        "        native.load(); raise SystemExit('no error')\n"
        "    except RuntimeError as e: assert 'does not exist' in str(e), e\n"
        "print(len(w), native.status())\n"
    )
    env = dict(os.environ, KERAS_CNN_EXT_NATIVE_LIB=str(tmp_path / "missing.so"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("1 ")


@requires_native
def test_version_mismatch_warns_once_and_falls_back(tmp_path):
    import json
    import shutil

    lib = tmp_path / native.LIB_NAME
    shutil.copy(native.library_path(), lib)
    (tmp_path / native.INFO_NAME).write_text(json.dumps({"tensorflow_version": "0.0.1"}))
    code = (
        "import warnings\n"
        "from keras_cnn_ext.ops import native\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    a = native.available(); b = native.available()\n"
        "print(a, b, len(w), 'built for TensorFlow 0.0.1' in native.status())\n"
    )
    env = dict(os.environ, KERAS_CNN_EXT_NATIVE_LIB=str(lib))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "1", "True"]


@requires_native
def test_status_and_register_ops():
    assert native.status().startswith("loaded from ")
    assert native.register_ops() is native.load()


# ----------------------------------------------------------------------------- worked examples


@requires_native
def test_worked_examples(algo):
    x = X[None, :, :, None]
    w = W[:, :, None, None]
    y = native.corr2d(x, w, (1, 1), ((0, 0), (0, 0)), "zeros", "cross_correlation",
                      "channels_last")
    np.testing.assert_array_equal(y[0, :, :, 0], [[11, 18], [6, 22]])
    y = native.corr2d(x, w, (1, 1), ((1, 1), (1, 1)), "zeros", "cross_correlation",
                      "channels_last")
    np.testing.assert_array_equal(
        y[0, :, :, 0], [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]])
    y = native.max_pool2d(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "zeros", "channels_last")
    np.testing.assert_array_equal(y[0, :, :, 0], [[3, 2], [3, 3]])
    # channels_first gives the same numbers
    y = native.corr2d(np.transpose(x, (0, 3, 1, 2)), w, (1, 1), ((0, 0), (0, 0)), "zeros",
                      "cross_correlation", "channels_first")
    np.testing.assert_array_equal(y[0, 0], [[11, 18], [6, 22]])


# ----------------------------------------------------------------------------- random geometries


def _corr_case(rng):
    while True:
        n, c, f = rng.integers(1, 3), rng.integers(1, 7), rng.integers(1, 4)  # C > 4: row-major im2col
        h, w = rng.integers(1, 9, size=2)
        kh, kw = rng.integers(1, 5, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        pmode = rng.choice(["zeros", "replicate", "reflect"])
        mode = rng.choice(["cross_correlation", "convolution"])
        limit_h = h - 1 if pmode == "reflect" else 3
        limit_w = w - 1 if pmode == "reflect" else 3
        pads = ((int(rng.integers(0, limit_h + 1)), int(rng.integers(0, limit_h + 1))),
                (int(rng.integers(0, limit_w + 1)), int(rng.integers(0, limit_w + 1))))
        if h + sum(pads[0]) >= kh and w + sum(pads[1]) >= kw:
            fmt = rng.choice(["channels_last", "channels_first"])
            return (int(n), int(h), int(w), int(c), int(f), int(kh), int(kw), (int(sh), int(sw)),
                    pads, str(pmode), str(mode), str(fmt))


def _pool_case(rng):
    while True:
        n, c = rng.integers(1, 3), rng.integers(1, 4)
        h, w = rng.integers(1, 9, size=2)
        kh, kw = rng.integers(1, 4, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        pads = ((int(rng.integers(0, kh)), int(rng.integers(0, kh))),
                (int(rng.integers(0, kw)), int(rng.integers(0, kw))))
        if h + sum(pads[0]) >= kh and w + sum(pads[1]) >= kw:
            return (int(n), int(h), int(w), int(c), (int(kh), int(kw)), (int(sh), int(sw)), pads,
                    str(rng.choice(["zeros", "ignore"])),
                    str(rng.choice(["channels_last", "channels_first"])))


@requires_native
def test_corr2d_matches_reference_on_random_geometries(algo):
    rng = np.random.default_rng(1234)
    for _ in range(220):
        n, h, w, c, f, kh, kw, strides, pads, pmode, mode, fmt = case = _corr_case(rng)
        x = rng.standard_normal((n, h, w, c))
        k = rng.standard_normal((kh, kw, c, f))
        xt = tf.constant(to_format(x, fmt))
        kt = tf.constant(k)
        with tf.GradientTape() as tape:
            tape.watch([xt, kt])
            y = native.corr2d(xt, kt, strides, pads, pmode, mode, fmt)
        expected = reference.corr2d(x, k, strides, pads, padding_mode=pmode, mode=mode)
        np.testing.assert_allclose(from_format(y, fmt), expected, rtol=1e-10, atol=1e-10,
                                   err_msg=str(case))
        g = rng.standard_normal(expected.shape)
        dx, dk = tape.gradient(y, [xt, kt], output_gradients=tf.constant(to_format(g, fmt)))
        rdx, rdk = reference.corr2d_grad(x, k, g, strides, pads, padding_mode=pmode, mode=mode)
        np.testing.assert_allclose(from_format(dx, fmt), rdx, rtol=1e-10, atol=1e-10,
                                   err_msg=str(case))
        np.testing.assert_allclose(dk, rdk, rtol=1e-10, atol=1e-10, err_msg=str(case))


def _check_pool_against_reference(kind, x, g_rng, window, strides, pads, pmode, fmt, case):
    """The native pool of NHWC `x` (run in layout `fmt`) and its gradient for a random upstream
    equal the NumPy reference."""
    op = native.max_pool2d if kind == "max" else native.mean_pool2d
    ref = reference.max_pool2d if kind == "max" else reference.mean_pool2d
    ref_grad = reference.max_pool2d_grad if kind == "max" else reference.mean_pool2d_grad
    xt = tf.constant(to_format(x, fmt))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = op(xt, window, strides, pads, pmode, fmt)
    expected = ref(x, window, strides, pads, padding_mode=pmode)
    np.testing.assert_allclose(from_format(y, fmt), expected, rtol=1e-12, atol=1e-12,
                               err_msg=str(case))
    g = g_rng.standard_normal(expected.shape)
    dx = tape.gradient(y, xt, output_gradients=tf.constant(to_format(g, fmt)))
    rdx = ref_grad(x, g, window, strides, pads, padding_mode=pmode)
    np.testing.assert_allclose(from_format(dx, fmt), rdx, rtol=1e-12, atol=1e-12,
                               err_msg=str(case))


@requires_native
@pytest.mark.parametrize("kind", ["max", "mean"])
def test_pooling_matches_reference_on_random_geometries(algo, kind):
    rng = np.random.default_rng(99 if kind == "max" else 7)
    for i in range(220):
        n, h, w, c, window, strides, pads, pmode, fmt = case = _pool_case(rng)
        x = rng.standard_normal((n, h, w, c))
        if i % 4 == 0:  # ties: few distinct values (and zeros, which tie with padded cells)
            x = rng.integers(-1, 2, size=x.shape).astype(np.float64)
        _check_pool_against_reference(kind, x, rng, window, strides, pads, pmode, fmt, case)


@requires_native
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
def test_low_precision_dtypes(dtype, rng):
    x = rng.standard_normal((2, 7, 6, 3))
    k = rng.standard_normal((3, 3, 3, 4))
    pads = ((1, 1), (1, 2))
    tol = {tf.float16: 2e-2, tf.bfloat16: 1e-1, tf.float32: 1e-5}[dtype]
    xt, kt = tf.cast(x, dtype), tf.cast(k, dtype)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = native.corr2d(xt, kt, (1, 2), pads, "reflect", "cross_correlation", "channels_last")
        m = native.max_pool2d(xt, (2, 3), (2, 2), pads, "ignore", "channels_last")
        a = native.mean_pool2d(xt, (3, 3), (1, 2), pads, "zeros", "channels_last")
        loss = tf.reduce_sum(tf.cast(y, tf.float32)) + tf.reduce_sum(tf.cast(m, tf.float32)) + \
            tf.reduce_sum(tf.cast(a, tf.float32))
    assert y.dtype == dtype
    ref = reference.corr2d(x, k, (1, 2), pads, padding_mode="reflect")
    np.testing.assert_allclose(tf.cast(y, tf.float64), ref, rtol=tol, atol=tol * 10)
    dx, dk = tape.gradient(loss, [xt, kt])
    assert dx.dtype == dtype and dk.dtype == dtype


# ----------------------------------------------------------------------------- numerical gradients


def _numeric_check(fn, args, relative=False):
    theoretical, numerical = tf.test.compute_gradient(fn, args)
    for t, n in zip(theoretical, numerical):
        scale = max(1.0, np.max(np.abs(n))) if relative else 1.0
        assert np.max(np.abs(t - n)) / scale < 1e-6


@requires_native
@pytest.mark.parametrize("pmode", ["zeros", "replicate", "reflect"])
@pytest.mark.parametrize("mode", ["cross_correlation", "convolution"])
def test_corr2d_numerical_gradient(pmode, mode, rng):
    x = tf.constant(rng.standard_normal((2, 5, 6, 2)))
    k = tf.constant(rng.standard_normal((3, 2, 2, 3)))
    pads = ((2, 1), (1, 2))
    _numeric_check(
        lambda a, b: native.corr2d(a, b, (2, 1), pads, pmode, mode, "channels_last"), [x, k])


@requires_native
@pytest.mark.parametrize("pmode", ["zeros", "ignore"])
@pytest.mark.parametrize("kind", ["max", "mean"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_pooling_numerical_gradient(pmode, kind, fmt, rng):
    # distinct values at least 0.05 apart and away from 0, so no kink lies within the step
    values = (rng.permutation(2 * 6 * 7 * 2) - 40.5) * 0.05
    x = tf.constant(to_format(values.reshape(2, 6, 7, 2), fmt))
    op = native.max_pool2d if kind == "max" else native.mean_pool2d
    _numeric_check(lambda a: op(a, (3, 2), (2, 1), ((1, 2), (1, 1)), pmode, fmt), [x])


@requires_native
def test_second_order_gradients_of_corr2d(rng):
    x = tf.constant(rng.standard_normal((1, 5, 5, 2)))
    k = tf.constant(rng.standard_normal((3, 3, 2, 2)))

    def fn(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = native.corr2d(a, b, (1, 1), ((1, 1), (1, 1)), "reflect", "convolution",
                              "channels_last")
            loss = tf.reduce_sum(y * y)
        da, db = tape.gradient(loss, [a, b])
        return tf.reduce_sum(da * da) + tf.reduce_sum(db)

    _numeric_check(fn, [x, k], relative=True)  # a quartic: compare relative to its size


# ----------------------------------------------------------------------------- semantics


@requires_native
def test_max_pool_ties_go_to_first_cell_and_padded_zero_passes_nothing(algo):
    x = tf.ones((1, 4, 4, 1), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = native.max_pool2d(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "zeros", "channels_last")
    dx = tape.gradient(y, x)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(dx, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    # all-negative input with zero padding: the padded 0 wins and no gradient flows
    x = -tf.ones((1, 2, 2, 1), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = native.max_pool2d(x, (2, 2), (1, 1), ((1, 0), (1, 0)), "zeros", "channels_last")
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0], [0, -1]])
    dx = tape.gradient(y, x)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(dx, [[1, 0], [0, 0]])  # only the unpadded window passes
    # "ignore": the padded cells never win
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = native.max_pool2d(x, (2, 2), (1, 1), ((1, 0), (1, 0)), "ignore", "channels_last")
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -1], [-1, -1]])
    dx = tape.gradient(y, x)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(dx, [[4, 0], [0, 0]])


@requires_native
def test_mean_pool_divisors():
    x = tf.ones((1, 2, 2, 1), tf.float64)
    zeros = native.mean_pool2d(x, (2, 2), (2, 2), ((1, 1), (1, 1)), "zeros", "channels_last")
    ignore = native.mean_pool2d(x, (2, 2), (2, 2), ((1, 1), (1, 1)), "ignore", "channels_last")
    np.testing.assert_array_equal(zeros[0, :, :, 0], [[0.25, 0.25], [0.25, 0.25]])
    np.testing.assert_array_equal(ignore[0, :, :, 0], [[1, 1], [1, 1]])


@requires_native
@pytest.mark.parametrize("bad", [
    dict(strides=[1]), dict(strides=[0, 1]), dict(pads=[0, 0, 0]), dict(pads=[-1, 0, 0, 0]),
    dict(padding_mode="reflect", pads=[4, 0, 0, 0]),
])
def test_corr2d_invalid_attributes_raise(bad):
    module = native.load()
    attrs = dict(strides=[1, 1], pads=[0, 0, 0, 0], padding_mode="zeros")
    attrs.update(bad)
    with pytest.raises(tf.errors.InvalidArgumentError):
        module.keras_cnn_ext_corr2d(tf.ones((1, 4, 4, 1)), tf.ones((3, 3, 1, 1)), **attrs)


@requires_native
def test_shape_functions_in_graph_mode():
    module = native.load()

    @tf.function(input_signature=[tf.TensorSpec((None, 9, 8, 3), tf.float32)])
    def fn(x):
        y = module.keras_cnn_ext_corr2d(x, tf.ones((3, 2, 3, 5)), strides=[2, 1],
                                        pads=[1, 1, 0, 1])
        z = module.keras_cnn_ext_max_pool2d(y, ksize=[2, 2], strides=[2, 2], pads=[1, 0, 0, 0])
        assert y.shape.as_list() == [None, 5, 8, 5], y.shape
        assert z.shape.as_list() == [None, 3, 4, 5], z.shape
        return z

    fn.get_concrete_function()
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        tf.function(lambda x: module.keras_cnn_ext_max_pool2d(
            x, ksize=[2, 2], strides=[1, 1], pads=[2, 0, 0, 0])).get_concrete_function(
                tf.TensorSpec((1, 4, 4, 1)))


@requires_native
def test_savedmodel_with_native_ops(tmp_path):
    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.k = tf.Variable(np.ones((3, 3, 1, 2), np.float32))

        @tf.function(input_signature=[tf.TensorSpec((None, 6, 6, 1), tf.float32)])
        def __call__(self, x):
            y = native.corr2d(x, self.k, (1, 1), ((1, 1), (1, 1)), "replicate",
                              "cross_correlation", "channels_last")
            return native.max_pool2d(y, (2, 2), (2, 2), ((0, 0), (0, 0)), "zeros",
                                     "channels_last")

    m = M()
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1)).astype(np.float32)
    expected = m(x)
    tf.saved_model.save(m, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(loaded(x), expected)


@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="no GPU")
@requires_native
def test_gpu_matches_cpu(rng):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    results = {}
    for dev in ("/CPU:0", "/GPU:0"):
        with tf.device(dev):
            xt, kt = tf.constant(x), tf.constant(k)
            with tf.GradientTape() as tape:
                tape.watch([xt, kt])
                y = native.corr2d(xt, kt, (2, 1), ((1, 2), (1, 1)), "reflect", "convolution",
                                  "channels_last")
                m = native.max_pool2d(xt, (3, 3), (2, 2), ((1, 1), (1, 1)), "zeros",
                                      "channels_last")
                a = native.mean_pool2d(xt, (3, 3), (2, 2), ((1, 1), (1, 1)), "ignore",
                                       "channels_last")
                loss = tf.reduce_sum(y) + tf.reduce_sum(m * m) + tf.reduce_sum(a * a)
            results[dev] = [y, m, a, *tape.gradient(loss, [xt, kt])]
    for c, g in zip(results["/CPU:0"], results["/GPU:0"]):
        np.testing.assert_allclose(c, g, rtol=1e-4, atol=1e-4)


@requires_native
def test_native_matches_composite_float32():
    composite = pytest.importorskip("keras_cnn_ext.ops.composite")
    rng = np.random.default_rng(5)
    for _ in range(60):
        n, h, w, c, f, kh, kw, strides, pads, pmode, mode, fmt = case = _corr_case(rng)
        x = tf.constant(to_format(rng.standard_normal((n, h, w, c)), fmt), tf.float32)
        k = tf.constant(rng.standard_normal((kh, kw, c, f)), tf.float32)
        outs = []
        for impl in (native, composite):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = impl.corr2d(x, k, strides, pads, pmode, mode, fmt)
            outs.append([y, *tape.gradient(y, [x, k], output_gradients=tf.ones_like(y) * 0.5)])
        for a, b in zip(*outs):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=str(case))
    for _ in range(60):
        n, h, w, c, window, strides, pads, pmode, fmt = case = _pool_case(rng)
        x = tf.constant(to_format(rng.standard_normal((n, h, w, c)), fmt), tf.float32)
        for name in ("max_pool2d", "mean_pool2d"):
            outs = []
            for impl in (native, composite):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = getattr(impl, name)(x, window, strides, pads, pmode, fmt)
                outs.append([y, tape.gradient(y, x, output_gradients=tf.ones_like(y) * 0.5)])
            for a, b in zip(*outs):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{name} {case}")


@pytest.mark.skipif(
    not (tf.config.list_physical_devices("GPU") or os.path.exists("/dev/nvidia0")),
    reason="no GPU")
def test_cuda_selftest_runs_on_gpu(tmp_path):
    """Builds and runs custom_ops/tests/gpu_selftest.cu.cc (no TensorFlow needed)."""
    import shutil

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path / "gpu_selftest"
    src = os.path.join(root, native_config.SOURCE_ROOT)
    subprocess.run([nvcc, "-std=c++17", "-O2", "-x", "cu", "-I", src,
                    os.path.join(root, native_config.CUDA_SELFTEST),
                    *[os.path.join(src, f) for f in native_config.CUDA_SOURCES],
                    "-o", str(exe)], check=True, timeout=600)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ----------------------------------------------------------------------------- NaN in max pooling
# The rule (docs/semantics.md): NaN ranks above every number, so a window holding NaN gives NaN;
# the first NaN cell in row-major window order wins and receives the gradient (the first maximal
# cell without NaN). "zeros": padded cells are 0 and take part; "ignore": they never win.

NAN = np.nan


def _max_pool_with_grad(x, window, strides, pads, pmode, fmt, g, dtype):
    xt = tf.constant(to_format(x, fmt), dtype)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = native.max_pool2d(xt, window, strides, pads, pmode, fmt)
    dx = tape.gradient(y, xt, output_gradients=tf.constant(to_format(g, fmt), dtype))
    return (from_format(tf.cast(y, tf.float64), fmt),
            from_format(tf.cast(dx, tf.float64), fmt))


@requires_native
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [tf.float64, tf.float32, tf.float16])
def test_max_pool_nan_wins_and_first_nan_gets_the_gradient(algo, fmt, dtype):
    # Three channels through the same 2x2 / stride-2 windows: with NaN, without NaN, all NaN.
    with_nan = np.array([[1, NAN, 3, 4], [NAN, 2, 0, NAN], [5, 6, NAN, NAN], [7, 8, NAN, 1]])
    without = np.where(np.isnan(with_nan), -10.0, with_nan)
    all_nan = np.full((4, 4), NAN)
    x = np.stack([with_nan, without, all_nan], axis=-1)[None]
    g = np.arange(1.0, 13.0).reshape(1, 2, 2, 3)
    y, dx = _max_pool_with_grad(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "zeros", fmt, g, dtype)
    np.testing.assert_array_equal(y[0, :, :, 0], [[NAN, NAN], [8, NAN]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[2, 4], [8, 1]])
    assert np.isnan(y[0, :, :, 2]).all()
    expected = np.zeros((4, 4, 3))
    for (oh, ow), cells in {(0, 0): [(0, 1), (1, 1), (0, 0)], (0, 1): [(1, 3), (0, 3), (0, 2)],
                            (1, 0): [(3, 1), (3, 1), (2, 0)],
                            (1, 1): [(2, 2), (3, 3), (2, 2)]}.items():
        for c, (h, w) in enumerate(cells):
            expected[h, w, c] = g[0, oh, ow, c]
    np.testing.assert_array_equal(dx[0], expected)


@requires_native
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_max_pool_nan_with_padding_and_overlapping_windows(algo, fmt):
    x = np.array([[-1, NAN, -3], [-4, -5, -6], [NAN, -8, 0]])[None, :, :, None]
    g = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    pads = ((1, 0), (1, 0))
    # "zeros": a padded 0 beats the negative numbers but not NaN, and passes no gradient.
    y, dx = _max_pool_with_grad(x, (2, 2), (1, 1), pads, "zeros", fmt, g, tf.float64)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, NAN, NAN], [0, NAN, NAN], [NAN, NAN, 0]])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 2 + 3 + 5 + 6, 0], [0, 0, 0], [7 + 8, 0, 9]])
    # "ignore": the padded cells never win.
    y, dx = _max_pool_with_grad(x, (2, 2), (1, 1), pads, "ignore", fmt, g, tf.float64)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, NAN, NAN], [-1, NAN, NAN], [NAN, NAN, 0]])
    np.testing.assert_array_equal(dx[0, :, :, 0],
                                  [[1 + 4, 2 + 3 + 5 + 6, 0], [0, 0, 0], [7 + 8, 0, 9]])
    # windows whose real cells are all NaN give NaN in both modes; the first real cell gets dy
    x = np.full((1, 2, 2, 1), NAN)
    g = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    for pmode in ("zeros", "ignore"):
        y, dx = _max_pool_with_grad(x, (2, 2), (1, 1), pads, pmode, fmt, g, tf.float64)
        assert np.isnan(y).all(), pmode
        np.testing.assert_array_equal(dx[0, :, :, 0], [[10, 0], [0, 0]], err_msg=pmode)


@requires_native
def test_max_pool_nan_matches_reference_on_random_geometries(algo):
    rng = np.random.default_rng(2024)
    for i in range(120):
        n, h, w, c, window, strides, pads, pmode, fmt = case = _pool_case(rng)
        x = rng.integers(-2, 3, size=(n, h, w, c)).astype(np.float64)  # ties, zeros
        x[rng.random(x.shape) < (0.15, 0.5, 0.95)[i % 3]] = NAN
        expected = reference.max_pool2d(x, window, strides, pads, padding_mode=pmode)
        g = rng.standard_normal(expected.shape)
        y, dx = _max_pool_with_grad(x, window, strides, pads, pmode, fmt, g, tf.float64)
        np.testing.assert_array_equal(y, expected, err_msg=str(case))
        rdx = reference.max_pool2d_grad(x, g, window, strides, pads, padding_mode=pmode)
        np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12, err_msg=str(case))


# The fast CPU pooling runs the channel axis in vector pieces of 16, 8 or 4 channels, the last
# piece moved back to overlap its predecessor (e.g. 6 channels: [0, 4) and [2, 6)); the random
# geometries above have at most 3 channels. These channel counts reach every piece width, the
# overlapping last piece, and several pieces per window.
PIECE_CHANNELS = [4, 5, 6, 7, 8, 9, 12, 16, 17, 20, 24, 33, 48]


@requires_native
@pytest.mark.parametrize("kind", ["max", "mean"])
def test_pooling_matches_reference_across_channel_counts(algo, kind):
    rng = np.random.default_rng(606 if kind == "max" else 607)
    for i in range(3 * len(PIECE_CHANNELS)):
        c = PIECE_CHANNELS[i % len(PIECE_CHANNELS)]
        n, h, w, _, window, strides, pads, pmode, _ = case = _pool_case(rng)
        x = rng.standard_normal((n, h, w, c))
        if kind == "max" and i % 3 == 0:  # ties, zeros (tie with padded cells), NaN
            x = rng.integers(-1, 2, size=x.shape).astype(np.float64)
            x[rng.random(x.shape) < 0.1] = NAN
        _check_pool_against_reference(kind, x, rng, window, strides, pads, pmode,
                                      "channels_last", (c, case))


@requires_native
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
@pytest.mark.parametrize("kind", ["max", "mean"])
def test_fast_pooling_equals_direct_bitwise(kind, dtype, monkeypatch):
    # Both algorithms rank (max) or sum (mean) a window's cells in the same order in the same
    # accumulation type, so they agree bit for bit, NaN included, in every element type.
    rng = np.random.default_rng(808)
    op = native.max_pool2d if kind == "max" else native.mean_pool2d
    for i in range(2 * len(PIECE_CHANNELS)):
        c = PIECE_CHANNELS[i % len(PIECE_CHANNELS)]
        n, h, w, _, window, strides, pads, pmode, _ = case = _pool_case(rng)
        x = rng.integers(-2, 3, size=(n, h, w, c)) * 0.5  # ties, signed zeros
        if i % 2:
            x = x + rng.standard_normal(x.shape)
        x[rng.random(x.shape) < 0.1] = -0.0
        x[rng.random(x.shape) < 0.05] = NAN
        xt = tf.constant(x, dtype)
        out = []
        for algo_env in (None, "direct"):
            if algo_env:
                monkeypatch.setenv(ALGO_ENV, algo_env)
            else:
                monkeypatch.delenv(ALGO_ENV, raising=False)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = op(xt, window, strides, pads, pmode, "channels_last")
            g = tf.constant(rng.standard_normal(y.shape) if not out else out[0][2], dtype)
            dx = tape.gradient(y, xt, output_gradients=g)
            out.append((tf.bitcast(y, tf.int16 if dtype != tf.float32 else tf.int32).numpy(),
                        tf.bitcast(dx, tf.int16 if dtype != tf.float32 else tf.int32).numpy(), g))
        np.testing.assert_array_equal(out[0][0], out[1][0], err_msg=str((c, case)))
        np.testing.assert_array_equal(out[0][1], out[1][1], err_msg=str((c, case)))
