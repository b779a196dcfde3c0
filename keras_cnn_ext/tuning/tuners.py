"""Tuner construction: one function, `create_tuner`, for random, Bayesian and Hyperband search.

The tuners and oracles are KerasTuner's, with three additions (mixins, so distributed tuning
and every KerasTuner option keep working):

* the constructor never builds a model for our hypermodels: they declare their whole space,
  conditional branches included, in `declare_hyperparameters`, so KerasTuner's default build
  (which has no error handling, keras-tuner #908 / #1011) is not needed; for any other
  hypermodel a `FailedTrialError` at that build becomes a `ValueError` that says so;
* random draws whose geometry does not fit are redrawn by the oracle (random search, the
  initial points of Bayesian optimisation, Hyperband's new brackets), so a search spends no
  trial on them; the few a Bayesian step may still propose fail fast with the geometry;
* the oracle's and tuner's state files and every ``trial.json`` are written through a
  temporary name and renamed, so a SIGKILL never leaves half a JSON file: a killed search
  resumes (`overwrite=False`), re-running only the trial that was in flight;
* each trial's graphs are released after it (`release_custom_gradients`), its phases and
  resident memory are written to ``trial_<id>/timing.json`` (`keras_cnn_ext.tuning.overhead`),
  and the objects alive when the search starts (TensorFlow, Keras, the data, the tuner: some
  400,000) are moved out of the garbage collector's way for the search (`gc.freeze`): the two
  full collections KerasTuner and Keras run before every build took 0.15 s each, and every
  automatic full collection while a trial traces its steps walked them again (docs/
  tuning-soak.md).
"""

import contextlib
import gc
import json
import os

import keras_tuner

from keras_cnn_ext.ops._custom_gradient import release_custom_gradients
from keras_cnn_ext.tuning import overhead
from keras_cnn_ext.tuning.base import GeometryHyperModel

TUNERS = ("random", "bayesian", "hyperband")


def write_json(path, data):
    """Writes JSON through a temporary name and an atomic rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def long_lived_objects_frozen():
    """Within the block, the objects alive when it starts are ignored by the garbage collector
    (`gc.freeze`; reference counting still frees them), so each collection walks only what
    was made since: a trial's model and graphs. Only where nothing else froze objects (a
    server's pre-fork freeze is left as it is); undone at the end, also on an error."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()  # what is already garbage is not frozen
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _SafeOracle:
    """Oracle mixin: redraws random samples that do not fit; atomic state files."""

    geometry_filter = None  # values -> bool, set by `create_tuner`
    max_redraws = 200

    def _random_values(self):
        values = super()._random_values()
        for _ in range(self.max_redraws):
            if values is None or self.geometry_filter is None or self.geometry_filter(values):
                break
            values = super()._random_values()
        return values

    def save(self):
        write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                   trial.get_state())


class RandomSearchOracle(_SafeOracle, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_SafeOracle, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_SafeOracle, keras_tuner.oracles.HyperbandOracle):
    pass


class _SafeTuner:
    """Tuner mixin: no unguarded default build; atomic state file; each trial's graphs
    released after it and its phases timed (``trial_<id>/timing.json``)."""

    @property
    def trial_clock(self):
        """The `overhead.TrialClock` of this tuner's trials."""
        clock = self.__dict__.get("_trial_clock")
        if clock is None:
            clock = self.__dict__["_trial_clock"] = overhead.TrialClock()
        return clock

    def search(self, *fit_args, **fit_kwargs):
        with long_lived_objects_frozen():
            return super().search(*fit_args, **fit_kwargs)

    def pre_create_trial(self):
        super().pre_create_trial()
        self.trial_clock.request_begins()

    def on_trial_begin(self, trial):
        self.trial_clock.trial_begins()
        super().on_trial_begin(trial)

    def _try_build(self, hp):
        self.trial_clock.build_begins()
        try:
            return super()._try_build(hp)  # clear_session + gc.collect + build + compile
        finally:
            self.trial_clock.build_ends()

    def run_trial(self, trial, *args, **kwargs):
        # KerasTuner deep-copies these callbacks per execution; the clock copies as itself
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [self.trial_clock]
        try:
            return super().run_trial(trial, *args, **kwargs)
        finally:
            self.trial_clock.fit_ends()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # TensorFlow's graph-mode custom gradients (ours and the optimizer's all-reduce) hold
        # every traced graph forever; tied to their graphs, the next trial's clear_session +
        # gc.collect (in `_try_build`) frees the previous trial's whole model.
        release_custom_gradients()
        record = self.trial_clock.trial_ends()
        record.update(rss_mb=overhead.resident_mb(), tuner_id=self.tuner_id)
        overhead.write_timing(self.get_trial_dir(trial.trial_id), record)

    def on_search_end(self):
        super().on_search_end()
        release_custom_gradients()

    def _populate_initial_space(self):
        if isinstance(self.hypermodel, GeometryHyperModel):
            hp = self.oracle.get_space()
            self.hypermodel.declare_hyperparameters(hp)
            self.oracle.update_space(hp)
            return
        try:
            super()._populate_initial_space()
        except keras_tuner.errors.FailedTrialError as exc:
            raise ValueError(
                "Invalid value for argument `hypermodel`. Its default configuration does not "
                f"build, and KerasTuner builds it when a tuner is created: {exc}"
            ) from None

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json(self._get_tuner_fname(), self.get_state())


class Tuner(_SafeTuner, keras_tuner.Tuner):
    """KerasTuner's `Tuner` (random search and Bayesian optimisation run on it)."""


class HyperbandTuner(_SafeTuner, keras_tuner.Hyperband):
    """KerasTuner's `Hyperband` (epochs per bracket, weights carried between rounds), built on
    an oracle passed in."""

    def __init__(self, oracle, hypermodel, **kwargs):
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def create_tuner(hypermodel, tuner="random", *, directory, project_name="search",
                 objective="val_accuracy", max_trials=10, max_epochs=1, seed=0,
                 overwrite=False, redraw_unfit=True, oracle_options=None, tuner_options=None):
    """A KerasTuner tuner for `hypermodel`, made safe for geometry and SIGKILL.

    Args:
        hypermodel: a `keras_tuner.HyperModel` (a `GeometryHyperModel` gets the geometry
            filter and the unbuilt construction) or a build function.
        tuner: "random", "bayesian" or "hyperband".
        directory, project_name: where KerasTuner keeps its state
            (``directory/project_name``).
        objective: the metric to optimise ("val_accuracy" is maximised).
        max_trials: the number of trials; Hyperband stops there as well.
        max_epochs: Hyperband's largest number of epochs per trial (the others ignore it).
        seed: the oracle's random seed.
        overwrite: delete an existing project instead of resuming it.
        redraw_unfit: let the oracle redraw random samples whose feature maps vanish.
        oracle_options: more keyword arguments for the oracle (e.g. ``max_retries_per_trial``,
            ``max_consecutive_failed_trials``, ``num_initial_points``, ``factor``).
        tuner_options: more keyword arguments for the tuner (e.g. ``distribution_strategy``,
            ``executions_per_trial``, ``max_model_size``).

    Returns:
        The tuner; `tuner.search(...)` runs (or resumes) the search.

    Raises:
        ValueError: an unknown tuner name or a bad argument (the message names it).
    """
    if not isinstance(tuner, str) or tuner.lower() not in TUNERS:
        raise ValueError(
            f"Invalid value for argument `tuner`. Expected one of {', '.join(TUNERS)}. "
            f"Received: tuner={tuner!r}"
        )
    for name, value in (("max_trials", max_trials), ("max_epochs", max_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid value for argument `{name}`. Expected a positive "
                             f"integer. Received: {name}={value!r}")
    tuner = tuner.lower()
    common = dict(objective=objective, seed=seed, **(oracle_options or {}))
    if tuner == "random":
        oracle = RandomSearchOracle(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        oracle = BayesianOptimizationOracle(max_trials=max_trials, **common)
    else:
        common.setdefault("hyperband_iterations", None)  # run brackets until max_trials
        oracle = HyperbandOracle(max_epochs=max_epochs, **common)
        oracle.max_trials = max_trials
    if redraw_unfit and isinstance(hypermodel, GeometryHyperModel):
        oracle.geometry_filter = hypermodel.fits
    cls = HyperbandTuner if tuner == "hyperband" else Tuner
    return cls(oracle=oracle, hypermodel=hypermodel, directory=os.fspath(directory),
               project_name=project_name, overwrite=overwrite, **(tuner_options or {}))
