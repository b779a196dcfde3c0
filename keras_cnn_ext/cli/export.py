"""`keras-cnn-ext export`: a `.keras` model to a verified TensorFlow SavedModel.

A thin shell over `keras_cnn_ext.export.export_savedmodel`.
"""

import argparse
import json
import os

from keras_cnn_ext.cli import UsageError

EPILOG = """\
examples:
  # portable (stock TensorFlow ops only; loads without keras_cnn_ext), verified
  keras-cnn-ext export runs/lenet/model.keras export/lenet5/1
  # keep the compiled ops (loading needs `kce.register_ops()` first)
  keras-cnn-ext export model.keras export/resnet18/1 --native
  # skip the reload in a fresh process
  keras-cnn-ext export model.keras export/resnet18/1 --no-verify

The directory must not exist or be empty; nothing appears there unless the export succeeds.
Serve it with `tf.saved_model.load(DIR).serve(x)`, `keras.layers.TFSMLayer(DIR)` or TF Serving
(`serving_default` signature). The report (ops, max difference, size) is printed and saved in
DIR/assets.extra/keras_cnn_ext_export.json.
"""

MODEL_SUFFIXES = (".keras",)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a .keras model as a verified TensorFlow SavedModel",
        description="Export a .keras model as a TensorFlow SavedModel: portable by default, "
                    "verified in a fresh process.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL.keras", help="the Keras model file to export")
    parser.add_argument("directory", metavar="DIR",
                        help="the SavedModel directory to create (must not exist or be empty)")
    parser.add_argument("--native", action="store_true",
                        help="keep the compiled keras_cnn_ext ops (default: portable, stock "
                             "TensorFlow ops only)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reloading the export in a fresh process and comparing "
                             "outputs")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON instead of text")
    parser.set_defaults(func=run)
    return parser


def _check_args(args):
    if not args.model.endswith(MODEL_SUFFIXES):
        raise UsageError(f"invalid value for MODEL.keras: {args.model!r} (expected a file "
                         f"ending in {', '.join(MODEL_SUFFIXES)})")
    if not os.path.isfile(args.model):
        raise UsageError(f"invalid value for MODEL.keras: {args.model!r} (no such file)")
    directory = args.directory
    if os.path.isdir(directory) and os.listdir(directory):
        raise UsageError(f"invalid value for DIR: {directory!r} (a non-empty directory; "
                         "choose a new or empty one)")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise UsageError(f"invalid value for DIR: {directory!r} (a file of that name exists)")


def _summary(report):
    kind = "portable (stock TensorFlow ops only)" if report["portable"] else (
        "native: needs `kce.register_ops()` before loading; compiled ops: "
        + ", ".join(report["native_ops"]))
    lines = [
        f"SavedModel written to {report['path']}",
        f"  kind:        {kind}",
        f"  ops:         {len(report['ops'])} op types checked",
        f"  size:        {report['size_bytes'] / 1e6:.1f} MB",
        f"  export time: {report['export_seconds']:.1f} s",
    ]
    if report["max_abs_diff"] is None:
        lines.append("  verified:    no (--no-verify)")
    else:
        lines.append(f"  verified:    reloaded in a fresh process, max |difference| "
                     f"{report['max_abs_diff']:.3g} on a probe batch of shape "
                     f"{tuple(report['probe_shape'][0])}")
    return "\n".join(lines)


def run(args):
    _check_args(args)
    import keras_cnn_ext  # noqa: F401 - registers the layers the .keras file names
    from keras_cnn_ext.export import export_savedmodel

    try:
        report = export_savedmodel(args.model, args.directory, portable=not args.native,
                                   verify=args.verify)
    except FileExistsError as exc:  # the directory was filled while we checked
        raise UsageError(str(exc)) from None
    print(json.dumps(report, indent=2) if args.json else _summary(report))
    return 0
