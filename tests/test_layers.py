"""Layer tests: the shared helper on every layer and configuration, aliases, parameter counts,
registered names and `supports_jit` (the docstring examples: test_doctests.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import reference
from layer_test_helper import run_layer_test

L = kce.layers


def _nhwc(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 2, 3, 1))


def _from_nhwc(y, data_format):
    return y if data_format == "channels_last" else np.transpose(y, (0, 3, 1, 2))


def corr_reference(strides=1, padding=0, padding_mode="zeros", mode="cross_correlation",
                   use_bias=True, activation=None, data_format="channels_last", **_):
    def fn(x, weights):
        y = reference.corr2d(_nhwc(x, data_format), weights[0], strides, padding,
                             padding_mode=padding_mode, mode=mode)
        if use_bias:
            y = y + weights[1]
        if activation == "relu":
            y = np.maximum(y, 0.0)
        return _from_nhwc(y, data_format)
    return fn


def pool_reference(op, pool_size=2, strides=None, padding=0, padding_mode="zeros",
                   data_format="channels_last", **_):
    def fn(x, weights):
        assert weights == []
        y = op(_nhwc(x, data_format), pool_size, strides, padding, padding_mode=padding_mode)
        return _from_nhwc(y, data_format)
    return fn


NEEDS_NATIVE = pytest.mark.skipif(not kce.ops.native_available(),
                                  reason=kce.ops.native_status())
CORR_CONFIGS = [
    dict(filters=3, kernel_size=3),
    dict(filters=2, kernel_size=(3, 2), strides=(2, 1), padding=1, activation="relu"),
    dict(filters=2, kernel_size=3, padding="same", padding_mode="replicate"),
    dict(filters=2, kernel_size=3, padding=((1, 0), (2, 1)), padding_mode="reflect",
         mode="convolution", use_bias=False),
    dict(filters=4, kernel_size=2, strides=2, padding="full", mode="convolution"),
    dict(filters=2, kernel_size=3, strides=2, padding=1, data_format="channels_first"),
    dict(filters=2, kernel_size=3, padding="same", implementation="reference"),
    pytest.param(dict(filters=2, kernel_size=3, strides=2, padding=1, padding_mode="reflect",
                      implementation="native"), marks=NEEDS_NATIVE, id="native-reflect"),
]


def _config_id(config):
    return ",".join(f"{k}={v}" for k, v in config.items())


@pytest.mark.parametrize("config", CORR_CONFIGS, ids=_config_id)
def test_cross_correlation_layer(config, tmp_path):
    data_format = config.get("data_format", "channels_last")
    shape = (2, 6, 5, 3) if data_format == "channels_last" else (2, 3, 6, 5)
    layer = run_layer_test(
        L.CrossCorrelation2D, dict(config, bias_initializer="glorot_uniform"), shape,
        corr_reference(**config), tmp_path=tmp_path)
    kernel_size = config["kernel_size"]
    kernel_size = (kernel_size,) * 2 if isinstance(kernel_size, int) else kernel_size
    assert layer.kernel.shape == kernel_size + (3, config["filters"])


POOL_CONFIGS = [
    dict(pool_size=2),
    dict(pool_size=3, strides=1),
    dict(pool_size=(3, 2), strides=(2, 1), padding=1),
    dict(pool_size=3, strides=2, padding=1, padding_mode="ignore"),
    dict(pool_size=2, padding="same", padding_mode="ignore", data_format="channels_first"),
    dict(pool_size=3, strides=2, padding="full", implementation="reference"),
    pytest.param(dict(pool_size=3, strides=2, padding=1, padding_mode="ignore",
                      implementation="native"), marks=NEEDS_NATIVE, id="native-ignore"),
]


POOL_LAYERS = [(L.MaxPooling2D, reference.max_pool2d), (L.MeanPooling2D, reference.mean_pool2d)]


@pytest.mark.parametrize("config", POOL_CONFIGS, ids=_config_id)
@pytest.mark.parametrize("layer_cls, op", POOL_LAYERS, ids=["max", "mean"])
def test_pooling_layer(layer_cls, op, config, tmp_path):
    data_format = config.get("data_format", "channels_last")
    shape = (2, 7, 6, 2) if data_format == "channels_last" else (2, 2, 7, 6)
    run_layer_test(layer_cls, config, shape, pool_reference(op, **config), tmp_path=tmp_path)


def test_pooling_default_stride_is_the_window():
    layer = L.MaxPooling2D((3, 2))
    assert layer.get_config()["strides"] is None
    assert layer.compute_output_shape((None, 9, 8, 1)) == (None, 3, 4, 1)


def test_aliases():
    assert L.Corr2D is L.CrossCorrelation2D
    assert L.MaxPool2D is L.MaxPooling2D
    assert L.MeanPool2D is L.MeanPooling2D


@pytest.mark.parametrize("kernel_size, channels, filters, use_bias", [
    (5, 1, 6, True),          # LeNet-5 C1: (5*5*1 + 1)*6 = 156
    ((3, 2), 3, 4, True),
    (3, 64, 128, True),
    (3, 4, 5, False),
])
def test_parameter_count(kernel_size, channels, filters, use_bias):
    m, n = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    layer = L.CrossCorrelation2D(filters, kernel_size, use_bias=use_bias)
    layer.build((None, 8, 8, channels))
    expected = (m * n * channels + (1 if use_bias else 0)) * filters
    assert layer.count_params() == expected
    if use_bias:
        assert layer.count_params() == (m * n * channels + 1) * filters
    pool = L.MaxPooling2D(2)
    pool.build((None, 8, 8, channels))
    assert pool.count_params() == 0


def test_lenet_c1_parameter_count_matches_the_slides():
    layer = L.Corr2D(6, 5)
    layer.build((None, 32, 32, 1))
    assert layer.count_params() == 156


@pytest.mark.parametrize("cls", [L.CrossCorrelation2D, L.MaxPooling2D, L.MeanPooling2D])
def test_registered_names(cls):
    name = f"keras_cnn_ext>{cls.__name__}"
    assert keras.saving.get_registered_name(cls) == name
    assert keras.saving.get_registered_object(name) is cls
    layer = cls(2, 3) if cls is L.CrossCorrelation2D else cls(2)
    assert keras.saving.serialize_keras_object(layer)["registered_name"] == name


def test_supports_jit():
    assert L.CrossCorrelation2D(2, 3).supports_jit
    assert L.CrossCorrelation2D(2, 3, implementation="composite").supports_jit
    assert not L.CrossCorrelation2D(2, 3, implementation="reference").supports_jit
    assert not L.CrossCorrelation2D(2, 3, implementation="native").supports_jit
    assert L.MaxPooling2D(2).supports_jit
    assert L.MeanPooling2D(2, implementation="composite").supports_jit
    assert not L.MeanPooling2D(2, implementation="reference").supports_jit


def test_reference_layer_inside_xla_is_a_clear_error():
    layer = L.CrossCorrelation2D(2, 3, implementation="reference")
    fn = tf.function(lambda x: layer(x), jit_compile=True)
    with pytest.raises(ValueError, match="implementation='reference'.*jit_compile"):
        fn(np.ones((1, 5, 5, 1), "float32"))


def test_composite_layers_under_xla_match_eager():
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 2)).astype("float32")
    layers = [L.CrossCorrelation2D(3, 3, strides=2, padding=1, padding_mode="reflect"),
              L.MaxPooling2D(3, strides=2, padding=1), L.MeanPooling2D(2, padding=1,
                                                                       padding_mode="ignore")]
    for layer in layers:
        eager = layer(x)
        jitted = tf.function(lambda t, layer=layer: layer(t), jit_compile=True)(x)
        np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_layer_gradients_include_bias():
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 5, 2)), tf.float32)
    layer = L.CrossCorrelation2D(3, 3, padding=1, bias_initializer="ones")
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y * tf.range(3, dtype=tf.float32))
    d_kernel, d_bias = tape.gradient(loss, [layer.kernel, layer.bias])
    # d loss / d b[f] = sum of the upstream gradient of filter f = f * (number of outputs)
    np.testing.assert_allclose(d_bias, np.arange(3) * 2 * 5 * 5)
    upstream = np.broadcast_to(np.arange(3.0), (2, 5, 5, 3))
    _, expected_dw = reference.corr2d_grad(x.numpy(), layer.kernel.numpy(), upstream,
                                           padding=1)
    np.testing.assert_allclose(d_kernel, expected_dw, rtol=1e-5, atol=1e-4)


def test_default_data_format_follows_keras_setting():
    keras.config.set_image_data_format("channels_first")
    layer = L.CrossCorrelation2D(2, 3)
    assert layer.data_format == "channels_first"
    assert layer.compute_output_shape((None, 3, 8, 8)) == (None, 2, 6, 6)


def adaptive_reference(output_size, data_format="channels_last", **_):
    """PyTorch's definition cell by cell: the mean of rows floor(i*H/O) .. ceil((i+1)*H/O)-1."""
    def fn(x, weights):
        assert weights == []
        x = _nhwc(x, data_format)
        h, w = x.shape[1:3]
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        oh, ow = oh or h, ow or w
        y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
        for i in range(oh):
            r0, r1 = int(np.floor(i * h / oh)), int(np.ceil((i + 1) * h / oh))
            for j in range(ow):
                c0, c1 = int(np.floor(j * w / ow)), int(np.ceil((j + 1) * w / ow))
                y[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
        return _from_nhwc(y, data_format)
    return fn


# (config, input H x W): shrinking with overlapping bins, growing (1x1 -> 7x7 repeats the
# cell), the identity, unequal sides, None (keep the width), channels_first
ADAPTIVE_CASES = [
    (dict(output_size=7), (9, 9)),
    (dict(output_size=7), (1, 1)),
    (dict(output_size=7), (7, 7)),
    (dict(output_size=(3, 2)), (10, 5)),
    (dict(output_size=(2, None)), (5, 3)),
    (dict(output_size=6, data_format="channels_first"), (4, 13)),
]


@pytest.mark.parametrize("config, hw", ADAPTIVE_CASES,
                         ids=[f"{_config_id(c)}-{h}x{w}" for c, (h, w) in ADAPTIVE_CASES])
def test_adaptive_average_pooling_layer(config, hw, tmp_path):
    data_format = config.get("data_format", "channels_last")
    shape = (2,) + hw + (3,) if data_format == "channels_last" else (2, 3) + hw
    run_layer_test(L.AdaptiveAveragePooling2D, config, shape, adaptive_reference(**config),
                   tmp_path=tmp_path)


@pytest.mark.parametrize("hw, out", [((1, 1), 7), ((9, 9), 7), ((7, 7), 7), ((13, 11), (6, 4)),
                                     ((3, 5), (7, 8))])
def test_adaptive_average_pooling_matches_torch(hw, out):
    import torch_peer

    torch = torch_peer.torch()
    x = np.random.default_rng(3).standard_normal((2, 4) + hw).astype("float32")
    theirs = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy()
    ours = L.AdaptiveAveragePooling2D(out, data_format="channels_first")(x)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-6, atol=1e-6)
    if hw == (7, 7):
        np.testing.assert_array_equal(np.asarray(ours), x)


def test_adaptive_average_pooling_needs_a_static_size_and_a_valid_output_size():
    with pytest.raises(ValueError, match="static spatial input size"):
        L.AdaptiveAveragePooling2D(7)(keras.Input((None, None, 3)))
    for value in (0, 2.5, "7", (7, 7, 7), (0, 3), True):
        with pytest.raises(ValueError, match=r"Invalid value for argument `output_size`\. "
                           r"Expected .* Received: output_size="):
            L.AdaptiveAveragePooling2D(value)
    assert L.AdaptiveAvgPool2D is L.AdaptiveAveragePooling2D
    layer = L.AdaptiveAveragePooling2D((7, 7))
    layer.build((None, 9, 9, 3))
    assert layer.count_params() == 0 and layer.receptive_field() == ((3, 3), (1, 1))
