"""KerasTuner searches over kernel size, stride and filter count that never crash on geometry.

`HyperLeNet`, `HyperVGG` and `HyperResNet` are `keras_tuner.HyperModel` subclasses that build
through `keras_cnn_ext.models`; `create_tuner` makes a random / Bayesian / Hyperband tuner
for them and `search` runs a whole search on a `kce.data` set (the `keras-cnn-ext tune`
command). Importing this module imports keras_tuner; `import keras_cnn_ext` does not.

>>> import keras_cnn_ext as kce
>>> hm = kce.tuning.HyperLeNet(input_shape=(16, 16, 1), num_classes=10)
>>> hm.valid_fraction(n=200) >= 0.9
True
"""

from keras_cnn_ext.tuning.base import GeometryHyperModel
from keras_cnn_ext.tuning.hypermodels import HYPERMODELS, HyperLeNet, HyperResNet, HyperVGG
from keras_cnn_ext.tuning.search import search
from keras_cnn_ext.tuning.tuners import TUNERS, create_tuner

__all__ = ["GeometryHyperModel", "HyperLeNet", "HyperVGG", "HyperResNet", "HYPERMODELS",
           "TUNERS", "create_tuner", "search"]
