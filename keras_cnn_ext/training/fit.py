"""Training with `model.fit`: the Python API behind ``keras-cnn-ext train``.

`train` builds a registered model for a data set, fits it with Keras progress bars, writes
TensorBoard logs and a kill-safe checkpoint after every epoch, evaluates the held-out test split
and leaves everything in one output folder (the way timm's ``output/train/<run>/`` does)::

    DIR/args.json              the arguments of the run (and the command line)
    DIR/model.keras            the final model
    DIR/metrics.json           test_accuracy, test_loss, epochs, seconds, model, dataset, seed...
    DIR/history.json           per-epoch lists over all epochs (also those before a resume)
    DIR/training_curves.png    loss and accuracy per epoch, training and validation
    DIR/logs/                  TensorBoard event files (`tensorboard --logdir DIR/logs`)
    DIR/checkpoints/           the last epoch's model and the resumable state

**Resume**: ``resume=True`` continues a run killed at any instant (even SIGKILL) from its last
completed epoch; each epoch's checkpoint is written before it is recorded (see
`keras_cnn_ext.training.checkpointing`). The training examples of epoch e are shuffled with a seed
derived from (seed, e), so a resumed run sees the same batches as one never interrupted.

Model building and compiling happen in one function (`build_and_compile`), so a distribution
strategy's scope (or another training loop) can wrap them.
"""

import contextlib
import datetime
import functools
import inspect
import os
import shutil
import sys
import time

import keras

from keras_cnn_ext import distribute
from keras_cnn_ext.training import checkpointing
from keras_cnn_ext.training import inputs
from keras_cnn_ext.training.config import (
    DEFAULT_LEARNING_RATES, RUN_FILES, check_output, resolve_config, validate_config,
)
from keras_cnn_ext.training.lock import folder_lock

__all__ = ["train", "evaluate", "build_model", "compile_model", "build_and_compile",
           "make_optimizer", "default_output", "RUN_FILES"]


def default_output(model, dataset, root=os.path.join("runs", "train")):
    """A new folder name per run: ``runs/train/<model>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{model}-{dataset.replace('/', '_').replace(':', '_')}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return path


@contextlib.contextmanager
def _implementation(choice):
    """Forces the textbook layers' implementation for the duration of a run ("auto": as is)."""
    from keras_cnn_ext.ops import dispatch

    if choice == "auto":
        yield
        return
    previous = os.environ.get(dispatch.ENV_VAR)
    os.environ[dispatch.ENV_VAR] = choice
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(dispatch.ENV_VAR, None)
        else:
            os.environ[dispatch.ENV_VAR] = previous


_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
               "nadam": "Nadam", "adagrad": "Adagrad"}


def make_optimizer(name, learning_rate=None, schedule="cosine", total_steps=None):
    """A Keras optimizer by name.

    Args:
        name: one of `OPTIMIZERS`.
        learning_rate: the initial rate; None takes `DEFAULT_LEARNING_RATES[name]`.
        schedule: "cosine" (decay to 0 over `total_steps`, as timm does by default) or
            "constant".
        total_steps: the number of optimizer steps of the whole run (for "cosine").
    """
    cls = getattr(keras.optimizers, _OPTIMIZERS[name])
    rate = float(DEFAULT_LEARNING_RATES[name] if learning_rate is None else learning_rate)
    if schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, total_steps))
    return cls(learning_rate=rate)


def build_model(config, num_classes):
    """The registered model of `config`, initialised from its seed (not compiled); with
    ``weights``, the converted network with a new classifier for `num_classes`
    (`keras_cnn_ext.models.pretrained.finetune_model`)."""
    from keras_cnn_ext import models

    keras.utils.set_random_seed(config["seed"])
    if config.get("weights") is not None:
        from keras_cnn_ext.models import pretrained

        shape = config["input_shape"]
        return pretrained.finetune_model(
            config["model"], config["weights"], num_classes, variant=config["variant"],
            input_shape=tuple(shape) if shape is not None else None,
            freeze_backbone=config["freeze_backbone"])
    kwargs = {"num_classes": num_classes, "layers": config["layers"]}
    if config["input_shape"] is not None:
        kwargs["input_shape"] = tuple(config["input_shape"])
    return models.get_model(config["model"], **kwargs)


def compile_model(model, config, steps_per_epoch):
    """Compiles with sparse cross-entropy, accuracy and the run's optimizer and schedule."""
    optimizer = make_optimizer(config["optimizer"], config["learning_rate"], config["schedule"],
                               steps_per_epoch * config["epochs"])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def build_and_compile(config, num_classes, steps_per_epoch):
    """`build_model` + `compile_model`: call it inside ``strategy.scope()`` to create the
    variables under a distribution strategy."""
    return compile_model(build_model(config, num_classes), config, steps_per_epoch)


def _write_history(out, history, title=None):
    """history.json (after every epoch); the curves too when `title` is given (at the end:
    drawing takes about a second, more than an epoch of LeNet-5 on digits)."""
    checkpointing.atomic_write_json(os.path.join(out, "history.json"), history)
    if title is None:
        return
    try:
        from keras_cnn_ext import viz

        viz.plot_training_curves(history, os.path.join(out, "training_curves.png"), title=title)
    except ImportError as exc:  # matplotlib is an optional extra
        print(f"(training curves not drawn: {exc})", file=sys.stderr)


def _tensorboard_installed(verbose):
    # Keras' TensorBoard callback writes through the `tensorboard` package's summary ops
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        return True
    if verbose:
        print("(no TensorBoard logs: pip install tensorboard)", file=sys.stderr)
    return False


def _verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def _prepare_output(out, resume, overwrite):
    if overwrite and os.path.isdir(out):
        for name in RUN_FILES:  # this run's files only: anything else in the folder stays
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(out, exist_ok=True)
    checkpointing.remove_temporaries(out)
    checkpointing.remove_temporaries(os.path.join(out, "checkpoints"))


def _run_metrics(config, history, net, shape, n_train, batch, place, out, test_split,
                 test_loss, test_acc, resumed, wall_seconds):
    """metrics.json of a finished run: the test result, the last epoch's numbers and the
    run's settings."""
    def last(key):
        values = history.get(key) or [None]
        return values[-1]

    return {
        "test_accuracy": float(test_acc), "test_loss": float(test_loss),
        "test_split": test_split,
        "val_accuracy": last("val_accuracy"), "val_loss": last("val_loss"),
        "train_accuracy": last("accuracy"), "train_loss": last("loss"),
        "epochs": len(history.get("epoch", [])),
        "seconds": float(sum(s for s in history.get("seconds", []) if s)),
        "wall_seconds": wall_seconds,
        "model": config["model"], "dataset": config["dataset"], "seed": config["seed"],
        "layers": config["layers"], "implementation": config["implementation"],
        "batch_size": config["batch_size"], "optimizer": config["optimizer"],
        "learning_rate": float(config["learning_rate"] or
                               DEFAULT_LEARNING_RATES[config["optimizer"]]),
        "schedule": config["schedule"],
        "augment": config["augment"],
        "params": int(net.count_params()), "input_shape": list(shape),
        "train_examples": n_train, "resumed": bool(resumed), "output": out,
        "global_batch_size": batch, **place.describe(),
    }


def _one_writer(function):
    """Runs `train` holding the lock of its output folder (`keras_cnn_ext.training.lock`): a
    second process on the same folder gets `FolderLockedError` before anything is read or
    written. (The command line takes the same lock earlier, around its checks; it is
    re-entrant within a process.)"""

    @functools.wraps(function)
    def locked(*args, **kwargs):
        bound = inspect.signature(function).bind(*args, **kwargs)
        output, strategy = bound.arguments.get("output"), bound.arguments.get("strategy")
        distribute.check_backend(strategy)  # before the lock creates the folder
        try:
            out = distribute.run_output(strategy, os.fspath(output) if output else None)
        except (ValueError, TypeError):
            out = None  # `function` reports the bad argument itself
        with folder_lock(out) if out else contextlib.nullcontext():
            return function(*args, **kwargs)

    return locked


@_one_writer
def train(model="lenet5", dataset="digits", epochs=None, batch_size=None, learning_rate=None,
          optimizer=None, schedule=None, augment=None, seed=None, implementation=None,
          layers=None, output=None, resume=False, overwrite=False, data_dir=None,
          input_shape=None, max_examples=None, download=False, tensorboard=True, verbose="auto",
          callbacks=None, strategy=None, cpu_replicas=None, sync_batch_norm=None, weights=None,
          variant=None, freeze_backbone=None):
    """Trains `model` on `dataset` with `model.fit`; returns the metrics (also in metrics.json).

    Arguments left as None take their defaults (`keras_cnn_ext.training.config.DEFAULTS`:
    20 epochs, batch size 16, Adam at 2e-3, constant rate, no augmentation, seed 0, textbook layers,
    implementation "auto") or, with ``resume=True``, the values the run was started with.

    Args:
        model: a registered model name (`keras_cnn_ext.models.list_models()`).
        dataset: "digits" (embedded) or a tensorflow-datasets name; images are resized to the
            model's input (28x28x1 for LeNet-5, 32x32x3 for the CIFAR ResNets).
        epochs: total number of epochs (with resume: may be raised to train further).
        batch_size: examples per step.
        learning_rate: the optimizer's initial learning rate (None: 2e-3 for the Adam
            family, Keras' default for the others).
        optimizer: "adam", "adamw", "sgd", "rmsprop", "nadam" or "adagrad".
        schedule: "cosine" (the rate decays to 0 over the run) or "constant".
        augment: "crop" (random shifts up to 1/8 of the image: zero-pad and crop),
            "crop_flip" (also horizontal flips, for natural images) or "none".
        seed: makes the run repeatable (initial weights, shuffling).
        implementation: "auto", "composite" or "native" for the textbook layers.
        layers: "textbook" (this package's layers) or "keras" (stock Keras layers).
        output: the run's folder; default a new ``runs/train/<model>-<dataset>-<time>``.
        resume: continue the run in `output` from its last completed epoch.
        overwrite: replace the run files in a non-empty `output`.
        data_dir: the tensorflow-datasets data folder (default $TFDS_DATA_DIR or
            ~/tensorflow_datasets).
        input_shape: (height, width, channels) of the model, default the builder's.
        max_examples: use at most this many examples of each split (smoke runs).
        download: let tensorflow-datasets download and prepare a missing set (needs network;
            by default nothing is downloaded and a missing set raises at once).
        tensorboard: write TensorBoard logs to ``output/logs``.
        verbose: Keras' fit verbosity; "auto": progress bars on a terminal, else a line per
            epoch.
        callbacks: extra Keras callbacks.
        strategy: "default" (one device), "mirrored" (this machine's GPUs, or `cpu_replicas`
            CPU replicas) or "multi_worker" (the processes of TF_CONFIG; every worker runs the
            same call with the same `output`). `batch_size` is then per replica: a step
            consumes batch_size x replicas examples. Only the chief writes the model, metrics
            and curves into `output`; the other workers keep their checkpoints and logs in
            ``output/workers/<task>-<index>``. See docs/scaling-out.md.
        cpu_replicas: with "mirrored": split the CPU into this many replicas.
        sync_batch_norm: with several replicas, normalise with the statistics of the global
            batch (default True: a step equals one device's on the global batch).
        weights: fine-tune from trained weights: a ``.keras`` file written by
            `keras_cnn_ext.models.pretrained.convert` (``keras-cnn-ext convert``) or a weight
            source (.pth, .safetensors, .h5); the classifier is replaced by one for the data
            set's classes and the weights' input normalisation comes first.
        variant: the layout of a weight source: "torchvision" (default) or "keras".
        freeze_backbone: with `weights`, train the new classifier only.

    Returns:
        The metrics dict: ``test_accuracy``, ``test_loss``, ``val_accuracy``, ``epochs``,
        ``seconds`` (training time over all epochs), ``wall_seconds`` (this call), ``model``,
        ``dataset``, ``seed``, ``params``, ``output``, ...

    Raises:
        ValueError: a bad argument (the message names it and the valid choices).
        FileExistsError: `output` is not empty and neither `resume` nor `overwrite` is set.
        keras_cnn_ext.data.DatasetNotAvailableError: a tfds set that is not prepared locally.
        keras_cnn_ext.training.FolderLockedError: another process is writing `output`.
    """
    started = time.perf_counter()
    given = dict(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size,
                 learning_rate=learning_rate, optimizer=optimizer, schedule=schedule,
                 augment=augment, seed=seed, implementation=implementation, layers=layers,
                 data_dir=data_dir,
                 input_shape=input_shape, max_examples=max_examples, download=download,
                 strategy=strategy, cpu_replicas=cpu_replicas, sync_batch_norm=sync_batch_norm,
                 weights=weights, variant=variant, freeze_backbone=freeze_backbone)
    for flag, value in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise ValueError(f"Invalid value for argument `{flag}`. Expected True or False. "
                             f"Received: {flag}={value!r}")
    if resume and overwrite:
        raise ValueError("Invalid value for argument `overwrite`. Expected False together with "
                         "resume=True (resume continues a run, overwrite replaces it). "
                         "Received: overwrite=True")
    out = distribute.run_output(strategy, os.fspath(output) if output is not None else None)
    stored = check_output(out, resume, overwrite)
    config = validate_config(resolve_config(given, stored))
    distribute.check_resumed_strategy(strategy, config["strategy"])
    # before any TensorFlow operation: devices and collectives are fixed at the first one
    place = distribute.Placement.create(config["strategy"], config["cpu_replicas"])
    from keras_cnn_ext import data

    # the data next: a missing set fails before any file is written
    data.load(config["dataset"], data_dir=config["data_dir"], batch_size=None,
              download=config["download"], cache=False)
    facts = data.info(config["dataset"], config["data_dir"])
    train_split, val_split, test_split = data.standard_splits(config["dataset"],
                                                              config["data_dir"], facts)
    if out is None:
        out = default_output(config["model"], config["dataset"])
    _prepare_output(out, resume, overwrite)
    record = {"arguments": config, "command": list(sys.argv),
              "started": (stored or {}).get("started") or datetime.datetime.now().isoformat(
                  timespec="seconds")}
    checkpointing.atomic_write_json(os.path.join(out, "args.json"), record)
    verbose = _verbose(verbose)
    if verbose:
        print(f"Output folder: {out}", flush=True)
    ckpt_dir = os.path.join(out, "checkpoints")
    batch = place.global_batch(config["batch_size"])  # per-replica batch x replicas
    with _implementation(config["implementation"]), place.scope():
        # also when resuming: tf.data's shuffles combine their seeds with the global one
        keras.utils.set_random_seed(config["seed"])
        state = checkpointing.load_state(ckpt_dir) if resume else None
        if state is not None:
            net = keras.models.load_model(state["checkpoint_path"])
            first_epoch, history = int(state["completed_epochs"]), state["history"]
            if verbose:
                print(f"Resuming after epoch {first_epoch} from {state['checkpoint_path']}",
                      flush=True)
        else:
            net = build_model(config, facts["num_classes"])
            first_epoch, history = 0, {}
        place.prepare_model(net, config["sync_batch_norm"])
        shape = tuple(net.input_shape[1:])
        cap = config["max_examples"]
        train_examples = inputs.examples(config, train_split, shape, cap)
        n_train = inputs.count(train_examples)
        steps = -(-n_train // batch)
        if state is None:
            compile_model(net, config, steps)
        val = place.prepare_data(
            inputs.batched(inputs.examples(config, val_split, shape, cap), batch))
        title = f"{config['model']} on {config['dataset']} ({config['layers']} layers)"
        saver = checkpointing.EpochCheckpoint(
            ckpt_dir, history, on_epoch_saved=lambda h: _write_history(out, h))
        fit_callbacks = [saver] + list(callbacks or [])
        if tensorboard and _tensorboard_installed(verbose):
            fit_callbacks.append(keras.callbacks.TensorBoard(
                log_dir=os.path.join(out, "logs"), write_graph=False))
        if first_epoch < config["epochs"]:
            augment_fn = inputs.augmenter(config["augment"], shape, config["seed"])
            net.fit(place.prepare_data(inputs.epoch_batches(
                        train_examples, n_train, batch, config["seed"], first_epoch,
                        config["epochs"], augment_fn)),
                    validation_data=val, epochs=config["epochs"], initial_epoch=first_epoch,
                    steps_per_epoch=steps, callbacks=fit_callbacks, verbose=verbose,
                    shuffle=False)  # shuffled per epoch above
        history = saver.history
        test_ds = place.prepare_data(inputs.batched(
            inputs.examples(config, test_split or val_split, shape, cap), batch))
        test_loss, test_acc = net.evaluate(test_ds, verbose=0)
    if place.is_chief:  # the other workers of a multi-worker run have their checkpoints
        checkpointing.atomic_save_model(net, os.path.join(out, "model.keras"))
    _write_history(out, history, title if place.is_chief else None)

    metrics = _run_metrics(config, history, net, shape, n_train, batch, place, out,
                           test_split or val_split, test_loss, test_acc, resumed=state is not None,
                           wall_seconds=time.perf_counter() - started)
    if not place.is_chief:
        return metrics
    checkpointing.atomic_write_json(os.path.join(out, "metrics.json"), metrics)
    if verbose:
        print(f"test accuracy {metrics['test_accuracy']:.4f}, test loss "
              f"{metrics['test_loss']:.4f} after {metrics['epochs']} epochs "
              f"({metrics['seconds']:.1f} s training)", flush=True)
        print(f"Wrote model.keras, metrics.json, history.json, training_curves.png, args.json, "
              f"logs/ and checkpoints/ to {out}", flush=True)
    return metrics


def evaluate(model, dataset="digits", split="test", batch_size=128, data_dir=None,
             max_examples=None):
    """Evaluates a model (a `keras.Model` or a ``.keras`` file) on a data set split.

    Images are resized to the model's input shape. Returns ``{"loss", "accuracy",
    "examples", "model", "dataset", "split"}``.
    """
    from keras_cnn_ext import data

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Invalid value for argument `model`. Expected a .keras "
                                    f"file. Received: model={path!r} (no such file)")
        model = keras.models.load_model(path)
    else:
        path = model.name
    name = data.resolve_name(dataset)
    shape = tuple(model.input_shape[1:])
    config = {"dataset": name, "data_dir": data_dir}
    ds = inputs.examples(config, split, shape, max_examples)
    n = inputs.count(ds)
    if not getattr(model, "compiled", False) or not getattr(model, "loss", None):
        # (`compiled_loss` exists on the TensorFlow trainer only)
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    results = model.evaluate(inputs.batched(ds, batch_size), verbose=0, return_dict=True)
    accuracy = results.get("accuracy", results.get("compile_metrics", None))
    return {"loss": float(results["loss"]), "accuracy": None if accuracy is None else
            float(accuracy), "examples": n, "model": path, "dataset": name, "split": split}
