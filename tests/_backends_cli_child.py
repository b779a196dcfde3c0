"""Child of tests/test_backends_cli.py: the command line under one Keras backend.

Usage: python _backends_cli_child.py WORKDIR DATA_DIR TF_MODEL.keras  (KERAS_BACKEND set)

Runs, in this one process (the imports and the backend start once): a tiny `train` (1 epoch,
64 examples), `train --resume` to 2 epochs, `evaluate` of its own model and of a model that
TensorFlow trained, a 2-trial `tune`, and the TensorFlow-only features (export, --strategy,
tune --export) from the command line and the Python API. Writes what it saw to
WORKDIR/report.json; the test asserts on it.
"""

import contextlib
import io
import json
import os
import sys
import time

STARTED = time.perf_counter()
import keras  # noqa: E402

WORKDIR, DATA_DIR, TF_MODEL = sys.argv[1:4]
TINY = ["--dataset", "digits", "--data-dir", DATA_DIR, "--max-examples", "64"]


def cli(*argv):
    """(exit code, stdout, stderr) of `keras-cnn-ext argv...` run in this process."""
    from keras_cnn_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's exit(2)
            code = exc.code
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(),
            "seconds": time.perf_counter() - started}


def read(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return json.load(f)


def evaluate(path):
    step = cli("evaluate", path, *TINY, "--json")
    return dict(step, result=json.loads(step["out"]) if step["code"] == 0 else None)


def python_errors(model_path):
    """{call: (exception type, message)} of the TensorFlow-only Python API."""
    import keras_cnn_ext as kce

    calls = {
        "export_savedmodel": lambda: kce.export.export_savedmodel(
            model_path, os.path.join(WORKDIR, "sm")),
        "export_model": lambda: kce.export.export_model(
            model_path, os.path.join(WORKDIR, "m.onnx"), format="onnx"),
        "create_strategy": lambda: kce.distribute.create_strategy("mirrored"),
        "train_strategy": lambda: kce.training.train(
            "lenet5", "digits", data_dir=DATA_DIR, max_examples=8, epochs=1,
            strategy="mirrored", output=os.path.join(WORKDIR, "strategy"), verbose=0),
    }
    seen = {}
    for name, call in calls.items():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            seen[name] = [type(exc).__name__, str(exc),
                          isinstance(exc, kce.TensorFlowOnlyError)]
        else:
            seen[name] = None
    return seen


def main():
    run = os.path.join(WORKDIR, "run")
    report = {"backend": keras.backend.backend(), "import_seconds": time.perf_counter() - STARTED}
    report["train"] = cli("train", "lenet5", *TINY, "--epochs", "1", "--output", run,
                          "--verbose", "0")
    report["train_files"] = sorted(os.listdir(run))
    report["train_metrics"] = read(run, "metrics.json")
    report["resume"] = cli("train", "lenet5", "--epochs", "2", "--output", run, "--resume",
                           "--verbose", "0")
    report["resume_metrics"] = read(run, "metrics.json")
    report["state"] = read(run, "checkpoints", "state.json")
    report["evaluate_own"] = evaluate(os.path.join(run, "model.keras"))
    report["evaluate_tf"] = evaluate(TF_MODEL)
    tune = os.path.join(WORKDIR, "tune")
    report["tune"] = cli("tune", "lenet5", "--dataset", "digits", "--data-dir", DATA_DIR,
                         "--max-trials", "2", "--epochs", "1", "--image-size", "16",
                         "--output", tune, "--quiet")
    report["tune_files"] = sorted(os.listdir(tune)) if os.path.isdir(tune) else []
    report["tune_results"] = (read(tune, "results.json")
                              if os.path.exists(os.path.join(tune, "results.json")) else None)
    model = os.path.join(run, "model.keras")
    report["refused"] = {
        "export": cli("export", model, os.path.join(WORKDIR, "exported")),
        "export_onnx": cli("export", model, os.path.join(WORKDIR, "m.onnx"), "--format",
                           "onnx"),
        "strategy": cli("train", "lenet5", *TINY, "--strategy", "mirrored", "--output",
                        os.path.join(WORKDIR, "mirrored")),
        "tune_export": cli("tune", "lenet5", "--dataset", "digits", "--data-dir", DATA_DIR,
                           "--export", "--output", os.path.join(WORKDIR, "tune_export")),
    }
    report["python_errors"] = python_errors(model)
    report["left_behind"] = sorted(
        name for name in ("exported", "m.onnx", "mirrored", "tune_export", "sm", "strategy")
        if os.path.exists(os.path.join(WORKDIR, name)))
    with open(os.path.join(WORKDIR, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
