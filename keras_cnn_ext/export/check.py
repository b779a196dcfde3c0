"""Checks of a written export that need nothing but TensorFlow, NumPy and a runtime.

`kce.export` imports this module to list the ops of a SavedModel, and also runs this file as a
script, `python -I keras_cnn_ext/export/check.py ...`, in a fresh interpreter to prove that the
export loads and runs without keras_cnn_ext: isolated mode (`-I`) ignores `PYTHONPATH` and does
not put the script's directory on `sys.path`, and the script installs an import blocker for
the package before anything else (an editable or site install would otherwise still be
importable), so keras_cnn_ext cannot be imported there, not even by accident. Keep this file
free of keras_cnn_ext (and Keras) imports.

Script usage (the protocol between `kce.export` and the child process)::

    python -I check.py ARTIFACT PROBE.npz OUTPUTS.npz [--format F] [--library LIB.so]

reads the probe inputs `PROBE.npz` (`arr_0`, `arr_1`, ... in the order of the flattened input
signature), loads the artifact and writes its outputs (`serve_<i>`, and for a SavedModel the
`serving_default` signature's `signature_<i>`) and its op list to `OUTPUTS.npz`. Formats:

- `savedmodel` (default): `tf.saved_model.load` (after `tf.load_op_library(LIB.so)` when
  given), the `serve` endpoint and the `serving_default` signature;
- `onnx`: an `onnxruntime.InferenceSession` on the CPU;
- `litert`: the TFLite interpreter (`ai_edge_litert` where installed, else `tf.lite`).

A runtime that is not installed exits with code 3 and a line saying what to install.
"""

import os
import sys

SAVED_MODEL_PB = "saved_model.pb"
# Registered in every TensorFlow, yet not portable: they call back into the Python function that
# existed in the exporting process (`tf.numpy_function`, `tf.py_function`).
PYTHON_CALLBACK_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# the namespace of the compiled keras_cnn_ext ops (custom_ops/cc/ops/*_ops.cc)
NATIVE_OP_PREFIX = "KerasCnnExt>"
# --format values, and how messages name them
FORMAT_NAMES = {"savedmodel": "SavedModel", "onnx": "ONNX model", "litert": "LiteRT model"}
# what each runtime is installed as (the `export` extra of pyproject.toml)
RUNTIMES = {"onnx": "onnxruntime", "litert": "ai-edge-litert (or TensorFlow's tf.lite)"}
EXIT_NO_RUNTIME = 3
BLOCKED_PACKAGE = "keras_cnn_ext"


class _BlockPackage:
    """A `sys.meta_path` finder that refuses keras_cnn_ext (and its submodules)."""

    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED_PACKAGE or name.startswith(BLOCKED_PACKAGE + "."):
            raise ImportError(f"{name} is blocked in the export check process")
        return None


def read_saved_model(path):
    """The parsed `saved_model.pb` of the SavedModel directory `path`."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, SAVED_MODEL_PB), "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def list_ops(path):
    """Every op type the SavedModel at `path` uses, sorted.

    Reads the graph nodes of every meta graph and the nodes of every function in its library:
    the endpoints, the checkpoint save/restore functions and the saved gradient functions of
    `tf.custom_gradient` (which TensorFlow stores by default). Calls of library functions are
    not ops and are left out; the meta graph's own `stripped_op_list` is included, so an op
    TensorFlow would look up at load time is never missed.
    """
    ops = set()
    for meta_graph in read_saved_model(path).meta_graphs:
        graph = meta_graph.graph_def
        functions = {f.signature.name for f in graph.library.function}
        nodes = list(graph.node)
        for function in graph.library.function:
            nodes.extend(function.node_def)
        ops.update(node.op for node in nodes if node.op not in functions)
        ops.update(op.name for op in meta_graph.meta_info_def.stripped_op_list.op)
    return sorted(ops)


def nonstock_ops(ops):
    """The ops of `ops` that are not stock TensorFlow ops.

    That is: ops this process's TensorFlow does not know, namespaced ops (`Library>Op` is the
    convention of custom-op libraries, ours and TF Addons'; TensorFlow's own ops never have a
    namespace, so a loaded library's ops are caught too) and ops that call back into Python.
    """
    from tensorflow.python.framework import op_def_registry

    return sorted(op for op in ops
                  if op in PYTHON_CALLBACK_OPS or ">" in op or op_def_registry.get(op) is None)


def _flat_specs(function):
    import tensorflow as tf

    args, kwargs = function.structured_input_signature
    return tf.nest.flatten((args, kwargs)), (args, kwargs)


def serve(path, probe, library=None):
    """Loads the SavedModel and runs `serve` and `serving_default` on the probe arrays.

    Returns:
        (serve outputs flattened, serving_default outputs in the same order, op list,
        its non-stock ops).
    """
    import numpy as np
    import tensorflow as tf

    if library:
        tf.load_op_library(library)
    ops = list_ops(path)
    unknown = nonstock_ops(ops)
    loaded = tf.saved_model.load(path)
    concrete = loaded.serve.concrete_functions[0]
    specs, structure = _flat_specs(concrete)
    if len(specs) != len(probe):
        raise ValueError(f"the probe has {len(probe)} arrays, the `serve` endpoint takes "
                         f"{len(specs)} inputs")
    tensors = [tf.constant(a, dtype=s.dtype) for a, s in zip(probe, specs)]
    args, kwargs = tf.nest.pack_sequence_as(structure, tensors)
    served = [np.asarray(t) for t in tf.nest.flatten(loaded.serve(*args, **kwargs))]
    signature = loaded.signatures["serving_default"]
    sig_kwargs = {s.name: t for s, t in zip(specs, tensors)}
    sig_out = signature(**sig_kwargs)
    # The signature names flat outputs `output_0`, `output_1`, ... (or by the model's output
    # names); order them like the flattened `serve` outputs.
    keys = sorted(sig_out, key=lambda k: (len(k), k))
    signed = [np.asarray(sig_out[k]) for k in keys]
    return served, signed, ops, unknown


def run_onnx(path, probe):
    """Runs the ONNX model at `path` in onnxruntime (CPU) on the probe arrays.

    Returns:
        (outputs, the op types of its graph "domain:Op", "" for the standard domain).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != len(probe):
        raise ValueError(f"the probe has {len(probe)} arrays, the ONNX model takes "
                         f"{len(inputs)} inputs")
    outputs = session.run(None, {i.name: a for i, a in zip(inputs, probe)})
    try:
        import onnx

        graph = onnx.load(path).graph
        ops = sorted({f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in graph.node})
    except ImportError:
        ops = []
    return outputs, ops


def _litert_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


def run_litert(path, probe):
    """Runs the LiteRT (TFLite) model at `path` in the TFLite interpreter on the probe arrays.

    Returns:
        (outputs, the op names of the flatbuffer where the interpreter lists them).
    """
    interpreter = _litert_interpreter(path)
    inputs = interpreter.get_input_details()
    if len(inputs) != len(probe):
        raise ValueError(f"the probe has {len(probe)} arrays, the LiteRT model takes "
                         f"{len(inputs)} inputs")
    for detail, array in zip(inputs, probe):
        if tuple(detail["shape"]) != array.shape:
            interpreter.resize_tensor_input(detail["index"], array.shape)
    interpreter.allocate_tensors()
    for detail, array in zip(interpreter.get_input_details(), probe):
        interpreter.set_tensor(detail["index"], array.astype(detail["dtype"]))
    interpreter.invoke()
    outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    try:
        ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})  # noqa: SLF001
    except (AttributeError, KeyError, TypeError):
        ops = []
    return outputs, ops


def runtime_missing(artifact_format):
    """Whether the runtime that checks `artifact_format` is missing in this interpreter."""
    import importlib.util

    if artifact_format == "onnx":
        return importlib.util.find_spec("onnxruntime") is None
    if artifact_format == "litert":
        if importlib.util.find_spec("ai_edge_litert") is not None:
            return False
        try:
            import tensorflow as tf

            return not hasattr(tf, "lite")
        except ImportError:
            return True
    return False


def main(argv=None):
    import numpy as np

    argv = list(sys.argv[1:] if argv is None else argv)
    options = {"--library": None, "--format": "savedmodel"}
    for flag in options:
        if flag in argv:
            i = argv.index(flag)
            options[flag] = argv[i + 1]
            del argv[i:i + 2]
    library, artifact_format = options["--library"], options["--format"]
    if artifact_format not in FORMAT_NAMES:
        print(f"invalid value for --format: {artifact_format!r} (choose from "
              f"{', '.join(FORMAT_NAMES)})", file=sys.stderr)
        return 2
    if runtime_missing(artifact_format):
        print(f"Cannot verify the {FORMAT_NAMES[artifact_format]}: "
              f"{RUNTIMES[artifact_format]} is not installed (pip install "
              "'keras_cnn_ext[export]').", file=sys.stderr)
        return EXIT_NO_RUNTIME
    path, probe_file, out_file = argv
    with np.load(probe_file) as data:
        probe = [data[f"arr_{i}"] for i in range(len(data.files))]
    if artifact_format == "savedmodel":
        served, signed, ops, unknown = serve(path, probe, library)
    else:
        run = run_onnx if artifact_format == "onnx" else run_litert
        (served, ops), signed, unknown = run(path, probe), [], []
    package_imported = any(name.split(".")[0] == BLOCKED_PACKAGE for name in sys.modules)
    arrays = {f"serve_{i}": np.asarray(a) for i, a in enumerate(served)}
    arrays.update({f"signature_{i}": a for i, a in enumerate(signed)})
    np.savez(out_file + ".partial.npz", ops=np.array(ops, dtype=str),
             nonstock=np.array(unknown, dtype=str), package_imported=package_imported, **arrays)
    os.replace(out_file + ".partial.npz", out_file)
    return 0


if __name__ == "__main__":
    # before anything else: the guarantee this process exists for is that the artifact runs
    # without keras_cnn_ext, so the package must not be importable here at all
    sys.meta_path.insert(0, _BlockPackage())
    sys.exit(main())
