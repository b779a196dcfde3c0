"""GoogLeNet (Szegedy et al. 2015), the paper's Table 1 and Figure 3.

conv1 7x7/2 64 -> max pool 3x3/2 -> LRN -> conv2_reduce 1x1 64 -> conv2 3x3 192 -> LRN ->
max pool 3x3/2 -> inception 3a, 3b -> max pool -> 4a..4e -> max pool -> 5a, 5b -> global
average pooling (7x7 at 224x224) -> dropout 40% -> fc. Convolutions have biases and ReLU, no
batch normalisation (``use_batch_norm=True`` adds it, as later re-implementations do). Every
spatial window pads symmetrically ('same'), so 224 -> 112 -> 56 -> 28 -> 14 -> 7.

Module output channels: 256, 480, 512, 512, 512, 528, 832, 832, 1024. Parameters at 224x224x3
with 1000 classes: 6,998,552 (13,378,280 with the two auxiliary classifiers).
"""

import keras

from keras_cnn_ext.layers.inception import InceptionModule
from keras_cnn_ext.models._common import Net, check_common
from keras_cnn_ext.models.registry import register_model

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" rows between
GOOGLENET_CONFIG = (
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    ("pool3", None),
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
    ("pool4", None),
    ("inception_5a", (256, 160, 320, 32, 128, 128)),
    ("inception_5b", (384, 192, 384, 48, 128, 128)),
)
AUX_AFTER = ("inception_4a", "inception_4d")


def _aux_classifier(net, x, index, num_classes, classifier_activation):
    """Section 5: avg pool 5x5/3, 1x1 conv 128, fc 1024, dropout 70%, linear + softmax."""
    p = f"aux{index}"
    x = net.pool(x, "mean", 5, 3, 0, name=f"{p}_pool")
    x = net.conv(x, 128, 1, 1, 0, activation="relu", name=f"{p}_conv")
    x = net.flatten(x, name=f"{p}_flatten")
    x = net.dense(x, 1024, activation="relu", name=f"{p}_fc1")
    x = keras.layers.Dropout(0.7, name=f"{p}_drop")(x)
    return net.dense(x, num_classes, activation=classifier_activation, name=f"{p}_fc2")


def _googlenet(name, config, input_shape=None, num_classes=1000, include_top=True, pooling=None,
               classifier_activation="softmax", layers="textbook", aux_classifiers=False,
               use_batch_norm=False, lrn=True, dropout=0.4, data_format=None):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (224, 224), 3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")

    def conv(x, filters, k, s, p, layer_name):
        if not use_batch_norm:
            return net.conv(x, filters, k, s, p, activation="relu", name=layer_name)
        x = net.conv(x, filters, k, s, p, use_bias=False, name=layer_name)
        x = net.batch_norm(x, epsilon=1e-3, name=layer_name + "_bn")
        return keras.layers.ReLU(name=layer_name + "_relu")(x)

    x = conv(inputs, 64, 7, 2, 3, "conv1")
    x = net.pool(x, "max", 3, 2, "same", name="pool1")
    if lrn:
        x = net.lrn(x, name="norm1")
    x = conv(x, 64, 1, 1, 0, "conv2_reduce")
    x = conv(x, 192, 3, 1, 1, "conv2")
    if lrn:
        x = net.lrn(x, name="norm2")
    x = net.pool(x, "max", 3, 2, "same", name="pool2")
    aux = []
    for layer_name, filters in config:
        if filters is None:
            x = net.pool(x, "max", 3, 2, "same", name=layer_name)
            continue
        x = net.apply(InceptionModule(*filters, use_batch_norm=use_batch_norm, layers=net.kind,
                                      data_format=data_format, name=layer_name), x)
        if include_top and aux_classifiers and layer_name in AUX_AFTER:
            aux.append(_aux_classifier(net, x, len(aux) + 1, num_classes,
                                       classifier_activation))
    x = net.global_pool_head(x, include_top, pooling, num_classes, classifier_activation,
                             dropout=dropout, fc_name="fc")
    return keras.Model(inputs, [x] + aux if aux else x, name=name)


@register_model(aliases=("inception_v1",))
def googlenet(input_shape=None, num_classes=1000, include_top=True, pooling=None,
              classifier_activation="softmax", layers="textbook", aux_classifiers=False,
              use_batch_norm=False, lrn=True, dropout=0.4, data_format=None):
    """GoogLeNet (Inception v1): 6,998,552 parameters at 224x224x3 with 1000 classes.

    Args:
        input_shape: default (224, 224, 3); any input of at least 17x17 works (the head is a
            global average pooling, 7x7 at the default size); the auxiliary classifiers need
            at least 65x65 (their 5x5 pooling runs on the inception_4a/4d maps).
        num_classes, include_top, pooling, classifier_activation, layers, data_format: as
            for `lenet5`.
        aux_classifiers: add the two auxiliary classifiers of section 5; the model then has
            three outputs [main, aux1 (after inception_4a), aux2 (after inception_4d)].
        use_batch_norm: batch normalisation after every convolution (not in the paper).
        lrn: the local response normalisations of Figure 3.
        dropout: the rate before the classifier, 40% in the paper.

    >>> googlenet(input_shape=(32, 32, 3), num_classes=10, layers="keras").output_shape
    (None, 10)
    """
    return _googlenet("googlenet", GOOGLENET_CONFIG, input_shape, num_classes, include_top,
                      pooling, classifier_activation, layers, aux_classifiers, use_batch_norm,
                      lrn, dropout, data_format)
