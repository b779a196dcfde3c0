"""Where a trial's time goes, and what a search holds in memory, trial by trial.

A trial of a search is more than its `fit`: the tuner asks the oracle for values, builds and
compiles the model, TensorFlow traces the train and test steps (the first step of each
function), the best epoch's weights are written, and the oracle records the result. With short
trials that is most of the wall time. `TrialClock` splits every trial into

=============  ============================================================================
``request``    the oracle's answer (``create_trial``; a gRPC call on a distributed worker)
``build``      clearing the previous session + building the model
``compile``    `model.compile` + the training variables made before `fit` (the optimizer's
               slots, the metrics': `keras_cnn_ext.tuning.base.build_training_state`)
``trace``      the first train / test step of each `fit` minus a steady step (tracing)
``fitting``    every train and test step at the steady speed: the part that is training
``checkpoint`` the epoch-end callbacks after ours (KerasTuner's `SaveBestEpoch`)
``report``     after `fit`: the oracle update, trial.json, oracle and tuner state files
``other``      the rest of the trial (Keras' set-up of `fit`, data iterators, callbacks)
=============  ============================================================================

and ``overhead = wall - fitting``. The tuner (`keras_cnn_ext.tuning.tuners`) writes them, with
the process's resident memory at the start of the trial's first `fit` (``rss_start_mb``: the
previous trial's model released, this one built) and after the trial (``rss_mb``), to
``trial_<id>/timing.json``; `search` puts them in trials.csv, the trial table and results.json.
The hypermodel marks its compile with `timed("compile")`, which counts for the trial in progress
(and out of the build around it); outside a trial it only runs the block.
"""

import contextlib
import json
import os
import statistics
import time

import keras

TIMING_FILE = "timing.json"
PHASES = ("request", "build", "compile", "trace", "fitting", "checkpoint", "report", "other")
# the phases a block can be counted as (`timed`); fitting and other are computed
_TIMED = tuple(p for p in PHASES if p not in ("fitting", "other"))
_active = None  # the TrialClock of the trial in progress in this process (one at a time)


def _check_phase(phase):
    if phase not in _TIMED:
        raise ValueError(f"Invalid value for argument `phase`. Expected one of "
                         f"{', '.join(_TIMED)}. Received: phase={phase!r}")


@contextlib.contextmanager
def timed(phase):
    """Counts the seconds of the block as `phase` of the trial in progress (see the module
    docstring); outside a trial it only runs the block."""
    _check_phase(phase)
    clock = _active
    start = time.perf_counter()
    try:
        yield
    finally:
        if clock is not None:
            clock.add(phase, time.perf_counter() - start)


def resident_mb():
    """The process's resident memory now (MB), or None where /proc is not available."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Steps:
    """Step durations of one kind (train or test) within one `fit`."""

    def __init__(self):
        self.durations = []
        self.first = None  # the first step of the fit: it traces the function
        self._start = None

    def begin(self):
        self._start = time.perf_counter()

    def end(self):
        if self._start is None:
            return
        took = time.perf_counter() - self._start
        self._start = None
        if self.first is None:
            self.first = took
        else:
            self.durations.append(took)

    def split(self):
        """(trace, fitting) seconds: the first step counts as one steady step + tracing (a
        fit of a single step has nothing to compare with: it all counts as tracing)."""
        if self.first is None:
            return 0.0, 0.0
        steady = min(statistics.median(self.durations), self.first) if self.durations else 0.0
        return self.first - steady, steady + sum(self.durations)


class TrialClock(keras.callbacks.Callback):
    """Phase accounting of the trials of one tuner (see the module docstring).

    The tuner calls `request_begins`, `trial_begins`, `build_begins/ends`, `fit_begins/ends`
    and `trial_ends`; as a Keras callback in every `fit` of a trial (KerasTuner deep-copies
    the callbacks of `search`: the copy is this same object), it times the steps and the
    epoch-end callbacks that run after it.
    """

    def __init__(self):
        super().__init__()
        self._reset()
        self._request_start = None

    def __deepcopy__(self, memo):
        return self

    def _reset(self):
        self.phases = dict.fromkeys(PHASES, 0.0)
        self._trial_start = None
        self._mark = None  # start of the report phase
        self._build_start = None
        self._nested = 0.0  # seconds of other phases within the build (its compile)
        self._epoch_end = None
        self._fits = []
        self.rss_start_mb = None

    # -- called by the tuner ----------------------------------------------------------------

    def request_begins(self):
        self._request_start = time.perf_counter()

    def trial_begins(self):
        global _active
        self._reset()
        _active = self
        now = time.perf_counter()
        start = self._request_start if self._request_start is not None else now
        self.phases["request"] = now - start
        self._trial_start = start
        self._request_start = None

    def build_begins(self):
        self._build_start = time.perf_counter()
        self._nested = 0.0

    def build_ends(self):
        if self._build_start is not None:
            took = time.perf_counter() - self._build_start
            self.phases["build"] += max(0.0, took - self._nested)
            self._build_start = None

    def add(self, phase, seconds):
        """Adds `seconds` to `phase` (within a build: out of the build's own seconds)."""
        _check_phase(phase)
        self.phases[phase] += seconds
        if self._build_start is not None:
            self._nested += seconds

    def fit_ends(self):
        self._mark = time.perf_counter()  # the report phase starts here
        # Keras gave this callback the trial's model; holding it would keep that model and
        # its graphs alive through the next trial's build
        self.set_model(None)

    def trial_ends(self):
        """Closes the trial; returns its record (phases, wall, overhead) in seconds."""
        global _active
        if _active is self:
            _active = None
        now = time.perf_counter()
        if self._mark is not None:
            self.phases["report"] += now - self._mark
        for steps in self._fits:
            for kind in steps:  # train, test
                trace, fitting = kind.split()
                self.phases["trace"] += trace
                self.phases["fitting"] += fitting
        wall = now - (self._trial_start if self._trial_start is not None else now)
        named = sum(v for k, v in self.phases.items() if k != "other")
        self.phases["other"] = max(0.0, wall - named)
        record = {f"{k}_s": round(v, 4) for k, v in self.phases.items()}
        record.update(wall_s=round(wall, 4), overhead_s=round(wall - self.phases["fitting"], 4))
        if self.rss_start_mb is not None:
            record["rss_start_mb"] = round(self.rss_start_mb, 2)
        self._trial_start = None
        return record

    # -- Keras callback ---------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.rss_start_mb is None:  # /proc/self/statm: a few microseconds
            self.rss_start_mb = resident_mb()
        self._fits.append((_Steps(), _Steps()))

    def _current(self):
        if not self._fits:
            self._fits.append((_Steps(), _Steps()))
        return self._fits[-1]

    def on_train_batch_begin(self, batch, logs=None):
        self._current()[0].begin()

    def on_train_batch_end(self, batch, logs=None):
        self._current()[0].end()

    def on_test_batch_begin(self, batch, logs=None):
        self._current()[1].begin()

    def on_test_batch_end(self, batch, logs=None):
        self._current()[1].end()

    def on_epoch_end(self, epoch, logs=None):
        # the callbacks after this one (KerasTuner's checkpoint) run until the next event
        self._epoch_end = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._close_checkpoint()

    def on_train_end(self, logs=None):
        self._close_checkpoint()

    def _close_checkpoint(self):
        if self._epoch_end is not None:
            self.phases["checkpoint"] += time.perf_counter() - self._epoch_end
            self._epoch_end = None


def write_timing(trial_dir, record):
    """``trial_dir/timing.json`` through a temporary name."""
    path = os.path.join(trial_dir, TIMING_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def read_timing(trial_dir):
    """The record `write_timing` left in `trial_dir`, or None (not run by this package's
    tuner, or killed before it ended)."""
    try:
        with open(os.path.join(trial_dir, TIMING_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def summarize(records):
    """Medians over the trials that have a record: ``{"trials": n, "wall_s", "fitting_s",
    "overhead_s", "phases": {phase: median seconds}}``, or None without records."""
    records = [r for r in records if r]
    if not records:
        return None

    def median(key):
        return round(statistics.median(r.get(key, 0.0) for r in records), 3)

    return dict(trials=len(records), wall_s=median("wall_s"), fitting_s=median("fitting_s"),
                overhead_s=median("overhead_s"),
                phases={p: median(f"{p}_s") for p in PHASES if p != "fitting"})
