"""Local response normalisation across channels (Krizhevsky et al. 2012, section 3.3)."""

import keras
import tensorflow as tf

from keras_cnn_ext.ops import geometry, portable


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class LocalResponseNormalization(keras.layers.Layer):
    """AlexNet's "brightness normalisation", as in the paper (and VGG's A-LRN network).

    ``b[x, y, i] = a[x, y, i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[x, y, j]^2)
    ^ beta`` -- the sum runs over `size` = n adjacent channels and, as in the paper, `alpha`
    is *not* divided by n (PyTorch's `LocalResponseNorm` divides it; pass ``alpha * n`` there).
    Defaults are the paper's: n=5, k=2, alpha=1e-4, beta=0.75. No weights.

    Args:
        size: the number of adjacent channels summed over (odd).
        alpha, beta, k: the constants of the formula.
        data_format: "channels_last" or "channels_first".

    Example:

    >>> import numpy as np
    >>> lrn = LocalResponseNormalization(size=1, k=0.0, alpha=1.0, beta=0.5)
    >>> float(lrn(np.full((1, 1, 1, 1), 2.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if geometry.normalize_int(size, "size") % 2 == 0:
            raise ValueError(
                "Invalid value for argument `size`. Expected a positive odd integer. "
                f"Received: size={size!r}"
            )
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        self.data_format = geometry.normalize_data_format(data_format)
        self.built = True

    def call(self, inputs):
        if not portable.on_tensorflow():  # JAX / torch: the same formula in keras.ops
            return portable.local_response_normalization(
                inputs, self.size, self.alpha, self.beta, self.k, self.data_format)
        x = inputs
        if self.data_format == "channels_first":  # TF's LRN runs on the last axis only
            x = tf.transpose(x, geometry.TO_CHANNELS_LAST)
        dtype = x.dtype
        if dtype not in (tf.float32, tf.float16, tf.bfloat16):
            x = tf.cast(x, tf.float32)
        y = tf.nn.local_response_normalization(
            x, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha, beta=self.beta)
        y = tf.cast(y, dtype)
        if self.data_format == "channels_first":
            y = tf.transpose(y, geometry.TO_CHANNELS_FIRST)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k,
                       "data_format": self.data_format})
        return config


LRN = LocalResponseNormalization
