"""The command line under KERAS_BACKEND=jax and torch: train, resume, evaluate, tune, and the
clear refusals of the TensorFlow-only features (export, tf.distribute).

One child interpreter per backend (tests/_backends_cli_child.py; the backend is read at the
first Keras import), both started at once; each runs every step in-process on 64 examples of
the embedded digits, so the whole module costs about two interpreter start-ups and a few
compilations. This process (TensorFlow) trains the model the children evaluate, and evaluates
theirs: `.keras` files move between backends in both directions.
"""

import importlib.util
import json
import math
import os

import pytest

import proc_helper
from keras_cnn_ext.training.config import RUN_FILES

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_backends_cli_child.py")
BACKENDS = tuple(b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None)
EXAMPLES = 64
# float32 models evaluated on the same 64 examples by two backends
SAME_NUMBERS = dict(rel=1e-4, abs=1e-5)
# what `tune` leaves in its folder on TensorFlow (tests/test_tuning_search.py)
TUNE_FILES = {"search.json", "search", "trials.csv", "scores.png", "best_model.keras",
              "results.json", "best_hyperparameters.json"}

pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither jax nor torch is installed "
                                                     "(requirements-test.txt installs both)")


@pytest.fixture(scope="module")
def tf_run(digits_data_dir, tmp_path_factory):
    """A LeNet-5 trained here on TensorFlow (1 epoch, 64 examples) and its evaluation."""
    from keras_cnn_ext import training

    out = tmp_path_factory.mktemp("tf_run") / "run"
    training.train("lenet5", "digits", data_dir=digits_data_dir, max_examples=EXAMPLES,
                   epochs=1, output=str(out), verbose=0, tensorboard=False)
    path = str(out / "model.keras")
    result = training.evaluate(path, "digits", data_dir=digits_data_dir,
                               max_examples=EXAMPLES)
    return path, result


@pytest.fixture(scope="module")
def reports(tf_run, digits_data_dir, tmp_path_factory):
    """{backend: the child's report}; the children run side by side."""
    procs, works = {}, {}
    for backend in BACKENDS:
        work = works[backend] = tmp_path_factory.mktemp(f"cli_{backend}")
        # one intra-op thread each: two children share the machine, and torch's OpenMP pool
        # spinning on an oversubscribed CPU makes a LeNet-5 step ~50x slower
        procs[backend] = proc_helper.start(
            [CHILD, str(work), digits_data_dir, tf_run[0]], str(work / "child.log"),
            KERAS_BACKEND=backend, OMP_NUM_THREADS=1)
    codes = proc_helper.finish(list(procs.values()), timeout=420)
    found = {}
    for (backend, proc), code in zip(procs.items(), codes):
        assert code == 0, f"{backend} child failed ({code}):\n{proc_helper.tail(proc)}"
        found[backend] = json.loads((works[backend] / "report.json").read_text())
    return found


@pytest.fixture(params=BACKENDS)
def report(request, reports):
    assert reports[request.param]["backend"] == request.param
    return reports[request.param]


def _ok(step):
    assert step["code"] == 0, step["err"][-3000:]
    assert "Traceback" not in step["err"]


def test_train_and_resume_leave_the_run_folder_of_tensorflow(report):
    _ok(report["train"])
    assert set(report["train_files"]) == set(RUN_FILES)
    first = report["train_metrics"]
    assert first["epochs"] == 1 and first["train_examples"] == EXAMPLES
    assert first["resumed"] is False and first["strategy"] == "default"
    assert first["replicas"] == 1
    # an untrained 10-class softmax scores ~ln 10 = 2.30; a few Adam steps stay near it
    assert 1.5 < first["test_loss"] < 3.0 and 0.0 <= first["test_accuracy"] <= 1.0
    _ok(report["resume"])
    resumed = report["resume_metrics"]
    assert resumed["resumed"] is True and resumed["epochs"] == 2
    assert report["state"]["completed_epochs"] == 2
    assert report["state"]["history"]["epoch"] == [1, 2]
    losses = report["state"]["history"]["loss"]
    assert all(math.isfinite(v) for v in losses) and losses[1] < losses[0], losses


def test_evaluate_reproduces_the_run_and_reads_other_backends_models(report, tf_run,
                                                                      digits_data_dir):
    from keras_cnn_ext import training

    own = report["evaluate_own"]
    _ok(own)
    metrics = report["resume_metrics"]
    assert own["result"]["examples"] == EXAMPLES
    assert own["result"]["loss"] == pytest.approx(metrics["test_loss"], **SAME_NUMBERS)
    assert own["result"]["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    # the other backend's .keras file here, on TensorFlow: the same numbers
    here = training.evaluate(os.path.join(metrics["output"], "model.keras"), "digits",
                             data_dir=digits_data_dir, max_examples=EXAMPLES)
    assert here["loss"] == pytest.approx(own["result"]["loss"], **SAME_NUMBERS)
    # and TensorFlow's model there
    theirs = report["evaluate_tf"]
    _ok(theirs)
    assert theirs["result"]["loss"] == pytest.approx(tf_run[1]["loss"], **SAME_NUMBERS)
    assert theirs["result"]["accuracy"] == pytest.approx(tf_run[1]["accuracy"], abs=1e-6)


def test_tune_completes_its_trials(report):
    _ok(report["tune"])
    assert set(report["tune_files"]) == TUNE_FILES
    results = report["tune_results"]
    assert results["completed"] == 2 and results["failed"] == 0
    assert 0.0 < results["best"]["score"] <= 1.0


@pytest.mark.parametrize("step, feature", [
    ("export", "keras-cnn-ext export (--format savedmodel)"),
    ("export_onnx", "keras-cnn-ext export (--format onnx)"),
    ("strategy", "--strategy mirrored (tf.distribute)"),
    ("tune_export", "tune --export (SavedModel export)"),
])
def test_tensorflow_only_commands_exit_2_with_one_line(report, step, feature):
    refused = report["refused"][step]
    assert refused["code"] == 2, refused
    lines = refused["err"].strip().splitlines()
    assert len(lines) == 1, refused["err"]
    assert lines[0].startswith("keras-cnn-ext ") and feature in lines[0]
    assert f"KERAS_BACKEND={report['backend']!r}" in lines[0]
    assert "KERAS_BACKEND=tensorflow" in lines[0]
    assert report["left_behind"] == []  # refused before any folder was made


def test_tensorflow_only_python_api_raises_naming_the_backend(report):
    for name, error in report["python_errors"].items():
        assert error is not None, f"{name} did not raise"
        kind, message, ours = error
        assert ours and kind == "TensorFlowOnlyError", (name, kind, message)
        assert f"KERAS_BACKEND={report['backend']!r}" in message, (name, message)
        assert "KERAS_BACKEND=tensorflow" in message, (name, message)
