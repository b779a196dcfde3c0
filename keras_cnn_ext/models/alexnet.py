"""AlexNet (Krizhevsky et al. 2012), the original layout on a single tower.

conv1 11x11/4 96 -> LRN -> max pool 3x3/2 -> conv2 5x5 256 (pad 2) -> LRN -> max pool 3x3/2 ->
conv3 3x3 384 -> conv4 3x3 384 -> conv5 3x3 256 (pad 1) -> max pool 3x3/2 -> fc6 4096 -> fc7 4096
-> fc8 classes, ReLU everywhere, dropout 0.5 before fc7 and fc8. With the 227x227x3 input the
last feature map is 6x6x256, as in the paper, and there are 62,378,344 parameters.
"""

import keras

from keras_cnn_ext.models._common import Net, check_common
from keras_cnn_ext.models.registry import register_model

# (name, filters, kernel, stride, padding, lrn, pool)
ALEXNET_CONFIG = (
    ("conv1", 96, 11, 4, 0, True, True),
    ("conv2", 256, 5, 1, 2, True, True),
    ("conv3", 384, 3, 1, 1, False, False),
    ("conv4", 384, 3, 1, 1, False, False),
    ("conv5", 256, 3, 1, 1, False, True),
)
ALEXNET_DENSE = (("fc6", 4096), ("fc7", 4096))


def _alexnet(name, config, dense, input_shape=None, num_classes=1000, include_top=True,
             pooling=None, classifier_activation="softmax", layers="textbook", lrn=True,
             dropout=0.5, data_format=None):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (227, 227), 3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for i, (layer_name, filters, k, s, p, use_lrn, use_pool) in enumerate(config, start=1):
        x = net.conv(x, filters, k, s, p, activation="relu", name=layer_name)
        if use_lrn and lrn:
            x = net.lrn(x, name=f"norm{i}")
        if use_pool:
            x = net.pool(x, "max", 3, 2, 0, name=f"pool{i}")
    x = net.dense_head(x, dense, include_top, pooling, num_classes, classifier_activation,
                       dropout=dropout)
    return keras.Model(inputs, x, name=name)


@register_model
def alexnet(input_shape=None, num_classes=1000, include_top=True, pooling=None,
            classifier_activation="softmax", layers="textbook", lrn=True, dropout=0.5,
            data_format=None):
    """AlexNet, single tower: 62,378,344 parameters at 227x227x3 with 1000 classes.

    Args:
        input_shape: default (227, 227, 3); the smallest input that fits is 67x67.
        num_classes, include_top, pooling, classifier_activation, layers, data_format: as
            for `lenet5`.
        lrn: include the local response normalisation after conv1 and conv2.
        dropout: the dropout rate after fc6 and fc7 (0 disables it).

    >>> alexnet(input_shape=(67, 67, 3), num_classes=10, layers="keras").output_shape
    (None, 10)
    """
    return _alexnet("alexnet", ALEXNET_CONFIG, ALEXNET_DENSE, input_shape, num_classes,
                    include_top, pooling, classifier_activation, layers, lrn, dropout,
                    data_format)
