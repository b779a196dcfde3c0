"""The arguments of a training run: defaults, validation, and what a resumed run keeps.

Kept apart from `keras_cnn_ext.training.fit` so the command line can validate names and values
(and offer the valid choices) before anything heavy is imported.
"""

import os

from keras_cnn_ext.training import checkpointing
from keras_cnn_ext.distribute.strategy import STRATEGIES

DEFAULTS = {"epochs": 20, "batch_size": 16, "learning_rate": None, "optimizer": "adam",
            "schedule": "constant", "augment": "none", "seed": 0, "implementation": "auto",
            "layers": "textbook", "data_dir": None, "input_shape": None, "max_examples": None,
            "download": False, "strategy": "default", "cpu_replicas": None,
            "sync_batch_norm": True, "weights": None, "variant": "torchvision",
            "freeze_backbone": False}
# learning_rate=None means this rate for the optimizer (Keras' defaults, except the Adam family:
# 2e-3, measured best for LeNet-5 on digits; see docs/training.md)
DEFAULT_LEARNING_RATES = {"adam": 2e-3, "adamw": 2e-3, "nadam": 2e-3, "sgd": 1e-2,
                          "rmsprop": 1e-3, "adagrad": 1e-3}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad")
SCHEDULES = ("cosine", "constant")
AUGMENTATIONS = ("crop", "crop_flip", "none")
IMPLEMENTATIONS = ("auto", "composite", "native")
LAYERS = ("textbook", "keras")
# the layouts `weights` may come in (keras_cnn_ext.models.pretrained.SOURCE_VARIANTS)
WEIGHT_VARIANTS = ("torchvision", "keras")
# what a run writes into its folder (also: what `overwrite=True` removes; nothing else is)
RUN_FILES = ("args.json", "model.keras", "metrics.json", "history.json",
             "training_curves.png", "logs", "checkpoints")
# arguments that may differ when a run is resumed (the rest must match the original run;
# epochs only with the constant schedule)
RESUMABLE_CHANGES = ("epochs", "implementation", "data_dir", "download")


def _invalid(name, expected, value):
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                      f"Received: {name}={value!r}")


def _int(config, name, minimum, optional=False):
    value = config[name]
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(name, f"an integer >= {minimum}" + (" or None" if optional else ""),
                       value)


def _choice(config, name, choices):
    value = config[name]
    key = value.lower() if isinstance(value, str) else value
    if key not in choices:
        raise _invalid(name, f"one of {', '.join(choices)}", value)
    config[name] = key


def check_model_name(name):
    """The registered model name (lower case), or a ValueError listing the valid names."""
    from keras_cnn_ext import models

    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    if key not in models.list_models():
        raise _invalid("model", f"one of {', '.join(models.list_models())}", name)
    return key


def validate_config(config):
    """Checks every argument of a run; returns the config with names normalised."""
    config = dict(config)
    config["model"] = check_model_name(config["model"])
    from keras_cnn_ext import data

    try:
        config["dataset"] = data.resolve_name(config["dataset"])
    except ValueError as exc:
        raise ValueError(str(exc).replace("argument `name`", "argument `dataset`")
                         .replace("Received: name=", "Received: dataset=")) from None
    _int(config, "epochs", 1)
    _int(config, "batch_size", 1)
    _int(config, "seed", 0)
    _int(config, "max_examples", 1, optional=True)
    _choice(config, "optimizer", OPTIMIZERS)
    _choice(config, "schedule", SCHEDULES)
    _choice(config, "augment", AUGMENTATIONS)
    _choice(config, "implementation", IMPLEMENTATIONS)
    _choice(config, "layers", LAYERS)
    _choice(config, "strategy", STRATEGIES)
    _int(config, "cpu_replicas", 1, optional=True)
    if config["cpu_replicas"] not in (None, 1) and config["strategy"] != "mirrored":
        raise _invalid("cpu_replicas", "None or 1 unless strategy='mirrored' (it splits the "
                       "CPU into that many replicas)", config["cpu_replicas"])
    if not isinstance(config["sync_batch_norm"], bool):
        raise _invalid("sync_batch_norm", "True or False", config["sync_batch_norm"])
    lr = config["learning_rate"]
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                           or not lr > 0 or lr != lr or lr == float("inf")):
        raise _invalid("learning_rate", "a positive finite number or None", lr)
    shape = config["input_shape"]
    if shape is not None:
        if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                           for d in shape)):
            raise _invalid("input_shape", "(height, width, channels) of positive integers",
                           shape)
        config["input_shape"] = list(shape)
    if not isinstance(config["download"], bool):
        raise _invalid("download", "True or False", config["download"])
    if config["data_dir"] is not None:
        config["data_dir"] = os.fspath(config["data_dir"])
    if config["weights"] is not None:
        if not isinstance(config["weights"], (str, os.PathLike)):
            raise _invalid("weights", "None or the path of a weight file (.keras from "
                           "`convert`, .pth, .safetensors, .h5)", config["weights"])
        config["weights"] = os.fspath(config["weights"])
    _choice(config, "variant", WEIGHT_VARIANTS)
    if not isinstance(config["freeze_backbone"], bool):
        raise _invalid("freeze_backbone", "True or False", config["freeze_backbone"])
    if config["freeze_backbone"] and config["weights"] is None:
        raise _invalid("freeze_backbone", "False without `weights` (a random backbone is not "
                       "worth freezing)", config["freeze_backbone"])
    return config


def check_output(out, resume, overwrite):
    """Refuses a non-empty output folder unless resuming/overwriting; returns the stored
    ``args.json`` record when resuming (None otherwise or if there is none)."""
    if out is None:
        if resume:
            raise _invalid("output", "the folder of the run to resume (resume=True)", out)
        return None
    if os.path.exists(out) and not os.path.isdir(out):
        raise _invalid("output", "a folder", out)
    entries = sorted(os.listdir(out)) if os.path.isdir(out) else []
    # "workers/" holds the other workers' folders of a multi-worker run: they may create it
    # before the chief gets here
    entries = [e for e in entries if e != "workers"]
    if entries and not (resume or overwrite):
        shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
        raise FileExistsError(
            f"The output folder {out} is not empty ({shown}). Pass resume=True (--resume) to "
            "continue the run in it, overwrite=True (--overwrite) to replace its run files, "
            "or choose another output folder."
        )
    if resume:
        return checkpointing.read_json(os.path.join(out, "args.json"))
    return None


def resolve_config(given, stored):
    """Fills arguments left as None: from the stored run when resuming, else the defaults.

    Raises:
        ValueError: a resumed run given a different value for an argument that fixes the run
            (model, data set, batch size, optimizer, learning rate, seed, layers, ...).
    """
    previous = (stored or {}).get("arguments") or {}
    config = {}
    conflicts = []
    changeable = set(RESUMABLE_CHANGES)
    if previous.get("schedule", "constant") != "constant":
        changeable.discard("epochs")  # the cosine schedule was laid out over those epochs
    for key, value in given.items():
        if key in previous and key not in changeable:
            old = previous[key]
            if value is not None and _normal(value) != _normal(old):
                conflicts.append(f"{key}={value!r} (the run has {old!r})")
            config[key] = old
        elif value is not None:
            config[key] = value
        elif key in previous:
            config[key] = previous[key]
        else:
            config[key] = DEFAULTS.get(key)
    if conflicts:
        raise ValueError(
            "Invalid value for argument `resume`. A resumed run keeps its settings; these "
            f"differ: {'; '.join(conflicts)}. Leave them out, or start a new run. "
            "Received: resume=True"
        )
    return config


def _normal(value):
    if isinstance(value, (tuple, list)):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        return value.lower().replace("-", "_")
    return value
