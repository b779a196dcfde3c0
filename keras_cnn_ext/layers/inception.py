"""The Inception module with dimension reductions (Szegedy et al. 2015, figure 2(b)).

Four parallel branches over the same input, concatenated along the channels:

1. 1x1 convolution (``#1x1``);
2. 1x1 reduction (``#3x3 reduce``) then 3x3 convolution (``#3x3``);
3. 1x1 reduction (``#5x5 reduce``) then 5x5 convolution (``#5x5``);
4. 3x3 stride-1 max pooling then 1x1 projection (``pool proj``).

Every convolution has a bias and is followed by ReLU (optionally by batch normalisation first,
as in later re-implementations; the paper has none). Spatial size is kept (textbook ``'same'``
padding), and the output has ``#1x1 + #3x3 + #5x5 + pool proj`` channels.
"""

import keras

from keras_cnn_ext.layers.factory import (
    apply_layers, build_layers, conv2d_layers, normalize_layers, pool2d_layers, trace_layers,
)
from keras_cnn_ext.ops import geometry

_ARGS = ("filters_1x1", "filters_3x3_reduce", "filters_3x3", "filters_5x5_reduce",
         "filters_5x5", "filters_pool_proj")


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class InceptionModule(keras.layers.Layer):
    """GoogLeNet's Inception module; the six arguments are the columns of the paper's Table 1.

    Args:
        filters_1x1, filters_3x3_reduce, filters_3x3: the filter counts of the 1x1 column
            and the 3x3 column (reduce, then 3x3); filters_5x5_reduce, filters_5x5 and
            filters_pool_proj those of the 5x5 column and the pooling projection.
        activation: applied after every convolution, "relu" by default.
        use_batch_norm: insert batch normalisation (epsilon 1e-3) before each activation
            (convolutions then have no bias). The paper's GoogLeNet has none.
        kernel_size_5x5: the kernel of the "5x5" column's second convolution: 5 in the
            paper, 3 in torchvision's GoogLeNet (a known deviation it keeps for its weights).
        batch_norm_momentum: Keras' momentum of the batch norms (0.99, Keras' default;
            torchvision's PyTorch momentum 0.1 is 0.9 here).
        kernel_initializer, kernel_regularizer: for every convolution.
        layers: "textbook" (this package's layers) or "keras" (stock Keras layers).
        data_format: "channels_last" or "channels_first".

    Example (inception (3a)):

    >>> module = InceptionModule(64, 96, 128, 16, 32, 32, layers="keras")
    >>> module.compute_output_shape((None, 28, 28, 192))
    (None, 28, 28, 256)
    """

    def __init__(self, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce,
                 filters_5x5, filters_pool_proj, activation="relu", use_batch_norm=False,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 layers="textbook", data_format=None, kernel_size_5x5=5,
                 batch_norm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        values = (filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce,
                  filters_5x5, filters_pool_proj)
        for name, value in zip(_ARGS, values):
            setattr(self, name, geometry.normalize_int(value, name))
        self.activation = keras.activations.get(activation)
        self._activation_config = activation
        self.use_batch_norm = bool(use_batch_norm)
        self.kernel_size_5x5 = geometry.normalize_int(kernel_size_5x5, "kernel_size_5x5")
        if self.kernel_size_5x5 % 2 == 0:
            raise ValueError(
                "Invalid value for argument `kernel_size_5x5`. Expected an odd integer (the "
                f"module keeps the size). Received: kernel_size_5x5={kernel_size_5x5!r}")
        if (isinstance(batch_norm_momentum, bool)
                or not isinstance(batch_norm_momentum, (int, float))
                or not 0.0 <= batch_norm_momentum < 1.0):
            raise ValueError(
                "Invalid value for argument `batch_norm_momentum`. Expected a number in [0, 1). "
                f"Received: batch_norm_momentum={batch_norm_momentum!r}")
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.layers_kind = normalize_layers(layers)
        self.data_format = geometry.normalize_data_format(data_format)

    @property
    def output_channels(self):
        return self.filters_1x1 + self.filters_3x3 + self.filters_5x5 + self.filters_pool_proj

    def _branches(self):
        """Per branch: list of ("conv", filters, kernel) / ("pool", 3)."""
        return [
            [("conv", self.filters_1x1, 1)],
            [("conv", self.filters_3x3_reduce, 1), ("conv", self.filters_3x3, 3)],
            [("conv", self.filters_5x5_reduce, 1),
             ("conv", self.filters_5x5, self.kernel_size_5x5)],
            [("pool", None, 3), ("conv", self.filters_pool_proj, 1)],
        ]

    _NAMES = (["1x1"], ["3x3_reduce", "3x3"], ["5x5_reduce", "5x5"], ["pool", "pool_proj"])

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        hw = geometry.spatial_dims(input_shape, self.data_format)
        self.branches = []
        for names, branch in zip(self._NAMES, self._branches()):
            shape = input_shape
            steps = []
            for name, (kind, filters, k) in zip(names, branch):
                if kind == "pool":
                    chain = pool2d_layers(self.layers_kind, "max", 3, 1, "same",
                                          data_format=self.data_format, input_hw=hw,
                                          dtype=self.dtype_policy, name=name)
                    shape = build_layers(chain, shape)
                    steps.append((chain, None, False))
                    continue
                chain = conv2d_layers(
                    self.layers_kind, filters, k, 1, "same", use_bias=not self.use_batch_norm,
                    kernel_initializer=self.kernel_initializer,
                    kernel_regularizer=self.kernel_regularizer, data_format=self.data_format,
                    input_hw=hw, dtype=self.dtype_policy, name=name)
                shape = build_layers(chain, shape)
                norm = None
                if self.use_batch_norm:
                    norm = keras.layers.BatchNormalization(
                        axis=geometry.channel_axis(self.data_format), epsilon=1e-3,
                        momentum=self.batch_norm_momentum,
                        dtype=self.dtype_policy, name=name + "_bn")
                    norm.build(shape)
                steps.append((chain, norm, True))
            self.branches.append(steps)
        self.built = True

    def call(self, inputs, training=None):
        outputs = []
        for steps in self.branches:
            y = inputs
            for chain, norm, is_conv in steps:
                y = apply_layers(chain, y)
                if norm is not None:
                    y = norm(y, training=training)
                if is_conv:
                    y = self.activation(y)
            outputs.append(y)
        return keras.ops.concatenate(outputs, axis=geometry.channel_axis(self.data_format))

    def compute_output_shape(self, input_shape):
        return geometry.with_spatial(tuple(input_shape),
                                     geometry.spatial_dims(input_shape, self.data_format),
                                     self.output_channels, self.data_format)

    def sublayer_shapes(self, input_shape):
        """[(sub-layer, input shape, output shape)] of every sub-layer, for the analysis."""
        records = []
        for steps in self.branches:
            shape = tuple(input_shape)
            for chain, norm, _ in steps:
                shape = trace_layers(list(chain) + ([norm] if norm is not None else []),
                                     shape, records)
        return records

    def receptive_field(self):
        """(receptive field, jump) of the output over the input: the widest branch."""
        r = max(1 + sum(k - 1 for _, _, k in branch) for branch in self._branches())
        return (r, r), (1, 1)

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _ARGS})
        config.update({
            "activation": self._activation_config if isinstance(self._activation_config, str)
            else keras.activations.serialize(self.activation),
            "use_batch_norm": self.use_batch_norm,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "layers": self.layers_kind,
            "data_format": self.data_format,
            "kernel_size_5x5": self.kernel_size_5x5,
            "batch_norm_momentum": self.batch_norm_momentum,
        })
        return config
