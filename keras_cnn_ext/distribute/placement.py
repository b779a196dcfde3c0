"""What a training run needs to know about where it runs: the strategy, this process's place in
the cluster, its output folder and the global batch. Used by `keras_cnn_ext.training.train`."""

import contextlib
from dataclasses import dataclass

from keras_cnn_ext._backend import on_tensorflow, require_tensorflow
from keras_cnn_ext.distribute.strategy import (
    STRATEGIES,
    TF_ONLY_ADVICE,
    WorkerInfo,
    create_strategy,
    shard_by_data,
    synchronize_batch_norm,
    worker_info,
    worker_output_dir,
)


def run_output(strategy, output):
    """The folder this process writes: `output`, or a worker's own folder inside it.

    With ``strategy="multi_worker"`` every process gets the same `output` (a folder on a shared
    file system, or the same path on each host); the chief writes into it and every other worker
    into ``<output>/workers/<task>-<index>``. Only TF_CONFIG is read: no TensorFlow operation
    runs, so this may precede `Placement.create`.

    Raises:
        ValueError: "multi_worker" without an output folder (each process would invent its own).
    """
    if strategy != "multi_worker":
        return output
    if output is None:
        raise ValueError(
            "Invalid value for argument `output`. Expected the run folder, the same on every "
            "worker, with strategy='multi_worker' (the chief writes the run into it, the other "
            "workers into <output>/workers/). Received: output=None")
    return worker_output_dir(output)


def check_backend(strategy):
    """Raises `keras_cnn_ext.TensorFlowOnlyError` for a `tf.distribute` strategy ("mirrored",
    "multi_worker" or a strategy object) while Keras runs on another backend than TensorFlow;
    None and "default" (one device) pass everywhere, and so do unknown names (the strategy's
    own check reports them)."""
    if strategy is None or (isinstance(strategy, str) and strategy not in STRATEGIES[1:]):
        return
    require_tensorflow(f"strategy={strategy!r} (tf.distribute)", TF_ONLY_ADVICE)


def check_resumed_strategy(given, resolved):
    """A resumed multi-worker run must be given strategy='multi_worker' again: each worker
    finds its own folder from it (`run_output`) before the stored arguments are read."""
    if resolved == "multi_worker" and given != "multi_worker":
        raise ValueError(
            "Invalid value for argument `strategy`. Expected 'multi_worker' again when resuming "
            "a multi-worker run (each worker finds its own folder from it and TF_CONFIG). "
            f"Received: strategy={given!r}")


@dataclass
class Placement:
    """A strategy with the facts of this process (see `create`)."""

    name: str
    strategy: object
    worker: WorkerInfo

    @classmethod
    def create(cls, name="default", cpu_replicas=None):
        """Creates the strategy `name` ("default", "mirrored", "multi_worker"); call it before
        any other TensorFlow operation of the process.

        Under another Keras backend (JAX, PyTorch) only "default" exists: one device, no
        `tf.distribute` strategy (`strategy` is None); the others raise
        `keras_cnn_ext.TensorFlowOnlyError`.
        """
        if name == "default" and cpu_replicas in (None, 1) and not on_tensorflow():
            return cls(name, None, WorkerInfo())
        strategy = create_strategy(name, cpu_replicas=cpu_replicas)
        info = worker_info() if name == "multi_worker" else WorkerInfo()
        return cls(name, strategy, info)

    @property
    def replicas(self):
        """The replicas a global batch is split over (all workers' devices together)."""
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self):
        """Whether this process writes the run's final model and metrics."""
        return self.worker.is_chief

    def scope(self):
        """The strategy's scope (a no-op context for "default")."""
        if self.name == "default":
            return contextlib.nullcontext()
        return self.strategy.scope()

    def global_batch(self, per_replica_batch_size):
        """The batch one step consumes: per-replica batch x replicas."""
        return int(per_replica_batch_size) * self.replicas

    def prepare_model(self, model, sync_batch_norm=True):
        """Synchronizes the BatchNorm statistics across replicas (when there are several)."""
        if self.replicas > 1:
            synchronize_batch_norm(model, sync_batch_norm)
        return model

    def prepare_data(self, dataset):
        """Shards a data set by elements across workers (`AutoShardPolicy.DATA`)."""
        return dataset if self.name == "default" else shard_by_data(dataset)

    def describe(self):
        """Facts for metrics.json."""
        return {"strategy": self.name, "replicas": self.replicas,
                "workers": self.worker.num_workers, "worker": self.worker.name}


__all__ = ["STRATEGIES", "Placement", "check_backend", "check_resumed_strategy", "run_output"]
