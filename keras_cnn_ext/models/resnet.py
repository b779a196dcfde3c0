"""Residual networks (He et al. 2016): the ImageNet networks of Table 1 and the CIFAR-10
networks of section 4.2.

ImageNet (18, 34, 50, 101, 152 layers): conv1 7x7/2 64 (+ BN, ReLU) -> max pool 3x3/2 ->
conv2_x .. conv5_x (basic or bottleneck blocks; conv3_1, conv4_1, conv5_1 downsample by 2) ->
global average pooling -> fc. Convolutions have no bias and are followed by batch norm, so the
trainable parameters equal torchvision's: 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 /
60,192,808. Multiply-accumulates at 224x224 (paper "FLOPs" 1.8 / 3.6 / 3.8 / 7.6 / 11.3 x10^9):
1.81 / 3.66 / 3.86 / 7.57 / 11.28 x10^9 with the paper's stride on the first 1x1 of a bottleneck
(``stride_on="1x1"``, the default); ``stride_on="3x3"`` is torchvision's "v1.5".

CIFAR (20, 32, 44, 56, 110 = 6n + 2 layers): conv1 3x3 16 -> three stages of n basic blocks
with 16, 32, 64 filters (32x32, 16x16, 8x8 maps) -> global average pooling -> fc 10, with the
parameter-free zero-padding shortcut (option A) when the shape changes: 0.27M / 0.46M / 0.66M /
0.85M / 1.7M parameters, as the paper's Table 6.

Keyword arguments of the builders (all optional):

* every network: ``num_classes``, ``include_top``, ``pooling``, ``classifier_activation``,
  ``layers``, ``data_format`` as for `lenet5`; ``input_shape`` (any input of at least 1x1
  works, the head is a global pooling); ``preactivation`` (the pre-activation blocks of
  ResNet v2, with a final BN + ReLU); ``shortcut``;
* ImageNet networks: ``input_shape`` (224, 224, 3) and ``num_classes`` 1000 by default;
  ``shortcut`` "auto" (projection where the shape changes: option B), "projection" (option C)
  or "zero_pad" (option A); ``stride_on`` for the bottleneck networks: "1x1" (the paper) or
  "3x3" (torchvision's v1.5); ``variant`` "paper" (default), "torchvision" (torchvision's
  exact architecture: the v1.5 bottleneck) or, for ResNet-50/101/152, "keras"
  (keras.applications' ResNet50/101/152: the v1 bottleneck, batch-norm epsilon 1.001e-5; see
  `_check_variant`); ``weights``: None, a torchvision state dict (a ``.pth`` / ``.pt`` /
  ``.safetensors`` path or a mapping of names to arrays; needs ``variant="torchvision"``) or a
  keras.applications weight file (``.h5``, ``.weights.h5``, ``.keras``; needs
  ``variant="keras"``), loaded strictly by `keras_cnn_ext.models.weights.load_weights`;
  another ``num_classes`` loads all but the classifier and warns;
* CIFAR networks: ``input_shape`` (32, 32, 3) and ``num_classes`` 10 by default; ``shortcut``
  "zero_pad" (option A, the paper's choice here), "auto" or "projection"; ``weights``: None or
  a Keras weights file (``.weights.h5`` / ``.keras``) saved from the same builder and arguments
  (no published layout exists for them).
"""

import keras

from keras_cnn_ext.layers.residual import BottleneckBlock, ResidualBlock
from keras_cnn_ext.models._common import (
    Net, check_common, check_variant, load_into, load_keras_weights,
)
from keras_cnn_ext.models.registry import register_model
from keras_cnn_ext.ops import geometry

# depth -> (block, blocks per stage); stage widths 64, 128, 256, 512
RESNET_CONFIGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# torchvision's grouped / wide bottleneck networks: (block, blocks per stage, block arguments);
# the 3x3 is `groups` groups of `width_per_group` channels at stage width 64
RESNEXT_CONFIGS = {
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), dict(groups=32, width_per_group=4, stride_on="3x3")),
    "resnext101_32x8d": ("bottleneck", (3, 4, 23, 3), dict(groups=32, width_per_group=8, stride_on="3x3")),
    "resnext101_64x4d": ("bottleneck", (3, 4, 23, 3), dict(groups=64, width_per_group=4, stride_on="3x3")),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), dict(width_per_group=128, stride_on="3x3")),
    "wide_resnet101_2": ("bottleneck", (3, 4, 23, 3), dict(width_per_group=128, stride_on="3x3")),
}
RESNET_WIDTHS = (64, 128, 256, 512)
# depth -> n (blocks per stage); stage widths 16, 32, 64
CIFAR_RESNET_CONFIGS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
CIFAR_RESNET_WIDTHS = (16, 32, 64)

_BN = dict(momentum=0.9, epsilon=1e-5)
VARIANTS = ("paper", "torchvision", "keras")
# keras.applications' ResNets (its batch norms: epsilon 1.001e-5, Keras' momentum 0.99)
KERAS_RESNETS = ("resnet50", "resnet101", "resnet152")
_VARIANT_BN = {"paper": _BN, "torchvision": _BN, "keras": dict(momentum=0.99, epsilon=1.001e-5)}


def _stem_conv(net, x, filters, k, s, p, bn=_BN):
    x = net.conv(x, filters, k, s, p, use_bias=False, kernel_initializer="he_normal",
                 name="conv1")
    x = net.batch_norm(x, name="conv1_bn", **bn)
    return keras.layers.ReLU(name="conv1_relu")(x)


def cifar_stem(filters=16, kernel_size=3, strides=1):
    """The table row of the CIFAR networks' first convolution "conv1" ('same' padding)."""
    return ("conv1", "conv", filters, kernel_size, strides, (kernel_size - 1) // 2)


def resnet_stage(index, filters, blocks, strides=2, kernel_size=3):
    """The table rows of stage "conv{index}_x": `blocks` residual blocks "conv{index}_{i}",
    the first with `strides`; each block maps a map of size I to ceil(I / stride) ('same').

    Rows are (name, kind, filters, kernel, stride, padding).
    """
    return tuple((f"conv{index}_{i}", "block", filters, kernel_size, strides if i == 1 else 1,
                  "same") for i in range(1, blocks + 1))


def resnet_config(widths, depths, strides=None, kernel_sizes=3, first_stage=2):
    """The block table of all stages; by default the first stage keeps the size and every
    later one starts with a stride-2 block, as in the paper."""
    n = len(widths)
    if strides is None:
        strides = (1,) + (2,) * (n - 1)
    kernels = tuple(kernel_sizes) if isinstance(kernel_sizes, (list, tuple)) else (
        (kernel_sizes,) * n)
    for arg, value in (("depths", depths), ("strides", strides), ("kernel_sizes", kernels)):
        if len(value) != n:
            raise ValueError(
                f"Invalid value for argument `{arg}`. Expected {n} values (one per stage). "
                f"Received: {arg}={value!r}"
            )
    return sum((resnet_stage(first_stage + i, w, d, s, k)
                for i, (w, d, s, k) in enumerate(zip(widths, depths, strides, kernels))), ())


def _stages(net, x, block, rows, block_kwargs):
    cls = ResidualBlock if block == "basic" else BottleneckBlock
    for layer_name, _, width, k, s, _ in rows:
        x = net.apply(cls(width, strides=s, kernel_size=k, layers=net.kind,
                          data_format=net.data_format, name=layer_name, **block_kwargs), x)
    return x


def _finish(net, inputs, x, preactivation, include_top, pooling, num_classes,
            classifier_activation):
    """ResNet v2's final BN + ReLU, the head and the model."""
    if preactivation:
        x = net.batch_norm(x, name="post_bn", **_BN)
        x = keras.layers.ReLU(name="post_relu")(x)
    x = net.global_pool_head(x, include_top, pooling, num_classes, classifier_activation)
    return keras.Model(inputs, x, name=net.model_name)


_WEIGHTS_NEED = {
    "torchvision": "laid out for torchvision's architecture, whose bottleneck strides on the "
                   "3x3",
    "keras": "keras.applications' ResNet, whose batch norms have epsilon 1.001e-5",
}


def _check_variant(variant, weights, stride_on, preactivation, shortcut,
                   default_stride_on="1x1", name="resnet50"):
    """The ``variant=`` argument, what it fixes, and the variant `weights` need (the one place
    that says which source goes with which variant).

    "torchvision" is torchvision's architecture: the v1.5 bottleneck (stride on the 3x3),
    projection shortcuts where the shape changes, no pre-activation. Its other choices equal
    the paper builder's already: 7x7/2 pad 3, max pool 3x3/2 pad 1 (PyTorch pads a max pool
    with -inf, we with zeros; after the ReLU every value is >= 0 and every window holds one, so
    the maxima agree), 3x3 pad 1, batch-norm epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1).

    "keras" (ResNet-50/101/152 only) is keras.applications' ResNet50/101/152: the v1
    bottleneck (stride on the first 1x1, as the paper), projection shortcuts where the shape
    changes, batch-norm epsilon 1.001e-5 and momentum 0.99. Its ZeroPadding2D(3) + 7x7/2 and
    ZeroPadding2D(1) + max pool 3x3/2 are our pad-3 convolution and pad-1 pool (zeros before a
    max of ReLU outputs, as above); its convolutions before a batch norm have biases, which
    loading folds exactly into the norms' moving means (`weights.fold_conv_bias`).

    `weights` laid out for one variant (`weights.source_variant`: a Keras file or
    ``layer/variable`` names: "keras"; a PyTorch file or ``a.b.weight`` names: "torchvision")
    need that variant. `default_stride_on` is the family paper's placement ("1x1" for ResNet,
    "3x3" for ResNeXt).

    Returns:
        (variant, stride_on): the variant lower-cased and the bottleneck's stride placement.
    """
    variant = geometry.normalize_choice(variant, "variant", VARIANTS)
    if variant == "keras" and name not in KERAS_RESNETS:
        raise ValueError(
            "Invalid value for argument `variant`. Expected 'paper' or 'torchvision' for "
            f"{name} (keras.applications has ResNet50, ResNet101 and ResNet152). Received: "
            f"variant={variant!r}")
    layouts = {"torchvision": ("torchvision", _WEIGHTS_NEED["torchvision"])}
    if name in KERAS_RESNETS:
        layouts["keras"] = ("keras", _WEIGHTS_NEED["keras"])
    variant = check_variant(variant, weights, layouts, VARIANTS)
    if variant == "paper":
        return variant, default_stride_on if stride_on is None else stride_on
    fixed = "3x3" if variant == "torchvision" else "1x1"
    for arg, value, ok in (("stride_on", stride_on, (None, fixed)),
                           ("preactivation", preactivation, (False,)),
                           ("shortcut", shortcut, ("auto", "projection"))):
        if value not in ok:
            raise ValueError(
                f"Invalid value for argument `{arg}`. Expected {' or '.join(map(repr, ok))} "
                f"with variant={variant!r}. Received: {arg}={value!r}")
    return variant, fixed


def _resnet(name, config, input_shape=None, num_classes=1000, include_top=True, pooling=None,
            classifier_activation="softmax", layers="textbook", stride_on=None,
            preactivation=False, shortcut="auto", data_format=None, weights=None,
            variant="paper"):
    block, depths = config[:2]
    block_args = dict(config[2]) if len(config) > 2 else {}
    # the family's paper default: ResNeXt's paper strides on the 3x3 too
    variant, stride_on = _check_variant(variant, weights, stride_on, preactivation, shortcut,
                                        block_args.pop("stride_on", "1x1"), name)
    bn = _VARIANT_BN[variant]
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (224, 224), 3, data_format)
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = _stem_conv(net, inputs, 64, 7, 2, 3, bn)
    x = net.pool(x, "max", 3, 2, 1, name="pool1")
    kwargs = dict(preactivation=preactivation, shortcut=shortcut,
                  batch_norm_momentum=bn["momentum"], batch_norm_epsilon=bn["epsilon"])
    if block == "bottleneck":
        kwargs.update(stride_on=stride_on, **block_args)
    x = _stages(net, x, block, resnet_config(RESNET_WIDTHS, depths), kwargs)
    model = _finish(net, inputs, x, preactivation, include_top, pooling, num_classes,
                    classifier_activation)
    return load_into(model, weights, "keras_resnet" if variant == "keras" else "resnet")


def _cifar_resnet(name, n, input_shape=None, num_classes=10, include_top=True, pooling=None,
                  classifier_activation="softmax", layers="textbook", shortcut="zero_pad",
                  preactivation=False, data_format=None, depths=None,
                  filters=CIFAR_RESNET_WIDTHS, strides=None, kernel_sizes=3, block="basic",
                  stem_filters=16, stem_kernel=3, stem_stride=1, weights=None):
    input_shape, data_format = check_common(name, input_shape, num_classes, include_top,
                                            pooling, (32, 32), 3, data_format)
    block = geometry.normalize_choice(block, "block", ("basic", "bottleneck"))
    net = Net(name, layers, input_shape, data_format)
    inputs = keras.Input(input_shape, name="input")
    x = _stem_conv(net, inputs, *cifar_stem(stem_filters, stem_kernel, stem_stride)[2:])
    depths = (n,) * len(filters) if depths is None else depths
    x = _stages(net, x, block, resnet_config(filters, depths, strides, kernel_sizes),
                dict(preactivation=preactivation, shortcut=shortcut))
    return load_keras_weights(_finish(net, inputs, x, preactivation, include_top, pooling,
                                      num_classes, classifier_activation), weights)


def cifar_resnet(depths=(3, 3, 3), filters=CIFAR_RESNET_WIDTHS, strides=None, kernel_sizes=3,
                 block="basic", stem_filters=16, stem_kernel=3, stem_stride=1, **kwargs):
    """A CIFAR-style ResNet with any stage layout (section 4.2 generalised).

    conv1 (`stem_kernel` / `stem_stride`, 'same', `stem_filters`, BN, ReLU) -> one stage per
    entry of `filters` with `depths[i]` blocks -> global average pooling -> fc. The defaults
    are ResNet-20. Used by `keras_cnn_ext.tuning.HyperResNet`; not in the registry.

    Args:
        depths: blocks per stage.
        filters: width of each stage (a bottleneck stage outputs 4x as many channels).
        strides: stride of each stage's first block; default 1, then 2 for every later stage.
        kernel_sizes: the blocks' kernel, one value or one per stage (3 in the paper).
        block: "basic" or "bottleneck".
        stem_filters, stem_kernel, stem_stride: the first convolution.
        **kwargs: as for `resnet20` (input_shape, num_classes, shortcut, preactivation, ...).

    >>> cifar_resnet(layers="keras").count_params() == resnet20(layers="keras").count_params()
    True
    """
    return _cifar_resnet("cifar_resnet", None, depths=tuple(depths), filters=tuple(filters),
                         strides=strides, kernel_sizes=kernel_sizes, block=block,
                         stem_filters=stem_filters, stem_kernel=stem_kernel,
                         stem_stride=stem_stride, **kwargs)


@register_model
def resnet18(**kwargs):
    """ResNet-18 (ImageNet, Table 1; basic blocks 2-2-2-2): 11,689,512 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks).
    """
    return _resnet("resnet18", RESNET_CONFIGS[18], **kwargs)


@register_model
def resnet34(**kwargs):
    """ResNet-34 (ImageNet, Table 1; basic blocks 3-4-6-3): 21,797,672 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks).
    """
    return _resnet("resnet34", RESNET_CONFIGS[34], **kwargs)


@register_model
def resnet50(**kwargs):
    """ResNet-50 (ImageNet, Table 1; bottlenecks 3-4-6-3): 25,557,032 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks).
    """
    return _resnet("resnet50", RESNET_CONFIGS[50], **kwargs)


@register_model
def resnet101(**kwargs):
    """ResNet-101 (ImageNet, Table 1; bottlenecks 3-4-23-3): 44,549,160 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks).
    """
    return _resnet("resnet101", RESNET_CONFIGS[101], **kwargs)


@register_model
def resnet152(**kwargs):
    """ResNet-152 (ImageNet, Table 1; bottlenecks 3-8-36-3): 60,192,808 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks).
    """
    return _resnet("resnet152", RESNET_CONFIGS[152], **kwargs)


@register_model
def resnext50_32x4d(**kwargs):
    """ResNeXt-50 32x4d (Xie et al. 2017; torchvision): bottlenecks 3-4-6-3 whose 3x3 is 32
    groups of 4 channels per 64 of stage width: 25,028,904 trainable parameters.

    Keyword arguments: see the module docstring (ImageNet networks); the stride is on the 3x3
    (the ResNeXt paper's placement, and torchvision's).
    """
    return _resnet("resnext50_32x4d", RESNEXT_CONFIGS["resnext50_32x4d"], **kwargs)


@register_model
def resnext101_32x8d(**kwargs):
    """ResNeXt-101 32x8d (torchvision): 88,791,336 trainable parameters.

    Keyword arguments: see `resnext50_32x4d`.
    """
    return _resnet("resnext101_32x8d", RESNEXT_CONFIGS["resnext101_32x8d"], **kwargs)


@register_model
def resnext101_64x4d(**kwargs):
    """ResNeXt-101 64x4d (torchvision): 83,455,272 trainable parameters.

    Keyword arguments: see `resnext50_32x4d`.
    """
    return _resnet("resnext101_64x4d", RESNEXT_CONFIGS["resnext101_64x4d"], **kwargs)


@register_model
def wide_resnet50_2(**kwargs):
    """Wide ResNet-50-2 (torchvision's: a ResNet-50 whose bottleneck 1x1 and 3x3 are twice
    as wide): 68,883,240 trainable parameters.

    Keyword arguments: see `resnext50_32x4d`.
    """
    return _resnet("wide_resnet50_2", RESNEXT_CONFIGS["wide_resnet50_2"], **kwargs)


@register_model
def wide_resnet101_2(**kwargs):
    """Wide ResNet-101-2 (torchvision's): 126,886,696 trainable parameters.

    Keyword arguments: see `resnext50_32x4d`.
    """
    return _resnet("wide_resnet101_2", RESNEXT_CONFIGS["wide_resnet101_2"], **kwargs)


@register_model
def resnet20(**kwargs):
    """ResNet-20 for CIFAR-10 (section 4.2, n=3): 269,722 trainable parameters.

    Keyword arguments: see the module docstring (CIFAR networks).

    >>> resnet20(layers="keras").count_params()  # + 1,376 batch-norm moving statistics
    271098
    """
    return _cifar_resnet("resnet20", CIFAR_RESNET_CONFIGS[20], **kwargs)


@register_model
def resnet32(**kwargs):
    """ResNet-32 for CIFAR-10 (section 4.2, n=5): 464,154 trainable parameters.

    Keyword arguments: see the module docstring (CIFAR networks).
    """
    return _cifar_resnet("resnet32", CIFAR_RESNET_CONFIGS[32], **kwargs)


@register_model
def resnet44(**kwargs):
    """ResNet-44 for CIFAR-10 (section 4.2, n=7): 658,586 trainable parameters.

    Keyword arguments: see the module docstring (CIFAR networks).
    """
    return _cifar_resnet("resnet44", CIFAR_RESNET_CONFIGS[44], **kwargs)


@register_model
def resnet56(**kwargs):
    """ResNet-56 for CIFAR-10 (section 4.2, n=9): 853,018 trainable parameters.

    Keyword arguments: see the module docstring (CIFAR networks).
    """
    return _cifar_resnet("resnet56", CIFAR_RESNET_CONFIGS[56], **kwargs)


@register_model
def resnet110(**kwargs):
    """ResNet-110 for CIFAR-10 (section 4.2, n=18): 1,727,962 trainable parameters.

    Keyword arguments: see the module docstring (CIFAR networks).
    """
    return _cifar_resnet("resnet110", CIFAR_RESNET_CONFIGS[110], **kwargs)
