"""Which Keras backend this process runs, and the features that need TensorFlow's.

Training, evaluation and tuning run on every Keras 3 backend (TensorFlow, JAX, PyTorch): the
`tf.data` pipelines feed all of them. SavedModel export and `tf.distribute` are TensorFlow
machinery: under another backend they raise `TensorFlowOnlyError` before doing anything, and the
command line reports it as a usage error (exit code 2, one line).
"""

import keras

__all__ = ["TensorFlowOnlyError", "backend", "on_tensorflow", "require_tensorflow"]


class TensorFlowOnlyError(RuntimeError):
    """A TensorFlow-only feature (SavedModel export, `tf.distribute`) was used while Keras runs
    on another backend. The message names the feature, the backend and what to do."""


def backend():
    """The Keras backend of this process: "tensorflow", "jax", "torch", ..."""
    return keras.backend.backend()


def on_tensorflow():
    """Whether Keras runs on TensorFlow (the ops tier has its own copy of this test,
    `keras_cnn_ext.ops.portable.on_tensorflow`: that module imports nothing of the package)."""
    return backend() == "tensorflow"


def require_tensorflow(feature, instead=None):
    """Raises `TensorFlowOnlyError` unless Keras runs on TensorFlow.

    Args:
        feature: what needs TensorFlow, as the message should name it ("SavedModel export").
        instead: optional advice for staying on the current backend.
    """
    if on_tensorflow():
        return
    current = backend()
    advice = f"; {instead}" if instead else ""
    raise TensorFlowOnlyError(
        f"{feature} needs the TensorFlow backend of Keras, and this process runs "
        f"KERAS_BACKEND={current!r}: run it with KERAS_BACKEND=tensorflow{advice}")
