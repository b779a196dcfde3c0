"""LeNet-5 as in the course notes (d2l): two 5x5 sigmoid convolutions (6 and 16 channels) each
followed by 2x2 stride-2 pooling, then dense layers 120-84-classes.

The first convolution is padded by 2 so that a 28x28 MNIST digit gives the original 32x32
geometry (C1 28x28x6, S2 14x14x6, C3 10x10x16, S4 5x5x16): 61,706 parameters.
"""

import keras

from keras_cnn_ext.models._common import Net, check_common
from keras_cnn_ext.models.registry import register_model
from keras_cnn_ext.ops import geometry

# (name, kind, filters/units, kernel, padding)
LENET5_CONFIG = (
    ("c1", "conv", 6, 5, 2),
    ("s2", "pool", None, 2, 0),
    ("c3", "conv", 16, 5, 0),
    ("s4", "pool", None, 2, 0),
)
LENET5_DENSE = (("c5", 120), ("f6", 84))


def _lenet(name, config, dense, input_shape=None, num_classes=10, include_top=True,
           pooling=None, classifier_activation="softmax", layers="textbook",
           subsampling="max", activation="sigmoid", data_format=None):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (28, 28), 1, data_format)
    subsampling = geometry.normalize_choice(subsampling, "subsampling", ("max", "mean"))
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for layer_name, kind, filters, k, padding in config:
        if kind == "conv":
            x = net.conv(x, filters, k, 1, padding, activation=activation, name=layer_name)
        else:
            x = net.pool(x, subsampling, k, k, padding, name=layer_name)
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
           activation="sigmoid", data_format=None):
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

    >>> lenet5(layers="keras").count_params()
    61706
    """
    return _lenet("lenet5", LENET5_CONFIG, LENET5_DENSE, input_shape, num_classes, include_top,
                  pooling, classifier_activation, layers, subsampling, activation, data_format)
