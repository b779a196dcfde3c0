"""`keras-cnn-ext export`: a `.keras` model to a verified SavedModel, ONNX or LiteRT model.

A thin shell over `keras_cnn_ext.export.export_savedmodel` / `export_model`.
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
  # ONNX (checked in onnxruntime) and LiteRT (checked in the TFLite interpreter)
  keras-cnn-ext export model.keras export/resnet18.onnx --format onnx
  keras-cnn-ext export model.keras export/resnet18.tflite --format litert

The target (a directory for savedmodel, a file for onnx / litert) must not exist (a SavedModel
may also go into an empty directory); nothing appears there unless the export succeeds.
Serve a SavedModel with `tf.saved_model.load(PATH)` (keep the loaded object) and its
`.serve(x)`, `keras.layers.TFSMLayer(PATH)` or TF Serving (`serving_default` signature; the
report - ops, max difference, size - is saved in PATH/assets.extra/keras_cnn_ext_export.json),
an ONNX model with
`onnxruntime.InferenceSession(PATH)`, a LiteRT model with the TFLite interpreter.
"""

MODEL_SUFFIXES = (".keras",)
FORMATS = ("savedmodel", "onnx", "litert")
FILE_SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a .keras model as a verified SavedModel, ONNX or LiteRT model",
        description="Export a .keras model as a TensorFlow SavedModel, an ONNX or a LiteRT "
                    "model: portable by default, verified in a fresh process.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL.keras", help="the Keras model file to export")
    parser.add_argument("directory", metavar="PATH", nargs="?",
                        help="the SavedModel directory (must not exist or be empty) or the "
                             ".onnx / .tflite file to create")
    parser.add_argument("--output", "-o", metavar="PATH", dest="output_flag",
                        help="the same as PATH (the flag every command uses for what it writes)")
    parser.add_argument("--format", choices=FORMATS, default="savedmodel",
                        help="savedmodel (default; checked in TensorFlow), onnx (needs "
                             "tf2onnx; checked in onnxruntime) or litert (checked in the "
                             "TFLite interpreter)")
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
    if args.directory and args.output_flag and args.directory != args.output_flag:
        raise UsageError(f"PATH {args.directory!r} and --output {args.output_flag!r} differ: "
                         "give the target once")
    args.directory = args.directory or args.output_flag
    if not args.directory:
        raise UsageError("the export target is missing: give PATH or --output PATH")
    if not args.model.endswith(MODEL_SUFFIXES):
        raise UsageError(f"invalid value for MODEL.keras: {args.model!r} (expected a file "
                         f"ending in {', '.join(MODEL_SUFFIXES)})")
    if not os.path.isfile(args.model):
        raise UsageError(f"invalid value for MODEL.keras: {args.model!r} (no such file)")
    directory = args.directory
    if args.format != "savedmodel":
        suffix = FILE_SUFFIXES[args.format]
        if args.native:
            raise UsageError(f"--native applies to --format savedmodel only (an {args.format} "
                             "file cannot hold the compiled ops)")
        if not directory.endswith(suffix):
            raise UsageError(f"invalid value for PATH: {directory!r} (expected a file ending "
                             f"in {suffix} for --format {args.format})")
        if os.path.lexists(directory):
            raise UsageError(f"invalid value for PATH: {directory!r} (it exists; choose a new "
                             "file name)")
        return
    if os.path.isdir(directory) and os.listdir(directory):
        raise UsageError(f"invalid value for PATH: {directory!r} (a non-empty directory; "
                         "choose a new or empty one)")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise UsageError(f"invalid value for PATH: {directory!r} (a file of that name exists)")


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


def _file_summary(report):
    runtime = "onnxruntime" if report["format"] == "onnx" else "the TFLite interpreter"
    name = "ONNX model" if report["format"] == "onnx" else "LiteRT model"
    lines = [
        f"{name} written to {report['path']}",
        "  kind:        portable (stock ops only)",
        f"  size:        {report['size_bytes'] / 1e6:.1f} MB",
        f"  export time: {report['export_seconds']:.1f} s",
    ]
    if report["verified"]:
        lines.append(f"  verified:    run in {runtime} in a fresh process, max |difference| "
                     f"{report['max_abs_diff']:.3g} on a probe batch of shape "
                     f"{tuple(report['probe_shape'][0])}; ops: {', '.join(report['ops'])}")
    else:
        lines.append(f"  verified:    {report['verify_note'] or 'no (--no-verify)'}")
    return "\n".join(lines)


def run(args):
    _check_args(args)
    from keras_cnn_ext.export import savedmodel

    savedmodel.require_backend(f"keras-cnn-ext export (--format {args.format})")
    import keras_cnn_ext  # noqa: F401 - registers the layers the .keras file names
    from keras_cnn_ext.training.lock import folder_lock

    # one writer per target: a second export to PATH is refused (exit 2), naming this process
    with folder_lock(args.directory):
        try:
            if args.format != "savedmodel":
                from keras_cnn_ext.export import export_model

                report = export_model(args.model, args.directory, format=args.format,
                                      verify=args.verify)
            else:
                from keras_cnn_ext.export import export_savedmodel

                report = export_savedmodel(args.model, args.directory,
                                           portable=not args.native, verify=args.verify)
        except FileExistsError as exc:  # the target appeared while we checked
            raise UsageError(str(exc)) from None
        except ImportError as exc:  # tf2onnx missing: say what to install
            raise UsageError(str(exc)) from None
    summary = _summary if args.format == "savedmodel" else _file_summary
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 0
