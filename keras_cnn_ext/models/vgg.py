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

from keras_cnn_ext.models._common import Net, check_common
from keras_cnn_ext.models.registry import register_model

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


def _vgg(name, config, input_shape=None, num_classes=1000, include_top=True, pooling=None,
         classifier_activation="softmax", layers="textbook", dropout=0.5, data_format=None,
         filters=None, strides=1, dense=VGG_DENSE):
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
        x = net.conv(x, width, k, s, p, activation="relu", name=layer_name)
        if layer_name == "conv1_1" and config["lrn"]:
            x = net.lrn(x, name="norm1")
    x = net.dense_head(x, dense, include_top, pooling, num_classes, classifier_activation,
                       dropout=dropout, fc_name=f"fc{6 + len(dense)}")
    return keras.Model(inputs, x, name=name)


_NAMES = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16_c", "D": "vgg16",
          "E": "vgg19"}  # the registered builder of each configuration (below)


def vgg(config="D", input_shape=None, num_classes=1000, include_top=True, pooling=None,
        classifier_activation="softmax", layers="textbook", dropout=0.5, data_format=None,
        filters=None, strides=1, dense_units=(4096, 4096)):
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

    >>> vgg("A", input_shape=(32, 32, 3), num_classes=10, layers="keras").count_params()
    28144010
    """
    dense = tuple((f"fc{6 + j}", units) for j, units in enumerate(dense_units))
    if isinstance(config, (list, tuple)):
        if not config or not all(isinstance(st, (list, tuple)) and st and all(
                isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in st)
                for st in config):
            raise ValueError(
                "Invalid value for argument `config`. Expected a configuration name or a "
                "non-empty tuple of per-stage kernel-size tuples. Received: "
                f"config={config!r}"
            )
        return _vgg("vgg", dict(stages=tuple(tuple(st) for st in config), lrn=False),
                    input_shape, num_classes, include_top, pooling, classifier_activation,
                    layers, dropout, data_format, filters, strides, dense)
    if not isinstance(config, str) or config.upper() not in VGG_CONFIGS:
        raise ValueError(
            "Invalid value for argument `config`. Expected one of "
            f"{', '.join(repr(c) for c in VGG_CONFIGS)}. Received: config={config!r}"
        )
    config = config.upper()
    return _vgg(_NAMES[config], VGG_CONFIGS[config], input_shape, num_classes, include_top,
                pooling, classifier_activation, layers, dropout, data_format, filters, strides,
                dense)


@register_model(aliases=("vgg_a",))
def vgg11(**kwargs):
    """VGG configuration A (11 weight layers): 132,863,336 parameters."""
    return vgg("A", **kwargs)


@register_model(aliases=("vgg_a_lrn",))
def vgg11_lrn(**kwargs):
    """VGG configuration A-LRN (A with LRN after conv1_1): 132,863,336 parameters."""
    return vgg("A-LRN", **kwargs)


@register_model(aliases=("vgg_b",))
def vgg13(**kwargs):
    """VGG configuration B (13 weight layers): 133,047,848 parameters."""
    return vgg("B", **kwargs)


@register_model(aliases=("vgg_c",))
def vgg16_c(**kwargs):
    """VGG configuration C (16 weight layers, three 1x1 convolutions): 133,638,952."""
    return vgg("C", **kwargs)


@register_model(aliases=("vgg_d",))
def vgg16(**kwargs):
    """VGG configuration D (16 weight layers): 138,357,544 parameters."""
    return vgg("D", **kwargs)


@register_model(aliases=("vgg_e",))
def vgg19(**kwargs):
    """VGG configuration E (19 weight layers): 143,667,240 parameters."""
    return vgg("E", **kwargs)
