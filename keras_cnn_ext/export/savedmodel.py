"""SavedModel export: portable by default, native on request, verified every time.

`export_savedmodel(model, path)` writes a TensorFlow SavedModel with a `serve` endpoint and a
`serving_default` signature (what TF Serving, `tf.saved_model.load` and
`keras.layers.TFSMLayer` use), built on Keras' `ExportArchive`.

- `portable=True` (default) traces every layer with its composite implementation (stock
  TensorFlow ops, the same numbers as the compiled ops), then lists every op of the written
  graph — graph nodes, every library function including the saved gradient functions — and
  refuses the export if one is not a stock TensorFlow op. The result loads anywhere TensorFlow
  does, without keras_cnn_ext.
- `portable=False` keeps the compiled ops "auto" chooses in this process (or a layer asked
  for): the export runs inside `kce.ops.dispatch.native_export_scope()`, without which "auto"
  never puts compiled ops into an export (docs/export.md). Loading such an export needs the
  library: `import keras_cnn_ext as kce; kce.register_ops()` before
  `tf.saved_model.load`. Without it, TensorFlow fails with
  `Op type not registered 'KerasCnnExt>MaxPool2D' in binary running on <host>. ...`.
- `verify=True` (default) reloads the export in a fresh Python process that cannot import
  keras_cnn_ext (`keras_cnn_ext/export/check.py`, run in isolated mode with an import blocker), runs `serve` and
  `serving_default` on a probe batch and compares them with the Keras model; a difference beyond
  the tolerance raises `ExportVerificationError` and nothing is left on disk.
- Safety: the target must not exist or be an empty directory (else `FileExistsError`, nothing
  touched); everything is written into a hidden temporary sibling that is renamed into place
  only after the checks pass, so a failure or a kill never leaves a half-written export under
  `path`. Siblings left behind by a killed export are removed by the next export to that path.

Example:

>>> import keras_cnn_ext as kce
>>> model = kce.models.lenet5()
>>> report = kce.export.export_savedmodel(model, "/tmp/lenet5_savedmodel")  # doctest: +SKIP
>>> report["max_abs_diff"] < 1e-5  # doctest: +SKIP
True
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np

from keras_cnn_ext._backend import require_tensorflow
from keras_cnn_ext.export import check as export_check
from keras_cnn_ext._process import pid_alive

ENDPOINT = "serve"
# How long the fresh verification process may take (loading a large model on a busy machine)
VERIFY_TIMEOUT_S = 600
# the report written beside the model; `assets.extra` is the SavedModel folder reserved for
# files that higher-level tools add and TensorFlow ignores
REPORT_PATH = os.path.join("assets.extra", "keras_cnn_ext_export.json")
_PARTIAL = ".partial-"


class ExportVerificationError(RuntimeError):
    """The reloaded SavedModel does not compute what the Keras model computes (or the export
    contains ops it must not contain)."""


# ----------------------------------------------------------------------------- paths


def _check_target(path):
    """Refuses an existing file or non-empty directory at `path`."""
    if os.path.isdir(path):
        if os.listdir(path):
            raise FileExistsError(
                f"Refusing to export into the non-empty directory {path!r}: export to a new "
                "or empty directory (nothing was written)."
            )
    elif os.path.lexists(path):
        raise FileExistsError(
            f"Refusing to export to {path!r}: a file of that name exists (nothing was written)."
        )


def _remove_stale_partials(parent, name):
    """Deletes temporary siblings of earlier exports to `name` whose process is gone."""
    prefix = f".{name}{_PARTIAL}"
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale = os.path.join(parent, entry)
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:  # a single-file export (ONNX, LiteRT)
                with contextlib.suppress(OSError):
                    os.remove(stale)


def _directory_size(path):
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


# ----------------------------------------------------------------------------- signature


def _tensor_spec(spec, name):
    import tensorflow as tf

    if isinstance(spec, tf.TensorSpec):
        return spec if spec.name else tf.TensorSpec(spec.shape, spec.dtype, name=name)
    shape = getattr(spec, "shape", None)
    dtype = getattr(spec, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            "Invalid value for argument `input_signature`. Expected a structure of "
            "`tf.TensorSpec`, `keras.InputSpec` or `keras.KerasTensor`. Received: an element "
            f"{spec!r}"
        )
    return tf.TensorSpec(tuple(shape), tf.as_dtype(dtype or "float32"), name=name)


def _input_signature(model, input_signature):
    """A list of positional argument specs for `model.__call__`, every spec named."""
    import tensorflow as tf

    if input_signature is None:
        if not model.built or not getattr(model, "inputs", None):
            raise ValueError(
                "Invalid value for argument `model`. Expected a built model with known inputs "
                "(a functional or Sequential model), or pass `input_signature`. Received: "
                f"model={model.name!r} (built={model.built})"
            )
        inputs = model.inputs
        specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in inputs]
        return [specs[0] if len(specs) == 1 else specs]
    if not isinstance(input_signature, (list, tuple)):
        input_signature = [input_signature]
    flat = tf.nest.flatten(input_signature, expand_composites=False)
    names = ["inputs"] if len(flat) == 1 else [f"inputs_{i}" for i in range(len(flat))]
    specs = [_tensor_spec(s, n) for s, n in zip(flat, names)]
    return tf.nest.pack_sequence_as(list(input_signature), specs)


def _signature_and_probe(model, input_signature, probe, verify):
    """The export's input signature and the probe batch (`probe` checked, or made when
    verifying): shared by every format."""
    import tensorflow as tf

    signature = _input_signature(model, input_signature)
    flat_specs = tf.nest.flatten(signature)
    if probe is not None:
        probe = [np.asarray(a) for a in (probe if isinstance(probe, (list, tuple)) else [probe])]
        if len(probe) != len(flat_specs):
            raise ValueError(
                f"Invalid value for argument `probe`. Expected {len(flat_specs)} arrays (one "
                f"per input). Received: probe with {len(probe)} arrays")
    elif verify:
        probe = _probe_batch(flat_specs)
    return signature, probe


def _probe_batch(specs, batch_size=2, seed=0):
    """Uniform [0, 1) inputs for each spec (batch dimension `batch_size`)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = list(spec.shape)
        if any(d is None for d in shape[1:]):
            raise ValueError(
                "Invalid value for argument `probe`. Expected probe inputs for an input "
                f"signature with unknown non-batch dimensions. Received: probe=None for input "
                f"{spec.name!r} of shape {tuple(shape)}"
            )
        shape[0] = batch_size if shape[0] is None else shape[0]
        values = rng.uniform(size=shape)
        if spec.dtype.is_integer:
            values = values * 10
        arrays.append(values.astype(spec.dtype.as_numpy_dtype))
    return arrays


def _tolerance(dtype):
    return 1e-2 if np.dtype(dtype).itemsize <= 2 else 1e-4


# ----------------------------------------------------------------------------- checks


def _run_fresh_process(path, probe, library, artifact_format="savedmodel"):
    """Reloads the export in a new interpreter that cannot import keras_cnn_ext
    (`check.py --format savedmodel|onnx|litert`)."""
    with tempfile.TemporaryDirectory(prefix="kce-export-check-") as work:
        probe_file = os.path.join(work, "probe.npz")
        out_file = os.path.join(work, "outputs.npz")
        np.savez(probe_file, *probe)
        command = [sys.executable, "-I", export_check.__file__, path, probe_file, out_file,
                   "--format", artifact_format]
        if library:
            command += ["--library", library]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        # subprocess.run kills the child it started (by its pid) when the timeout expires
        proc = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=VERIFY_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise ExportVerificationError(
                f"The exported {export_check.FORMAT_NAMES[artifact_format]} did not load or run "
                f"in a fresh process (exit code {proc.returncode}):\n{tail}"
            )
        with np.load(out_file) as data:
            return {k: data[k] for k in data.files}


def _compare(model, signature_specs, probe, result, kinds=("serve", "signature"),
             artifact="SavedModel"):
    """Max |difference| between the reloaded export and the Keras model; raises beyond the
    tolerance. `result` holds `<kind>_<i>` arrays for each of `kinds`."""
    import tensorflow as tf

    if bool(result["package_imported"]):
        raise ExportVerificationError("keras_cnn_ext was imported by the verification process")
    tensors = [tf.constant(a) for a in probe]
    args = tf.nest.pack_sequence_as(signature_specs, tensors)
    expected = [np.asarray(t) for t in tf.nest.flatten(model(*args, training=False))]
    worst = 0.0
    for kind in kinds:
        got = [result[f"{kind}_{i}"] for i in range(len(expected)) if f"{kind}_{i}" in result]
        if len(got) != len(expected):
            raise ExportVerificationError(
                f"The reloaded `{kind}` returned {len(got)} outputs, the Keras model "
                f"{len(expected)}.")
        for i, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape:
                raise ExportVerificationError(
                    f"Output {i} of the reloaded `{kind}` has shape {a.shape}, the Keras "
                    f"model's {b.shape}.")
            a64, b64 = a.astype("float64"), b.astype("float64")
            if not np.array_equal(np.isnan(a64), np.isnan(b64)):
                raise ExportVerificationError(
                    f"Output {i} of the reloaded `{kind}` has NaNs where the Keras model's "
                    "output has none, or the reverse.")
            finite = ~np.isnan(b64)
            diff = float(np.max(np.abs(a64 - b64)[finite], initial=0.0))
            tol = _tolerance(b.dtype) * max(1.0, float(np.max(np.abs(b64[finite]), initial=0)))
            if diff > tol:
                raise ExportVerificationError(
                    f"The reloaded {artifact} differs from the Keras model: output {i} of "
                    f"`{kind}` has max |difference| {diff:.3g} > tolerance {tol:.3g} on a "
                    f"probe batch of shape {probe[0].shape}.")
            worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------- export


def _tf_variable(variable):
    """The tf.Variable holding a Keras variable's value (outside any autocast scope)."""
    import tensorflow as tf

    value = getattr(variable, "value", variable)
    return value if isinstance(value, tf.Variable) else variable


def _write(model, directory, signature, portable):
    import keras
    import tensorflow as tf

    from keras_cnn_ext.ops import dispatch

    archive = keras.export.ExportArchive()
    archive.track(model)
    # keras-team/keras#23553: `track` keeps the Keras Variable wrappers while the endpoint
    # captures the tf.Variables inside them; two trackables per weight mean every weight is
    # written (and, when served, held in memory) twice. Point the archive's variable
    # collections at the tf.Variables themselves, so each weight is stored once.
    for collection in ("variables", "trainable_variables", "non_trainable_variables"):
        archive.add_variable_collection(
            collection, [_tf_variable(v) for v in getattr(model, collection)])
    archive.add_endpoint(ENDPOINT, model.__call__, input_signature=signature)
    # tf.custom_gradient functions (the composite ops' hand-written gradients) are saved, so
    # a reloaded export can be differentiated; they are part of the op check.
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=True)
    # The tf.function is traced inside write_out: the scope must enclose it. Portable: every
    # layer (explicit "native" and "reference" too) builds its composite ops. Native: "auto"
    # chooses as it does for this process, and the export guard lets the compiled ops through.
    scope = (dispatch.implementation_scope("composite") if portable
             else dispatch.native_export_scope())
    with scope:
        archive.write_out(directory, options=options, verbose=False)


def require_backend(feature="SavedModel export"):
    """Raises `keras_cnn_ext.TensorFlowOnlyError` unless Keras runs on TensorFlow: every export
    format goes through a TensorFlow graph (and is checked with TensorFlow's tools)."""
    require_tensorflow(feature, "a .keras file saved under any backend loads there, so save "
                                "the model and export that file from a TensorFlow process")


def export_savedmodel(model, path, *, portable=True, input_signature=None, verify=True,
                      probe=None):
    """Writes `model` as a TensorFlow SavedModel at `path`, checked and verified.

    Args:
        model: a built `keras.Model` (or a path to a `.keras` file).
        path: the SavedModel directory to create; must not exist or be empty.
        portable: True (default): only stock TensorFlow ops — loads without keras_cnn_ext.
            False: keep the compiled ops where "auto" (or a layer) chose them; loading then
            needs `kce.register_ops()` first.
        input_signature: the `serve` endpoint's inputs: a structure of `tf.TensorSpec` /
            `keras.InputSpec` (default: the model's inputs, batch dimension free).
        verify: reload the export in a fresh process and compare with the model.
        probe: the inputs for the comparison, one array per input (default: two uniform
            [0, 1) samples; required if the signature has unknown non-batch dimensions).

    Returns:
        A dict: `path`, `portable` (whether the graph has only stock ops), `ops` (every op
        type in the export), `native_ops` (its compiled ops), `max_abs_diff` (None without
        `verify`), `probe_shape`, `size_bytes`, `export_seconds`, `verify_seconds`. The same
        report is saved in the export as `assets.extra/keras_cnn_ext_export.json`.

    Raises:
        FileExistsError: `path` is a file or a non-empty directory.
        ExportVerificationError: a portable export contains a non-stock op, or the reloaded
            export does not reproduce the model's outputs (nothing is left on disk).
        keras_cnn_ext.TensorFlowOnlyError: Keras runs on another backend (JAX, PyTorch).
    """
    require_backend()
    import tensorflow as tf

    model = _as_model(model)
    if not isinstance(portable, bool):
        raise TypeError(f"Invalid value for argument `portable`. Expected True or False. "
                        f"Received: portable={portable!r}")
    path = os.path.abspath(os.fspath(path))
    _check_target(path)
    signature, probe = _signature_and_probe(model, input_signature, probe, verify)

    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_partials(parent, name)
    partial = os.path.join(parent, f".{name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        start = time.perf_counter()
        _write(model, partial, signature, portable)
        export_seconds = time.perf_counter() - start
        ops = export_check.list_ops(partial)
        foreign = export_check.nonstock_ops(ops)
        native_ops = [op for op in ops if op.startswith(export_check.NATIVE_OP_PREFIX)]
        if portable and foreign:
            raise ExportVerificationError(
                f"The portable export contains ops that are not stock TensorFlow ops: "
                f"{', '.join(foreign)}. (A layer with implementation='reference' or a custom "
                "op outside keras_cnn_ext?)")
        if not portable and set(foreign) - set(native_ops):
            raise ExportVerificationError(
                "The export contains ops no TensorFlow can load: "
                f"{', '.join(sorted(set(foreign) - set(native_ops)))}.")
        report = {
            "path": path, "portable": not foreign, "requested_portable": portable,
            "ops": ops, "native_ops": native_ops, "max_abs_diff": None,
            "probe_shape": None if probe is None else [list(a.shape) for a in probe],
            "size_bytes": _directory_size(partial), "export_seconds": round(export_seconds, 3),
            "verify_seconds": None, "tensorflow_version": tf.__version__,
        }
        if verify:
            start = time.perf_counter()
            library = _loaded_library() if native_ops else None
            result = _run_fresh_process(partial, probe, library)
            if set(result["nonstock"]) != set(foreign):
                raise ExportVerificationError(
                    "A fresh TensorFlow process finds the non-stock ops "
                    f"{sorted(result['nonstock'])} in the export, this one {foreign}.")
            report["max_abs_diff"] = _compare(model, signature, probe, result)
            report["verify_seconds"] = round(time.perf_counter() - start, 3)
        _write_report(partial, report)
        _publish(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return report


def _as_model(model):
    import keras

    if isinstance(model, (str, os.PathLike)):
        return keras.saving.load_model(os.fspath(model))
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid value for argument `model`. Expected a `keras.Model` or the path of a "
            f"`.keras` file. Received: model of type {type(model).__name__}")
    return model


def _loaded_library():
    from keras_cnn_ext.ops import native

    native.load()
    return native.library_path()


def _write_report(directory, report):
    target = os.path.join(directory, REPORT_PATH)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def _publish(partial, path):
    """Renames the finished export into place (atomic; an empty directory there is replaced)."""
    try:
        os.rename(partial, path)
    except OSError as exc:
        # someone created files at `path` while we were writing
        raise FileExistsError(
            f"Refusing to export into {path!r}: it was created and filled during the export "
            f"(nothing was written there). ({exc})") from None
