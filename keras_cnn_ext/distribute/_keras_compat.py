"""Two fixes that make Keras 3's `model.fit` / `evaluate` run under `MultiWorkerMirroredStrategy`.

Measured with Keras 3.15 / TF 2.21 (and reported as keras-team/keras #20585, tensorflow/tensorflow
#72388): `model.fit` under `MultiWorkerMirroredStrategy` with 2 or more workers fails even for a
stock `keras.Sequential([Dense])`, at two places of `keras/src/backend/tensorflow/trainer.py`:

1. `TensorFlowTrainer._maybe_symbolic_build` takes the first batch of the distributed data set
   (a structure of `PerReplica` values) and hands the *whole structure* to
   `strategy.reduce("MEAN", ..., axis=None)`. `MirroredStrategy` copes; the collective strategy
   tries to turn the tuple into one tensor: "Attempt to convert a value (PerReplica:...) with an
   unsupported type ... to a Tensor". The batch is only needed for its shapes and dtypes (to
   build the model, metrics and optimizer symbolically), so one local replica's batch serves.
2. `reduce_per_replica(..., reduction="auto")` reduces the scalar metric results of every train
   and test step with `strategy.reduce("MEAN", v, axis=0)` in multi-worker mode; axis 0 does not
   exist on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions"). The
   single-machine path averages the replicas' values element-wise
   (`tf.reduce_mean(local_results, axis=0)` over the replica axis); across workers that is
   `strategy.reduce("MEAN", v, axis=None)`, which is what the fix does.

Both replacements delegate to Keras' own code unless the strategy is a multi-worker
`MultiWorkerMirroredStrategy`, so single-device and `MirroredStrategy` training are untouched.
With them, 2 localhost workers give the same losses and weights as one process on the same
global batches (`tests/test_distribute.py`). `install()` is idempotent; it is a no-op (with a
warning) if the Keras internals it wraps are not where it expects them.
"""

import warnings

_installed = False


def _multi_worker(strategy, trainer_module):
    return strategy is not None and trainer_module._collective_all_reduce_multi_worker(strategy)


def install():
    """Installs the two fixes (once per process). Returns True if they are active."""
    global _installed
    if _installed:
        return True
    try:
        import tensorflow as tf
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer

        original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        original_reduce = tf_trainer.reduce_per_replica
        tf_trainer._collective_all_reduce_multi_worker  # noqa: B018 - checked to exist
    except (ImportError, AttributeError) as exc:
        warnings.warn(
            "keras_cnn_ext.distribute: this Keras version does not have the internals the "
            f"multi-worker fixes wrap ({exc}); model.fit under MultiWorkerMirroredStrategy "
            "runs unpatched.", RuntimeWarning, stacklevel=2)
        return False

    def local_value(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and _multi_worker(strategy, tf_trainer):
            for _, _, it in iterator:
                batch = next(it)
                break
            data_batch = tree.map_structure(lambda v: local_value(strategy, v), batch)
            iterator = None
        return original_build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _multi_worker(strategy, tf_trainer):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    maybe_symbolic_build.__wrapped__ = original_build
    reduce_per_replica.__wrapped__ = original_reduce
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _installed = True
    return True
