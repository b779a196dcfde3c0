"""Builders of the classic architectures, exactly as the papers' tables define them.

All builders return a functional `keras.Model` with the papers' layer names and share the
arguments `input_shape`, `num_classes`, `include_top=True`, `pooling=None|"avg"|"max"`,
`classifier_activation="softmax"`, `layers="textbook"|"keras"` and `data_format` (default:
`keras.config.image_data_format()`). Every builder registers itself where it is defined
(`register_model`), so `list_models()` / `get_model(name)` know them all.

>>> "resnet50" in list_models()
True
>>> get_model("lenet5", layers="keras").output_shape
(None, 10)
"""

from keras_cnn_ext.models.alexnet import alexnet
from keras_cnn_ext.models.googlenet import googlenet
from keras_cnn_ext.models.lenet import lenet5
from keras_cnn_ext.models.registry import get_model, list_models, register_model
from keras_cnn_ext.models.resnet import (
    cifar_resnet, resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56,
    resnet101, resnet110, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d,
    wide_resnet50_2, wide_resnet101_2,
)
from keras_cnn_ext.models.weights import load_weights
from keras_cnn_ext.models.preprocessing import InputNormalization, preprocess_input
from keras_cnn_ext.models.vgg import (
    vgg, vgg11, vgg11_bn, vgg11_lrn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg16_c, vgg19, vgg19_bn,
)

__all__ = [
    "lenet5", "alexnet", "vgg", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20",
    "resnet32", "resnet44", "resnet56", "resnet110", "cifar_resnet", "resnext50_32x4d",
    "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "get_model",
    "list_models", "register_model", "load_weights", "preprocess_input", "InputNormalization",
]
