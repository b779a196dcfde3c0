"""`HyperLeNet`, `HyperVGG`, `HyperResNet`: searches over kernel size, stride and filters.

Each searches, per stage, the kernel size (``*_kernel``), the stride (``*_stride``) and the
number of filters (``*_filters``), plus the depth (``depth``: the number of stages), padding
where it changes the geometry (LeNet), the learning rate and the optimizer. The models are
built by `keras_cnn_ext.models` (`lenet5`, `vgg`, `cifar_resnet`), whose layer tables also give
the geometry that is checked before building; the defaults reproduce the paper's network
where it fits the input (see each class).
"""

from keras_cnn_ext import models
from keras_cnn_ext.models import lenet
from keras_cnn_ext.models import resnet as resnet_module
from keras_cnn_ext.models.vgg import VGG_CONFIGS, VGG_WIDTHS, vgg_config, vgg_stage
from keras_cnn_ext.tuning.base import GeometryHyperModel, Spec, choice, common_training_specs


def _stages(values, depth, key):
    return tuple(values[f"{key.format(i)}"] for i in range(1, depth + 1))


class HyperLeNet(GeometryHyperModel):
    """LeNet-5's search space: 1-3 conv-pool stages, each with its kernel, stride, filters and
    padding, then the two dense layers.

    Hyperparameters: ``depth`` (stages, default 2); per stage i ``conv{i}_filters``,
    ``conv{i}_kernel``, ``conv{i}_stride``, ``conv{i}_padding`` ("same"/"valid");
    ``activation``, ``subsampling`` (max/mean pooling), ``dense1_units``, ``dense2_units``,
    ``learning_rate``, ``optimizer``. At 28x28 the defaults are LeNet-5 exactly (61,706
    parameters with 10 classes).

    Example:

    >>> import keras_tuner
    >>> hm = HyperLeNet(input_shape=(28, 28, 1), num_classes=10)
    >>> hm.build(keras_tuner.HyperParameters()).count_params()
    61706
    """

    family = "lenet5"
    MAX_DEPTH = 3
    DEFAULT_DEPTH = 2

    def _specs(self):
        specs = []
        paper = {1: (6, 5, "same"), 2: (16, 5, "valid"), 3: (32, 3, "same")}
        for i in range(1, self.MAX_DEPTH + 1):
            filters, kernel, padding = paper[i]
            specs += [
                choice(f"conv{i}_filters", (4, 6, 8, 16, 32, 64), filters, i),
                choice(f"conv{i}_kernel", (3, 5, 7), kernel, i, geometry=True),
                choice(f"conv{i}_stride", (1, 2), 1, i, geometry=True, neutral=1),
                choice(f"conv{i}_padding", ("same", "valid"), padding, i, geometry=True),
            ]
        specs += [
            choice("activation", ("sigmoid", "tanh", "relu"), "sigmoid"),
            choice("subsampling", ("max", "mean"), "max"),
            choice("dense1_units", (64, 120, 256), 120),
            choice("dense2_units", (42, 84, 168), 84),
        ]
        return specs + common_training_specs()

    def _stage_rows(self, stage, values):
        return lenet.lenet_stage(stage, 1, values[f"conv{stage}_kernel"],
                                 values[f"conv{stage}_stride"], values[f"conv{stage}_padding"])

    def _arguments(self, values):
        d = self._depth(values)
        return dict(filters=_stages(values, d, "conv{}_filters"),
                    kernel_sizes=_stages(values, d, "conv{}_kernel"),
                    strides=_stages(values, d, "conv{}_stride"),
                    paddings=_stages(values, d, "conv{}_padding"),
                    dense_units=(values["dense1_units"], values["dense2_units"]))

    def _rows(self, values):
        a = self._arguments(values)
        return lenet.lenet_config(a["filters"], a["kernel_sizes"], a["strides"], a["paddings"],
                                  2, a["dense_units"])[0]

    def _build_model(self, values):
        return models.lenet5(input_shape=self.input_shape, num_classes=self.num_classes,
                             layers=self.layers, activation=values["activation"],
                             subsampling=values["subsampling"], **self._arguments(values))


class HyperVGG(GeometryHyperModel):
    """VGG's search space: 1-5 stages of 'same'-padded convolutions + 2x2 max pooling.

    Hyperparameters: ``depth`` (stages, default 5 where the input allows it); per stage i
    ``stage{i}_convs`` (1-3 convolutions), ``stage{i}_kernel`` (1, 3, 5), ``stage{i}_stride``
    (of the stage's first convolution; the pooling always halves), ``stage{i}_filters``;
    ``dense_units`` (fc6 and fc7), ``dropout``, ``learning_rate``, ``optimizer``. The
    defaults are configuration A's convolutions (64-128-256-512-512) with a 512-wide head (the
    paper's 4096 is one of the choices).
    """

    family = "vgg"
    MAX_DEPTH = 5
    DEFAULT_DEPTH = 5

    def _specs(self):
        specs = []
        paper_a = VGG_CONFIGS["A"]["stages"]
        for i in range(1, self.MAX_DEPTH + 1):
            specs += [
                choice(f"stage{i}_convs", (1, 2, 3), len(paper_a[i - 1]), i, geometry=True),
                choice(f"stage{i}_kernel", (1, 3, 5), 3, i, geometry=True),
                choice(f"stage{i}_stride", (1, 2), 1, i, geometry=True, neutral=1),
                choice(f"stage{i}_filters", (16, 32, 64, 128, 256, 512),
                       VGG_WIDTHS[i - 1], i),
            ]
        specs += [choice("dense_units", (128, 256, 512, 1024, 4096), 512),
                  choice("dropout", (0.0, 0.25, 0.5), 0.5)]
        return specs + common_training_specs()

    def _stage_rows(self, stage, values):
        kernels = (values[f"stage{stage}_kernel"],) * values[f"stage{stage}_convs"]
        return vgg_stage(stage, kernels, 1, values[f"stage{stage}_stride"])

    def _layout(self, values):
        d = self._depth(values)
        stages = tuple((values[f"stage{i}_kernel"],) * values[f"stage{i}_convs"]
                       for i in range(1, d + 1))
        return stages, _stages(values, d, "stage{}_filters"), _stages(values, d,
                                                                      "stage{}_stride")

    def _rows(self, values):
        return vgg_config(*self._layout(values))

    def _build_model(self, values):
        stages, filters, strides = self._layout(values)
        units = values["dense_units"]
        return models.vgg(stages, input_shape=self.input_shape, num_classes=self.num_classes,
                          layers=self.layers, filters=filters, strides=strides,
                          dense_units=(units, units), dropout=values["dropout"])


class HyperResNet(GeometryHyperModel):
    """A CIFAR-style ResNet's search space (He et al. section 4.2, generalised).

    Hyperparameters: ``stem_filters``, ``stem_kernel``, ``stem_stride`` (the first
    convolution); ``depth`` (stages, default 3); per stage i ``stage{i}_blocks`` (1-3),
    ``stage{i}_filters``, ``stage{i}_kernel`` (3, 5), ``stage{i}_stride`` (of its first block);
    ``block`` (basic/bottleneck), ``shortcut`` ("auto": identity, or a 1x1 projection where
    the shape changes (option B); "projection" everywhere (option C)), ``preactivation``,
    ``learning_rate``, ``optimizer``. Option A (zero padding) is not offered: independently
    searched widths may shrink, which it cannot do. The defaults are ResNet-20's layout.

    Blocks pad 'same' (a stride-S block maps I to ceil(I / S)), so no map ever vanishes;
    the geometry is still computed and reported for every configuration.
    """

    family = "resnet"
    MAX_DEPTH = 4
    DEFAULT_DEPTH = 3

    def _specs(self):
        specs = [choice("stem_filters", (8, 16, 32, 64), 16),
                 choice("stem_kernel", (3, 5, 7), 3, 0, geometry=True),
                 choice("stem_stride", (1, 2), 1, 0, geometry=True)]
        widths = resnet_module.CIFAR_RESNET_WIDTHS + (128,)
        for i in range(1, self.MAX_DEPTH + 1):
            specs += [
                choice(f"stage{i}_blocks", (1, 2, 3), 3, i),
                choice(f"stage{i}_filters", (8, 16, 32, 64, 128, 256), widths[i - 1], i),
                choice(f"stage{i}_kernel", (3, 5), 3, i, geometry=True),
                choice(f"stage{i}_stride", (1, 2), 1 if i == 1 else 2, i, geometry=True),
            ]
        specs += [choice("block", ("basic", "bottleneck"), "basic"),
                  choice("shortcut", ("auto", "projection"), "auto"),
                  Spec("preactivation", "boolean", (False, True), False, 0, False, None)]
        return specs + common_training_specs()

    def _stage_rows(self, stage, values):
        if stage == 0:
            return (resnet_module.cifar_stem(1, values["stem_kernel"], values["stem_stride"]),)
        return resnet_module.resnet_stage(stage + 1, 1, 1, values[f"stage{stage}_stride"],
                                   values[f"stage{stage}_kernel"])

    def _arguments(self, values):
        d = self._depth(values)
        return dict(depths=_stages(values, d, "stage{}_blocks"),
                    filters=_stages(values, d, "stage{}_filters"),
                    strides=_stages(values, d, "stage{}_stride"),
                    kernel_sizes=_stages(values, d, "stage{}_kernel"),
                    stem_filters=values["stem_filters"], stem_kernel=values["stem_kernel"],
                    stem_stride=values["stem_stride"])

    def _rows(self, values):
        a = self._arguments(values)
        stem = resnet_module.cifar_stem(a["stem_filters"], a["stem_kernel"], a["stem_stride"])
        return (stem,) + resnet_module.resnet_config(a["filters"], a["depths"], a["strides"],
                                              a["kernel_sizes"])

    def _build_model(self, values):
        return models.cifar_resnet(input_shape=self.input_shape, num_classes=self.num_classes,
                                   layers=self.layers, block=values["block"],
                                   shortcut=values["shortcut"],
                                   preactivation=values["preactivation"],
                                   **self._arguments(values))


HYPERMODELS = {"lenet5": HyperLeNet, "vgg": HyperVGG, "resnet": HyperResNet}
