"""`keras-cnn-ext summary MODEL`: the analysis table (shapes, params, MACs, receptive field)."""

import argparse
import textwrap

from keras_cnn_ext.cli._args import check_model, input_shape, positive_int

EPILOG = """\
examples:
  keras-cnn-ext summary lenet5
  keras-cnn-ext summary resnet18 --input-shape 224,224,3
  keras-cnn-ext summary vgg16 --num-classes 10 --input-shape 32,32,3
  keras-cnn-ext summary runs/lenet/model.keras

The totals split the parameters like model.summary(): trainable (what the papers and
torchvision count) and non-trainable (batch-norm moving statistics).
"""


def add_parser(subparsers):
    from keras_cnn_ext import models

    p = subparsers.add_parser(
        "summary", help="per-layer shapes, parameters, MACs and receptive fields",
        description="Print the analysis table of a registered model (or a saved .keras "
                    "file).\nmodels: " + textwrap.fill(", ".join(models.list_models()), 80,
                                                       subsequent_indent="  "),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a registered model name or a .keras file")
    p.add_argument("--input-shape", type=input_shape, metavar="H,W,C",
                   help="input shape (default: the builder's)")
    p.add_argument("--num-classes", type=positive_int, help="classes of the output layer")
    p.add_argument("--layers", choices=("textbook", "keras"), default="textbook")
    p.set_defaults(func=run)


def parameter_counts(model):
    """(total, trainable, non-trainable) parameters, counted like `model.summary()`."""
    import numpy as np

    def count(weights):
        return int(sum(np.prod(w.shape) for w in weights))

    trainable, frozen = count(model.trainable_weights), count(model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def run(args):
    from keras_cnn_ext import analysis

    if args.model.endswith(".keras"):
        import os

        import keras

        from keras_cnn_ext.cli import UsageError

        if not os.path.isfile(args.model):
            raise UsageError(f"invalid value for MODEL: {args.model!r} (no such .keras file)")
        model = keras.models.load_model(args.model)
    else:
        from keras_cnn_ext import models

        kwargs = {"layers": args.layers}
        if args.input_shape:
            kwargs["input_shape"] = args.input_shape
        if args.num_classes:
            kwargs["num_classes"] = args.num_classes
        model = models.get_model(check_model(args.model), **kwargs)
    print(f"Model: {model.name}, input {tuple(model.input_shape[1:])}")
    print(analysis.format_table(analysis.summarize(model)))
    total, trainable, frozen = parameter_counts(model)
    print(f"\nTotal params: {total:,}\nTrainable params: {trainable:,}\n"
          f"Non-trainable params: {frozen:,}\n"
          f"MACs per example: {analysis.total_macs(model):,}")
    return 0
