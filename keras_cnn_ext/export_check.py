"""Checks of a written SavedModel that need nothing but TensorFlow and NumPy.

`kce.export` imports this module to list the ops of an export, and also runs this file as a
script, `python -I export_check.py ...`, in a fresh interpreter to prove that the export loads
and serves without keras_cnn_ext: isolated mode (`-I`) ignores `PYTHONPATH` and does not put the
script's directory on `sys.path`, so the package cannot be imported there, not even by accident.
Keep this file free of keras_cnn_ext (and Keras) imports.

Script usage (the protocol between `kce.export` and the child process)::

    python -I export_check.py SAVEDMODEL_DIR PROBE.npz OUTPUTS.npz [--library LIB.so]

reads the probe inputs `PROBE.npz` (`arr_0`, `arr_1`, ... in the order of the flattened input
signature), loads the SavedModel with `tf.saved_model.load` (after `tf.load_op_library(LIB.so)`
when given), runs the `serve` endpoint and the `serving_default` signature, and writes their
outputs and the export's op list to `OUTPUTS.npz`.
"""

import os
import sys

SAVED_MODEL_PB = "saved_model.pb"
# Registered in every TensorFlow, yet not portable: they call back into the Python function that
# existed in the exporting process (`tf.numpy_function`, `tf.py_function`).
PYTHON_CALLBACK_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# the namespace of the compiled keras_cnn_ext ops (custom_ops/cc/ops/*_ops.cc)
NATIVE_OP_PREFIX = "KerasCnnExt>"


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


def main(argv=None):
    import numpy as np

    argv = list(sys.argv[1:] if argv is None else argv)
    library = None
    if "--library" in argv:
        i = argv.index("--library")
        library = argv[i + 1]
        del argv[i:i + 2]
    path, probe_file, out_file = argv
    with np.load(probe_file) as data:
        probe = [data[f"arr_{i}"] for i in range(len(data.files))]
    served, signed, ops, unknown = serve(path, probe, library)
    # the guarantee this process exists for: the package was never imported here
    package_imported = any(name.split(".")[0] == "keras_cnn_ext" for name in sys.modules)
    arrays = {f"serve_{i}": a for i, a in enumerate(served)}
    arrays.update({f"signature_{i}": a for i, a in enumerate(signed)})
    np.savez(out_file + ".partial.npz", ops=np.array(ops, dtype=str),
             nonstock=np.array(unknown, dtype=str), package_imported=package_imported, **arrays)
    os.replace(out_file + ".partial.npz", out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
