"""`keras-cnn-ext tune`: a KerasTuner search over kernel sizes, strides and filters.

A thin shell over `keras_cnn_ext.tuning.search.search`.
"""

import argparse
import contextlib
import os

from keras_cnn_ext.cli import UsageError, _args, _distributed, choice_error

EPILOG = """\
examples:
  # 10 random trials of LeNet-5's space on the embedded digits (offline, a few minutes)
  keras-cnn-ext tune lenet5 --dataset digits --max-trials 10
  # Bayesian optimisation of the VGG space, 3 epochs per trial, with the default model's score
  keras-cnn-ext tune vgg --dataset digits --tuner bayesian --max-trials 20 --baseline
  # Hyperband over the ResNet space (up to 9 epochs per trial) on CIFAR-10 (prepared by tfds)
  keras-cnn-ext tune resnet --dataset cifar10 --tuner hyperband --epochs 9 --max-trials 30
  # continue a search that was interrupted (or killed), or extend it to more trials
  keras-cnn-ext tune lenet5 --dataset digits --max-trials 20 --resume

DIR (default runs/tune/MODEL-DATASET) holds everything the search made: search.json (the
settings), search/ (KerasTuner's state and checkpoints), trials.csv, scores.png (the score
against every searched hyperparameter), best_model.keras, best_hyperparameters.json,
results.json, and with --export best_savedmodel/. A non-empty DIR is refused unless --resume
(same settings; only --max-trials may change) or --overwrite is given. After a kill, --resume
re-runs only the trial that was in flight.
"""

MODELS = ("lenet5", "vgg", "resnet")  # keras_cnn_ext.tuning.HYPERMODELS
TUNERS = ("random", "bayesian", "hyperband")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "tune", help="search kernel sizes, strides, filters and depth with KerasTuner",
        description="Search a model family's kernel sizes, strides, filters, depth, padding, "
                    "learning rate and optimizer with KerasTuner. Every configuration's "
                    "feature-map sizes are checked before it is built.",
        epilog=EPILOG + "\n" + _distributed.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL",
                        help=f"the search space: {', '.join(MODELS)}")
    _args.add_dataset(parser)
    parser.add_argument("--tuner", default="random",
                        help=f"{', '.join(TUNERS)} (default: random)")
    parser.add_argument("--max-trials", type=int, default=10, help="trials (default: 10)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per trial; Hyperband's maximum (default: 3)")
    _args.add_batch_size(parser, default=64)
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize the images to this size (default: LeNet 28, VGG and "
                             "ResNet 32)")
    _args.add_seed(parser, default=0)
    parser.add_argument("--layers", default="textbook",
                        help="textbook (this package's layers) or keras (default: textbook)")
    _args.add_output(parser, "the output folder (default: runs/tune/MODEL-DATASET); "
                     "--directory is the same flag", dest="directory", aliases=("--directory",))
    parser.add_argument("--resume", action="store_true",
                        help="continue the search in DIR")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous search in DIR")
    parser.add_argument("--baseline", action="store_true",
                        help="also train the default configuration and report its score")
    parser.add_argument("--export", action="store_true",
                        help="also export the best model as a SavedModel (DIR/best_savedmodel)")
    _args.add_data_dir(parser)
    parser.add_argument("--quiet", action="store_true",
                        help="no per-trial tables or progress bars, only the results")
    _distributed.add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _check_args(args, worker=False):
    if args.model.lower() not in MODELS:
        raise choice_error("MODEL", args.model, MODELS)
    if args.tuner.lower() not in TUNERS:
        raise choice_error("--tuner", args.tuner, TUNERS)
    if args.layers.lower() not in ("textbook", "keras"):
        raise choice_error("--layers", args.layers, ("textbook", "keras"))
    for flag, value in (("--max-trials", args.max_trials), ("--epochs", args.epochs),
                        ("--batch-size", args.batch_size), ("--image-size", args.image_size)):
        if value is not None and value < 1:
            raise UsageError(f"invalid value for {flag}: {value} (expected a positive integer)")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    directory = args.directory or os.path.join("runs", "tune",
                                               f"{args.model.lower()}-{args.dataset}")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise UsageError(f"invalid value for --output: {directory!r} (a file of that "
                         "name exists)")
    if (os.path.isdir(directory) and os.listdir(directory) and not args.resume
            and not args.overwrite and not worker):  # a worker joins the chief's folder
        raise UsageError(f"invalid value for --output: {directory!r} (not empty: pass "
                         "--resume to continue its search, --overwrite to replace it, or "
                         "choose another folder)")
    return directory


def _check_dataset(name, data_dir):
    from keras_cnn_ext import data

    try:
        data.info(name, data_dir=data_dir)
    except ValueError as exc:
        raise UsageError(f"invalid value for --dataset: {exc}") from None


def _best_lines(best):
    values, lines = best["values"], []
    stages = sorted({k.rsplit("_", 1)[0] for k in values
                     if k.rsplit("_", 1)[-1] in ("kernel", "stride", "filters")})
    for stage in stages:
        parts = [f"{key} {values[f'{stage}_{key}']}" for key in ("kernel", "stride", "filters")
                 if f"{stage}_{key}" in values]
        lines.append(f"  {stage}: " + ", ".join(parts))
    sizes = " -> ".join(f"{n} {h}x{w}" for n, (h, w) in best["geometry"])
    lines.append(f"  feature maps: {sizes}")
    others = {k: v for k, v in values.items()
              if k.rsplit("_", 1)[-1] not in ("kernel", "stride", "filters")}
    lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in others.items()))
    return lines


def run(args):
    cluster = _distributed.tuning_cluster(args)
    # the TensorFlow-only parts are refused before the folder is locked (created)
    if cluster is not None:
        from keras_cnn_ext.distribute import tuning as distributed_tuning

        distributed_tuning.require_backend()
    if args.export:
        from keras_cnn_ext.export import savedmodel

        savedmodel.require_backend("tune --export (SavedModel export)")
    worker = cluster is not None and cluster.role == "worker"
    if worker and (args.resume or args.overwrite):
        raise UsageError("--resume and --overwrite are the chief's: a worker joins its search")
    from keras_cnn_ext.training.lock import folder_lock

    # the names and values first (worker=True: without the "not empty" check, which must see
    # the folder under the lock), so a usage error touches nothing
    directory = _check_args(args, worker=True)
    # One writer per folder: the chief (or a search on one machine) locks it before checking
    # it; the workers of a distributed search join the chief's folder and take no lock.
    with contextlib.nullcontext() if worker else folder_lock(directory):
        return _run(args, cluster, worker)


def _run(args, cluster, worker):
    directory = _check_args(args, worker)
    _check_dataset(args.dataset, args.data_dir)
    from keras_cnn_ext.tuning import report
    from keras_cnn_ext.tuning.search import SettingsMismatchError, search

    try:
        result = search(args.model, args.dataset, directory=directory, tuner=args.tuner,
                        max_trials=args.max_trials, epochs=args.epochs,
                        batch_size=args.batch_size, image_size=args.image_size,
                        seed=args.seed, layers=args.layers, resume=args.resume,
                        overwrite=args.overwrite, baseline=args.baseline, export=args.export,
                        data_dir=args.data_dir, verbose=0 if args.quiet else 1,
                        distributed=cluster)
    except (SettingsMismatchError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    if worker:
        print(f"\nWorker {result['tuner_id']} ran trial(s) "
              f"{', '.join(result['trials']) or 'none'}; the chief writes the results.")
        return 0
    print()
    print(f"Trials ({result['completed']} completed, {result['failed']} failed, "
          f"{result['max_trials']} requested; score = val_accuracy):")
    print(report.format_table(result["trials"]))
    best = result["best"]
    if best is None:
        print("\nNo trial completed.")
        return 1
    print(f"\nBest trial {best['trial']}: val_accuracy {best['score']:.4f}")
    print("\n".join(_best_lines(best)))
    if result["baseline"] is not None:
        print(f"Default configuration: val_accuracy {result['baseline']['score']:.4f}")
    if "distributed" in result:
        print("\n" + _distributed.accounting_lines(result["distributed"]))
    print(f"\nWritten to {directory}:")
    for key, path in result["files"].items():
        print(f"  {key:21s} {os.path.relpath(path, directory)}")
    return 0
