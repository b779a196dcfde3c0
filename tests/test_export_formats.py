"""Keras's own `model.export` (SavedModel, ONNX, LiteRT) gives portable artifacts while the
compiled library is loaded (issue 21), `kce.export.export_model` and `--format`, and the
export-aware "auto" rule behind them (`kce.ops.dispatch.in_process_trace`).

Every artifact is loaded where keras_cnn_ext cannot be imported — a fresh `python -I` process
running `keras_cnn_ext/export/check.py`, whose import blocker refuses the package — in
TensorFlow, onnxruntime or the TFLite interpreter, and compared with the Keras model.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext import cli, layers, models
from keras_cnn_ext.export import check, savedmodel
from keras_cnn_ext.ops import dispatch

pytestmark = pytest.mark.skipif(not kce.ops.native_available(),
                                reason="needs the compiled library: " + kce.ops.native_status())

NATIVE_PREFIX = check.NATIVE_OP_PREFIX
FILE_NAMES = {"tf_saved_model": "model", "onnx": "model.onnx", "litert": "model.tflite"}
CHECK_FORMATS = {"tf_saved_model": "savedmodel", "onnx": "onnx", "litert": "litert"}


def _graph_ops(concrete):
    graph = concrete.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def _native_ops(ops):
    return sorted(op for op in ops if op.startswith(NATIVE_PREFIX))


def _probe(model, batch=2, seed=0):
    shape = (batch,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


def _load_elsewhere(path, keras_format, probe):
    """The artifact's outputs, computed in a fresh process that cannot import keras_cnn_ext."""
    result = savedmodel._run_fresh_process(str(path), [probe], None, CHECK_FORMATS[keras_format])
    assert not bool(result["package_imported"])
    return result


def _assert_matches(result, expected, atol=1e-5):
    served = result["serve_0"]
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, rtol=0, atol=atol)
    if "signature_0" in result:
        np.testing.assert_allclose(result["signature_0"], expected, rtol=0, atol=atol)


def _predict_graph_ops(model, x):
    """The op types of the function Keras's `predict` traced (the in-process path)."""
    model.predict(x, verbose=0)
    ops = set()
    for concrete in model.predict_function._list_all_concrete_functions():
        ops |= _graph_ops(concrete)
    return ops


@pytest.fixture(scope="module")
def lenet():
    model = models.lenet5()
    x = _probe(model)
    return model, x, np.asarray(model(x))


def test_the_compiled_library_is_really_used_in_this_process(lenet):
    """What makes the export tests meaningful: with the library loaded, LeNet-5's default
    ("auto") layers run the compiled max pool in `predict` and in eager calls."""
    model, x, _ = lenet
    assert kce.ops.native_available(), kce.ops.native_status()
    assert _native_ops(_predict_graph_ops(model, x)) == ["KerasCnnExt>MaxPool2D"]
    assert dispatch.resolve("auto", "max_pool2d", tf.constant(x), channels=6) == "native"


@pytest.mark.parametrize("keras_format", ["tf_saved_model", "onnx", "litert"])
def test_lenet5_model_export_is_portable_in_every_format(lenet, keras_format, tmp_path):
    model, x, expected = lenet
    path = tmp_path / FILE_NAMES[keras_format]
    model.export(str(path), format=keras_format, verbose=False)
    result = _load_elsewhere(path, keras_format, x)
    _assert_matches(result, expected)
    ops = [str(op) for op in result["ops"]]
    assert not any(NATIVE_PREFIX in op or "Custom" in op for op in ops), ops
    if keras_format == "tf_saved_model":
        assert check.nonstock_ops(check.list_ops(path)) == []
        assert "MaxPool" in ops
    elif keras_format == "onnx":
        assert all(":" not in op for op in ops)  # the standard ONNX domain only
        assert "MaxPool" in ops
    else:
        assert "MAX_POOL_2D" in ops


def test_resnet20_model_export_onnx_runs_in_onnxruntime(tmp_path):
    model = models.resnet20()  # CIFAR-10, 32x32x3
    x = _probe(model)
    expected = np.asarray(model(x))
    model.export(str(tmp_path / "resnet20.onnx"), format="onnx", verbose=False)
    result = _load_elsewhere(tmp_path / "resnet20.onnx", "onnx", x)
    _assert_matches(result, expected)
    assert not _native_ops(result["ops"])


@pytest.mark.slow
def test_googlenet_model_export_litert_runs_in_the_tflite_interpreter(tmp_path):
    model = models.googlenet(input_shape=(32, 32, 3), num_classes=10)
    x = _probe(model)
    expected = np.asarray(model(x))
    # the default layers really run the compiled max pool here
    assert dispatch.resolve("auto", "max_pool2d", tf.constant(np.zeros((1, 8, 8, 64),
                                                                        "float32")), 64) == "native"
    model.export(str(tmp_path / "googlenet.tflite"), format="litert", verbose=False)
    result = _load_elsewhere(tmp_path / "googlenet.tflite", "litert", x)
    _assert_matches(result, expected)
    assert "MAX_POOL_2D" in [str(op) for op in result["ops"]]


def _native_model():
    model = keras.Sequential([keras.Input((8, 8, 2)),
                              layers.MaxPooling2D(2, implementation="native", name="pool")])
    model(np.zeros((1, 8, 8, 2), "float32"))
    return model


@pytest.mark.parametrize("keras_format", ["tf_saved_model", "onnx", "litert"])
def test_explicit_native_fails_loudly_at_export_and_writes_nothing(keras_format, tmp_path):
    with pytest.raises(kce.export.NonPortableExportError,
                       match=r"Layer 'pool' has implementation='native'.*implementation_scope"):
        _native_model().export(str(tmp_path / FILE_NAMES[keras_format]), format=keras_format,
                               verbose=False)
    assert os.listdir(tmp_path) == []


def test_explicit_native_exports_portably_inside_the_composite_scope(tmp_path):
    model = _native_model()
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 2)).astype("float32")
    expected = np.asarray(model(x))
    with dispatch.implementation_scope("composite"):
        model.export(str(tmp_path / "m.onnx"), format="onnx", verbose=False)
    _assert_matches(_load_elsewhere(tmp_path / "m.onnx", "onnx", x), expected, atol=0)


def test_a_forced_native_process_fails_loudly_too(monkeypatch, tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 2)), layers.MaxPooling2D(2, name="pool")])
    model(np.zeros((1, 8, 8, 2), "float32"))
    monkeypatch.setenv(dispatch.ENV_VAR, "native")
    with pytest.raises(kce.export.NonPortableExportError, match=dispatch.ENV_VAR):
        model.export(str(tmp_path / "sm"), verbose=False)
    assert os.listdir(tmp_path) == []


def test_auto_uses_native_only_in_traces_that_stay_in_the_process():
    x = tf.zeros((2, 8, 8, 6))

    def pool(t):
        return kce.ops.max_pool2d(t, 2)

    plain = tf.function(pool).get_concrete_function(x)
    assert not _native_ops(_graph_ops(plain))   # a tf.function may be saved: composite

    replica = tf.function(lambda t: tf.distribute.get_strategy().run(pool, args=(t,)))
    assert _native_ops(_graph_ops(replica.get_concrete_function(x)))  # as in model.fit

    def local(t):
        with dispatch.process_local_scope():
            return pool(t)

    assert _native_ops(_graph_ops(tf.function(local).get_concrete_function(x)))
    assert dispatch.in_process_trace()  # eager
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # cross-replica: an export
        assert not _native_ops(_graph_ops(tf.function(pool).get_concrete_function(x)))


def test_fit_still_trains_with_the_compiled_ops():
    model = models.lenet5()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = _probe(model, batch=4)
    model.fit(x, np.arange(4) % 10, epochs=1, verbose=0)
    traced = set()
    for function in (model.train_function,):
        # the step function is a tf.function inside Keras's wrapper: find it in the closure
        cells = [c.cell_contents for c in (function.__closure__ or ())]
        while cells:
            value = cells.pop()
            if isinstance(value, tf.types.experimental.GenericFunction):
                for concrete in value._list_all_concrete_functions():
                    traced |= _graph_ops(concrete)
            elif callable(value) and getattr(value, "__closure__", None):
                cells.extend(c.cell_contents for c in value.__closure__)
    assert {"KerasCnnExt>MaxPool2D", "KerasCnnExt>MaxPool2DGrad"} <= traced


def test_the_check_process_cannot_import_the_package():
    script = (f"import sys; sys.path.insert(0, {os.path.dirname(check.__file__)!r}); "
              "import check; sys.meta_path.insert(0, check._BlockPackage()); "
              "import keras_cnn_ext")
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0 and "blocked in the export check process" in proc.stderr


def test_export_model_writes_verified_files_atomically(tmp_path):
    # ONNX only: the LiteRT file path is the same code (model.export + the fresh check), which
    # the LeNet-5 matrix covers; the converter is the slow part
    fmt, name = "onnx", "m.onnx"
    model = _native_model()  # explicit native: the package's path exports it portably
    report = kce.export.export_model(model, tmp_path / name, format=fmt)
    assert report["verified"] and report["max_abs_diff"] <= 1e-6
    assert report["portable"] and not _native_ops(report["ops"])
    assert os.listdir(tmp_path) == [name]
    with pytest.raises(FileExistsError, match="exists"):
        kce.export.export_model(model, tmp_path / name, format=fmt)
    with pytest.raises(ValueError, match="Invalid value for argument `path`"):
        kce.export.export_model(model, tmp_path / "m.bin", format=fmt)
    assert os.listdir(tmp_path) == [name]


def test_export_model_rejects_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"Expected one of savedmodel, onnx, litert"):
        kce.export.export_model(_native_model(), tmp_path / "m", format="openvino")


def test_cli_export_format_onnx(tmp_path, capsys):
    model_file = tmp_path / "m.keras"
    _native_model().save(model_file)
    assert cli.main(["export", str(model_file), str(tmp_path / "m.onnx"),
                     "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "ONNX model written to" in out and "onnxruntime" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(model_file), str(tmp_path / "x.onnx"), "--format", "tflite"])
    assert exit_info.value.code == 2
    assert "savedmodel" in capsys.readouterr().err
