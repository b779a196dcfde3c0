"""The input normalisation that goes with a set of weights.

Trained weights expect their inputs normalised the way they were trained on; feeding them
anything else costs accuracy silently. The three conventions of keras.applications'
``preprocess_input``, for RGB images with pixel values 0..255:

* ``"torch"`` (torchvision, timm): ``(x / 255 - mean) / std`` per channel, ImageNet's
  ``mean = (0.485, 0.456, 0.406)``, ``std = (0.229, 0.224, 0.225)``;
* ``"caffe"`` (keras.applications' ResNet50/101/152 and VGG16/19, the Caffe models): RGB -> BGR,
  then ``x - (103.939, 116.779, 123.68)`` (the BGR means), no scaling;
* ``"tf"``: ``x / 127.5 - 1`` (to -1..1).

`preprocess_input(x, mode)` is the function (NumPy or tensors), `InputNormalization(mode)` the
same as a Keras layer, so that a model built for its weights can carry its own preprocessing
into ``.keras`` files, training runs and exports (`keras-cnn-ext convert` and
``train --weights`` put it first). `WEIGHT_PREPROCESSING` records which mode each weight
layout expects.

>>> import numpy as np
>>> x = np.full((1, 2, 2, 3), 255.0, "float32")
>>> preprocess_input(x, mode="tf")[0, 0, 0].tolist()
[1.0, 1.0, 1.0]
>>> [round(float(v), 4) for v in preprocess_input(x, mode="torch")[0, 0, 0]]
[2.2489, 2.4286, 2.64]
>>> [round(float(v), 3) for v in preprocess_input(x, mode="caffe")[0, 0, 0]]
[151.061, 138.221, 131.32]
"""

import keras
import numpy as np

from keras_cnn_ext.ops import geometry

MODES = ("torch", "caffe", "tf")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, of pixel values scaled to 0..1
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # of pixel values 0..255
# the builders' `variant` for a weight layout -> the preprocessing its weights expect
WEIGHT_PREPROCESSING = {"torchvision": "torch", "keras": "caffe"}


def _affine(mode):
    """Per-channel (scale, offset, bgr) with ``y = x * scale + offset`` after the optional RGB
    -> BGR swap, for inputs with pixel values 0..255 (in the output channel order)."""
    if mode == "torch":
        std = np.asarray(IMAGENET_STD)
        return 1.0 / (255.0 * std), -np.asarray(IMAGENET_MEAN) / std, False
    if mode == "caffe":
        return np.ones(3), -np.asarray(CAFFE_MEAN_BGR), True
    return np.full(3, 1.0 / 127.5), np.full(3, -1.0), False


def _check_mode(mode):
    return geometry.normalize_choice(mode, "mode", MODES)


def _channel_axis(data_format):
    data_format = geometry.normalize_data_format(data_format)
    return -1 if data_format == "channels_last" else -3


def preprocess_input(x, mode="torch", data_format=None):
    """Normalises RGB images with pixel values 0..255 the way `mode`'s weights expect.

    Args:
        x: images, ``(..., H, W, 3)`` (channels_last) or ``(..., 3, H, W)``; a NumPy array
            (returns NumPy, float32 unless x is float64) or a tensor (returns a tensor).
        mode: "torch", "caffe" or "tf" (see the module docstring).
        data_format: "channels_last" or "channels_first"; default Keras' image_data_format.

    Returns:
        The normalised images, same shape.

    Raises:
        ValueError: an unknown `mode`, or `x` without 3 channels on the channel axis.
    """
    mode = _check_mode(mode)
    axis = _channel_axis(data_format)
    is_numpy = isinstance(x, (np.ndarray, list, tuple, float, int))
    if is_numpy:
        x = np.asarray(x)
        x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    shape = tuple(x.shape)
    if len(shape) < 3 or shape[axis] != 3:
        raise ValueError(f"Invalid value for argument `x`. Expected RGB images with 3 channels "
                         f"on axis {axis} (data_format={data_format!r}). Received: x with shape "
                         f"{shape}")
    scale, offset, bgr = _affine(mode)
    bshape = [1] * len(shape)
    bshape[axis] = 3
    if is_numpy:
        if bgr:
            x = np.flip(x, axis=axis)
        return (x * scale.reshape(bshape).astype(x.dtype)
                + offset.reshape(bshape).astype(x.dtype))
    dtype = x.dtype
    if bgr:
        x = keras.ops.flip(x, axis=axis)
    return (x * keras.ops.cast(scale.reshape(bshape), dtype)
            + keras.ops.cast(offset.reshape(bshape), dtype))


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class InputNormalization(keras.layers.Layer):
    """`preprocess_input` as a layer: a model carries the preprocessing its weights expect.

    Args:
        mode: "torch", "caffe" or "tf".
        input_scale: the pixel value of white in the layer's inputs: 255 for raw pixels (the
            convention of `preprocess_input`), 1.0 for images already divided by 255 (what
            `keras_cnn_ext.data` pipelines give).
        data_format: "channels_last" or "channels_first"; default Keras' image_data_format.

    >>> import numpy as np
    >>> layer = InputNormalization("tf", input_scale=1.0)
    >>> np.asarray(layer(np.ones((1, 2, 2, 3), "float32")))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, mode="torch", input_scale=255.0, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)
        if (isinstance(input_scale, bool) or not isinstance(input_scale, (int, float))
                or not input_scale > 0 or input_scale == float("inf")):
            raise ValueError("Invalid value for argument `input_scale`. Expected a positive "
                             f"finite number (255 or 1.0). Received: input_scale={input_scale!r}")
        self.input_scale = float(input_scale)
        self.data_format = geometry.normalize_data_format(data_format)

    def call(self, inputs):
        x = inputs * keras.ops.cast(255.0 / self.input_scale, inputs.dtype)
        return preprocess_input(x, self.mode, self.data_format)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, input_scale=self.input_scale,
                      data_format=self.data_format)
        return config


def preprocessing_for(variant):
    """The `preprocess_input` mode that weights of the builders' `variant` expect.

    >>> preprocessing_for("torchvision")
    'torch'
    """
    if variant not in WEIGHT_PREPROCESSING:
        raise ValueError("Invalid value for argument `variant`. Expected one of "
                         f"{', '.join(map(repr, WEIGHT_PREPROCESSING))} (the layouts of trained "
                         f"weights). Received: variant={variant!r}")
    return WEIGHT_PREPROCESSING[variant]
