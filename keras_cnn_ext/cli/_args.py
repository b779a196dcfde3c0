"""Argument types and checks shared by the commands (exit code 2 with the valid choices)."""

import argparse

from keras_cnn_ext.cli import choice_error


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def input_shape(text):
    """'28,28,1' (or '28x28x1') -> (28, 28, 1)."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHT,WIDTH,CHANNELS of positive integers (e.g. 28,28,1), got {text!r}")
    return shape


def add_data_dir(parser):
    parser.add_argument("--data-dir", metavar="DIR",
                        help="tensorflow-datasets data folder (default $TFDS_DATA_DIR, else "
                             "~/tensorflow_datasets); digits is prepared there on first use")


def check_model(name):
    """The registered model name, or a usage error listing them."""
    from keras_cnn_ext import models
    from keras_cnn_ext.training.config import check_model_name

    try:
        return check_model_name(name)
    except ValueError:
        raise choice_error("MODEL", name, models.list_models()) from None


def check_dataset(name):
    """The normalised data set name, or a usage error listing the known ones."""
    from keras_cnn_ext import data

    try:
        return data.resolve_name(name)
    except ValueError:
        raise choice_error("--dataset", name, data.list_datasets()
                           + ["or another tensorflow-datasets image classification name"]
                           ) from None


# ------------------------------------------------------------------ flags shared by commands
# The same flag means the same thing, with the same spelling, help and check, in every command
# that has it (issue 18): --output/-o for every folder a command writes, --dataset/-d,
# --data-dir, --batch-size/-b, --seed.

DATASET_HELP = ("'digits' (embedded, offline) or a tensorflow-datasets name (mnist, "
                "fashion_mnist, cifar10, ...); default: digits")


def seed(text):
    """A non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_dataset(parser):
    parser.add_argument("--dataset", "-d", default="digits", help=DATASET_HELP)


def add_batch_size(parser, default=None, help_default=None):
    parser.add_argument("--batch-size", "-b", type=positive_int, default=default,
                        metavar="N", help=f"examples per step (default {help_default or default})")


def add_seed(parser, default=None, help_default=None):
    parser.add_argument("--seed", type=seed, default=default, metavar="N",
                        help=f"makes the run repeatable (default {help_default or default})")


def add_output(parser, help, dest="output", aliases=()):
    """--output/-o DIR (plus older spellings kept as aliases, e.g. tune's --directory)."""
    parser.add_argument("--output", "-o", *aliases, dest=dest, metavar="DIR", help=help)


def add_log_flags(parser, top_level=False):
    """--debug and -v/--show-logs, accepted before and after the command name.

    The quiet default itself is decided before TensorFlow loads (`keras_cnn_ext._logs`, which
    reads the same flags from sys.argv); here they are declared, and --debug also shows the
    traceback of a failure.
    """
    default = False if top_level else argparse.SUPPRESS
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show TensorFlow's log lines and the full traceback of a failure")
    parser.add_argument("-v", "--show-logs", action="store_true", default=default,
                        help="show TensorFlow's, absl's and tensorflow-datasets' log lines "
                             "(hidden by default)")
