"""ONNX and LiteRT export through Keras's own `model.export`, checked in a fresh process.

`export_model(model, path, format=...)` is the one entry point for the three formats:

- `"savedmodel"`: `export_savedmodel` (a directory; see `keras_cnn_ext.export.savedmodel`);
- `"onnx"`: `model.export(path, format="onnx")` (Keras runs tf2onnx), one `.onnx` file;
- `"litert"`: `model.export(path, format="litert")` (the TFLite converter), one `.tflite` file.

Every layer is traced with its composite implementation (`implementation_scope("composite")`:
stock TensorFlow ops, the same numbers as the compiled ops), so explicit
`implementation="native"` layers export too. The file is written under a hidden temporary
name beside `path`, verified, and only then renamed to `path`: a failure, a failed verification
or a kill never leaves a half-written file there. Verification (`verify=True`) runs the file in
a fresh `python -I` process that cannot import keras_cnn_ext — in onnxruntime or the TFLite
interpreter — and compares its outputs with the Keras model's on a probe batch. Where the
runtime is not installed the report says so (`verified: False`, `verify_note`) instead of
failing; the export itself needs tf2onnx for ONNX.

Example:

>>> import keras_cnn_ext as kce
>>> model = kce.models.lenet5()
>>> report = kce.export.export_model(model, "/tmp/lenet5.onnx", format="onnx")  # doctest: +SKIP
>>> report["max_abs_diff"] < 1e-5  # doctest: +SKIP
True
"""

import contextlib
import importlib.util
import io
import os
import time
import uuid


from keras_cnn_ext.export import check, savedmodel

FORMATS = ("savedmodel", "onnx", "litert")
# the file name ending each single-file format needs (Keras refuses a LiteRT path without it)
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
# Keras's names for the formats
KERAS_FORMATS = {"savedmodel": "tf_saved_model", "onnx": "onnx", "litert": "litert"}


def _check_file_target(path):
    if os.path.isdir(path):
        raise FileExistsError(
            f"Refusing to export to {path!r}: it is a directory (an ONNX or LiteRT export is "
            "one file; nothing was written).")
    if os.path.lexists(path):
        raise FileExistsError(
            f"Refusing to export to {path!r}: a file of that name exists (nothing was written).")


def _keras_export(model, partial, artifact_format, input_signature):
    """`model.export` with every layer's composite ops and Keras's console output captured."""
    from keras_cnn_ext.ops import dispatch

    if artifact_format == "onnx" and importlib.util.find_spec("tf2onnx") is None:
        raise ImportError(
            "ONNX export needs tf2onnx, which is not installed: pip install "
            "'keras_cnn_ext[export]' (tf2onnx and onnxruntime).")
    # tf2onnx and the TFLite converter print to stdout/stderr; keep the command line readable
    sink = io.StringIO()
    with dispatch.implementation_scope("composite"), contextlib.redirect_stdout(sink):
        model.export(partial, format=KERAS_FORMATS[artifact_format], verbose=False,
                     input_signature=input_signature)
    if not os.path.isfile(partial):
        raise savedmodel.ExportVerificationError(
            f"Keras reported no error, but wrote no {check.FORMAT_NAMES[artifact_format]} at "
            f"{partial!r}.")


def _publish_file(partial, path):
    """Gives the finished file its name without replacing a file that appeared meanwhile."""
    try:
        os.link(partial, path)  # fails if `path` exists: no silent overwrite
    except FileExistsError:
        raise FileExistsError(
            f"Refusing to export to {path!r}: a file of that name was created during the "
            "export (nothing was written there).") from None
    except OSError:  # a file system without hard links: rename (checked just above)
        _check_file_target(path)
        os.rename(partial, path)
        return
    os.remove(partial)


def export_model(model, path, format="savedmodel", *, input_signature=None, verify=True,
                 probe=None):
    """Writes `model` as a SavedModel, an ONNX model or a LiteRT model, verified.

    Args:
        model: a built `keras.Model` (or the path of a `.keras` file).
        path: the directory (`"savedmodel"`) or file (`.onnx`, `.tflite`) to create; it must
            not exist (a SavedModel may also go into an empty directory).
        format: `"savedmodel"`, `"onnx"` or `"litert"`.
        input_signature: the inputs: a structure of `tf.TensorSpec` / `keras.InputSpec`
            (default: the model's inputs, batch dimension free).
        verify: run the artifact in a fresh process without keras_cnn_ext and compare.
        probe: the inputs of the comparison, one array per input (default: two uniform
            [0, 1) samples).

    Returns:
        A dict: `path`, `format`, `portable` (True: only stock ops), `ops` (the artifact's op
        types, where its runtime lists them), `max_abs_diff` (None unless verified),
        `verified`, `verify_note` (why not, if not), `probe_shape`, `size_bytes`,
        `export_seconds`, `verify_seconds`. A SavedModel's report is also saved inside it.

    Raises:
        FileExistsError: `path` exists (or is a non-empty directory).
        ExportVerificationError: the artifact does not load or does not reproduce the model's
            outputs (nothing is left at `path`).
        ImportError: ONNX export without tf2onnx.
        keras_cnn_ext.TensorFlowOnlyError: Keras runs on another backend (JAX, PyTorch).
    """
    import tensorflow as tf

    if format not in FORMATS:
        raise ValueError(
            f"Invalid value for argument `format`. Expected one of {', '.join(FORMATS)}. "
            f"Received: format={format!r}")
    savedmodel.require_backend(f"Export to {format!r}")
    if format == "savedmodel":
        report = savedmodel.export_savedmodel(model, path, input_signature=input_signature,
                                              verify=verify, probe=probe)
        return dict(report, format=format, verified=verify, verify_note=None)
    model = savedmodel._as_model(model)
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(SUFFIXES[format]):
        raise ValueError(
            f"Invalid value for argument `path`. Expected a file name ending in "
            f"{SUFFIXES[format]!r} for format={format!r}. Received: path={path!r}")
    _check_file_target(path)
    signature, probe = savedmodel._signature_and_probe(model, input_signature, probe, verify)

    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    savedmodel._remove_stale_partials(parent, name)
    partial = os.path.join(
        parent, f".{name}{savedmodel._PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"
                f"{SUFFIXES[format]}")
    try:
        start = time.perf_counter()
        _keras_export(model, partial, format, signature)
        report = {
            "path": path, "format": format, "portable": True, "ops": [],
            "max_abs_diff": None, "verified": False, "verify_note": None,
            "probe_shape": None if probe is None else [list(a.shape) for a in probe],
            "size_bytes": os.path.getsize(partial),
            "export_seconds": round(time.perf_counter() - start, 3), "verify_seconds": None,
            "tensorflow_version": tf.__version__,
        }
        if verify and check.runtime_missing(format):
            report["verify_note"] = (
                f"not verified: {check.RUNTIMES[format]} is not installed (pip install "
                "'keras_cnn_ext[export]')")
        elif verify:
            start = time.perf_counter()
            result = savedmodel._run_fresh_process(partial, probe, None, format)
            report["ops"] = [str(op) for op in result["ops"]]
            report["max_abs_diff"] = savedmodel._compare(
                model, signature, probe, result, kinds=("serve",),
                artifact=check.FORMAT_NAMES[format])
            report["verified"] = True
            report["verify_seconds"] = round(time.perf_counter() - start, 3)
        _publish_file(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    return report
