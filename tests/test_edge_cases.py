"""Edge shapes and values: empty batch, kernel == input, stride > kernel, 1x1 windows, unknown
spatial dimensions (tf.function signatures and keras.Input), low-precision
NumPy inputs, and a TensorFlow CPU kernel defect that the composite path must not expose."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import reference

IMPLEMENTATIONS = ["composite", "reference"]


def _grads(fn, *args):
    args = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = fn(*args)
    return y, tape.gradient(y, args)


# ------------------------------------------------------------------------------ empty batch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("padding, expected_hw", [((2, 1), (4, 3)), ("same", (3, 3))])
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "reflect"])
def test_corr2d_empty_batch(padding_mode, padding, expected_hw, implementation, dtype):
    x = np.zeros((0, 5, 6, 2), dtype)
    kernel = np.ones((3, 3, 2, 4), dtype)
    y, (dx, dw) = _grads(lambda x, k: kce.ops.corr2d(
        x, k, 2, padding, padding_mode=padding_mode, implementation=implementation), x, kernel)
    assert y.shape == (0,) + expected_hw + (4,)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros_like(kernel))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("op", ["max_pool2d", "mean_pool2d"])
@pytest.mark.parametrize("padding_mode", ["zeros", "ignore"])
def test_pool_empty_batch(op, padding_mode, implementation, dtype):
    x = np.zeros((0, 5, 5, 3), dtype)
    y, (dx,) = _grads(lambda x: getattr(kce.ops, op)(
        x, 3, 2, 1, padding_mode=padding_mode, implementation=implementation), x)
    assert y.shape == (0, 3, 3, 3)
    assert dx.shape == x.shape


def test_layers_empty_batch():
    x = np.zeros((0, 6, 6, 2), "float32")
    assert kce.layers.CrossCorrelation2D(3, 3, padding="same")(x).shape == (0, 6, 6, 3)
    assert kce.layers.MaxPooling2D(2)(x).shape == (0, 3, 3, 2)
    assert kce.layers.MeanPooling2D(3, strides=1, padding=1)(x).shape == (0, 6, 6, 2)


# --------------------------------------------------------------------------- kernel == input
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_kernel_equal_to_input(implementation, rng):
    x = rng.uniform(-1, 1, size=(2, 4, 3, 2))
    kernel = rng.uniform(-1, 1, size=(4, 3, 2, 5))
    upstream = rng.uniform(-1, 1, size=(2, 1, 1, 5))
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = kce.ops.corr2d(xt, kt, implementation=implementation)
    dx, dw = tape.gradient(y, [xt, kt], output_gradients=tf.constant(upstream))
    # one output cell per filter: the full inner product
    np.testing.assert_allclose(y[:, 0, 0, :], np.einsum("bhwc,hwcf->bf", x, kernel),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, np.einsum("hwcf,bf->bhwc", kernel, upstream[:, 0, 0]),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, np.einsum("bhwc,bf->hwcf", x, upstream[:, 0, 0]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_pool_window_equal_to_input(implementation, rng):
    x = rng.uniform(-1, 1, size=(2, 3, 4, 2))
    y_max = kce.ops.max_pool2d(x, (3, 4), implementation=implementation)
    y_mean = kce.ops.mean_pool2d(x, (3, 4), implementation=implementation)
    np.testing.assert_array_equal(y_max[:, 0, 0], x.max(axis=(1, 2)))
    np.testing.assert_allclose(y_mean[:, 0, 0], x.mean(axis=(1, 2)), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- stride > kernel
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_stride_larger_than_kernel(implementation, rng):
    x = rng.uniform(-1, 1, size=(1, 7, 8, 1))
    kernel = rng.uniform(-1, 1, size=(2, 2, 1, 1))
    y, (dx, _) = _grads(lambda x, k: kce.ops.corr2d(x, k, 3, implementation=implementation),
                        x, kernel)
    # windows start at rows 0, 3 and columns 0, 3 (K = floor((7 - 2) / 3) + 1 = 2, L = 3)
    assert y.shape == (1, 2, 3, 1)
    for k, r in enumerate((0, 3)):
        for l, c in enumerate((0, 3, 6)):
            np.testing.assert_allclose(y[0, k, l, 0], np.sum(x[0, r:r + 2, c:c + 2, 0]
                                                             * kernel[:, :, 0, 0]), atol=1e-12)
    covered = np.zeros((7, 8), bool)
    for r in (0, 3):
        for c in (0, 3, 6):
            covered[r:r + 2, c:c + 2] = True
    # cells that no window reads get no gradient
    assert np.all(dx.numpy()[0, :, :, 0][~covered] == 0)
    assert np.all(dx.numpy()[0, :, :, 0][covered] != 0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_pool_stride_larger_than_window(implementation, rng):
    x = rng.uniform(-1, 1, size=(1, 7, 7, 2))
    y = kce.ops.max_pool2d(x, 2, strides=3, implementation=implementation)
    expected = np.stack([[x[0, r:r + 2, c:c + 2].max(axis=(0, 1)) for c in (0, 3)]
                         for r in (0, 3)])
    np.testing.assert_array_equal(y[0], expected)
    y_mean, (dx,) = _grads(lambda x: kce.ops.mean_pool2d(
        x, 2, strides=3, implementation=implementation), x)
    expected_dx = np.zeros_like(x)
    for r in (0, 3):
        for c in (0, 3):
            expected_dx[0, r:r + 2, c:c + 2] = 0.25
    np.testing.assert_allclose(dx, expected_dx, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------------ 1x1
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_1x1_kernel_is_channel_mixing(implementation, rng):
    x = rng.uniform(-1, 1, size=(2, 5, 4, 3))
    kernel = rng.uniform(-1, 1, size=(1, 1, 3, 2))
    y = kce.ops.corr2d(x, kernel, implementation=implementation)
    np.testing.assert_allclose(y, np.einsum("bhwc,cf->bhwf", x, kernel[0, 0]), rtol=0,
                               atol=1e-12)
    y2 = kce.ops.corr2d(x, kernel, 2, implementation=implementation)
    np.testing.assert_allclose(y2, np.einsum("bhwc,cf->bhwf", x[:, ::2, ::2], kernel[0, 0]),
                               rtol=0, atol=1e-12)
    # padding 1 with a 1x1 kernel: a zero border around the mixed channels
    y3 = kce.ops.corr2d(x, kernel, 1, 1, implementation=implementation)
    np.testing.assert_allclose(y3[:, 1:-1, 1:-1], y, rtol=0, atol=1e-12)
    assert np.all(y3.numpy()[:, 0] == 0) and np.all(y3.numpy()[:, :, -1] == 0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("op", ["max_pool2d", "mean_pool2d"])
def test_1x1_pool_is_identity_or_subsampling(op, implementation, rng):
    x = rng.uniform(-1, 1, size=(2, 5, 4, 3))
    y, (dx,) = _grads(lambda x: getattr(kce.ops, op)(x, 1, implementation=implementation), x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, np.ones_like(x))
    y2 = getattr(kce.ops, op)(x, 1, strides=2, implementation=implementation)
    np.testing.assert_array_equal(y2, x[:, ::2, ::2])


def test_1x1_layer():
    layer = kce.layers.Corr2D(2, 1, use_bias=False)
    x = np.random.default_rng(3).uniform(-1, 1, size=(1, 3, 3, 4)).astype("float32")
    y = layer(x)
    np.testing.assert_allclose(y, np.einsum("bhwc,cf->bhwf", x, layer.kernel.numpy()[0, 0]),
                               rtol=1e-6, atol=1e-6)
    assert layer.count_params() == (1 * 1 * 4 + 0) * 2


# -------------------------------------------------------------------- unknown spatial dims
DYNAMIC_CASES = {
    "corr-same": dict(op="corr2d", kwargs=dict(strides=1, padding="same")),
    "corr-stride2-pad1": dict(op="corr2d", kwargs=dict(strides=2, padding=1)),
    "corr-replicate": dict(op="corr2d", kwargs=dict(strides=(2, 1), padding=((2, 1), (0, 2)),
                                                    padding_mode="replicate")),
    "corr-reflect-conv": dict(op="corr2d", kwargs=dict(padding=1, padding_mode="reflect",
                                                       mode="convolution")),
    "max-zeros": dict(op="max_pool2d", kwargs=dict(pool_size=3, strides=2, padding=1)),
    "max-ignore-same": dict(op="max_pool2d", kwargs=dict(pool_size=3, strides=2,
                                                         padding="same",
                                                         padding_mode="ignore")),
    "mean-zeros": dict(op="mean_pool2d", kwargs=dict(pool_size=2, strides=1, padding=1)),
    "mean-ignore": dict(op="mean_pool2d", kwargs=dict(pool_size=3, strides=2, padding=1,
                                                      padding_mode="ignore")),
    "mean-ignore-same": dict(op="mean_pool2d", kwargs=dict(pool_size=3, strides=2,
                                                           padding="same",
                                                           padding_mode="ignore")),
}


@pytest.mark.parametrize("case", DYNAMIC_CASES)
def test_unknown_spatial_dims_tf_function(case, rng):
    c = DYNAMIC_CASES[case]
    op, kwargs = c["op"], c["kwargs"]
    kernel = tf.constant(rng.uniform(-1, 1, size=(3, 3, 2, 3)))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 2), tf.float64),
                                  tf.TensorSpec((None, None, None, None), tf.float64)])
    def forward_and_grad(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if op == "corr2d":
                y = kce.ops.corr2d(x, kernel, **kwargs)
            else:
                y = getattr(kce.ops, op)(x, **kwargs)
        return y, tape.gradient(y, x, output_gradients=upstream)

    concrete = forward_and_grad.get_concrete_function()
    assert concrete.structured_outputs[0].shape.as_list()[1:3] == [None, None]
    for shape in [(2, 5, 6, 2), (1, 8, 7, 2), (1, 4, 4, 2)]:
        x = rng.uniform(-1, 1, size=shape)
        if op == "corr2d":
            expected = reference.corr2d(x, kernel.numpy(), **kwargs)
        else:
            expected = getattr(reference, op)(x, **kwargs)
        upstream = rng.uniform(-1, 1, size=expected.shape)
        y, dx = forward_and_grad(x, upstream)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
        if op == "corr2d":
            expected_dx, _ = reference.corr2d_grad(x, kernel.numpy(), upstream, **kwargs)
        else:
            expected_dx = getattr(reference, op + "_grad")(x, upstream, **kwargs)
        np.testing.assert_allclose(dx, expected_dx, rtol=0, atol=1e-12)


def test_unknown_spatial_dims_keras_input(rng):
    inputs = keras.Input(shape=(None, None, 3))
    conv = kce.layers.CrossCorrelation2D(4, 3, padding="same", padding_mode="replicate")
    pool = kce.layers.MaxPooling2D(3, strides=2, padding=1)
    mean = kce.layers.MeanPooling2D(2, padding_mode="ignore", padding=((0, 1), (0, 1)))
    h = conv(inputs)
    assert tuple(h.shape) == (None, None, None, 4)
    outputs = mean(pool(h))
    assert tuple(outputs.shape) == (None, None, None, 4)
    model = keras.Model(inputs, outputs)
    kernel, bias = (w.astype("float64") for w in conv.get_weights())
    for shape in [(2, 8, 8, 3), (1, 5, 7, 3)]:
        x = rng.uniform(-1, 1, size=shape).astype("float32")
        expected = reference.corr2d(x, kernel, padding="same", padding_mode="replicate") + bias
        expected = reference.max_pool2d(expected, 3, 2, 1)
        expected = reference.mean_pool2d(expected, 2, padding=((0, 1), (0, 1)),
                                         padding_mode="ignore")
        np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("op", ["corr2d", "max_pool2d", "mean_pool2d"])
def test_window_larger_than_input_with_unknown_dims_is_an_error(op):
    """With unknown spatial sizes the fit check can only run at run time; it must still fail
    instead of returning TensorFlow's undefined result (garbage for conv2d, an empty tensor for
    avg_pool, a oneDNN 'could not create a descriptor' abort for max_pool)."""
    kernel = tf.ones((3, 3, 1, 1))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 1))])
    def fn(x):
        if op == "corr2d":
            return kce.ops.corr2d(x, kernel)
        return getattr(kce.ops, op)(x, 3)

    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        fn(tf.ones((1, 2, 2, 1))).numpy()


def test_reflect_padding_too_large_with_unknown_dims_is_a_runtime_error():
    kernel = tf.ones((3, 3, 1, 1))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 1))])
    def fn(x):
        return kce.ops.corr2d(x, kernel, padding=2, padding_mode="reflect")

    assert fn(tf.ones((1, 3, 3, 1))).shape == (1, 5, 5, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Reflect padding"):
        fn(tf.ones((1, 2, 2, 1))).numpy()


# ---------------------------------------------------------------- inputs of other dtypes
def test_numpy_bfloat16_arrays_are_accepted():
    """`bfloat16_tensor.numpy()` is an ml_dtypes array (dtype kind 'V'): still a float."""
    x = tf.cast(tf.reshape(tf.range(16.0), (1, 4, 4, 1)), tf.bfloat16).numpy()
    y = kce.ops.max_pool2d(x, 2)
    assert y.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(y, tf.float32)[0, :, :, 0], [[5, 7], [13, 15]])
    kernel = tf.ones((1, 1, 1, 1), tf.bfloat16).numpy()
    assert kce.ops.corr2d(x, kernel).dtype == tf.bfloat16


def test_integer_inputs_are_cast_to_float():
    x = np.arange(16).reshape(1, 4, 4, 1)
    y = kce.ops.mean_pool2d(x, 2)
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(y[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


# ------------------------------------------------- TensorFlow CPU kernel defect (regression)
def test_float32_single_channel_strided_single_column_output():
    """TF 2.21's oneDNN float32 Conv2D returns wrong values (sometimes ~1e19 garbage) when
    batch > 1, C_in == 1, the output is one column wide and stride_w > 1 (stride_h == 1);
    float64 and the backward kernels are right. Stock keras.layers.Conv2D shows the same
    defect. The composite op must still give the textbook numbers."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, 4, 4, 1))
    kernel = rng.uniform(-1, 1, size=(1, 3, 1, 1))
    expected = reference.corr2d(x.astype("float32"), kernel.astype("float32"), strides=(1, 2))
    y = kce.ops.corr2d(x.astype("float32"), kernel.astype("float32"), strides=(1, 2),
                       implementation="composite")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
