"""The layer factory shared by the blocks and the model builders.

A convolution or a pooling is requested once, by its textbook geometry, and comes back as a
list of layers to apply in order: one textbook layer (`CrossCorrelation2D`, `MaxPooling2D`,
`MeanPooling2D` with the explicit padding) for ``kind="textbook"``, or the stock Keras layers
with the same arithmetic for ``kind="keras"`` (a `ZeroPadding2D` first where Keras's own
``padding`` cannot express the explicit one). Both spellings have the same weights and, for
equal weights, the same outputs, which is what lets every model be compared with stock Keras.

>>> [type(layer).__name__ for layer in conv2d_layers("keras", 4, 3, strides=2, padding=1,
...                                                  data_format="channels_last",
...                                                  input_hw=(8, 8))]
['ZeroPadding2D', 'Conv2D']
>>> [type(layer).__name__ for layer in pool2d_layers("textbook", "max", 2)]
['MaxPooling2D']
"""

import keras

from keras_cnn_ext.layers.convolutional import CrossCorrelation2D
from keras_cnn_ext.layers.pooling import MaxPooling2D, MeanPooling2D
from keras_cnn_ext.ops import geometry

LAYER_KINDS = ("textbook", "keras")
POOLS = ("max", "mean")


def normalize_layers(value):
    """Validates the ``layers=`` argument ("textbook" or "keras")."""
    return geometry.normalize_choice(value, "layers", LAYER_KINDS)


def _keras_padding(pads, window, strides, input_hw):
    """The stock-Keras spelling of explicit per-side pads: 'valid', 'same' or None (pad first)."""
    if geometry.no_padding(pads):
        return "valid"
    if input_hw is not None and geometry.is_tf_same(input_hw, window, strides, pads):
        return "same"
    if all(s == 1 for s in strides) and tuple(map(tuple, pads)) == geometry.same_pads(window):
        return "same"  # stride 1: Keras 'same' pads exactly like the textbook 'same'
    return None


def _zero_padding(pads, data_format, dtype, name):
    return keras.layers.ZeroPadding2D(pads, data_format=data_format, dtype=dtype,
                                      name=None if name is None else name + "_pad")


def conv2d_layers(kind, filters, kernel_size, strides=1, padding=0, *, use_bias=True,
                  activation=None, kernel_initializer="glorot_uniform", kernel_regularizer=None,
                  data_format=None, input_hw=None, dtype=None, name=None, dilation_rate=1,
                  groups=1):
    """A convolution as a list of layers to apply in order.

    Args:
        kind: "textbook" (one `CrossCorrelation2D`) or "keras" (one `keras.layers.Conv2D`
            when Keras's own padding coincides with the explicit one for the known input size
            `input_hw`, else a `ZeroPadding2D` named ``name + "_pad"`` and a 'valid' `Conv2D`).
        filters, kernel_size, strides, padding: as for `CrossCorrelation2D`, and so are
            use_bias, activation, kernel_initializer, kernel_regularizer and data_format.
        input_hw: the (height, width) the layers will see, if known.
        dtype: the dtype policy of the layers (a block passes its own, so that mixed
            precision reaches its sub-layers).
        name: the name of the convolution.
        dilation_rate, groups: as for `CrossCorrelation2D` (PyTorch's dilation and groups);
            the stock-Keras twin is `Conv2D(dilation_rate=..., groups=...)` (Keras refuses a
            stride above 1 with a dilation above 1).
    """
    kernel = geometry.normalize_tuple(kernel_size, "kernel_size")
    stride = geometry.normalize_tuple(strides, "strides")
    dilation = geometry.normalize_tuple(dilation_rate, "dilation_rate")
    groups = geometry.normalize_int(groups, "groups")
    geometry.check_groups(groups, filters=geometry.normalize_int(filters, "filters"))
    common = dict(use_bias=use_bias, activation=activation, kernel_initializer=kernel_initializer,
                  kernel_regularizer=kernel_regularizer, data_format=data_format, dtype=dtype)
    if dilation != (1, 1) or groups != 1:
        common.update(dilation_rate=dilation, groups=groups)
    if normalize_layers(kind) == "textbook":
        return [CrossCorrelation2D(filters, kernel, strides=stride, padding=padding, name=name,
                                   **common)]
    span = geometry.effective_window(kernel, dilation)
    pads = geometry.resolve_padding(padding, span)
    keras_pad = _keras_padding(pads, span, stride, input_hw)
    out = []
    if keras_pad is None:
        out.append(_zero_padding(pads, data_format, dtype, name))
        keras_pad = "valid"
    out.append(keras.layers.Conv2D(filters, kernel, strides=stride, padding=keras_pad, name=name,
                                   **common))
    return out


def pool2d_layers(kind, pool, pool_size, strides=None, padding=0, *, data_format=None,
                  input_hw=None, dtype=None, name=None, ceil_mode=False):
    """A max (``pool="max"``) or mean (``pool="mean"``) pooling as a list of layers.

    Padded cells are zeros (the book's ``padding_mode="zeros"``: they take part in the max and
    count in the mean's divisor); the stock-Keras twin pads with `ZeroPadding2D` to match.
    `input_hw` is accepted for symmetry with `conv2d_layers` (pooling never needs it).
    `ceil_mode` (PyTorch's rounding) exists only in the textbook layers: stock Keras pooling
    has no ceil mode, so ``kind="keras"`` with ``ceil_mode=True`` is a `ValueError`.
    """
    del input_hw
    pool = geometry.normalize_choice(pool, "pool", POOLS)
    window = geometry.normalize_tuple(pool_size, "pool_size")
    stride = window if strides is None else geometry.normalize_tuple(strides, "strides")
    ceil_mode = geometry.normalize_bool(ceil_mode, "ceil_mode")
    if normalize_layers(kind) == "textbook":
        cls = MaxPooling2D if pool == "max" else MeanPooling2D
        return [cls(window, strides=stride, padding=padding, data_format=data_format,
                    dtype=dtype, name=name, ceil_mode=ceil_mode)]
    if ceil_mode:
        raise ValueError(
            "Invalid value for argument `ceil_mode`. Expected False with stock Keras layers "
            "(Keras pooling has no ceil mode; use kind='textbook'). Received: ceil_mode=True")
    pads = geometry.resolve_padding(padding, window)
    out = []
    if not geometry.no_padding(pads):
        # Keras 'same' pooling ignores padded cells; zeros need explicit padding.
        out.append(_zero_padding(pads, data_format, dtype, name))
    cls = keras.layers.MaxPooling2D if pool == "max" else keras.layers.AveragePooling2D
    out.append(cls(window, strides=stride, padding="valid", data_format=data_format,
                   dtype=dtype, name=name))
    return out


def apply_layers(layer_list, x, **kwargs):
    """Applies a chain of layers in order."""
    for layer in layer_list:
        x = layer(x, **kwargs)
    return x


def build_layers(layer_list, shape):
    """Builds each layer of a chain on its input shape; returns the chain's output shape."""
    for layer in layer_list:
        if not layer.built:
            layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def trace_layers(layer_list, shape, records):
    """Appends (layer, input_shape, output_shape) for each layer of a chain; returns the output
    shape. Blocks use it to describe their sub-layers to `keras_cnn_ext.analysis`."""
    for layer in layer_list:
        out = tuple(layer.compute_output_shape(shape))
        records.append((layer, tuple(shape), out))
        shape = out
    return shape
