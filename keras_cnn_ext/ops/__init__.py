"""Functional ops: textbook cross-correlation and pooling, three implementations each.

>>> import keras_cnn_ext as kce
>>> kce.ops.output_size(4, 3, padding=1)
4
"""

from keras_cnn_ext.ops import geometry, native, reference
from keras_cnn_ext.ops.geometry import output_size
from keras_cnn_ext.ops.nn import corr2d, max_pool2d, mean_pool2d


def native_available():
    """Whether the compiled custom ops are built, loadable and match this TensorFlow."""
    return native.available()


def native_status():
    """A human-readable reason why the native ops are (not) available."""
    return native.status()


__all__ = [
    "corr2d", "max_pool2d", "mean_pool2d", "output_size", "native_available",
    "native_status", "reference", "geometry",
]
