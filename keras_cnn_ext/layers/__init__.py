"""Keras layers built on `keras_cnn_ext.ops` (all registered as "keras_cnn_ext>Name").

>>> import keras
>>> layer = CrossCorrelation2D(6, 5, padding=2)
>>> keras.saving.get_registered_name(type(layer))
'keras_cnn_ext>CrossCorrelation2D'
>>> layer.compute_output_shape((None, 28, 28, 1))
(None, 28, 28, 6)
"""

from keras_cnn_ext.layers.convolutional import Corr2D, CrossCorrelation2D
from keras_cnn_ext.layers.inception import InceptionModule
from keras_cnn_ext.layers.normalization import LRN, LocalResponseNormalization
from keras_cnn_ext.layers.pooling import (
    AdaptiveAveragePooling2D, AdaptiveAvgPool2D, MaxPool2D, MaxPooling2D, MeanPool2D,
    MeanPooling2D,
)
from keras_cnn_ext.layers.residual import BottleneckBlock, ResidualBlock

__all__ = [
    "CrossCorrelation2D", "Corr2D", "MaxPooling2D", "MaxPool2D", "MeanPooling2D",
    "MeanPool2D", "AdaptiveAveragePooling2D", "AdaptiveAvgPool2D", "ResidualBlock",
    "BottleneckBlock", "InceptionModule", "LocalResponseNormalization", "LRN",
]
