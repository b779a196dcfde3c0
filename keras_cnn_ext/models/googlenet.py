"""GoogLeNet (Szegedy et al. 2015), the paper's Table 1 and Figure 3.

conv1 7x7/2 64 -> max pool 3x3/2 -> LRN -> conv2_reduce 1x1 64 -> conv2 3x3 192 -> LRN ->
max pool 3x3/2 -> inception 3a, 3b -> max pool -> 4a..4e -> max pool -> 5a, 5b -> global
average pooling (7x7 at 224x224) -> dropout 40% -> fc. Convolutions have biases and ReLU, no
batch normalisation (``use_batch_norm=True`` adds it, as later re-implementations do). Every
spatial window pads symmetrically ('same'), so 224 -> 112 -> 56 -> 28 -> 14 -> 7.

Module output channels: 256, 480, 512, 512, 512, 528, 832, 832, 1024. Parameters at 224x224x3
with 1000 classes: 6,998,552 (13,378,280 with the two auxiliary classifiers).

``variant="torchvision"`` is torchvision's GoogLeNet: every convolution is its BasicConv2d
(no bias, batch norm with epsilon 1e-3, ReLU), no LRN, the "5x5" column is a 3x3 convolution
(torchvision's known deviation, kept by its trained weights), the max poolings are 3x3/2
without padding in ``ceil_mode`` (pool4 2x2/2), dropout 0.2 before fc: 6,624,904 parameters,
torchvision's. Its auxiliary classifiers (``aux_classifiers=True``) are torchvision's
InceptionAux: adaptive average pooling to 4x4, a 1x1 BasicConv2d 128, fc1 1024, dropout 0.7,
fc2 (13,004,888 parameters in all).
"""

import keras

from keras_cnn_ext.layers.inception import InceptionModule
from keras_cnn_ext.layers.pooling import AdaptiveAveragePooling2D
from keras_cnn_ext.models._common import Net, check_common, check_variant, load_into
from keras_cnn_ext.models.registry import register_model
from keras_cnn_ext.ops import geometry

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
# torchvision: the pooling after each of these layers (window, stride), all in ceil_mode
TORCHVISION_POOLS = {"pool1": (3, 2), "pool2": (3, 2), "pool3": (3, 2), "pool4": (2, 2)}
TORCHVISION_BN = dict(epsilon=1e-3, momentum=0.9)  # BasicConv2d: eps 0.001, momentum 0.1
# transform_input: torchvision's ImageNet normalisation -> its GoogLeNet's (x - 0.5) / 0.5
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _aux_classifier(net, x, index, num_classes, classifier_activation):
    """Section 5: avg pool 5x5/3, 1x1 conv 128, fc 1024, dropout 70%, linear + softmax."""
    p = f"aux{index}"
    x = net.pool(x, "mean", 5, 3, 0, name=f"{p}_pool")
    x = net.conv(x, 128, 1, 1, 0, activation="relu", name=f"{p}_conv")
    x = net.flatten(x, name=f"{p}_flatten")
    x = net.dense(x, 1024, activation="relu", name=f"{p}_fc1")
    x = keras.layers.Dropout(0.7, name=f"{p}_drop")(x)
    return net.dense(x, num_classes, activation=classifier_activation, name=f"{p}_fc2")


def _torchvision_aux_classifier(net, x, index, num_classes, classifier_activation, conv):
    """torchvision's InceptionAux: adaptive avg pool 4x4, BasicConv2d 1x1 128, fc1 1024,
    dropout 70%, fc2."""
    p = f"aux{index}"
    x = net.apply(AdaptiveAveragePooling2D(4, data_format=net.data_format, name=f"{p}_pool"), x)
    x = conv(x, 128, 1, 1, 0, f"{p}_conv")
    x = net.flatten(x, name=f"{p}_flatten")
    x = net.dense(x, 1024, activation="relu", name=f"{p}_fc1")
    x = keras.layers.Dropout(0.7, name=f"{p}_drop")(x)
    return net.dense(x, num_classes, activation=classifier_activation, name=f"{p}_fc2")


def _ceil_max_pool(net, x, window, stride, name):
    """torchvision's ``MaxPool2d(window, stride, ceil_mode=True)``. The stock Keras layers
    have no ceil mode: there the overhang is zero padding at the bottom and right, which is
    exact here (the inputs follow a ReLU, so a padded 0 never beats the window's real cells).
    """
    if net.kind == "textbook":
        return net.pool(x, "max", window, stride, 0, name=name, ceil_mode=True)
    pads = tuple((0, geometry.ceil_overhang(size, window, stride, (0, 0), ceil_mode=True))
                 for size in net._hw(x))
    return net.pool(x, "max", window, stride, pads, name=name)


def _transform_input(net, x):
    """torchvision's ``transform_input``: ImageNet-normalised input -> (x - 0.5) / 0.5."""
    scale = [s / 0.5 for s in _IMAGENET_STD]
    offset = [(m - 0.5) / 0.5 for m in _IMAGENET_MEAN]
    if net.data_format == "channels_first":
        scale, offset = ([[[v]] for v in scale], [[[v]] for v in offset])
    return keras.layers.Rescaling(scale, offset, name="transform_input")(x)


def _googlenet(name, config, input_shape=None, num_classes=1000, include_top=True, pooling=None,
               classifier_activation="softmax", layers="textbook", aux_classifiers=False,
               use_batch_norm=False, lrn=True, dropout=0.4, data_format=None,
               torchvision=False, transform_input=False):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (224, 224), 3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    bn = TORCHVISION_BN if torchvision else dict(epsilon=1e-3)

    def conv(x, filters, k, s, p, layer_name):
        if not use_batch_norm:
            return net.conv(x, filters, k, s, p, activation="relu", name=layer_name)
        x = net.conv(x, filters, k, s, p, use_bias=False, name=layer_name)
        x = net.batch_norm(x, name=layer_name + "_bn", **bn)
        return keras.layers.ReLU(name=layer_name + "_relu")(x)

    def pool(x, layer_name):
        if torchvision:
            return _ceil_max_pool(net, x, *TORCHVISION_POOLS[layer_name], layer_name)
        return net.pool(x, "max", 3, 2, "same", name=layer_name)

    x = _transform_input(net, inputs) if transform_input else inputs
    x = conv(x, 64, 7, 2, 3, "conv1")
    x = pool(x, "pool1")
    if lrn:
        x = net.lrn(x, name="norm1")
    x = conv(x, 64, 1, 1, 0, "conv2_reduce")
    x = conv(x, 192, 3, 1, 1, "conv2")
    if lrn:
        x = net.lrn(x, name="norm2")
    x = pool(x, "pool2")
    module_args = dict(kernel_size_5x5=3, batch_norm_momentum=0.9) if torchvision else {}
    aux = []
    for layer_name, filters in config:
        if filters is None:
            x = pool(x, layer_name)
            continue
        x = net.apply(InceptionModule(*filters, use_batch_norm=use_batch_norm, layers=net.kind,
                                      data_format=data_format, name=layer_name, **module_args),
                      x)
        if include_top and aux_classifiers and layer_name in AUX_AFTER:
            if torchvision:
                aux.append(_torchvision_aux_classifier(net, x, len(aux) + 1, num_classes,
                                                       classifier_activation, conv))
            else:
                aux.append(_aux_classifier(net, x, len(aux) + 1, num_classes,
                                           classifier_activation))
    x = net.global_pool_head(x, include_top, pooling, num_classes, classifier_activation,
                             dropout=dropout, fc_name="fc")
    return keras.Model(inputs, [x] + aux if aux else x, name=name)


def _variant_defaults(torchvision, use_batch_norm, lrn, dropout, transform_input):
    """The arguments a variant fixes or defaults: (use_batch_norm, lrn, dropout)."""
    geometry.normalize_bool(transform_input, "transform_input")
    if not torchvision:
        if transform_input:
            raise ValueError("Invalid value for argument `transform_input`. Expected False "
                             "with variant='paper' (torchvision's option). Received: "
                             "transform_input=True")
        return (False if use_batch_norm is None else use_batch_norm,
                True if lrn is None else lrn, 0.4 if dropout is None else dropout)
    for arg, value, fixed in (("use_batch_norm", use_batch_norm, True), ("lrn", lrn, False)):
        if value not in (None, fixed):
            raise ValueError(f"Invalid value for argument `{arg}`. Expected {fixed} or None "
                             f"with variant='torchvision'. Received: {arg}={value!r}")
    return True, False, 0.2 if dropout is None else dropout


@register_model(aliases=("inception_v1",))
def googlenet(input_shape=None, num_classes=1000, include_top=True, pooling=None,
              classifier_activation="softmax", layers="textbook", aux_classifiers=False,
              use_batch_norm=None, lrn=None, dropout=None, data_format=None, variant="paper",
              weights=None, transform_input=False):
    """GoogLeNet (Inception v1): 6,998,552 parameters at 224x224x3 with 1000 classes.

    Args:
        input_shape: default (224, 224, 3); any input of at least 17x17 works (the head is a
            global average pooling, 7x7 at the default size); the auxiliary classifiers need
            at least 65x65 (their 5x5 pooling runs on the inception_4a/4d maps).
        num_classes, include_top, pooling, classifier_activation, layers, data_format: as
            for `lenet5`.
        aux_classifiers: add the two auxiliary classifiers of section 5; the model then has
            three outputs [main, aux1 (after inception_4a), aux2 (after inception_4d)].
            With ``variant="torchvision"`` they are torchvision's (``aux1`` / ``aux2``, a
            4x4 adaptive pooling first, so at least 35x35 inputs).
        use_batch_norm: batch normalisation after every convolution (not in the paper;
            default False, always in torchvision's).
        lrn: the local response normalisations of Figure 3 (default True; none in
            torchvision's).
        dropout: the rate before the classifier, 40% in the paper (default), 20% in
            torchvision's.
        variant: "paper" (default) or "torchvision" (torchvision's GoogLeNet: see the module
            docstring).
        weights: None, or torchvision's ``googlenet`` state dict (a ``.pth`` / ``.pt`` /
            ``.safetensors`` path or a mapping of names to arrays), loaded strictly by
            `keras_cnn_ext.models.weights.load_weights`; needs ``variant="torchvision"``.
            Its auxiliary classifiers ``aux1.*`` / ``aux2.*`` (in the state dict of
            ``torchvision.models.googlenet(weights=None)``, whose ``aux_logits`` defaults to
            True; not in its trained weights) load into ``aux_classifiers=True``; without
            them they are training-only heads, left out with a warning (listed in the
            `LoadReport`'s ``skipped``). Another ``num_classes`` loads all but the
            classifiers and warns.
        transform_input: torchvision's option (True with its trained weights, False with
            ``weights=None``): the input, normalised with ImageNet's mean and standard
            deviation, is mapped to the (x - 0.5) / 0.5 its weights were trained on
            (a ``Rescaling`` layer "transform_input"); ``variant="torchvision"`` only.

    >>> googlenet(input_shape=(32, 32, 3), num_classes=10, layers="keras").output_shape
    (None, 10)
    """
    variant = check_variant(variant, weights, {"torchvision": (
        "torchvision", "the weights are laid out for torchvision's GoogLeNet: batch norm "
                       "everywhere, a 3x3 in the '5x5' column")})
    torchvision = variant == "torchvision"
    use_batch_norm, lrn, dropout = _variant_defaults(torchvision, use_batch_norm, lrn, dropout,
                                                     transform_input)
    model = _googlenet("googlenet", GOOGLENET_CONFIG, input_shape, num_classes, include_top,
                       pooling, classifier_activation, layers, aux_classifiers, use_batch_norm,
                       lrn, dropout, data_format, torchvision, transform_input)
    return load_into(model, weights, "googlenet")
