"""AlexNet (Krizhevsky et al. 2012), the original layout on a single tower.

conv1 11x11/4 96 -> LRN -> max pool 3x3/2 -> conv2 5x5 256 (pad 2) -> LRN -> max pool 3x3/2 ->
conv3 3x3 384 -> conv4 3x3 384 -> conv5 3x3 256 (pad 1) -> max pool 3x3/2 -> fc6 4096 -> fc7 4096
-> fc8 classes, ReLU everywhere, dropout 0.5 before fc7 and fc8. With the 227x227x3 input the
last feature map is 6x6x256, as in the paper, and there are 62,378,344 parameters.

``variant="torchvision"`` is torchvision's AlexNet (after Krizhevsky's "one weird trick"
paper): conv1 11x11/4 pad 2 64 -> max pool 3x3/2 -> conv2 5x5 pad 2 192 -> max pool ->
conv3 3x3 384 -> conv4 256 -> conv5 256 (pad 1) -> max pool -> adaptive average pooling to
6x6 ("avgpool") -> dropout -> fc6 4096 -> dropout -> fc7 4096 -> fc8, no LRN, input 224x224:
61,100,840 parameters (torchvision's), and any input of at least 63x63.
"""

import keras

from keras_cnn_ext.layers.pooling import AdaptiveAveragePooling2D
from keras_cnn_ext.models._common import Net, check_common, check_variant, load_into
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
# torchvision's features (no LRN), then AdaptiveAvgPool2d((6, 6))
TORCHVISION_ALEXNET_CONFIG = (
    ("conv1", 64, 11, 4, 2, False, True),
    ("conv2", 192, 5, 1, 2, False, True),
    ("conv3", 384, 3, 1, 1, False, False),
    ("conv4", 256, 3, 1, 1, False, False),
    ("conv5", 256, 3, 1, 1, False, True),
)


def _alexnet(name, config, dense, input_shape=None, num_classes=1000, include_top=True,
             pooling=None, classifier_activation="softmax", layers="textbook", lrn=True,
             dropout=0.5, data_format=None, torchvision=False):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (224, 224) if torchvision else (227, 227),
                                            3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for i, (layer_name, filters, k, s, p, use_lrn, use_pool) in enumerate(config, start=1):
        x = net.conv(x, filters, k, s, p, activation="relu", name=layer_name)
        if use_lrn and lrn:
            x = net.lrn(x, name=f"norm{i}")
        if use_pool:
            x = net.pool(x, "max", 3, 2, 0, name=f"pool{i}")
    if torchvision and include_top:
        # torchvision's classifier: the dropouts come before fc6 and fc7, not after
        x = net.apply(AdaptiveAveragePooling2D(6, data_format=data_format, name="avgpool"), x)
        x = net.flatten(x)
        for layer_name, units in dense:
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"drop{layer_name[2:]}")(x)
            x = net.dense(x, units, activation="relu", name=layer_name)
        x = net.dense(x, num_classes, activation=classifier_activation, name="fc8")
    else:
        x = net.dense_head(x, dense, include_top, pooling, num_classes, classifier_activation,
                           dropout=dropout)
    return keras.Model(inputs, x, name=name)


@register_model
def alexnet(input_shape=None, num_classes=1000, include_top=True, pooling=None,
            classifier_activation="softmax", layers="textbook", lrn=None, dropout=0.5,
            data_format=None, variant="paper", weights=None):
    """AlexNet, single tower: 62,378,344 parameters at 227x227x3 with 1000 classes.

    Args:
        input_shape: default (227, 227, 3) (224x224x3 with ``variant="torchvision"``); the
            smallest input that fits is 67x67 (63x63 for torchvision's).
        num_classes, include_top, pooling, classifier_activation, layers, data_format: as
            for `lenet5`.
        lrn: include the local response normalisation after conv1 and conv2 (default: True
            for the paper; torchvision's has none, and refuses True).
        dropout: the dropout rate after fc6 and fc7 (before them in torchvision's; 0
            disables it).
        variant: "paper" (default) or "torchvision" (torchvision's AlexNet: see the module
            docstring; 61,100,840 parameters).
        weights: None, or torchvision's ``alexnet`` state dict (a ``.pth`` / ``.pt`` /
            ``.safetensors`` path or a mapping of names to arrays), loaded strictly by
            `keras_cnn_ext.models.weights.load_weights`; needs ``variant="torchvision"``;
            another ``num_classes`` loads all but fc8 and warns.

    >>> alexnet(input_shape=(67, 67, 3), num_classes=10, layers="keras").output_shape
    (None, 10)
    """
    variant = check_variant(variant, weights, {"torchvision": (
        "torchvision", "the weights are laid out for torchvision's AlexNet: 64-192-384-256-256 "
                       "filters, no LRN, a 6x6 adaptive pooling")})
    torchvision = variant == "torchvision"
    if lrn is None:
        lrn = not torchvision
    elif torchvision and lrn:
        raise ValueError("Invalid value for argument `lrn`. Expected False or None with "
                         f"variant='torchvision' (it has no LRN). Received: lrn={lrn!r}")
    config = TORCHVISION_ALEXNET_CONFIG if torchvision else ALEXNET_CONFIG
    model = _alexnet("alexnet", config, ALEXNET_DENSE, input_shape, num_classes, include_top,
                     pooling, classifier_activation, layers, lrn, dropout, data_format,
                     torchvision)
    return load_into(model, weights, "alexnet")
