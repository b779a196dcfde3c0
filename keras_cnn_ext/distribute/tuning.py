"""KerasTuner's distributed (chief/worker) search, with bounded waits.

KerasTuner distributes a search over processes: one *chief* holds the oracle (which trial to run
next) and serves it over gRPC; every *worker* builds the same tuner, asks the chief for a trial,
trains it and reports back. The processes find each other through three environment variables:
``KERASTUNER_TUNER_ID`` (any id containing "chief" makes a process a chief),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``.

KerasTuner 1.4 waits without bound in two places (read at its source: `distribute/oracle_chief.py`,
`oracle_client.py`): the chief serves until every worker that ever asked for a trial has been told
to stop, so one worker that dies keeps it (and its trial) forever; a worker waits up to an hour
per request for a chief that never answers. `run_distributed` keeps KerasTuner's protocol and
oracle and adds:

* a heartbeat: each worker pings the chief every `heartbeat_interval` seconds; a worker silent for
  `heartbeat_timeout` seconds is *lost*: its trial goes back to the queue (as KerasTuner does for
  in-flight trials when a search is reloaded; a trial lost 3 times is marked FAILED) and the chief
  stops waiting for it. A lost worker that comes back is told so and exits, so no trial runs twice;
* a chief that gives up after `worker_timeout` seconds without any live worker, naming the workers
  it expected or lost and the trials left (its state stays saved: a restart resumes, and the
  trials still running on live workers stay with them: their heartbeats name them);
* a worker that fails within `connect_timeout` seconds when no chief answers, and whose requests
  give up after `rpc_timeout` seconds instead of an hour;
* explicit roles: a worker id containing "chief" is rejected instead of silently becoming a
  second chief.

The chief writes ``chief_status.json`` (workers, trials running and queued) into the tuner's
project folder while it serves, and returns the final accounting.
"""

import contextlib
import os
from dataclasses import dataclass

from keras_cnn_ext._backend import require_tensorflow

# what the chief and the workers share lives in _tuning_common (they import it, and this
# module imports them only when a search runs: the imports go one way, no circle)
from keras_cnn_ext.distribute._tuning_common import (  # noqa: F401 - public names
    _HEARTBEAT, LOST_EXIT_CODE, MAX_LOSSES, STATUS_FILE, Heartbeats, TuningClusterError,
    check_keras_tuner, quiet_condition_protos, write_json,
)

ROLES = ("chief", "worker")
ENV_ID, ENV_IP, ENV_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
ENV_WORKERS = "KERAS_CNN_EXT_TUNER_WORKERS"


def _invalid(name, expected, value):
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                      f"Received: {name}={value!r}")


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _invalid(name, "a positive number of seconds", value)
    return float(value)


@dataclass(frozen=True)
class TuningCluster:
    """Where this process sits in a distributed search.

    Args:
        role: "chief" (serves the oracle, runs no trial) or "worker" (runs trials).
        oracle: "host:port" the chief listens on and the workers connect to.
        tuner_id: a worker's id (unique per worker, must not contain "chief"); the chief's id
            is "chief" unless it is given one that contains "chief".
        workers: the chief only: the worker ids it expects (named when they do not come), or
            their number, or None.
        connect_timeout: a worker's wait for the chief to answer at start-up.
        rpc_timeout: a worker's wait for any later answer of the chief (e.g. while it restarts).
        worker_timeout: the chief's wait with no live worker (at start-up, or after all left
            with trials not yet run) before it gives up.
        heartbeat_interval: how often a worker pings the chief.
        heartbeat_timeout: the silence after which the chief declares a worker lost.
    """

    role: str
    oracle: str
    tuner_id: str = "chief"
    workers: object = None
    connect_timeout: float = 60.0
    rpc_timeout: float = 300.0
    worker_timeout: float = 600.0
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 60.0

    def __post_init__(self):
        if self.role not in ROLES:
            raise _invalid("role", "'chief' or 'worker'", self.role)
        host, sep, port = str(self.oracle).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _invalid("oracle", "'host:port' with a port in 1-65535", self.oracle)
        if not isinstance(self.tuner_id, str) or not self.tuner_id.strip():
            raise _invalid("tuner_id", "a non-empty string", self.tuner_id)
        if self.role == "worker" and "chief" in self.tuner_id:
            raise _invalid(
                "tuner_id", "a worker id without the word 'chief' (KerasTuner makes every "
                "tuner whose id contains 'chief' a chief)", self.tuner_id)
        workers = self.workers
        if isinstance(workers, str):
            workers = int(workers) if workers.isdigit() else tuple(
                w.strip() for w in workers.split(",") if w.strip())
        if workers is not None and not isinstance(workers, int):
            workers = tuple(workers)
            if not workers or any("chief" in w for w in workers):
                raise _invalid("workers", "worker ids without 'chief', a count, or None",
                               self.workers)
        if isinstance(workers, bool) or (isinstance(workers, int) and workers < 1):
            raise _invalid("workers", "a positive count", self.workers)
        object.__setattr__(self, "workers", workers)
        for name in ("connect_timeout", "rpc_timeout", "worker_timeout", "heartbeat_interval",
                     "heartbeat_timeout"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise _invalid("heartbeat_timeout", "more than heartbeat_interval "
                           f"({self.heartbeat_interval} s)", self.heartbeat_timeout)

    @property
    def host(self):
        return self.oracle.rpartition(":")[0]

    @property
    def port(self):
        return int(self.oracle.rpartition(":")[2])

    @property
    def keras_tuner_id(self):
        """The id KerasTuner sees: it must contain "chief" exactly on the chief."""
        if self.role == "chief" and "chief" not in self.tuner_id:
            return "chief"
        return self.tuner_id

    def environ(self):
        """KerasTuner's three variables for this process."""
        return {ENV_ID: self.keras_tuner_id, ENV_IP: self.host, ENV_PORT: str(self.port)}

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """The cluster described by KerasTuner's environment variables, or None without them.

        The role follows KerasTuner's rule (an id containing "chief" is the chief);
        ``KERAS_CNN_EXT_TUNER_WORKERS`` ("tuner0,tuner1" or a count) names the expected workers.
        """
        environ = os.environ if environ is None else environ
        if ENV_IP not in environ:
            return None
        missing = [v for v in (ENV_PORT, ENV_ID) if v not in environ]
        if missing:
            raise ValueError(f"{ENV_IP} is set but {' and '.join(missing)} not: distributed "
                             f"tuning needs {ENV_ID}, {ENV_IP} and {ENV_PORT}")
        tuner_id = environ[ENV_ID]
        kwargs = dict(role="chief" if "chief" in tuner_id else "worker",
                      oracle=f"{environ[ENV_IP]}:{environ[ENV_PORT]}", tuner_id=tuner_id,
                      workers=environ.get(ENV_WORKERS) or None)
        kwargs.update(overrides)
        return cls(**kwargs)


@contextlib.contextmanager
def _environment(values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def require_backend():
    """Raises `keras_cnn_ext.TensorFlowOnlyError` unless Keras runs on TensorFlow: the
    distributed search (chief, workers, lost-worker recovery) is checked there only."""
    require_tensorflow("A distributed KerasTuner search (keras_cnn_ext.distribute)",
                       "or search on one machine (no --distributed, no KERASTUNER_* "
                       "variables) under this backend")


def run_distributed(cluster, make_tuner, *search_args, **search_kwargs):
    """Runs this process's part of a distributed KerasTuner search.

    Args:
        cluster: a `TuningCluster` (or None: read it from the environment).
        make_tuner: a callable returning the KerasTuner tuner, called with KerasTuner's
            variables set. Every process must build the same tuner (hypermodel, objective,
            max_trials, `directory` and `project_name`: on a shared file system when the
            processes run on several hosts); workers must not pass ``overwrite=True`` (it
            would delete the chief's project folder).
        *search_args, **search_kwargs: what `tuner.search` gets on a worker (data, epochs,
            callbacks); the chief trains nothing and ignores them.

    Returns:
        On the chief, the search's accounting (see `chief_status.json`); on a worker, a dict
        with its id and the trials it ran.

    Raises:
        ImportError: the installed keras-tuner is not one this was tested with (the message
            names it and the supported versions).
        keras_cnn_ext.TensorFlowOnlyError: Keras runs on another backend (JAX, PyTorch):
            the distributed search is checked on TensorFlow only.
        TuningClusterError: the chief had no live worker for `worker_timeout` seconds, or a
            worker found no chief within `connect_timeout` (or lost it for `rpc_timeout`).
    """
    cluster = cluster or TuningCluster.from_env()
    if cluster is None:
        raise ValueError(f"No distributed search configured: pass a TuningCluster or set "
                         f"{ENV_ID}, {ENV_IP} and {ENV_PORT}")
    require_backend()
    check_keras_tuner()  # the chief and the workers use KerasTuner's private modules
    quiet_condition_protos()
    with _environment(cluster.environ()):
        if cluster.role == "worker":
            from keras_cnn_ext.distribute import _tuning_worker

            return _tuning_worker.run_worker(cluster, make_tuner, search_args, search_kwargs)
        from keras_cnn_ext.distribute import _tuning_chief

        return _tuning_chief.run_chief(cluster, make_tuner())
