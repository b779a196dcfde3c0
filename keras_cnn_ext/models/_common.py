"""Helpers shared by the model families: argument checks, layer application, heads."""

import keras

from keras_cnn_ext.layers.factory import conv2d_layers, normalize_layers, pool2d_layers
from keras_cnn_ext.layers.normalization import LocalResponseNormalization
from keras_cnn_ext.ops import geometry

POOLINGS = (None, "avg", "max")
VARIANTS = ("paper", "torchvision")


def check_variant(variant, weights, layouts, choices=VARIANTS):
    """The ``variant=`` argument of a builder, and the one rule of its ``weights=``.

    Trained weights are laid out for one architecture; loading them into another of the same
    shapes would run and give other logits, so every family refuses it here. A source's layout
    is read by `weights.source_variant` (a Keras file or ``layer/variable`` names: "keras"; a
    PyTorch / safetensors file or ``a.b.weight`` names: "torchvision").

    Args:
        variant: the builder's argument.
        weights: the builder's ``weights=`` (None: nothing to load).
        layouts: for each weight layout this builder loads, ``(the variant it needs, how that
            architecture differs, for the message)``, e.g. ``{"torchvision": ("torchvision",
            "...")}``.
        choices: the builder's variants.

    Returns:
        The variant, lower-cased.
    """
    variant = geometry.normalize_choice(variant, "variant", choices)
    if weights is None:
        return variant
    from keras_cnn_ext.models.weights import source_variant

    layout = source_variant(weights)
    if layout is not None and layout not in layouts:
        raise ValueError(
            f"Invalid value for argument `weights`. Expected weights laid out as "
            f"{' or '.join(map(repr, layouts))} for this model. Received: weights in the "
            f"{layout!r} layout ({_describe(weights)})")
    allowed = [layouts[layout]] if layout is not None else list(layouts.values())
    if variant not in [need for need, _ in allowed]:
        expected = " or ".join(repr(need) for need, _ in allowed)
        why = "; ".join(why for _, why in allowed)
        raise ValueError(f"Invalid value for argument `variant`. Expected {expected} with these "
                         f"`weights` ({why}). Received: variant={variant!r}")
    return variant


def _describe(weights):
    return repr(weights) if isinstance(weights, (str, bytes)) or hasattr(weights, "__fspath__") \
        else f"a {type(weights).__name__} of {len(weights)} arrays"


KERAS_WEIGHT_SUFFIXES = (".weights.h5", ".keras")


def load_keras_weights(model, weights):
    """A builder without a published weight layout (LeNet-5, the CIFAR ResNets): ``weights`` is
    None or a Keras weights file written from the same builder and arguments
    (``model.save_weights("x.weights.h5")`` or a ``.keras`` model), loaded by Keras (which
    refuses a file of another architecture). Returns the model."""
    if weights is None:
        return model
    import os

    path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else None
    if path is None or not path.endswith(KERAS_WEIGHT_SUFFIXES):
        raise ValueError(
            f"Invalid value for argument `weights`. Expected None or a Keras weights file "
            f"({', '.join(KERAS_WEIGHT_SUFFIXES)}) saved from '{model.name}' (there is no "
            f"published torchvision / keras.applications layout for it). Received: "
            f"weights={weights!r}")
    if not os.path.isfile(path):
        raise ValueError(f"Invalid value for argument `weights`. Expected an existing file. "
                         f"Received: weights={weights!r}")
    model.load_weights(path)
    return model


def load_into(model, weights, family=None):
    """Loads a builder's ``weights=`` (None: nothing) strictly into `model`; returns it. The
    naming scheme is read from the source and the model's name unless `family` says it."""
    if weights is not None:
        from keras_cnn_ext.models.weights import load_weights

        load_weights(model, weights, family=family)
    return model


def check_common(name, input_shape, num_classes, include_top, pooling, default_hw,
                 default_channels=3, data_format=None):
    """Validates the arguments every builder shares.

    Args:
        default_hw, default_channels: the paper's input, used when `input_shape` is None.
        data_format: "channels_last", "channels_first" or None (Keras' setting,
            `keras.config.image_data_format()`); `input_shape` is read in that layout, as in
            `keras.applications`.

    Returns:
        (input_shape as a tuple, data_format).
    """
    data_format = geometry.normalize_data_format(data_format)
    if input_shape is None:
        input_shape = geometry.image_shape(default_hw, default_channels, data_format)
    layout = "(height, width, channels)" if data_format == "channels_last" else (
        "(channels, height, width)")
    if (not hasattr(input_shape, "__len__") or len(input_shape) != 3
            or not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                       for d in input_shape)):
        raise ValueError(
            f"Invalid value for argument `input_shape`. Expected a tuple {layout} of positive "
            f"integers. Received: input_shape={input_shape!r}"
        )
    if input_shape[geometry.channel_axis(data_format)] is None:
        raise ValueError(
            "Invalid value for argument `input_shape`. Expected a defined number of channels "
            f"{layout}. Received: input_shape={input_shape!r}"
        )
    if not isinstance(include_top, bool):
        raise ValueError(
            "Invalid value for argument `include_top`. Expected True or False. "
            f"Received: include_top={include_top!r}"
        )
    if include_top:
        geometry.normalize_int(num_classes, "num_classes")
    if pooling not in POOLINGS:
        raise ValueError(
            "Invalid value for argument `pooling`. Expected one of None, 'avg', 'max'. "
            f"Received: pooling={pooling!r}"
        )
    return tuple(input_shape), data_format


class Net:
    """Applies layers to a symbolic tensor, turning a vanished feature map into a clear error.

    Args:
        model_name: used in error messages.
        layers: "textbook" or "keras" (see `keras_cnn_ext.layers.factory.conv2d_layers`).
        input_shape: the model's input shape, for error messages.
        data_format: the layout every layer of the model uses.
    """

    def __init__(self, model_name, layers, input_shape, data_format):
        self.model_name = model_name
        self.kind = normalize_layers(layers)
        self.input_shape = input_shape
        self.data_format = data_format

    def _too_small(self, layer_name, detail):
        return ValueError(
            f"The input shape {self.input_shape} is too small for {self.model_name}: the "
            f"feature map vanishes at layer '{layer_name}' ({detail})."
        )

    def apply(self, layer_list, x, **kwargs):
        if not isinstance(layer_list, (list, tuple)):
            layer_list = [layer_list]
        for layer in layer_list:
            try:
                y = layer(x, **kwargs)
            except ValueError as e:
                raise self._too_small(layer.name, e) from e
            if any(d is not None and d < 1 for d in y.shape[1:]):
                raise self._too_small(layer.name, f"output shape {tuple(y.shape)}")
            x = y
        return x

    def _hw(self, x):
        return geometry.spatial_dims(x.shape, self.data_format)

    def conv(self, x, filters, kernel_size, strides=1, padding=0, *, name, activation=None,
             use_bias=True, kernel_initializer="glorot_uniform"):
        chain = conv2d_layers(self.kind, filters, kernel_size, strides, padding, name=name,
                              activation=activation, use_bias=use_bias,
                              kernel_initializer=kernel_initializer,
                              data_format=self.data_format, input_hw=self._hw(x))
        return self.apply(chain, x)

    def pool(self, x, pool, pool_size, strides=None, padding=0, *, name, ceil_mode=False):
        chain = pool2d_layers(self.kind, pool, pool_size, strides, padding, name=name,
                              data_format=self.data_format, input_hw=self._hw(x),
                              ceil_mode=ceil_mode)
        return self.apply(chain, x)

    def dense(self, x, units, *, name, activation=None):
        return self.apply(keras.layers.Dense(units, activation=activation, name=name), x)

    def batch_norm(self, x, *, name, **kwargs):
        return keras.layers.BatchNormalization(
            axis=geometry.channel_axis(self.data_format), name=name, **kwargs)(x)

    def lrn(self, x, *, name):
        return self.apply(LocalResponseNormalization(data_format=self.data_format, name=name), x)

    def flatten(self, x, name="flatten"):
        # Flatten in channels_last order whatever the layout, so that the dense weights of a
        # channels_first model equal those of its channels_last twin.
        return keras.layers.Flatten(data_format=self.data_format, name=name)(x)

    def global_pool(self, x, pooling, name="pool"):
        if pooling == "avg":
            return keras.layers.GlobalAveragePooling2D(data_format=self.data_format,
                                                       name="avg_" + name)(x)
        if pooling == "max":
            return keras.layers.GlobalMaxPooling2D(data_format=self.data_format,
                                                   name="max_" + name)(x)
        return x

    def global_pool_head(self, x, include_top, pooling, num_classes, classifier_activation, *,
                         dropout=None, fc_name="fc"):
        """The head of ResNet / GoogLeNet: global average pooling (+ dropout) + one dense
        layer; without the top, the optional global pooling."""
        if not include_top:
            return self.global_pool(x, pooling)
        x = self.global_pool(x, "avg")
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        return keras.layers.Dense(num_classes, activation=classifier_activation,
                                  name=fc_name)(x)

    def dense_head(self, x, dense, include_top, pooling, num_classes, classifier_activation, *,
                   dropout=0.5, fc_name="fc8"):
        """The head of AlexNet / VGG: flatten, the hidden dense layers (ReLU + dropout), the
        classifier; or, without the top, the optional global pooling."""
        if not include_top:
            return self.global_pool(x, pooling)
        x = self.flatten(x)
        for layer_name, units in dense:
            x = self.dense(x, units, activation="relu", name=layer_name)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"drop{layer_name[2:]}")(x)
        return self.dense(x, num_classes, activation=classifier_activation, name=fc_name)
