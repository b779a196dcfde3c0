"""VGG networks (Simonyan & Zisserman 2014), Table 1 configurations A, A-LRN, B, C, D, E.

Every stage is a stack of stride-1 convolutions ("conv3" pads 1, "conv1" pads 0) with ReLU,
followed by 2x2 stride-2 max pooling; then fc6 4096, fc7 4096 (ReLU, dropout 0.5) and fc8.
Parameters at 224x224x3 with 1000 classes (Table 2 rounds them to millions):

======  ======  =============
config  layers  parameters
======  ======  =============
A       11      132,863,336
A-LRN   11      132,863,336   (LRN has no weights)
B       13      133,047,848
C       16      133,638,952
D       16      138,357,544
E       19      143,667,240
======  ======  =============
"""

import keras

from keras_cnn_ext.layers.pooling import AdaptiveAveragePooling2D
from keras_cnn_ext.models._common import VARIANTS, Net, check_common, check_variant, load_into
from keras_cnn_ext.models.registry import register_model
from keras_cnn_ext.ops import geometry

VGG_WIDTHS = (64, 128, 256, 512, 512)
# per configuration: the kernel sizes of each stage's convolutions, and LRN after conv1_1
VGG_CONFIGS = {
    "A": dict(stages=((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn=False),
    "A-LRN": dict(stages=((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn=True),
    "B": dict(stages=((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)), lrn=False),
    "C": dict(stages=((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)), lrn=False),
    "D": dict(stages=((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)), lrn=False),
    "E": dict(stages=((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)), lrn=False),
}
VGG_DENSE = (("fc6", 4096), ("fc7", 4096))
# the configurations torchvision builds, and its names for them
TORCHVISION_CONFIGS = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
# keras.applications' VGGs: the paper's configurations D and E (no batch norm)
KERAS_VGGS = ("vgg16", "vgg19")
TORCHVISION_BN = dict(epsilon=1e-5, momentum=0.9)  # PyTorch's eps 1e-5, momentum 0.1


def vgg_stage(index, kernels, filters, strides=1):
    """The table rows of stage `index` (1-based): convolutions "conv{i}_{j}" (textbook 'same'
    padding (k - 1) // 2; `strides` on the first one, 1 in the paper) and "pool{i}" 2x2/2.

    Rows are (name, kind, filters, kernel, stride, padding).
    """
    rows = tuple((f"conv{index}_{j}", "conv", filters, k, strides if j == 1 else 1,
                  (k - 1) // 2) for j, k in enumerate(kernels, start=1))
    return rows + ((f"pool{index}", "pool", None, 2, 2, 0),)


def vgg_config(stages, filters=VGG_WIDTHS, strides=1):
    """The layer table of a VGG network: one `vgg_stage` per entry of `stages` (a tuple of
    each stage's kernel sizes, as in `VGG_CONFIGS`)."""
    n = len(stages)
    if not isinstance(filters, (list, tuple)) or len(filters) != n:
        raise ValueError(
            f"Invalid value for argument `filters`. Expected {n} widths (one per stage). "
            f"Received: filters={filters!r}"
        )
    strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides,) * n
    if len(strides) != n:
        raise ValueError(
            f"Invalid value for argument `strides`. Expected one value or {n} values (one per "
            f"stage). Received: strides={strides!r}"
        )
    return sum((vgg_stage(i, kernels, f, s)
                for i, (kernels, f, s) in enumerate(zip(stages, filters, strides), start=1)),
               ())


def _torchvision_config(config, filters, strides, dense):
    """torchvision's VGG exists for A, B, D, E at the paper's widths only."""
    if config not in TORCHVISION_CONFIGS:
        raise ValueError(
            "Invalid value for argument `variant`. Expected 'paper' for configuration "
            f"{config!r} (torchvision builds only {', '.join(map(repr, TORCHVISION_CONFIGS))}: "
            f"{', '.join(TORCHVISION_CONFIGS.values())}). Received: variant='torchvision'")
    for arg, value, default in (("filters", filters, None), ("strides", strides, 1),
                                ("dense_units", tuple(u for _, u in dense), (4096, 4096))):
        if value != default:
            raise ValueError(
                f"Invalid value for argument `{arg}`. Expected {default!r} with "
                f"variant='torchvision' (torchvision's layout). Received: {arg}={value!r}")


def _vgg(name, config, input_shape=None, num_classes=1000, include_top=True, pooling=None,
         classifier_activation="softmax", layers="textbook", dropout=0.5, data_format=None,
         filters=None, strides=1, dense=VGG_DENSE, batch_norm=False, variant="paper",
         weights=None):
    layouts = {"torchvision": ("torchvision", "the weights are laid out for torchvision's VGG, "
                                              "whose classifier follows an adaptive average "
                                              "pooling to 7x7")}
    if name in KERAS_VGGS:
        layouts["keras"] = ("paper", "keras.applications' VGG16/VGG19 are the paper's "
                                     "configurations D/E, flattened in (H, W, C) order as ours")
    variant = check_variant(variant, weights, layouts)
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (224, 224), 3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    stages = config["stages"]
    rows = vgg_config(stages, VGG_WIDTHS[:len(stages)] if filters is None else filters, strides)
    for layer_name, kind, width, k, s, p in rows:
        if kind == "pool":
            x = net.pool(x, "max", k, s, p, name=layer_name)
            continue
        if batch_norm:  # conv (with its bias, as torchvision's) -> BN -> ReLU
            x = net.conv(x, width, k, s, p, name=layer_name)
            x = net.batch_norm(x, name=layer_name + "_bn", **TORCHVISION_BN)
            x = keras.layers.ReLU(name=layer_name + "_relu")(x)
        else:
            x = net.conv(x, width, k, s, p, activation="relu", name=layer_name)
        if layer_name == "conv1_1" and config["lrn"]:
            x = net.lrn(x, name="norm1")
    if variant == "torchvision" and include_top:
        x = net.apply(AdaptiveAveragePooling2D(7, data_format=data_format, name="avgpool"), x)
    x = net.dense_head(x, dense, include_top, pooling, num_classes, classifier_activation,
                       dropout=dropout, fc_name=f"fc{6 + len(dense)}")
    return load_into(keras.Model(inputs, x, name=name), weights)  # "vgg" or "keras_vgg"


_NAMES = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16_c", "D": "vgg16",
          "E": "vgg19"}  # the registered builder of each configuration (below)


def vgg(config="D", input_shape=None, num_classes=1000, include_top=True, pooling=None,
        classifier_activation="softmax", layers="textbook", dropout=0.5, data_format=None,
        filters=None, strides=1, dense_units=(4096, 4096), batch_norm=False, variant="paper",
        weights=None):
    """A VGG network of the paper's Table 1 (or a custom stage layout).

    Args:
        config: "A", "A-LRN", "B", "C", "D" or "E" (parameters in the module docstring), or a
            custom layout: a tuple with, per stage, the tuple of its convolutions' kernel
            sizes, e.g. ``((3,), (3, 3))`` (the model is then named "vgg").
        input_shape: default (224, 224, 3); 32x32 is the smallest that fits the five poolings.
        num_classes, include_top, pooling, classifier_activation, layers, data_format: as
            for `lenet5`.
        dropout: the rate after fc6 and fc7 (0 disables it).
        filters: the width of each stage; default 64, 128, 256, 512, 512 (the first ones for
            a custom layout with fewer stages).
        strides: the stride of each stage's first convolution (one value or one per stage);
            1 in the paper, where only the poolings downsample.
        dense_units: the widths of the hidden dense layers fc6, fc7, ...; the classifier is
            "fc{6 + len(dense_units)}" (fc8 in the paper).
        batch_norm: batch normalisation after every convolution, before its ReLU (epsilon
            1e-5, momentum 0.9: torchvision's ``vgg*_bn``; not in the paper); the model's
            name gets "_bn".
        variant: "paper" (default) or "torchvision": torchvision's VGG (configurations A, B,
            D, E = its vgg11, vgg13, vgg16, vgg19, at the paper's widths), whose classifier
            follows an ``AdaptiveAveragePooling2D(7)`` ("avgpool"), so any input of at least
            32x32 reaches the 25,088-input fc6 (the identity at 224x224: the same parameters
            as the paper's network there).
        weights: None, or a torchvision ``vgg11`` .. ``vgg19`` / ``vgg11_bn`` .. ``vgg19_bn``
            state dict (a ``.pth`` / ``.pt`` / ``.safetensors`` path or a mapping of names to
            arrays), loaded strictly by `keras_cnn_ext.models.weights.load_weights`; needs
            ``variant="torchvision"`` and the matching ``batch_norm``; another
            ``num_classes`` loads all but fc8 and warns.

    >>> vgg("A", input_shape=(32, 32, 3), num_classes=10, layers="keras").count_params()
    28144010
    """
    dense = tuple((f"fc{6 + j}", units) for j, units in enumerate(dense_units))
    batch_norm = geometry.normalize_bool(batch_norm, "batch_norm")
    common = dict(input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                  pooling=pooling, classifier_activation=classifier_activation, layers=layers,
                  dropout=dropout, data_format=data_format, filters=filters, strides=strides,
                  dense=dense, batch_norm=batch_norm, variant=variant, weights=weights)
    suffix = "_bn" if batch_norm else ""
    if isinstance(config, (list, tuple)):
        if not config or not all(isinstance(st, (list, tuple)) and st and all(
                isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in st)
                for st in config):
            raise ValueError(
                "Invalid value for argument `config`. Expected a configuration name or a "
                "non-empty tuple of per-stage kernel-size tuples. Received: "
                f"config={config!r}"
            )
        if geometry.normalize_choice(variant, "variant", VARIANTS) != "paper":
            raise ValueError("Invalid value for argument `variant`. Expected 'paper' with a "
                             "custom `config`. Received: variant='torchvision'")
        return _vgg("vgg" + suffix, dict(stages=tuple(tuple(st) for st in config), lrn=False),
                    **common)
    if not isinstance(config, str) or config.upper() not in VGG_CONFIGS:
        raise ValueError(
            "Invalid value for argument `config`. Expected one of "
            f"{', '.join(repr(c) for c in VGG_CONFIGS)}. Received: config={config!r}"
        )
    config = config.upper()
    if geometry.normalize_choice(variant, "variant", VARIANTS) == "torchvision":
        _torchvision_config(config, filters, strides, dense)
    return _vgg(_NAMES[config] + suffix, VGG_CONFIGS[config], **common)


@register_model(aliases=("vgg_a",))
def vgg11(**kwargs):
    """VGG configuration A (11 weight layers): 132,863,336 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg11`` state dicts.
    """
    return vgg("A", **kwargs)


@register_model(aliases=("vgg_a_lrn",))
def vgg11_lrn(**kwargs):
    """VGG configuration A-LRN (A with LRN after conv1_1): 132,863,336 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): none (torchvision has no A-LRN; ``variant`` 'paper' only).
    """
    return vgg("A-LRN", **kwargs)


@register_model(aliases=("vgg_b",))
def vgg13(**kwargs):
    """VGG configuration B (13 weight layers): 133,047,848 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg13`` state dicts.
    """
    return vgg("B", **kwargs)


@register_model(aliases=("vgg_c",))
def vgg16_c(**kwargs):
    """VGG configuration C (16 weight layers, three 1x1 convolutions): 133,638,952.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): none (torchvision has no configuration C; ``variant`` 'paper' only).
    """
    return vgg("C", **kwargs)


@register_model(aliases=("vgg_d",))
def vgg16(**kwargs):
    """VGG configuration D (16 weight layers): 138,357,544 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg16`` state dicts.
    """
    return vgg("D", **kwargs)


@register_model(aliases=("vgg_e",))
def vgg19(**kwargs):
    """VGG configuration E (19 weight layers): 143,667,240 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg19`` state dicts.
    """
    return vgg("E", **kwargs)


@register_model
def vgg11_bn(**kwargs):
    """VGG configuration A, batch norm after every convolution: 132,868,840 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg11_bn`` state dicts.
    """
    return vgg("A", batch_norm=True, **kwargs)


@register_model
def vgg13_bn(**kwargs):
    """VGG configuration B, batch norm after every convolution: 133,053,736 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg13_bn`` state dicts.
    """
    return vgg("B", batch_norm=True, **kwargs)


@register_model
def vgg16_bn(**kwargs):
    """VGG configuration D, batch norm after every convolution: 138,365,992 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg16_bn`` state dicts.
    """
    return vgg("D", batch_norm=True, **kwargs)


@register_model
def vgg19_bn(**kwargs):
    """VGG configuration E, batch norm after every convolution: 143,678,248 parameters.

    Keyword arguments: see `vgg`. Weight layouts (``weights=``, with
    ``variant="torchvision"``): torchvision's ``vgg19_bn`` state dicts.
    """
    return vgg("E", batch_norm=True, **kwargs)
