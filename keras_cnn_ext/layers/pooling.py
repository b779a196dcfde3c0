"""`MaxPooling2D` and `MeanPooling2D`: textbook pooling (definition 24.2)."""

import keras

from keras_cnn_ext.layers import _base
from keras_cnn_ext.ops import dispatch, geometry, nn


class _Pooling2D(keras.layers.Layer):
    """Shared argument handling of the two pooling layers."""

    _op = None  # the functional op of `keras_cnn_ext.ops.nn`

    def __init__(self, pool_size=2, strides=None, padding=0, padding_mode="zeros",
                 data_format=None, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        (self.pool_size, resolved_strides, _, self.padding_mode, self.data_format,
         self.implementation) = geometry.normalize_pool_args(
            pool_size, strides, padding, padding_mode, data_format, implementation)
        self.strides = None if strides is None else resolved_strides
        self.padding = geometry.validate_padding(padding)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.supports_jit = dispatch.supports_jit(self.implementation)

    @property
    def pads(self):
        """The padding resolved to ((top, bottom), (left, right))."""
        return geometry.resolve_padding(self.padding, self.pool_size)

    def _strides(self):
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape):
        axis = geometry.channel_axis(self.data_format)
        if input_shape[axis] == 0:
            raise ValueError(
                f"Layer '{self.name}' needs at least one input channel (axis {axis}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.compute_output_shape(input_shape)

    def call(self, inputs):
        _base.check_not_in_xla(self, self.implementation)
        return self._op(inputs, self.pool_size, self._strides(), self.pads,
                        padding_mode=self.padding_mode, data_format=self.data_format,
                        implementation=self.implementation)

    def compute_output_shape(self, input_shape):
        channels = input_shape[geometry.channel_axis(self.data_format)] if len(
            input_shape) == 4 else None
        return _base.output_shape(input_shape, self.pool_size, self._strides(), self.pads,
                                  channels, self.data_format, self.name)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "padding_mode": self.padding_mode,
            "data_format": self.data_format,
            "implementation": self.implementation,
        })
        return config


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class MaxPooling2D(_Pooling2D):
    """Max pooling over M x N windows, with the book's zero padding or ignored padding.

    Args:
        pool_size: the window M or (M, N).
        strides: defaults to the window (non-overlapping pooling, as in the book).
        padding: P, (P, Q), ((top, bottom), (left, right)), 'valid', 'same' or 'full';
            each side must be smaller than the window.
        padding_mode: 'zeros' (the book: padded cells hold 0 and take part in the max) or
            'ignore' (padded cells never win: Keras 'same' / PyTorch behaviour).
        data_format: 'channels_last' or 'channels_first'.
        implementation: 'auto', 'composite', 'native' or 'reference'.

    The gradient goes to the first maximal cell of each window in row-major order.

    Example (the book's example 24.7):

    >>> import numpy as np
    >>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
    >>> MaxPooling2D(2, data_format="channels_last")(X[None, :, :, None])[0, :, :, 0].numpy()
    array([[3., 2.],
           [3., 3.]], dtype=float32)
    """

    _op = staticmethod(nn.max_pool2d)


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class MeanPooling2D(_Pooling2D):
    """Mean (average) pooling; the divisor is M*N ('zeros') or the real-cell count ('ignore').

    Args: as for `MaxPooling2D`.

    Example (d2l: a 3x3 input, 2x2 window, stride 1):

    >>> import numpy as np
    >>> X = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> MeanPooling2D(2, strides=1, data_format="channels_last")(X)[0, :, :, 0].numpy()
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """

    _op = staticmethod(nn.mean_pool2d)


MaxPool2D = MaxPooling2D
MeanPool2D = MeanPooling2D
