"""`search`: a whole, resumable architecture search on a `kce.data` set (behind `tune`).

One output folder holds everything a search made::

    DIR/search.json               the settings (a resumed search must use the same ones)
    DIR/search/                   KerasTuner's project: oracle.json, trial_*/ (checkpoints,
                                  timing.json: the trial's phases and resident memory)
    DIR/trials.csv                one line per trial: status, score, seconds of fitting and of
                                  overhead, every hyperparameter
    DIR/scores.png                the score against each searched hyperparameter
    DIR/best_model.keras          the best trial's model, its best epoch's weights
    DIR/best_hyperparameters.json the best trial's values and feature-map sizes
    DIR/results.json              the summary (trials completed / failed, best, baseline)
    DIR/baseline.json             with baseline=True: the default configuration's score
    DIR/best_savedmodel/          with export=True: `kce.export.export_savedmodel`

Every file is written through a temporary name. After a SIGKILL, ``resume=True`` continues:
KerasTuner reloads its state and re-runs only the trial that was in flight, and the search
ends when `max_trials` trials exist.
"""

import json
import os
import shutil
import warnings

import keras

from keras_cnn_ext.tuning import overhead, report
from keras_cnn_ext.tuning.hypermodels import HYPERMODELS
from keras_cnn_ext.tuning.tuners import TUNERS, create_tuner, write_json

PROJECT = "search"
SETTINGS = "search.json"
# the natural input size of each family (the data are resized to it unless told otherwise)
IMAGE_SIZES = {"lenet5": 28, "vgg": 32, "resnet": 32}
# settings a resumed search may change
_RESUMABLE = ("max_trials", "export", "baseline", "verbose")


class SettingsMismatchError(ValueError):
    """`resume=True` on a folder whose search was started with other settings."""


def _check_name(value, name, choices):
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of "
                         f"{', '.join(choices)}. Received: {name}={value!r}")
    return value.lower()


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a positive integer. "
                         f"Received: {name}={value!r}")
    return value


def _prepare_directory(directory, settings, resume, overwrite):
    """Refuses a non-empty folder unless resuming (same settings) or overwriting one of ours."""
    path = os.path.join(directory, SETTINGS)
    entries = os.listdir(directory) if os.path.isdir(directory) else []
    if entries and not resume and not overwrite:
        raise FileExistsError(
            f"Invalid value for argument `directory`. Expected an empty or new folder (pass "
            f"resume=True to continue the search in it, overwrite=True to replace it). "
            f"Received: directory={directory!r} ({len(entries)} entries)"
        )
    if entries and resume and not os.path.exists(path):
        raise FileExistsError(
            f"Invalid value for argument `directory`. resume=True continues a search folder "
            f"(one with {SETTINGS}); this one has none. Received: directory={directory!r}"
        )
    if entries and overwrite and not resume:
        if not os.path.exists(path):
            raise FileExistsError(
                f"Invalid value for argument `directory`. overwrite=True only replaces a "
                f"search folder (one with {SETTINGS}). Received: directory={directory!r}"
            )
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    if resume and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        changed = {k: (previous.get(k), v) for k, v in settings.items()
                   if k not in _RESUMABLE and previous.get(k) != v}
        if changed:
            raise SettingsMismatchError(
                "Invalid value for argument `resume`. The search in "
                f"{directory!r} was started with other settings; resume it with the same "
                "ones (only max_trials may change). Differences (was, now): "
                + ", ".join(f"{k}={a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            )
    write_json(path, settings)


def _data(dataset, image_size, batch_size, seed, data_dir):
    from keras_cnn_ext import data

    facts = data.info(dataset, data_dir=data_dir)
    channels = facts["image_shape"][-1]
    kwargs = dict(batch_size=batch_size, image_size=image_size, seed=seed, data_dir=data_dir)
    train = data.load(dataset, split="train", shuffle=True, **kwargs)
    split = "validation" if "validation" in facts.get("splits", {}) else "test"
    val = data.load(dataset, split=split, shuffle=False, **kwargs)
    return train, val, (image_size, image_size, channels), facts["num_classes"], split


def search(model="lenet5", dataset="digits", *, directory, tuner="random", max_trials=10,
           epochs=1, batch_size=64, image_size=None, seed=0, layers="textbook", resume=False,
           overwrite=False, baseline=False, export=False, data_dir=None, verbose=1,
           oracle_options=None, tuner_options=None, distributed=None):
    """Searches kernel sizes, strides, filters, depth, ... of `model` on `dataset`.

    Args:
        model: "lenet5" (`HyperLeNet`), "vgg" (`HyperVGG`) or "resnet" (`HyperResNet`).
        dataset: a `kce.data` name ("digits" is embedded and offline); trained on "train",
            scored on "validation" (or "test" where there is none).
        directory: the output folder (see the module docstring).
        tuner: "random", "bayesian" or "hyperband".
        max_trials: trials of the search (failed ones count, as in KerasTuner).
        epochs: epochs per trial (Hyperband: the most a trial gets).
        batch_size, seed: of the data pipeline; `seed` also seeds the oracle and Keras.
        image_size: the images are resized to image_size x image_size; default the model's
            natural size (LeNet 28, VGG and ResNet 32).
        layers: "textbook" or "keras" layers in the models.
        resume: continue the search in `directory` (after a kill, or with more trials).
        overwrite: replace a previous search in `directory`.
        baseline: also train the hypermodel's default configuration the same way and report
            its score next to the best trial's.
        export: also write the best model as a SavedModel (`kce.export.export_savedmodel`).
        data_dir: the tfds data folder.
        verbose: 0 silent, 1 KerasTuner's trial tables and Keras progress bars.
        oracle_options, tuner_options: passed to `create_tuner`.
        distributed: this process's part of a distributed search, a
            `keras_cnn_ext.distribute.tuning.TuningCluster` (None: KerasTuner's environment
            variables if they are set, else one process). Every process runs the same call
            with the same `directory` (shared); start the chief first (it prepares the
            folder; `resume=True` when it restarts). The chief trains nothing: it serves the
            oracle with bounded waits, then writes the results; a worker runs trials.

    Returns:
        A dict: "trials" (rows: trial, status, score, values), "completed", "failed",
        "best" (trial, score, values, geometry), "baseline" (or None), "timing" (median
        seconds per trial: wall, fitting, overhead and its phases, see
        `keras_cnn_ext.tuning.overhead`; None without records), "files"; distributed:
        also "distributed" (the chief's accounting: which worker ran which trial, lost
        workers). A worker returns ``{"role": "worker", "tuner_id", "trials"}``.

    Raises:
        ValueError: a bad argument (the message names it); FileExistsError: `directory`
        is not empty and neither `resume` nor `overwrite` was given;
        keras_cnn_ext.TensorFlowOnlyError: `export` or a distributed search under another
        Keras backend than TensorFlow.
    """
    model = _check_name(model, "model", tuple(HYPERMODELS))
    tuner = _check_name(tuner, "tuner", TUNERS)
    for name, value in (("max_trials", max_trials), ("epochs", epochs),
                        ("batch_size", batch_size)):
        _positive(value, name)
    image_size = IMAGE_SIZES[model] if image_size is None else _positive(image_size,
                                                                        "image_size")
    directory = os.path.abspath(os.fspath(directory))
    settings = dict(model=model, dataset=dataset, tuner=tuner, max_trials=max_trials,
                    epochs=epochs, batch_size=batch_size, image_size=image_size, seed=seed,
                    layers=layers)
    from keras_cnn_ext.distribute import tuning as distributed_tuning

    cluster = distributed or distributed_tuning.TuningCluster.from_env()
    # the TensorFlow-only parts are refused before anything is written or trained
    if cluster is not None:
        distributed_tuning.require_backend()
    if export:
        from keras_cnn_ext.export import savedmodel

        savedmodel.require_backend("SavedModel export of the best model (export=True)")
    if cluster is None or cluster.role == "chief":
        # checked (and written) before the data load: a refused folder costs nothing
        _prepare_directory(directory, settings, resume, overwrite)
    train, val, input_shape, num_classes, split = _data(dataset, image_size, batch_size, seed,
                                                        data_dir)
    hypermodel = HYPERMODELS[model](input_shape, num_classes, layers=layers)
    keras.utils.set_random_seed(seed)
    tuners = []

    def make_tuner():
        tuners.append(create_tuner(
            hypermodel, tuner, directory=directory, project_name=PROJECT,
            max_trials=max_trials, max_epochs=epochs, seed=seed + 1,
            oracle_options=oracle_options, tuner_options=tuner_options))
        return tuners[-1]

    fit = dict(validation_data=val, epochs=epochs, verbose=verbose)
    if cluster is None:
        make_tuner().search(train, **fit)
        accounting = None
    else:
        accounting = distributed_tuning.run_distributed(cluster, make_tuner, train, **fit)
        if cluster.role == "worker":
            return accounting
    result = _finish(tuners[0], hypermodel, directory, settings, split, train, val, baseline,
                     export, verbose)
    if accounting is not None:
        result["distributed"] = {k: accounting[k] for k in (
            "assignments", "ended", "lost", "workers")}
    return result


def _finish(kt, hypermodel, directory, settings, split, train, val, baseline, export,
            verbose):
    order = [spec.name for spec in hypermodel.specs]
    rows = report.trial_rows(kt, hypermodel.configuration, order)
    files = {"trials_csv": os.path.join(directory, "trials.csv"),
             "plot": os.path.join(directory, "scores.png"),
             "results": os.path.join(directory, "results.json")}
    report.write_csv(rows, files["trials_csv"])
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    best = None
    if completed:
        trial = kt.oracle.get_best_trials(1)[0]
        values = dict(trial.hyperparameters.values)
        geometry = [(n, list(hw)) for n, hw in hypermodel.geometry(values)]
        best = dict(trial=trial.trial_id, score=float(trial.score),
                    values=hypermodel.configuration(values), geometry=geometry)
        files["best_hyperparameters"] = os.path.join(directory, "best_hyperparameters.json")
        write_json(files["best_hyperparameters"], best)
        files["best_model"] = os.path.join(directory, "best_model.keras")
        with warnings.catch_warnings():
            # the checkpoint holds the optimizer's slots, the rebuilt model has none yet
            warnings.filterwarnings("ignore", message="Skipping variable loading")
            best_model = kt.get_best_models(1)[0]
        tmp = os.path.join(directory, f".best_model.tmp-{os.getpid()}.keras")
        best_model.save(tmp)
        os.replace(tmp, files["best_model"])
        if export:
            files["savedmodel"] = _export(best_model, directory)
    base = _baseline(hypermodel, directory, settings, train, val, verbose) if baseline else None
    choices = report.searched(kt.oracle.get_space().space)
    title = (f"{type(hypermodel).__name__} on {settings['dataset']}: val_accuracy "
             f"({split} split) of {len(rows)} trials, {settings['tuner']} search")
    report.plot_scores(rows, choices, files["plot"], title=title,
                       baseline=None if base is None else base["score"])
    names = list(choices)
    timing = overhead.summarize(report.trial_timing(kt, r["trial"]) for r in rows)
    result = dict(model=settings["model"], dataset=settings["dataset"],
                  tuner=settings["tuner"], max_trials=settings["max_trials"],
                  completed=len(completed),
                  failed=sum(r["status"] in ("FAILED", "INVALID") for r in rows),
                  best=best, baseline=base, searched=names,
                  valid_fraction=hypermodel.exact_valid_fraction, timing=timing, trials=rows,
                  files=files)
    write_json(files["results"], {k: v for k, v in result.items() if k != "trials"})
    return result


def _baseline(hypermodel, directory, settings, train, val, verbose):
    """The default configuration trained like a trial (cached in baseline.json)."""
    path = os.path.join(directory, "baseline.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    import keras_tuner

    keras.backend.clear_session()
    keras.utils.set_random_seed(settings["seed"])
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    # trained the way a trial is (`GeometryHyperModel.fit`)
    history = hypermodel.fit(hp, model, train, validation_data=val, epochs=settings["epochs"],
                             verbose=verbose)
    result = dict(score=max(history.history["val_accuracy"]),
                  values=hypermodel.default_values())
    write_json(path, result)
    return result


def _export(model, directory):
    from keras_cnn_ext import export

    path = os.path.join(directory, "best_savedmodel")
    if os.path.exists(path):
        shutil.rmtree(path)
    export.export_savedmodel(model, path)
    return path
