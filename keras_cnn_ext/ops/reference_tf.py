"""The reference implementation as TensorFlow ops, for `implementation="reference"`.

Each op runs the NumPy functions of `keras_cnn_ext.ops.reference` through `tf.numpy_function`,
forward and backward (its `*_grad` function under `tf.custom_gradient`), so that the layers, a
`tf.GradientTape` and `model.fit` can be checked against the formulas themselves. Signatures and
arguments are those of `composite` and `native`. The ops run eagerly or in a `tf.function`, not
under XLA, and not in a SavedModel (a `numpy_function` is not serialized).

>>> import numpy as np
>>> x = tf.constant(np.arange(16, dtype="float32").reshape(1, 4, 4, 1))
>>> max_pool2d(x, (2, 2), (2, 2))[0, :, :, 0].numpy()
array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""

import tensorflow as tf

from keras_cnn_ext.ops import geometry, reference
from keras_cnn_ext.ops._custom_gradient import custom_gradient



def _numpy_op(forward, backward, tensors, output_shape, attrs):
    """`forward(*arrays, **attrs)` as a TF op whose gradient is `backward(*arrays, upstream,
    **attrs)` (one gradient per tensor), both computed in float64 and cast to the input dtype."""
    dtype = tensors[0].dtype
    np_dtype = dtype.as_numpy_dtype

    def np_forward(*arrays):
        return forward(*arrays, **attrs).astype(np_dtype)

    def np_backward(upstream, *arrays):
        grads = backward(*arrays, upstream, **attrs)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return [g.astype(np_dtype) for g in grads]

    @custom_gradient
    def op(*inputs):
        y = tf.numpy_function(np_forward, list(inputs), dtype, stateful=False)
        y.set_shape(output_shape)

        def grad(upstream):
            grads = tf.numpy_function(np_backward, [upstream] + list(inputs),
                                      [dtype] * len(inputs), stateful=False)
            if not isinstance(grads, (list, tuple)):
                # Eager numpy_function returns a bare tensor for a one-element Tout list.
                grads = [grads]
            for g, t in zip(grads, inputs):
                g.set_shape(t.shape)
            return grads

        return y, grad

    return op(*tensors)


def _output_shape(x, window, strides, pads, channels, data_format, ceil_mode=False):
    spatial = geometry.spatial_output_shape(geometry.spatial_dims(x.shape, data_format),
                                            window, strides, pads, ceil_mode)
    return geometry.with_spatial(tuple(x.shape), spatial, channels, data_format)


def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last", dilations=(1, 1), groups=1):
    """`reference.corr2d` of two tensors, differentiable by `reference.corr2d_grad`."""
    window = geometry.effective_window(tuple(kernel.shape[:2]), dilations)
    shape = _output_shape(x, window, strides, padding, kernel.shape[3], data_format)
    attrs = dict(strides=strides, padding=padding, padding_mode=padding_mode, mode=mode,
                 data_format=data_format)
    if tuple(dilations) != (1, 1) or groups != 1:
        attrs.update(dilations=tuple(dilations), groups=groups)
    return _numpy_op(reference.corr2d, reference.corr2d_grad, [x, kernel], shape, attrs)


def _pool(forward, backward, x, pool_size, strides, padding, padding_mode, data_format,
          ceil_mode):
    strides = geometry.pool_strides(pool_size, strides)
    shape = _output_shape(x, pool_size, strides, padding,
                          x.shape[geometry.channel_axis(data_format)], data_format, ceil_mode)
    return _numpy_op(forward, backward, [x], shape, dict(
        pool_size=pool_size, strides=strides, padding=padding, padding_mode=padding_mode,
        data_format=data_format, ceil_mode=ceil_mode))


def max_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
               data_format="channels_last", ceil_mode=False):
    """`reference.max_pool2d` of a tensor, differentiable by `reference.max_pool2d_grad`."""
    return _pool(reference.max_pool2d, reference.max_pool2d_grad, x, pool_size, strides,
                 padding, padding_mode, data_format, ceil_mode)


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last", ceil_mode=False):
    """`reference.mean_pool2d` of a tensor, differentiable by `reference.mean_pool2d_grad`."""
    return _pool(reference.mean_pool2d, reference.mean_pool2d_grad, x, pool_size, strides,
                 padding, padding_mode, data_format, ceil_mode)
