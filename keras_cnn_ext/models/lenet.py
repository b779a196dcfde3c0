"""LeNet-5 as in the course notes (d2l): two 5x5 sigmoid convolutions (6 and 16 channels) each
followed by 2x2 stride-2 pooling, then dense layers 120-84-classes.

The first convolution is padded by 2 so that a 28x28 MNIST digit gives the original 32x32
geometry (C1 28x28x6, S2 14x14x6, C3 10x10x16, S4 5x5x16): 61,706 parameters.
"""

import keras

from keras_cnn_ext.models._common import Net, check_common, load_keras_weights
from keras_cnn_ext.models.registry import register_model
from keras_cnn_ext.ops import geometry

# (name, kind, filters, kernel, stride, padding): the layer table the builder walks
LENET5_CONFIG = (
    ("c1", "conv", 6, 5, 1, 2),
    ("s2", "pool", None, 2, 2, 0),
    ("c3", "conv", 16, 5, 1, 0),
    ("s4", "pool", None, 2, 2, 0),
)
LENET5_DENSE = (("c5", 120), ("f6", 84))


def _per_stage(value, name, stages):
    """A single int/word for every stage, or a list/tuple with one entry per stage (so a
    per-side padding such as ``(1, 2)`` is given per stage: ``((1, 2), (1, 2))``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != stages:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected one value or {stages} values "
                f"(one per entry of `filters`). Received: {name}={value!r}"
            )
        return tuple(value)
    return (value,) * stages


def lenet_stage(index, filters, kernel_size=5, strides=1, padding=0, pool_size=2):
    """The table rows of conv-pool stage `index` (1-based): "c{2i-1}" then "s{2i}"."""
    return ((f"c{2 * index - 1}", "conv", filters, kernel_size, strides, padding),
            (f"s{2 * index}", "pool", None, pool_size, pool_size, 0))


def lenet_config(filters=(6, 16), kernel_sizes=5, strides=1, paddings=(2, 0), pool_size=2,
                 dense_units=(120, 84)):
    """The layer table of a LeNet with one conv-pool stage per entry of `filters`.

    The defaults give `LENET5_CONFIG` / `LENET5_DENSE`. The dense layers continue the numbering
    after the stages: the first is "c{2n+1}" (LeNet's C5), the others "f{2n+2}", ...

    Returns:
        (conv/pool rows, dense rows).
    """
    if (not isinstance(filters, (list, tuple)) or not filters
            or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0
                       for f in filters)):
        raise ValueError(
            "Invalid value for argument `filters`. Expected a non-empty sequence of positive "
            f"integers (one per conv-pool stage). Received: filters={filters!r}"
        )
    n = len(filters)
    kernels = _per_stage(kernel_sizes, "kernel_sizes", n)
    stride = _per_stage(strides, "strides", n)
    pads = _per_stage(paddings, "paddings", n)
    rows = sum((lenet_stage(i + 1, filters[i], kernels[i], stride[i], pads[i], pool_size)
                for i in range(n)), ())
    if (not isinstance(dense_units, (list, tuple))
            or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0
                       for u in dense_units)):
        raise ValueError(
            "Invalid value for argument `dense_units`. Expected a sequence of positive "
            f"integers. Received: dense_units={dense_units!r}"
        )
    dense = tuple((f"{'c' if j == 0 else 'f'}{2 * n + 1 + j}", units)
                  for j, units in enumerate(dense_units))
    return rows, dense


def _lenet(name, config, dense, input_shape=None, num_classes=10, include_top=True,
           pooling=None, classifier_activation="softmax", layers="textbook",
           subsampling="max", activation="sigmoid", data_format=None):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (28, 28), 1, data_format)
    subsampling = geometry.normalize_choice(subsampling, "subsampling", ("max", "mean"))
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for layer_name, kind, filters, k, s, padding in config:
        if kind == "conv":
            x = net.conv(x, filters, k, s, padding, activation=activation, name=layer_name)
        else:
            x = net.pool(x, subsampling, k, s, padding, name=layer_name)
    if include_top:
        x = net.flatten(x)
        for layer_name, units in dense:
            x = net.dense(x, units, activation=activation, name=layer_name)
        x = net.dense(x, num_classes, activation=classifier_activation, name="output")
    else:
        x = net.global_pool(x, pooling)
    return keras.Model(inputs, x, name=name)


@register_model
def lenet5(input_shape=None, num_classes=10, include_top=True, pooling=None,
           classifier_activation="softmax", layers="textbook", subsampling="max",
           activation="sigmoid", data_format=None, filters=(6, 16), kernel_sizes=5, strides=1,
           paddings=(2, 0), dense_units=(120, 84), weights=None):
    """LeNet-5 (LeCun et al. 1998, as in the course notes): 61,706 parameters at 28x28x1.

    Layers: c1 (5x5, 6, padding 2, sigmoid), s2 (2x2/2), c3 (5x5, 16, sigmoid), s4 (2x2/2),
    flatten, c5 (dense 120), f6 (dense 84), output (dense `num_classes`).

    Args:
        input_shape: (height, width, channels), default (28, 28, 1); (channels, height,
            width) for channels_first.
        num_classes: classes of the output layer.
        include_top: whether to include the dense layers.
        pooling: with ``include_top=False``: None (feature maps), "avg" or "max".
        classifier_activation: activation of the output layer (None gives logits).
        layers: "textbook" (this package's layers) or "keras" (stock Keras layers).
        subsampling: "max" (the notes) or "mean" (LeCun's original averaging).
        activation: of the hidden layers, "sigmoid" as in the notes.
        data_format: "channels_last" or "channels_first" (default: Keras' setting,
            `keras.config.image_data_format()`), for every layer of the model. The weights
            have the same shapes in both layouts (`Flatten` reads channels_last order).
        filters: channels of each conv-pool stage; the number of entries is the number of
            stages (2 in LeNet-5). The next three arguments take one value for every stage or
            one per stage; the defaults are LeNet-5's.
        kernel_sizes: kernel of each stage's convolution.
        strides: stride of each stage's convolution.
        paddings: padding of each stage's convolution: an int or word for all stages, or a
            tuple with one `kce.ops.corr2d` padding spelling per stage.
        dense_units: widths of the hidden dense layers (C5, F6).
        weights: None, or a Keras weights file (``.weights.h5`` / ``.keras``) saved from a
            LeNet-5 of the same arguments (no published layout exists for it).

    >>> lenet5(layers="keras").count_params()
    61706
    """
    config, dense = lenet_config(filters, kernel_sizes, strides, paddings, 2, dense_units)
    return load_keras_weights(
        _lenet("lenet5", config, dense, input_shape, num_classes, include_top, pooling,
               classifier_activation, layers, subsampling, activation, data_format), weights)
