"""Creating a `tf.distribute` strategy by name, and the cluster facts training needs.

Three strategies, named as on the command line (`keras-cnn-ext train --strategy ...`):

* ``"default"`` -- TensorFlow's default strategy: one device, nothing distributed.
* ``"mirrored"`` -- `tf.distribute.MirroredStrategy` over this machine's GPUs, or over its CPU
  split into `cpu_replicas` logical devices (for testing data parallelism on a laptop). Every
  replica gets ``global batch / replicas`` examples of each batch; gradients are all-reduced, so
  one step equals one step of a single device on the global batch.
* ``"multi_worker"`` -- `tf.distribute.MultiWorkerMirroredStrategy` across the processes named in
  the environment variable ``TF_CONFIG`` (one process per host, each with its GPUs or its CPU).

TensorFlow fixes its devices and its collective-communication setup when it runs its first
operation, so a strategy other than "default" (and `cpu_replicas`) must be created before
anything else touches TensorFlow in the process; `create_strategy` says so clearly otherwise.
"""

import json
import os
from dataclasses import dataclass

from keras_cnn_ext._backend import require_tensorflow

# what a run off TensorFlow can do instead of a strategy
TF_ONLY_ADVICE = "or train on one device (strategy='default') under this backend"

STRATEGIES = ("default", "mirrored", "multi_worker")
TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class WorkerInfo:
    """Where this process sits in a `TF_CONFIG` cluster (a one-process "cluster" without it).

    Attributes:
        task_type: "worker", "chief", ... (TF_CONFIG's task type), or "worker" without TF_CONFIG.
        task_index: this task's index within its type.
        num_workers: the number of training processes (chief + workers).
        is_chief: whether this process writes the run's final outputs: the "chief" task, or
            worker 0 when the cluster has no "chief" entry (TensorFlow's rule).
    """

    task_type: str = "worker"
    task_index: int = 0
    num_workers: int = 1
    is_chief: bool = True

    @property
    def name(self):
        """A short name for folders and logs, e.g. "worker-1"."""
        return f"{self.task_type}-{self.task_index}"


def _tf_config_error(detail, raw):
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return ValueError(
        f"Invalid value for environment variable `{TF_CONFIG}`. Expected JSON like "
        '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", '
        f'"index": 0}}}} ({detail}). Received: {TF_CONFIG}={shown}'
    )


def worker_info(environ=None):
    """Parses `TF_CONFIG` into a `WorkerInfo`; a plain single process without it.

    Raises:
        ValueError: `TF_CONFIG` is set but is not valid (the message says what is wrong).
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(TF_CONFIG, "").strip()
    if not raw:
        return WorkerInfo()
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise _tf_config_error(f"not JSON: {exc}", raw) from None
    if not isinstance(config, dict):
        raise _tf_config_error("not a JSON object", raw)
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error('no "cluster" mapping task types to address lists', raw)
    if not isinstance(task, dict) or "type" not in task:
        raise _tf_config_error('no "task" with a "type" and an "index"', raw)
    task_type, task_index = task["type"], task.get("index", 0)
    members = cluster.get(task_type)
    if (not isinstance(members, list) or isinstance(task_index, bool)
            or not isinstance(task_index, int) or not 0 <= task_index < len(members)):
        raise _tf_config_error(
            f"task {task_type!r} index {task_index!r} is not in the cluster", raw)
    trainers = [t for t in ("chief", "worker") if isinstance(cluster.get(t), list)]
    num_workers = sum(len(cluster[t]) for t in trainers)
    has_chief = bool(cluster.get("chief"))
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker"
                                        and task_index == 0)
    return WorkerInfo(task_type, task_index, num_workers, is_chief)


def worker_output_dir(output, info=None):
    """The folder this process writes into: `output` on the chief, else a folder of its own.

    Non-chief workers keep their checkpoints, backups and logs in
    ``<output>/workers/<task_type>-<index>`` so that no two processes ever write the same file
    (the chief alone writes the run's model and metrics into `output`).
    """
    info = info or worker_info()
    if info.is_chief:
        return output
    return os.path.join(output, "workers", info.name)


def _normalize_replicas(cpu_replicas):
    if cpu_replicas is None:
        return None
    if isinstance(cpu_replicas, bool) or not isinstance(cpu_replicas, int) or cpu_replicas < 1:
        raise ValueError(
            "Invalid value for argument `cpu_replicas`. Expected a positive integer or None. "
            f"Received: cpu_replicas={cpu_replicas!r}"
        )
    return cpu_replicas


def configure_cpu_replicas(n):
    """Splits the CPU into `n` logical devices ("/device:CPU:0" ... "/device:CPU:n-1").

    Must run before TensorFlow initialises its devices (its first operation). Calling it again
    with the same `n` afterwards is fine; another `n` is an error.

    Raises:
        ValueError: `n` is not a positive integer.
        RuntimeError: TensorFlow is already initialised with another number of CPU devices.
        keras_cnn_ext.TensorFlowOnlyError: Keras runs on another backend.
    """
    n = _normalize_replicas(n)
    require_tensorflow("CPU replicas (tf.distribute)", TF_ONLY_ADVICE)
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise RuntimeError(
                f"cpu_replicas={n} cannot be applied: TensorFlow has already initialised its "
                f"devices ({have} logical CPU device(s)). Create the strategy (or call "
                "keras_cnn_ext.distribute.configure_cpu_replicas) at the start of the "
                "process, before any other TensorFlow operation."
            ) from None


def create_strategy(strategy="default", cpu_replicas=None):
    """Returns a `tf.distribute.Strategy` by name.

    Args:
        strategy: "default", "mirrored" or "multi_worker" (see the module docstring), or an
            existing `tf.distribute.Strategy`, returned as it is.
        cpu_replicas: with "mirrored" on a machine without GPUs: split the CPU into this many
            logical devices, one replica each (None: one CPU replica). Not valid with
            "multi_worker" (a worker uses its GPUs or one CPU device).

    Returns:
        The strategy; `strategy.num_replicas_in_sync` is the number of replicas a global batch
        is split over.

    Raises:
        ValueError: an unknown name, a bad `cpu_replicas`, or "multi_worker" without a
            (valid) `TF_CONFIG`.
        RuntimeError: TensorFlow was initialised before a setting that must precede it.
        keras_cnn_ext.TensorFlowOnlyError: Keras runs on another backend (JAX, PyTorch):
            `tf.distribute` strategies are TensorFlow's.

    Example:

    >>> import keras_cnn_ext as kce
    >>> kce.distribute.create_strategy("default").num_replicas_in_sync
    1
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(
            "Invalid value for argument `strategy`. Expected one of "
            f"{', '.join(repr(s) for s in STRATEGIES)}. Received: strategy={strategy!r}"
        )
    require_tensorflow(f"strategy={strategy!r} (tf.distribute)",
                       TF_ONLY_ADVICE if strategy != "default" else None)
    cpu_replicas = _normalize_replicas(cpu_replicas)
    if strategy == "default":
        if cpu_replicas not in (None, 1):
            raise ValueError(
                "Invalid value for argument `cpu_replicas`. Expected None or 1 with "
                "strategy='default' (use strategy='mirrored' for several replicas). "
                f"Received: cpu_replicas={cpu_replicas!r}"
            )
        return tf.distribute.get_strategy()
    if strategy == "multi_worker":
        if cpu_replicas not in (None, 1):
            raise ValueError(
                "Invalid value for argument `cpu_replicas`. Expected None or 1 with "
                "strategy='multi_worker' (each worker uses its GPUs or one CPU device). "
                f"Received: cpu_replicas={cpu_replicas!r}"
            )
        worker_info()  # validates TF_CONFIG with a clear message
        if not os.environ.get(TF_CONFIG, "").strip():
            raise ValueError(
                f"strategy='multi_worker' needs the environment variable `{TF_CONFIG}` naming "
                "the cluster and this process's task (see docs/scaling-out.md). "
                f"Received: {TF_CONFIG} unset"
            )
        from keras_cnn_ext.distribute import _keras_compat

        _keras_compat.install()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            # TensorFlow: "Collective ops must be configured at program startup"
            raise RuntimeError(
                "strategy='multi_worker' must be created before TensorFlow runs its first "
                "operation (it configures collective communication at start-up): create it "
                "at the start of the process, before building models or data sets "
                f"(TensorFlow: {exc})"
            ) from None
    # mirrored
    if cpu_replicas is not None:
        configure_cpu_replicas(cpu_replicas)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and cpu_replicas is None:
        devices = [d.name for d in gpus]
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if cpu_replicas is not None:
            devices = devices[:cpu_replicas]
        else:
            devices = devices[:1]
    # On CPU devices, the default NCCL all-reduce does not exist; copying to one device and
    # back is what TensorFlow itself falls back to.
    cross_device_ops = None if gpus and cpu_replicas is None else (
        tf.distribute.ReductionToOneDevice())
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)


def global_batch_size(per_replica_batch_size, strategy):
    """The global batch a data set must yield: per-replica batch x replicas in sync."""
    return int(per_replica_batch_size) * int(strategy.num_replicas_in_sync)


def shard_by_data(dataset):
    """Marks a `tf.data.Dataset` to be sharded by elements across workers.

    Every worker reads the whole input and keeps its share of each global batch
    (`AutoShardPolicy.DATA`): the right policy for in-memory and single-file data sets (the
    embedded digits, a tfds split stored in one file), for which the default policy ("AUTO")
    would try to shard by file, fail, and fall back with a warning.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def synchronize_batch_norm(model, synchronized=True):
    """Makes every `BatchNormalization` of `model` (nested ones included) use global batch
    statistics under a strategy: the mean and variance are all-reduced across replicas, so a
    step on N replicas normalises exactly as one device on the global batch would.

    Without it each replica normalises with its own share of the batch (Keras' default, like
    PyTorch's DDP without SyncBatchNorm). Outside a strategy the setting changes nothing.

    Returns:
        The number of layers changed.
    """
    import keras

    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = bool(synchronized)
            count += 1
    return count
