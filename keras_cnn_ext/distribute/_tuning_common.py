"""What the chief and the workers of a distributed search share: the heartbeat record, the
constants of the protocol, the error, and the KerasTuner versions whose private modules they use.

`tuning.py` (the public module) imports this; `_tuning_chief` and `_tuning_worker` import this
and never `tuning.py`, so the imports go one way.

The chief and the workers use KerasTuner's private modules (``keras_tuner.src.distribute.
oracle_chief`` / ``oracle_client``, ``keras_tuner.src.protos``, ``keras_tuner.src.engine``):
its public API has no way to bound the chief's wait or to hand a lost worker's trial to another.
Those modules may change in any release, so `check_keras_tuner` admits the versions this was
tested with (`SUPPORTED_KERAS_TUNER`) and names the installed version otherwise. The
single-process search uses only the public API and works with any keras-tuner >= 1.4.
"""

import collections
import json
import os
import threading
import time

STATUS_FILE = "chief_status.json"
MAX_LOSSES = 3  # a trial whose worker is lost this many times is FAILED, not re-queued again
_HEARTBEAT = "/keras_cnn_ext.TunerHeartbeat/Beat"
LOST_EXIT_CODE = 75  # a worker the chief declared lost (EX_TEMPFAIL: restart it to rejoin)
# [first, last] release (major, minor) whose private modules match what the chief and the
# workers call; tested with 1.4.8 (the 1.4 series keeps keras_tuner/src/ as 1.4.0 laid it out)
SUPPORTED_KERAS_TUNER = ((1, 4), (1, 4))


class TuningClusterError(RuntimeError):
    """The chief or a worker gave up waiting for the other side (the message says who and why)."""


def _release(version):
    parts = []
    for piece in str(version).split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts + [0] * (2 - len(parts)))


def check_keras_tuner(version=None):
    """Raises ImportError unless the installed keras-tuner is one the distributed search was
    tested with (it uses KerasTuner's private modules).

    >>> check_keras_tuner("1.4.8")
    >>> check_keras_tuner("1.5.0")
    Traceback (most recent call last):
    ...
    ImportError: ... tested with keras-tuner 1.4.x; installed: keras-tuner 1.5.0. ...
    """
    if version is None:
        import keras_tuner

        version = keras_tuner.__version__
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED_KERAS_TUNER
    if (lo_major, lo_minor) <= _release(version) <= (hi_major, hi_minor):
        return
    tested = (f"{lo_major}.{lo_minor}.x" if SUPPORTED_KERAS_TUNER[0] == SUPPORTED_KERAS_TUNER[1]
              else f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}")
    raise ImportError(
        "The distributed search (keras-cnn-ext tune --distributed) uses KerasTuner's private "
        "modules (keras_tuner.src.distribute, keras_tuner.src.protos), tested with keras-tuner "
        f"{tested}; installed: keras-tuner {version}. Install a supported version (pip install "
        f'"keras-tuner>={lo_major}.{lo_minor},<{hi_major}.{hi_minor + 1}") or run the search in '
        "one process (without --distributed), which works with any keras-tuner >= 1.4.")


def quiet_condition_protos():
    """Makes KerasTuner's conversion of conditional hyperparameters to protobuf silent.

    KerasTuner 1.4's ``conditions.Parent.to_proto`` prints its first value (a debug print left
    in the release) each time a conditional hyperparameter crosses between the chief and a
    worker: 16 stray lines per HyperLeNet trial in a distributed search, whatever ``--quiet``
    says. This puts in its place the same conversion (the value field chosen by the values'
    type, as KerasTuner does: str, bool, int, else float) without the print. Idempotent.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.engine import conditions

    if getattr(conditions.Parent.to_proto, "_kce_quiet", False):
        return

    def to_proto(self):
        proto = protos.get_proto()
        first = self.values[0]
        field = ("string_value" if isinstance(first, str) else
                 "boolean_value" if isinstance(first, bool) else  # before int: bool is an int
                 "int_value" if isinstance(first, int) else "float_value")
        return proto.Condition(parent=proto.Condition.Parent(
            name=self.name, values=[proto.Value(**{field: v}) for v in self.values]))

    to_proto._kce_quiet = True
    conditions.Parent.to_proto = to_proto


def write_json(path, data):
    """Writes `data` as JSON through a temporary name, so readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Heartbeats:
    """The chief's record of its workers (shared by the gRPC threads and the monitor loop)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last_seen = {}
        self.lost = {}  # tuner id -> (time lost, trial id or None)
        self.finished = set()
        self.assignments = collections.defaultdict(list)  # trial id -> [tuner ids]

    def beat(self, tuner_id):
        """Records a sign of life; returns False for a worker already declared lost."""
        with self.lock:
            if tuner_id in self.lost:
                return False
            self.last_seen[tuner_id] = time.monotonic()
            return True

    def silent(self, timeout):
        """Workers neither lost nor finished whose last sign of life is older than `timeout`."""
        now = time.monotonic()
        with self.lock:
            return [t for t, seen in self.last_seen.items()
                    if t not in self.lost and t not in self.finished and now - seen > timeout]

    def alive(self, timeout):
        now = time.monotonic()
        with self.lock:
            return sorted(t for t, seen in self.last_seen.items()
                          if t not in self.lost and t not in self.finished
                          and now - seen <= timeout)
