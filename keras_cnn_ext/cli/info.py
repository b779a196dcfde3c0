"""`keras-cnn-ext info`: versions, native-op status (and why), devices, data sets, models."""

import argparse
import json
import platform
import sys

EPILOG = """\
examples:
  keras-cnn-ext info
  keras-cnn-ext info --json
"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "info", help="versions, native-op status, devices",
        description="Show versions, whether the compiled custom ops load (and why not), the "
                    "devices\nTensorFlow sees, the data folder and the registered models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - an optional package: report, never fail
        return "not installed"


def collect():
    """The facts `info` prints, as a dict."""
    import tensorflow as tf

    import keras_cnn_ext as kce
    from keras_cnn_ext import data, models
    from keras_cnn_ext.ops import dispatch

    forced = dispatch.forced_implementation() if hasattr(dispatch, "forced_implementation") \
        else None
    return {
        "keras_cnn_ext": kce.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": _version("keras"),
        "keras_backend": kce._backend.backend(),  # KERAS_BACKEND; export, tf.distribute: TF
        "numpy": _version("numpy"),
        "tensorflow_datasets": _version("tensorflow_datasets"),
        "keras_tuner": _version("keras_tuner"),
        "matplotlib": _version("matplotlib"),
        "tensorboard": _version("tensorboard"),
        "native_ops": kce.ops.native_available(),
        "native_status": kce.ops.native_status(),
        "implementation_override": forced,
        "devices": [f"{d.device_type}: {d.name}" for d in tf.config.list_physical_devices()],
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "data_dir": data.default_data_dir(),
        "datasets": data.list_datasets(),
        "models": models.list_models(),
    }


def run(args):
    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "-"
        print(f"{key.ljust(width)}  {value}")
    return 0
