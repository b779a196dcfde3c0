"""SavedModel export (`keras_cnn_ext.export`, `keras-cnn-ext export`) and `.keras` round trips.

Loading "without the package" is checked in fresh interpreters that import only TensorFlow;
every child process is bounded by a timeout and killed by its own pid (process group).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext
from keras_cnn_ext import cli, export, layers, models
from keras_cnn_ext.export import check as export_check
from keras_cnn_ext.export import savedmodel
from keras_cnn_ext.ops import dispatch, native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(keras_cnn_ext.__file__)))
# the text TensorFlow raises when a native export is loaded without `kce.register_ops()`
# (documented in docs/export-and-serving.md)
NOT_REGISTERED = "Op type not registered 'KerasCnnExt>MaxPool2D' in binary running on"
CHILD_TIMEOUT_S = 300
requires_native = pytest.mark.skipif(not native.available(), reason=f"{native.status()}")


# Children start in ROOT: `python -c` puts the working directory first on `sys.path`, and from
# the checkout the source tree would shadow the installed package (and its compiled library).
CHILD_CWD = ROOT


def _child_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(dispatch.ENV_VAR, None)
    return env


def _run_child(code, *args):
    """Runs `code` in a fresh interpreter (its own process group, killed on timeout)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_child_env(),
                            cwd=CHILD_CWD, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return out


def _tiny_model(implementation="auto"):
    """A small model with both textbook layers (fast to trace, write and reload)."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.CrossCorrelation2D(4, 3, padding=1, activation="relu",
                                  implementation=implementation, name="c1")(inputs)
    x = layers.MaxPooling2D(2, implementation=implementation, name="s2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="tiny")


def _siblings(path):
    parent, name = os.path.split(str(path))
    return sorted(e for e in os.listdir(parent) if e.startswith(f".{name}"))


# ----------------------------------------------------------------------------- a ResNet


# One child process checks both exports: first with TensorFlow alone (the portable export must
# load and serve, the native one must fail with the documented message), then after
# `import keras_cnn_ext; kce.register_ops()` (the native export loads) plus a TFSMLayer reload.
RESNET_CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf
portable_dir, native_dir, probe_file, out_file = sys.argv[1:]
x = np.load(probe_file)
result = {}
portable = tf.saved_model.load(portable_dir)  # keep a reference: the functions need it
result["portable"] = np.asarray(portable.serve(x)).tolist()
try:
    tf.saved_model.load(native_dir)
    result["error"] = None
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"
result["package_before_register"] = "keras_cnn_ext" in sys.modules
import keras, keras_cnn_ext as kce
kce.register_ops()
native = tf.saved_model.load(native_dir)
result["native"] = np.asarray(native.serve(x)).tolist()
result["tfsm_layer"] = np.asarray(keras.layers.TFSMLayer(portable_dir)(x)).tolist()
json.dump(result, open(out_file, "w"))
"""


@pytest.fixture(scope="module")
def resnet_exports(tmp_path_factory):
    if not native.available():
        pytest.skip(native.status())
    tmp = tmp_path_factory.mktemp("resnet_export")
    model = models.resnet18(input_shape=(32, 32, 3), num_classes=3, classifier_activation=None)
    x = np.random.default_rng(7).uniform(size=(3, 32, 32, 3)).astype("float32")
    expected = np.asarray(model(x))
    portable = export.export_savedmodel(model, tmp / "portable")
    # (the fresh-process check of a native export is test_native_export_verifies_with_the_library)
    native_report = export.export_savedmodel(model, tmp / "native", portable=False, verify=False)
    np.save(tmp / "probe.npy", x)
    _run_child(RESNET_CHILD, str(tmp / "portable"), str(tmp / "native"),
               str(tmp / "probe.npy"), str(tmp / "child.json"))
    with open(tmp / "child.json", encoding="utf-8") as f:
        child = json.load(f)
    return dict(model=model, x=x, expected=expected, portable=portable,
                native=native_report, child=child, tmp=tmp)


@requires_native
def test_resnet_auto_dispatch_uses_the_native_max_pool():
    """The premise: on CPU, "auto" picks the compiled max pool for a ResNet's 64 channels."""
    x = tf.zeros((1, 16, 16, 64))
    assert dispatch.resolve("auto", "max_pool2d", x, 64) == "native"
    with dispatch.implementation_scope("composite"):
        assert dispatch.resolve("auto", "max_pool2d", x, 64) == "composite"
        assert dispatch.resolve("native", "max_pool2d", x, 64) == "composite"
        assert dispatch.effective("native") == "composite"
    assert dispatch.resolve("auto", "max_pool2d", x, 64) == "native"


def test_implementation_scope_rejects_unknown_names():
    with pytest.raises(ValueError, match="Received: implementation='auto'"):
        with dispatch.implementation_scope("auto"):
            pass


def test_portable_resnet_export_loads_and_matches_without_the_package(resnet_exports):
    r = resnet_exports
    report = r["portable"]
    assert report["portable"] and report["native_ops"] == []
    assert not export_check.nonstock_ops(report["ops"])
    # the op list covers the saved gradient functions of the composite ops, not just the
    # forward graph: MaxPoolGrad / Conv2DBackpropInput appear only there
    assert {"MaxPool", "Conv2D", "MaxPoolGrad", "Conv2DBackpropInput"} <= set(report["ops"])
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= 1e-4
    child = r["child"]
    assert not child["package_before_register"]
    np.testing.assert_allclose(np.array(child["portable"]), r["expected"], rtol=1e-4, atol=1e-5)
    # the report travels with the export
    with open(os.path.join(report["path"], export.REPORT_PATH), encoding="utf-8") as f:
        assert json.load(f)["ops"] == report["ops"]


def test_native_export_needs_register_ops(resnet_exports):
    r = resnet_exports
    report = r["native"]
    assert not report["portable"] and report["native_ops"] == ["KerasCnnExt>MaxPool2D"]
    assert "MaxPool" not in report["ops"]
    assert r["child"]["error"].startswith("RuntimeError: " + NOT_REGISTERED)
    np.testing.assert_allclose(np.array(r["child"]["native"]), r["expected"], rtol=1e-4,
                               atol=1e-5)


@requires_native
def test_native_export_verifies_with_the_library(tmp_path):
    report = export.export_savedmodel(_tiny_model("native"), tmp_path / "sm", portable=False)
    assert report["native_ops"] == ["KerasCnnExt>Corr2D", "KerasCnnExt>MaxPool2D"]
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= 1e-4


def test_tfsm_layer_reloads_the_export(resnet_exports):
    r = resnet_exports
    np.testing.assert_allclose(np.array(r["child"]["tfsm_layer"]), r["expected"], rtol=1e-4,
                               atol=1e-5)
    # and in this process, as a layer of a new Keras model
    inputs = keras.Input((32, 32, 3))
    wrapped = keras.Model(inputs, keras.layers.TFSMLayer(r["portable"]["path"])(inputs))
    np.testing.assert_allclose(np.asarray(wrapped(r["x"])), r["expected"], rtol=1e-4,
                               atol=1e-5)
    assert len(wrapped.weights) == len(r["model"].weights)


def test_each_weight_is_stored_once(resnet_exports):
    """keras-team/keras#23553 (every weight written twice by ExportArchive) is worked around."""
    stored = tf.train.list_variables(os.path.join(resnet_exports["portable"]["path"],
                                                  "variables", "variables"))
    count = sum(int(np.prod(shape)) for name, shape in stored if name.endswith("VALUE"))
    assert count == resnet_exports["model"].count_params()


# ----------------------------------------------------------------------------- op checks


def test_portable_export_runs_every_implementation_as_composite(tmp_path):
    """A layer pinned to 'reference' (NumPy, tf.numpy_function) exports portably..."""
    model = _tiny_model("reference")
    report = export.export_savedmodel(model, tmp_path / "sm", verify=False)
    assert report["portable"]
    assert not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & set(report["ops"])
    assert export_check.list_ops(tmp_path / "sm") == report["ops"]


def test_non_portable_export_refuses_python_callbacks(tmp_path):
    """... but kept as is (portable=False), it would need the exporting Python process."""
    with pytest.raises(export.ExportVerificationError, match="PyFuncStateless"):
        export.export_savedmodel(_tiny_model("reference"), tmp_path / "sm", portable=False,
                                 verify=False)
    assert not os.path.exists(tmp_path / "sm") and _siblings(tmp_path / "sm") == []


def test_nonstock_ops():
    assert export_check.nonstock_ops(["Conv2D", "MaxPool", "IdentityN"]) == []
    assert export_check.nonstock_ops(
        ["Conv2D", "KerasCnnExt>MaxPool2D", "EagerPyFunc", "NoSuchOp"]) == [
        "EagerPyFunc", "KerasCnnExt>MaxPool2D", "NoSuchOp"]


def test_input_signature_and_probe_arguments(tmp_path):
    model = _tiny_model()
    signature = [tf.TensorSpec((1, 8, 8, 3), tf.float32)]
    report = export.export_savedmodel(model, tmp_path / "fixed", input_signature=signature,
                                      verify=False)
    loaded = tf.saved_model.load(report["path"])
    (spec,) = loaded.signatures["serving_default"].structured_input_signature[1].values()
    assert tuple(spec.shape) == (1, 8, 8, 3)
    x = np.random.default_rng(3).uniform(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded.serve(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="Expected 1 arrays .one per input.. Received: probe "
                                         "with 2 arrays"):
        export.export_savedmodel(model, tmp_path / "a", probe=[x, x])
    dynamic = [tf.TensorSpec((None, None, None, 3), tf.float32)]
    with pytest.raises(ValueError, match="unknown non-batch dimensions. Received: probe=None"):
        export.export_savedmodel(model, tmp_path / "b", input_signature=dynamic)
    with pytest.raises(TypeError, match="Received: portable='yes'"):
        export.export_savedmodel(model, tmp_path / "c", portable="yes")
    with pytest.raises(TypeError, match="Received: model of type int"):
        export.export_savedmodel(3, tmp_path / "d")
    assert sorted(os.listdir(tmp_path)) == ["fixed"]


# ----------------------------------------------------------------------------- safety


def test_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "sm"
    target.mkdir()
    keep = target / "keep.txt"
    keep.write_text("precious")
    before = keep.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="non-empty directory") as info:
        export.export_savedmodel(_tiny_model(), target)
    assert str(target) in str(info.value)
    assert os.listdir(target) == ["keep.txt"] and keep.read_text() == "precious"
    assert keep.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="a file of that name exists"):
        export.export_savedmodel(_tiny_model(), keep)
    assert _siblings(target) == [] and _siblings(keep) == []


def test_exports_into_an_empty_directory(tmp_path):
    (tmp_path / "sm").mkdir()
    report = export.export_savedmodel(_tiny_model(), tmp_path / "sm", verify=False)
    assert os.path.isfile(tmp_path / "sm" / "saved_model.pb")
    assert report["max_abs_diff"] is None and report["size_bytes"] > 0


def test_a_failure_leaves_no_partial_directory(tmp_path, monkeypatch):
    def broken(path):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))  # the write had happened
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export_check, "list_ops", broken)
    with pytest.raises(OSError, match="simulated"):
        export.export_savedmodel(_tiny_model(), tmp_path / "sm", verify=False)
    assert os.listdir(tmp_path) == []


def test_a_verification_mismatch_raises_and_leaves_nothing(tmp_path, monkeypatch):
    def off_by_a_bit(path, probe, library, artifact_format="savedmodel"):
        # what the fresh process would report, computed here (the real child is exercised by
        # the tests above), with the served output changed
        served, signed, ops, nonstock = export_check.serve(path, probe, library)
        result = {f"serve_{i}": a + 0.01 for i, a in enumerate(served)}
        result.update({f"signature_{i}": a for i, a in enumerate(signed)})
        return dict(result, ops=np.array(ops), nonstock=np.array(nonstock, dtype=str),
                    package_imported=False)

    monkeypatch.setattr(savedmodel, "_run_fresh_process", off_by_a_bit)
    with pytest.raises(export.ExportVerificationError, match=r"max \|difference\| 0\.01"):
        export.export_savedmodel(_tiny_model(), tmp_path / "sm")
    assert os.listdir(tmp_path) == []


KILLED_CHILD = r"""
import sys
from keras_cnn_ext.cli import main
sys.exit(main(["export", sys.argv[1], sys.argv[2]]))
"""


def test_a_killed_export_leaves_no_partial_directory_and_is_cleaned_up(tmp_path, capsys):
    """A real SIGKILL during the export (while the fresh-process check runs), then the CLI."""
    model_file = str(tmp_path / "tiny.keras")
    _tiny_model().save(model_file)
    target = tmp_path / "out" / "1"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, model_file, str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_child_env(), cwd=CHILD_CWD, start_new_session=True)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not (target.parent.exists() and _siblings(target)):
            assert proc.poll() is None, "the export finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not target.exists()
    assert len(_siblings(target)) == 1  # the hidden partial sibling of the killed export
    # the next export to the same place succeeds and removes the dead export's leftovers
    assert cli.main(["export", model_file, str(target), "--no-verify"]) == 0
    assert "SavedModel written to" in capsys.readouterr().out
    assert os.path.isfile(target / "saved_model.pb") and _siblings(target) == []


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv,message", [
    (["export"], "the following arguments are required: MODEL.keras"),
    (["export", "{model}"], "the export target is missing: give PATH or --output PATH"),
    (["export", "{model}", "out.onnx", "--format", "tflite"], "invalid choice: 'tflite'"),
    (["export", "{model}", "out.bin", "--format", "onnx"], "expected a file ending in .onnx"),
    (["export", "{model}", "out.tflite", "--format", "litert", "--native"],
     "--native applies to --format savedmodel only"),
    (["export", "model.h5", "out"], "expected a file ending in .keras"),
    (["export", "missing.keras", "out"], "(no such file)"),
    (["export", "{model}", "{full}"], "a non-empty directory; choose a new or empty one"),
    (["export", "{model}", "out", "--portable"], "unrecognized arguments: --portable"),
])
def test_cli_usage_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.keras").write_bytes(b"")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    argv = [a.format(model="tiny.keras", full="full") for a in argv]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--native" in out and "--no-verify" in out and "examples:" in out


# ----------------------------------------------------------------------------- .keras


ROUND_TRIP_CHILD = r"""
import hashlib, sys
import numpy as np
import keras
import keras_cnn_ext  # registers the layers; nothing else carries over from the parent
directory, names = sys.argv[1], sys.argv[2].split(",")
data = np.load(f"{directory}/expected.npz")
for name in names:
    model = keras.saving.load_model(f"{directory}/{name}.keras")
    assert model.name == name, (model.name, name)
    digests = [hashlib.sha256(w.tobytes()).hexdigest() + str(w.shape)
               for w in model.get_weights()]
    assert digests == data[f"{name}/weights"].tolist(), name
    got = np.asarray(model.predict_on_batch(data[f"{name}/x"]))
    np.testing.assert_allclose(got, data[f"{name}/y"], rtol=1e-5, atol=1e-6, err_msg=name)
    print(name, "ok", flush=True)
"""


# One model per family and block type (LRN, Inception, basic and bottleneck residual blocks,
# CIFAR shortcuts): what a fresh interpreter must deserialize is the set of layer classes, and
# the other registered models repeat these at other depths and widths (checked below; their
# weights and configs round-trip in process in test_models' matrix).
CORE_ROUND_TRIP = ("lenet5", "vgg11_lrn", "googlenet", "resnet18", "resnet50", "resnet20")
# VGG's 19M-parameter dense head (stock Dense layers, as in LeNet-5) left out: the round trip
# is about the LRN and textbook convolutions
CORE_KWARGS = {"vgg11_lrn": dict(include_top=False, pooling="avg")}


def _layer_classes(model):
    """Every layer class of `model`, the blocks' sub-layers included."""
    found, stack = set(), list(model.layers)
    while stack:
        layer = stack.pop()
        if type(layer) not in found:
            found.add(type(layer))
            stack.extend(layer._flatten_layers(include_self=False, recursive=False))
    return found


def _build(name, kwargs=None):
    from test_models import _tiny_shape  # the model matrix's tiny inputs

    shape = _tiny_shape(name)
    return shape, models.get_model(name, input_shape=shape, num_classes=3, **(kwargs or {}))


def test_the_round_trip_models_hold_every_layer_class_of_every_model():
    covered = set()
    for name in CORE_ROUND_TRIP:
        covered |= _layer_classes(_build(name, CORE_KWARGS.get(name))[1])
        keras.backend.clear_session()
    assert {c.__name__ for c in covered} >= {"CrossCorrelation2D", "MaxPooling2D",
                                             "LocalResponseNormalization", "InceptionModule",
                                             "ResidualBlock", "BottleneckBlock", "Dense"}
    for name in sorted(set(models.list_models()) - set(CORE_ROUND_TRIP)):
        missing = _layer_classes(_build(name)[1]) - covered
        keras.backend.clear_session()
        assert not missing, f"{name} uses {missing}: add it to CORE_ROUND_TRIP"


def test_keras_round_trip_in_a_fresh_process(tmp_path):
    """The models saved here load in a new interpreter with the same weights and outputs (the
    in-process round trip of every model is in test_models)."""
    arrays = {}
    for name in CORE_ROUND_TRIP:
        shape, model = _build(name, CORE_KWARGS.get(name))
        x = np.random.default_rng(0).uniform(size=(2,) + shape).astype("float32")
        arrays[f"{name}/x"] = x
        arrays[f"{name}/y"] = np.asarray(model.predict_on_batch(x))
        arrays[f"{name}/weights"] = np.array(
            [hashlib.sha256(w.tobytes()).hexdigest() + str(w.shape)
             for w in model.get_weights()])
        model.save(tmp_path / f"{name}.keras")
        keras.backend.clear_session()
    np.savez(tmp_path / "expected.npz", **arrays)
    out = _run_child(ROUND_TRIP_CHILD, str(tmp_path), ",".join(CORE_ROUND_TRIP))
    assert out.split() == [w for name in CORE_ROUND_TRIP for w in (name, "ok")]


# ----------------------------------------------------------------------------- example


def test_export_and_serve_example_smoke(tmp_path, capsys):
    """examples/export_and_serve.py: train briefly, export, serve from a process without the
    package; the served predictions equal the Keras model's."""
    import runpy

    example = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "export_and_serve.py"))
    out = tmp_path / "run"
    argv = ["--smoke", "--output", str(out), "--data-dir", str(tmp_path / "tfds")]
    assert example["main"](argv) == 0
    printed = capsys.readouterr().out
    assert "all stock TensorFlow: True" in printed
    import re

    diff = re.search(r"max \|difference\| of the probabilities (\S+)", printed).group(1)
    assert float(diff) <= 1e-6
    assert os.path.isfile(out / "savedmodel" / "1" / "saved_model.pb")
    served = np.load(out / "served_probabilities.npy")
    assert served.shape == (359, 10)  # the whole digits test split
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)
    assert example["main"](argv) == 2  # a second run refuses the non-empty output folder
