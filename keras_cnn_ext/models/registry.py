"""Model registry: one name per builder; drives the command line and the test matrix."""

from keras_cnn_ext.models.alexnet import alexnet
from keras_cnn_ext.models.googlenet import googlenet
from keras_cnn_ext.models.lenet import lenet5
from keras_cnn_ext.models.resnet import (
    resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110,
    resnet152,
)
from keras_cnn_ext.models.vgg import vgg11, vgg11_lrn, vgg13, vgg16, vgg16_c, vgg19

_REGISTRY = {}
# paper spellings accepted by `get_model` but not listed
_ALIASES = {"vgg_a": "vgg11", "vgg_a_lrn": "vgg11_lrn", "vgg_b": "vgg13", "vgg_c": "vgg16_c",
            "vgg_d": "vgg16", "vgg_e": "vgg19", "inception_v1": "googlenet"}


def register_model(fn, name=None):
    """Adds a builder under `name` (default: the function's name); returns the builder."""
    _REGISTRY[name or fn.__name__] = fn
    return fn


for _fn in (lenet5, alexnet, vgg11, vgg11_lrn, vgg13, vgg16_c, vgg16, vgg19, googlenet,
            resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44,
            resnet56, resnet110):
    register_model(_fn)


def list_models():
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model(name, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments.

    >>> get_model("lenet5", layers="keras").count_params()
    61706
    """
    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(
            f"Invalid value for argument `name`. Expected one of {', '.join(list_models())}. "
            f"Received: name={name!r}"
        )
    return _REGISTRY[key](**kwargs)
