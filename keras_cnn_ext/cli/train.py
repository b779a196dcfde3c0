"""`keras-cnn-ext train MODEL --dataset NAME`: a thin shell over `keras_cnn_ext.training.train`."""

import argparse
import contextlib
import os

from keras_cnn_ext.cli import UsageError
from keras_cnn_ext.cli._args import (
    add_batch_size, add_data_dir, add_dataset, add_output, add_seed, check_dataset, check_model,
    input_shape, positive_float, positive_int,
)
from keras_cnn_ext.training.config import (
    AUGMENTATIONS, DEFAULTS, IMPLEMENTATIONS, LAYERS, OPTIMIZERS, SCHEDULES, STRATEGIES,
    WEIGHT_VARIANTS,
)

EPILOG = """\
examples:
  keras-cnn-ext train lenet5 --dataset digits          # the main job: ~0.98 test accuracy
  keras-cnn-ext train lenet5 --dataset digits --layers keras --output runs/lenet-keras
  keras-cnn-ext train lenet5 --output runs/lenet --resume   # continue a killed run
  keras-cnn-ext train resnet20 --dataset cifar10 --augment crop_flip --epochs 50 \\
      --data-dir ~/tensorflow_datasets
  keras-cnn-ext convert resnet18 resnet18.pth -o r18.keras --input-shape 64,64,3
  keras-cnn-ext train resnet18 --weights r18.keras --freeze-backbone   # fine-tune the head
  keras-cnn-ext train lenet5 --strategy mirrored --cpu-replicas 2 -b 16   # 2 replicas, 32/step
  TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker",
      "index": 0}}' keras-cnn-ext train resnet20 --strategy multi_worker -o /shared/runs/r20

Without --output each run gets a new folder runs/train/<model>-<dataset>-<time>. The folder
holds model.keras, metrics.json, history.json, training_curves.png, args.json, logs/
(TensorBoard) and checkpoints/ (the last epoch: --resume continues from it, also after a kill).
A non-empty folder is refused unless --resume or --overwrite is given.

With --strategy mirrored or multi_worker, --batch-size is per replica: every step consumes
batch-size x replicas examples. A multi-worker run starts the same command on every host (each
with its TF_CONFIG task); the chief writes the run folder, the other workers only
<output>/workers/<task>-<index>/. See docs/scaling-out.md.
"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model with model.fit",
        description="Train a registered model on a data set with model.fit: Keras progress "
                    "bars,\nTensorBoard logs, a checkpoint every epoch, kill-safe --resume.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a registered model name, e.g. lenet5, "
                   "resnet20, vgg11 (keras-cnn-ext summary --help lists them)")
    add_dataset(p)
    p.add_argument("--epochs", type=positive_int,
                   help=f"total epochs (default {DEFAULTS['epochs']})")
    add_batch_size(p, help_default=DEFAULTS["batch_size"])
    p.add_argument("--learning-rate", "--lr", type=positive_float,
                   help="initial learning rate (default 2e-3 for adam/adamw/nadam, else "
                        "Keras' default for the optimizer)")
    p.add_argument("--optimizer", "--opt", choices=OPTIMIZERS,
                   help=f"default {DEFAULTS['optimizer']}")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help=f"learning-rate schedule (default {DEFAULTS['schedule']})")
    p.add_argument("--augment", choices=AUGMENTATIONS,
                   help=f"training augmentation (default {DEFAULTS['augment']})")
    add_seed(p, help_default=DEFAULTS["seed"])
    p.add_argument("--implementation", choices=IMPLEMENTATIONS,
                   help="implementation of the textbook layers (default auto)")
    p.add_argument("--layers", choices=LAYERS,
                   help="textbook layers (default) or stock Keras layers, for comparison")
    p.add_argument("--input-shape", type=input_shape, metavar="H,W,C",
                   help="model input shape (default: the builder's, e.g. 28,28,1 for lenet5)")
    add_output(p, "the run folder (default: a new runs/train/<model>-<dataset>-<time>)")
    p.add_argument("--weights", metavar="FILE",
                   help="fine-tune from trained weights: a .keras file from `convert`, or a "
                        ".pth / .safetensors / .h5 weight file; the classifier is replaced by "
                        "one for the data set's classes")
    p.add_argument("--variant", choices=WEIGHT_VARIANTS, default=None,
                   help="the layout of a --weights file: torchvision (default) or keras")
    p.add_argument("--freeze-backbone", action="store_true", default=None,
                   help="with --weights: train the new classifier only")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output from its last completed epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run files in a non-empty --output")
    add_data_dir(p)
    p.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets download a missing set (needs network; "
                        "default: never download, fail at once with a hint)")
    p.add_argument("--max-examples", type=positive_int, metavar="N",
                   help="use at most N examples of each split (smoke runs)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="default: one device; mirrored: this machine's GPUs (or --cpu-replicas "
                        "CPU replicas); multi_worker: the hosts of TF_CONFIG")
    p.add_argument("--cpu-replicas", type=positive_int, metavar="N",
                   help="with --strategy mirrored: split the CPU into N replicas")
    p.add_argument("--no-sync-batch-norm", dest="sync_batch_norm", action="store_false",
                   default=None, help="with several replicas: each normalises with its own "
                   "part of the batch (default: the global batch's statistics)")
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    p.add_argument("--verbose", choices=("auto", "0", "1", "2"), default="auto",
                   help="0 silent, 1 progress bars, 2 one line per epoch (auto: 1 on a "
                        "terminal, else 2)")
    p.set_defaults(func=run)


def run(args):
    from keras_cnn_ext.training import config as training_config

    model = check_model(args.model)
    dataset = check_dataset(args.dataset)
    if args.strategy not in (None, "default"):  # before the folder is locked (created)
        from keras_cnn_ext._backend import require_tensorflow

        require_tensorflow(f"--strategy {args.strategy} (tf.distribute)",
                           "or leave out --strategy (one device)")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other (resume continues a run, "
                         "overwrite replaces it)")
    if args.resume and not args.output:
        raise UsageError("--resume needs --output DIR (the folder of the run to continue)")
    kwargs = dict(model=model, dataset=dataset, epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, optimizer=args.optimizer,
                  schedule=args.schedule, augment=args.augment, seed=args.seed,
                  implementation=args.implementation, layers=args.layers,
                  data_dir=args.data_dir, input_shape=args.input_shape,
                  max_examples=args.max_examples, download=args.download or None,
                  strategy=args.strategy, cpu_replicas=args.cpu_replicas,
                  sync_batch_norm=args.sync_batch_norm, weights=args.weights,
                  variant=args.variant, freeze_backbone=args.freeze_backbone)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UsageError(f"invalid value for --weights: {args.weights!r} (no such file)")
    from keras_cnn_ext import distribute
    from keras_cnn_ext.training.lock import folder_lock

    try:
        out = distribute.run_output(args.strategy, args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # One writer per run folder: the lock comes before anything reads or writes the folder,
    # so a second `train --output DIR [--resume]` is refused (exit 2) with nothing written.
    # (Without --output the folder is new and named after the time: nobody else has it.)
    with folder_lock(out) if out else contextlib.nullcontext():
        try:  # the checks `train` makes first, reported as usage errors (exit code 2)
            stored = training_config.check_output(out, args.resume, args.overwrite)
            config = training_config.validate_config(
                training_config.resolve_config(kwargs, stored))
            distribute.check_resumed_strategy(args.strategy, config["strategy"])
        except (ValueError, FileExistsError) as exc:
            raise UsageError(str(exc)) from None

        from keras_cnn_ext import training

        verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
        training.train(**kwargs, output=args.output, resume=args.resume,
                       overwrite=args.overwrite, tensorboard=not args.no_tensorboard,
                       verbose=verbose)
    return 0
