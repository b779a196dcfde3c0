"""Helpers shared by the model families: argument checks, layer application, heads."""

import keras

from keras_cnn_ext.layers.residual import conv2d_layers, normalize_layers, pool2d_layers

POOLINGS = (None, "avg", "max")


def check_common(name, input_shape, num_classes, include_top, pooling, default_shape):
    """Validates the arguments every builder shares; returns the input shape as a tuple."""
    if input_shape is None:
        input_shape = default_shape
    if (not hasattr(input_shape, "__len__") or len(input_shape) != 3
            or not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                       for d in input_shape)):
        raise ValueError(
            "Invalid value for argument `input_shape`. Expected a tuple (height, width, "
            f"channels) of positive integers. Received: input_shape={input_shape!r}"
        )
    if input_shape[-1] is None:
        raise ValueError(
            "Invalid value for argument `input_shape`. Expected a defined number of channels. "
            f"Received: input_shape={input_shape!r}"
        )
    if not isinstance(include_top, bool):
        raise ValueError(
            "Invalid value for argument `include_top`. Expected True or False. "
            f"Received: include_top={include_top!r}"
        )
    if include_top and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                        or num_classes < 1):
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected a positive integer. "
            f"Received: num_classes={num_classes!r}"
        )
    if pooling not in POOLINGS:
        raise ValueError(
            "Invalid value for argument `pooling`. Expected one of None, 'avg', 'max'. "
            f"Received: pooling={pooling!r}"
        )
    return tuple(input_shape)


class Net:
    """Applies layers to a symbolic tensor, turning a vanished feature map into a clear error.

    Args:
        model_name: used in error messages.
        layers: "textbook" or "keras" (see `keras_cnn_ext.layers.residual.conv2d_layers`).
        input_shape: the model's input shape, for error messages.
    """

    def __init__(self, model_name, layers, input_shape):
        self.model_name = model_name
        self.kind = normalize_layers(layers)
        self.input_shape = input_shape

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

    def conv(self, x, filters, kernel_size, strides=1, padding=0, *, name, activation=None,
             use_bias=True, kernel_initializer="glorot_uniform"):
        chain = conv2d_layers(self.kind, filters, kernel_size, strides, padding, name=name,
                              activation=activation, use_bias=use_bias,
                              kernel_initializer=kernel_initializer,
                              input_hw=tuple(x.shape[1:3]))
        return self.apply(chain, x)

    def pool(self, x, pool, pool_size, strides=None, padding=0, *, name):
        chain = pool2d_layers(self.kind, pool, pool_size, strides, padding, name=name,
                              input_hw=tuple(x.shape[1:3]))
        return self.apply(chain, x)

    def dense(self, x, units, *, name, activation=None):
        return self.apply(keras.layers.Dense(units, activation=activation, name=name), x)


def global_pool(x, pooling, name="pool"):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_" + name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_" + name)(x)
    return x


def global_pool_head(x, include_top, pooling, num_classes, classifier_activation, *,
                     dropout=None, fc_name="fc"):
    """The head of ResNet / GoogLeNet: global average pooling (+ dropout) + one dense layer."""
    if not include_top:
        return global_pool(x, pooling)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, activation=classifier_activation, name=fc_name)(x)


def dense_head(net, x, dense, include_top, pooling, num_classes, classifier_activation, *,
               dropout=0.5, fc_name="fc8"):
    """The head of AlexNet / VGG: flatten, the hidden dense layers (ReLU + dropout), the
    classifier; or, without the top, the optional global pooling."""
    if not include_top:
        return global_pool(x, pooling)
    x = keras.layers.Flatten(name="flatten")(x)
    for layer_name, units in dense:
        x = net.dense(x, units, activation="relu", name=layer_name)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"drop{layer_name[2:]}")(x)
    return net.dense(x, num_classes, activation=classifier_activation, name=fc_name)
