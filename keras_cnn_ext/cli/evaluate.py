"""`keras-cnn-ext evaluate MODEL.keras --dataset NAME`: accuracy and loss on a split."""

import argparse
import json

from keras_cnn_ext.cli._args import (
    add_batch_size, add_data_dir, add_dataset, check_dataset, positive_int,
)

EPILOG = """\
examples:
  keras-cnn-ext evaluate runs/lenet/model.keras --dataset digits
  keras-cnn-ext evaluate runs/lenet/model.keras --dataset digits --split validation --json
  keras-cnn-ext evaluate resnet20.keras --dataset cifar10 --data-dir ~/tensorflow_datasets

Images are resized to the model's input shape (as `train` does).
"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="evaluate a saved model on a data set split",
        description="Evaluate a saved .keras model (loss, accuracy) on a data set split.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.keras", help="a model saved by train (model.keras)")
    add_dataset(p)
    p.add_argument("--split", default="test",
                   help="split to evaluate: test (default), validation, train, or a tfds slice")
    add_batch_size(p, default=128)
    p.add_argument("--max-examples", type=positive_int, metavar="N",
                   help="evaluate at most N examples")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args):
    import os

    from keras_cnn_ext.cli import UsageError

    dataset = check_dataset(args.dataset)
    if not os.path.isfile(args.model) or not args.model.endswith(".keras"):
        raise UsageError(f"invalid value for MODEL.keras: {args.model!r} (expected an existing "
                         ".keras file, e.g. the model.keras of a train run)")
    from keras_cnn_ext import training

    result = training.evaluate(args.model, dataset, split=args.split,
                               batch_size=args.batch_size, data_dir=args.data_dir,
                               max_examples=args.max_examples)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['dataset']}/{result['split']}: accuracy {result['accuracy']:.4f}, "
              f"loss {result['loss']:.4f} on {result['examples']} examples ({args.model})")
    return 0
