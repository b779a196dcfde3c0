"""Residual blocks of He et al. (2016): the basic block and the bottleneck block.

Both blocks are single Keras layers (serializable, symbolic shapes) that own their sub-layers:
convolutions without bias, each followed by batch normalisation (or preceded by it in the
pre-activation variant of "Identity Mappings in Deep Residual Networks"), and a shortcut:

* ``"identity"`` -- ``y = F(x) + x``; the input and output shapes must agree;
* ``"projection"`` -- ``y = F(x) + BN(W_s x)`` with a strided 1x1 convolution (paper option B);
* ``"zero_pad"`` -- the parameter-free shortcut of the paper's CIFAR networks (option A): the input
  is subsampled by the stride and the extra channels are zeros;
* ``"auto"`` -- identity when the shapes agree, else projection (what the ImageNet ResNets use).

Sub-layers are textbook layers (`CrossCorrelation2D`, `MaxPooling2D`, ... with explicit symmetric
padding) for ``layers="textbook"`` or stock Keras layers for ``layers="keras"``; both spellings
have the same weights and, for equal weights, the same outputs.

Sub-layers are made by `keras_cnn_ext.layers.factory` with the block's own dtype policy, so a block
constructed with ``dtype="mixed_float16"`` computes in float16 throughout (variables float32).
"""

import keras

from keras_cnn_ext.layers.factory import (
    apply_layers, build_layers, conv2d_layers, normalize_layers, trace_layers,
)
from keras_cnn_ext.ops import geometry

SHORTCUTS = ("auto", "identity", "projection", "zero_pad")
STRIDE_PLACEMENTS = ("1x1", "3x3")


class _ResidualBase(keras.layers.Layer):
    """Shared machinery: a main path given by `_main_path()` plus a shortcut."""

    def __init__(self, filters, strides=1, shortcut="auto", preactivation=False,
                 activation="relu", batch_norm_momentum=0.9, batch_norm_epsilon=1e-5,
                 kernel_initializer="he_normal", kernel_regularizer=None, layers="textbook",
                 data_format=None, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.filters = geometry.normalize_int(filters, "filters")
        self.strides = geometry.normalize_tuple(strides, "strides")
        # the spatial kernel of the block (3 in the paper); square, applied with 'same' padding
        self.kernel_size = geometry.normalize_int(kernel_size, "kernel_size")
        self.shortcut = geometry.normalize_choice(shortcut, "shortcut", SHORTCUTS)
        if not isinstance(preactivation, bool):
            raise ValueError(
                "Invalid value for argument `preactivation`. Expected True or False. "
                f"Received: preactivation={preactivation!r}"
            )
        self.preactivation = preactivation
        self.activation = keras.activations.get(activation)
        self._activation_config = activation
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.layers_kind = normalize_layers(layers)
        self.data_format = geometry.normalize_data_format(data_format)

    # subclasses: list of (kernel, strides, filters) of the main path
    def _main_path(self):
        raise NotImplementedError

    def _conv_groups(self, index):
        """The `groups` of main-path convolution `index` (1: a plain convolution)."""
        del index
        return 1

    @property
    def output_channels(self):
        return self._main_path()[-1][2]

    def _bn(self, name):
        return keras.layers.BatchNormalization(
            axis=geometry.channel_axis(self.data_format), momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon, dtype=self.dtype_policy, name=name)

    def _resolve_shortcut(self, in_channels):
        out_channels = self.output_channels
        same = self.strides == (1, 1) and in_channels == out_channels
        mode = self.shortcut
        if mode == "auto":
            mode = "identity" if same else "projection"
        if mode == "identity" and not same:
            raise ValueError(
                "Invalid value for argument `shortcut`. Expected 'projection', 'zero_pad' or "
                "'auto' when the block changes the shape (strides "
                f"{self.strides}, {in_channels} -> {out_channels} channels). "
                f"Received: shortcut={self.shortcut!r}"
            )
        if mode == "zero_pad" and in_channels > out_channels:
            raise ValueError(
                "Invalid value for argument `shortcut`. Expected 'projection' or 'auto' when "
                f"the block reduces the channels ({in_channels} -> {out_channels}). "
                f"Received: shortcut={self.shortcut!r}"
            )
        return mode

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        in_channels = input_shape[geometry.channel_axis(self.data_format)]
        if in_channels is None:
            raise ValueError(
                f"The channel dimension of the inputs of {self.__class__.__name__} must be "
                f"defined. Received: input_shape={input_shape}"
            )
        self._shortcut_mode = self._resolve_shortcut(in_channels)
        common = dict(use_bias=False, kernel_initializer=self.kernel_initializer,
                      kernel_regularizer=self.kernel_regularizer, data_format=self.data_format,
                      dtype=self.dtype_policy)
        self.convs, self.norms = [], []
        if self.preactivation:
            self.preact_norm = self._bn("preact_bn")
            self.preact_norm.build(input_shape)
        shape = input_shape
        for i, (k, s, f) in enumerate(self._main_path()):
            if self.preactivation and i > 0:
                norm = self._bn(f"bn{i}")
                norm.build(shape)
                self.norms.append(norm)
            conv = conv2d_layers(self.layers_kind, f, k, s, "same",
                                 input_hw=geometry.spatial_dims(shape, self.data_format),
                                 name=f"conv{i + 1}", groups=self._conv_groups(i), **common)
            shape = build_layers(conv, shape)
            self.convs.append(conv)
            if not self.preactivation:
                norm = self._bn(f"bn{i + 1}")
                norm.build(shape)
                self.norms.append(norm)
        self.shortcut_layers = []
        if self._shortcut_mode == "projection":
            conv = conv2d_layers(self.layers_kind, self.output_channels, 1, self.strides, 0,
                                 name="shortcut_conv", **common)
            sc_shape = build_layers(conv, input_shape)
            self.shortcut_layers = list(conv)
            if not self.preactivation:
                norm = self._bn("shortcut_bn")
                norm.build(sc_shape)
                self.shortcut_layers.append(norm)
        self.built = True

    def _shortcut(self, x, x_pre, training):
        mode = self._shortcut_mode
        if mode == "identity":
            return x
        if mode == "projection":
            y = x_pre if self.preactivation else x
            for layer in self.shortcut_layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    y = layer(y, training=training)
                else:
                    y = layer(y)
            return y
        # zero_pad (option A): subsample, then zero channels on both sides
        index = [slice(None)] * 4
        for axis, stride in zip(geometry.spatial_axes(self.data_format), self.strides):
            index[axis] = slice(None, None, stride)
        y = x[tuple(index)]
        axis = geometry.channel_axis(self.data_format)
        extra = self.output_channels - x.shape[axis]
        if extra:
            pads = [[0, 0]] * 4
            pads[axis] = [extra // 2, extra - extra // 2]
            y = keras.ops.pad(y, pads)
        return y

    def call(self, inputs, training=None):
        x = inputs
        if self.preactivation:
            x_pre = self.activation(self.preact_norm(x, training=training))
            y = x_pre
            for i, conv in enumerate(self.convs):
                if i > 0:
                    y = self.activation(self.norms[i - 1](y, training=training))
                y = apply_layers(conv, y)
            return y + self._shortcut(x, x_pre, training)
        y = x
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            y = norm(apply_layers(conv, y), training=training)
            if i < last:
                y = self.activation(y)
        return self.activation(y + self._shortcut(x, x, training))

    def compute_output_shape(self, input_shape):
        hw = geometry.spatial_dims(input_shape, self.data_format)
        for k, s, _ in self._main_path():
            window = (k, k)
            hw = geometry.spatial_output_shape(hw, window, geometry.normalize_tuple(s, "strides"),
                                               geometry.same_pads(window))
        return geometry.with_spatial(tuple(input_shape), hw, self.output_channels,
                                     self.data_format)

    def sublayer_shapes(self, input_shape):
        """[(sub-layer, input shape, output shape)] of every sub-layer, for the analysis."""
        records = []
        input_shape = tuple(input_shape)
        shape = input_shape
        if self.preactivation:
            trace_layers([self.preact_norm], shape, records)
        for i, conv in enumerate(self.convs):
            if self.preactivation and i > 0:
                shape = trace_layers([self.norms[i - 1]], shape, records)
            shape = trace_layers(conv, shape, records)
            if not self.preactivation:
                shape = trace_layers([self.norms[i]], shape, records)
        trace_layers(self.shortcut_layers, input_shape, records)
        return records

    def receptive_field(self):
        """(receptive field, jump) of the block's output over its input, main path."""
        r, j = 1, 1
        for k, s, _ in self._main_path():
            s = geometry.normalize_tuple(s, "strides")[0]
            r, j = r + (k - 1) * j, j * s
        return (r, r), (j, j)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "strides": self.strides,
            "kernel_size": self.kernel_size,
            "shortcut": self.shortcut,
            "preactivation": self.preactivation,
            "activation": self._activation_config if isinstance(self._activation_config, str)
            else keras.activations.serialize(self.activation),
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "layers": self.layers_kind,
            "data_format": self.data_format,
        })
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class ResidualBlock(_ResidualBase):
    """The basic residual block: two 3x3 convolutions (ResNet-18/34, the CIFAR ResNets).

    ``y = relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x))``, or with
    ``preactivation=True`` (ResNet v2) ``y = conv3x3(relu(BN(conv3x3_s(relu(BN(x)))))) +
    shortcut(x)``. Convolutions have no bias; both use the textbook ``'same'`` padding (one
    row/column on every side), so a stride-S block maps I to ceil(I / S).

    Args:
        filters: output channels of both convolutions.
        strides: stride of the first convolution (and of the shortcut).
        shortcut: "auto", "identity", "projection" or "zero_pad" (see the module docstring).
        preactivation: the pre-activation ordering of ResNet v2 (no activation after the sum).
        activation: the nonlinearity, "relu" by default.
        batch_norm_momentum, batch_norm_epsilon: batch norm settings (PyTorch's defaults).
        kernel_initializer, kernel_regularizer: for every convolution.
        layers: "textbook" (this package's layers) or "keras" (stock Keras layers).
        data_format: "channels_last" or "channels_first".
        kernel_size: the (square) kernel of both convolutions, 3 in the paper; padded 'same'.

    Example:

    >>> block = ResidualBlock(64, layers="keras")
    >>> block.compute_output_shape((None, 56, 56, 64))
    (None, 56, 56, 64)
    """

    def _main_path(self):
        k = self.kernel_size
        return [(k, self.strides, self.filters), (k, 1, self.filters)]


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class BottleneckBlock(_ResidualBase):
    """The bottleneck block: 1x1 (reduce), 3x3, 1x1 (expand by `expansion`).

    ResNet-50/101/152 use it with ``expansion=4``: a block with ``filters=64`` outputs 256
    channels. ``stride_on="1x1"`` puts the stride on the first 1x1 convolution as in the paper
    (v1); ``stride_on="3x3"`` puts it on the 3x3 convolution (v1.5, torchvision and
    keras.applications), which costs more multiply-accumulates but has the same parameters.

    Args:
        filters: channels of the 1x1 and 3x3 convolutions; the output has
            ``filters * expansion`` channels.
        strides: the block's stride.
        expansion: the output-channel multiplier, 4 in the paper.
        stride_on: "1x1" (paper) or "3x3".
        groups: the groups of the 3x3 convolution (ResNeXt's cardinality), 1 by default.
        width_per_group: the inner width per group at ``filters=64`` (torchvision's
            ``base_width``): the 1x1 and 3x3 have `inner_width` channels.
        Others: as `ResidualBlock` (``kernel_size`` is that of the middle convolution).

    Example:

    >>> block = BottleneckBlock(64, strides=2, layers="keras")
    >>> block.compute_output_shape((None, 56, 56, 256))
    (None, 28, 28, 256)

    ResNeXt's block (32 groups of 4 channels at ``filters=64``: a 128-channel grouped 3x3)
    and Wide ResNet's (``width_per_group=128``: twice the inner width):

    >>> BottleneckBlock(64, groups=32, width_per_group=4, layers="keras").inner_width
    128
    """

    def __init__(self, filters, strides=1, expansion=4, stride_on="1x1", groups=1,
                 width_per_group=64, **kwargs):
        super().__init__(filters, strides=strides, **kwargs)
        self.expansion = geometry.normalize_int(expansion, "expansion")
        self.stride_on = geometry.normalize_choice(stride_on, "stride_on", STRIDE_PLACEMENTS)
        self.groups = geometry.normalize_int(groups, "groups")
        self.width_per_group = geometry.normalize_int(width_per_group, "width_per_group")

    @property
    def inner_width(self):
        """Channels of the 1x1 (reduce) and 3x3 convolutions: torchvision's
        ``int(filters * width_per_group / 64) * groups`` (``filters`` by default)."""
        return int(self.filters * self.width_per_group / 64) * self.groups

    def _conv_groups(self, index):
        return self.groups if index == 1 else 1

    def _main_path(self):
        s1, s3 = (self.strides, 1) if self.stride_on == "1x1" else (1, self.strides)
        w = self.inner_width
        return [(1, s1, w), (self.kernel_size, s3, w), (1, 1, self.filters * self.expansion)]

    def get_config(self):
        config = super().get_config()
        config.update({"expansion": self.expansion, "stride_on": self.stride_on,
                       "groups": self.groups, "width_per_group": self.width_per_group})
        return config
