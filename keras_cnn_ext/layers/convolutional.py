"""`CrossCorrelation2D`: the textbook convolution layer (definition 24.1)."""

import keras
import tensorflow as tf

from keras_cnn_ext.layers import _base
from keras_cnn_ext.ops import dispatch, geometry, nn, portable


@keras.saving.register_keras_serializable(package="keras_cnn_ext")
class CrossCorrelation2D(_base.ExportGuard, keras.layers.Layer):
    """2-D cross-correlation with textbook padding, stride and padding modes.

    `y[k, l, f] = b[f] + sum_c sum_m sum_n W[m, n, c, f] * X̂[k*S_h + m, l*S_w + n, c]`, where
    X̂ is the input padded by `padding` cells filled according to `padding_mode`. Unlike
    `keras.layers.Conv2D`, padding is explicit and symmetric (or per side), so PyTorch / Caffe
    models and hand calculations carry over exactly. Parameters: (M*N*C/groups + 1) * filters.

    Args:
        filters: number of output channels (kernels), a positive integer.
        kernel_size: M or (M, N).
        strides: S or (S_h, S_w).
        padding: P (all four sides), (P, Q), ((top, bottom), (left, right)), 'valid',
            'same' (textbook / PyTorch: (M-1)//2 before, the rest after) or 'full' (M-1).
        padding_mode: 'zeros' (零填充), 'replicate' (复制填充) or 'reflect'.
        mode: 'cross_correlation' (the book's "machine-learning convolution") or
            'convolution' (the mathematical convolution: the kernel flipped in both axes).
        activation: a Keras activation, or None.
        use_bias: whether to add one bias per filter.
        data_format: 'channels_last' or 'channels_first'; defaults to Keras' setting.
        kernel_initializer, bias_initializer: as in `keras.layers.Conv2D`, and so are
            kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint
            and bias_constraint.
        implementation: 'auto', 'composite', 'native' or 'reference' (NumPy, for checking).
        dilation_rate: D or (D_h, D_w) (PyTorch's `dilation`): kernel taps D cells apart, the
            kernel spans D*(M-1)+1 cells; any stride; 'same' / 'full' pad for that span.
        groups: PyTorch's `groups`: the input channels and the filters split into this many
            independent correlations (kernel (M, N, C/groups, filters)); groups == C is a
            depthwise correlation. Both must be divisible by it.

    Example (the book's example 24.3: zero padding 1 around a 4x4 input):

    >>> import numpy as np
    >>> X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
    >>> W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]], "float32")
    >>> layer = CrossCorrelation2D(1, 3, padding=1, use_bias=False,
    ...                            data_format="channels_last")
    >>> layer.build((None, 4, 4, 1))
    >>> layer.set_weights([W[:, :, None, None]])
    >>> layer(X[None, :, :, None])[0, :, :, 0].numpy().astype(int).tolist()
    [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]]
    """

    def __init__(self, filters, kernel_size, strides=1, padding=0, padding_mode="zeros",
                 mode="cross_correlation", activation=None, use_bias=True, data_format=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, implementation="auto",
                 dilation_rate=1, groups=1, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = geometry.normalize_int(filters, "filters")
        (self.kernel_size, self.strides, _, self.padding_mode, self.mode, self.data_format,
         self.implementation, self.dilation_rate, self.groups) = geometry.normalize_corr_args(
            kernel_size, strides, padding, padding_mode, mode, data_format, implementation,
            dilation_rate, groups)
        geometry.check_groups(self.groups, filters=self.filters)
        self.padding = geometry.validate_padding(padding)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(min_ndim=4, max_ndim=4)
        if not _base.on_tensorflow():
            _base.check_portable(self, self.implementation)
        self.supports_jit = dispatch.supports_jit(self.implementation)

    @property
    def pads(self):
        """The padding resolved to ((top, bottom), (left, right)) (on the dilated kernel)."""
        return geometry.resolve_padding(
            self.padding, geometry.effective_window(self.kernel_size, self.dilation_rate))

    def _default_geometry(self):
        return self.dilation_rate == (1, 1) and self.groups == 1

    def build(self, input_shape):
        axis = geometry.channel_axis(self.data_format)
        channels = input_shape[axis]
        if channels is None or channels <= 0:
            raise ValueError(
                f"Layer '{self.name}' needs a known, positive number of input channels "
                f"(axis {axis}). Received: input_shape={tuple(input_shape)}"
            )
        geometry.check_groups(self.groups, channels, self.filters)
        self.compute_output_shape(input_shape)  # fails early if the kernel cannot fit
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (channels // self.groups, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint)
        self.bias = self.add_weight(
            name="bias", shape=(self.filters,), initializer=self.bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint,
        ) if self.use_bias else None

    def call(self, inputs):
        if not _base.on_tensorflow():
            return self._call_portable(inputs)
        _base.check_not_in_xla(self, self.implementation)
        kernel = tf.cast(self.kernel, self.compute_dtype)
        extra = {} if self._default_geometry() else dict(dilation_rate=self.dilation_rate,
                                                           groups=self.groups)
        outputs = nn.corr2d(
            inputs, kernel, self.strides, self.pads, padding_mode=self.padding_mode,
            mode=self.mode, data_format=self.data_format, implementation=self.implementation,
            **extra)
        if self.use_bias:
            outputs = tf.nn.bias_add(
                outputs, tf.cast(self.bias, self.compute_dtype),
                data_format=geometry.tf_data_format(self.data_format))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _call_portable(self, inputs):
        """JAX / torch: `keras.ops` only (`portable.corr2d` and the bias as a broadcast add)."""
        outputs = portable.corr2d(
            keras.ops.cast(inputs, self.compute_dtype),
            keras.ops.cast(self.kernel, self.compute_dtype), self.strides, self.pads,
            self.padding_mode, self.mode, self.data_format, self.dilation_rate, self.groups)
        if self.use_bias:
            bias = keras.ops.cast(self.bias, self.compute_dtype)
            if self.data_format == "channels_first":
                bias = keras.ops.reshape(bias, (self.filters, 1, 1))
            outputs = keras.ops.add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        if not self._default_geometry():
            try:
                geometry.check_dilated_fits(
                    geometry.spatial_dims(tuple(input_shape), self.data_format),
                    self.kernel_size, self.dilation_rate, self.strides, self.pads)
            except ValueError as error:
                raise ValueError(f"Layer '{self.name}': {error}") from None
        window = geometry.effective_window(self.kernel_size, self.dilation_rate)
        return _base.output_shape(input_shape, window, self.strides, self.pads,
                                  self.filters, self.data_format, self.name)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "padding_mode": self.padding_mode,
            "mode": self.mode,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "data_format": self.data_format,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "implementation": self.implementation,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
        })
        return config


Corr2D = CrossCorrelation2D
