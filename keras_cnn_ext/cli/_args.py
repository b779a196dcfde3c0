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
    from keras_cnn_ext.training_config import check_model_name

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
