"""`implementation="auto"`: the dispatch rule, XLA, the environment override, layer errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import dispatch, native

needs_native = pytest.mark.skipif(not native.available(), reason=native.status())


def test_rule_names_only_known_ops_devices_and_dtypes():
    for (op, device, dtype), min_channels in dispatch.NATIVE_PREFERRED.items():
        assert op in ("corr2d", "max_pool2d", "mean_pool2d")
        assert device in ("CPU", "GPU")
        assert tf.as_dtype(dtype).is_floating
        assert min_channels >= 1


@needs_native
def test_auto_picks_native_where_the_rule_says_so(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    x32 = tf.zeros((1, 4, 4, 64), tf.float32)
    assert dispatch.resolve("auto", "max_pool2d", x32, channels=64) == "native"
    # from one channel on (LeNet-5's 6 too): the compiled max pool won down to 1 channel
    assert dispatch.resolve("auto", "max_pool2d", x32, channels=6) == "native"
    assert dispatch.resolve("auto", "max_pool2d", x32, channels=1) == "native"
    # unknown channels, float16 (TensorFlow's kernel is faster there): composite
    assert dispatch.resolve("auto", "max_pool2d", x32, channels=None) == "composite"
    x16 = tf.zeros((1, 4, 4, 6), tf.float16)
    assert dispatch.resolve("auto", "max_pool2d", x16, channels=6) == "composite"
    assert dispatch.resolve("auto", "mean_pool2d", x32, channels=6) == "native"
    assert dispatch.resolve("auto", "corr2d", x32, channels=64) == "composite"
    x64 = tf.zeros((1, 4, 4, 1), tf.float64)
    assert dispatch.resolve("auto", "corr2d", x64, channels=1) == "native"
    assert dispatch.resolve("composite", "max_pool2d", x32, channels=64) == "composite"


def test_auto_is_composite_inside_xla(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    seen = []

    @tf.function(jit_compile=True)
    def f(x):
        seen.append(dispatch.resolve("auto", "max_pool2d", x))
        return kce.ops.max_pool2d(x, 2) + 0.0

    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(f(x)[0, :, :, 0], [[5, 7], [13, 15]])
    assert seen == ["composite"]


def test_environment_override(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "composite")
    assert dispatch.resolve("auto", "max_pool2d", tf.zeros((1, 2, 2, 1))) == "composite"
    assert dispatch.resolve("native", "max_pool2d") == "native"  # explicit choice wins
    monkeypatch.setenv(dispatch.ENV_VAR, "native")
    assert dispatch.resolve("auto", "corr2d") == "native"
    assert not dispatch.supports_jit("auto")


def test_supports_jit(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    assert dispatch.supports_jit("auto") and dispatch.supports_jit("composite")
    assert not dispatch.supports_jit("native") and not dispatch.supports_jit("reference")


@needs_native
@pytest.mark.parametrize("make", [
    lambda: kce.layers.CrossCorrelation2D(2, 3, implementation="native", name="my_layer"),
    lambda: kce.layers.MaxPooling2D(2, implementation="native", name="my_layer"),
])
def test_explicit_native_under_jit(make):
    layer = make()
    model = keras.Sequential([keras.Input((6, 6, 1)), layer])
    x = np.zeros((2, 6, 6, 1), "float32")
    # Keras reads supports_jit = False: it warns and runs the model without XLA ...
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), layer(x))
    # ... while a hand-made XLA function gets an error naming the layer, not a TF crash.
    with pytest.raises(ValueError, match=r"Layer 'my_layer'[\s\S]*implementation='native'"
                                         r"[\s\S]*jit_compile=True"):
        tf.function(layer, jit_compile=True)(x)


def test_auto_layers_train_under_jit_compile():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        kce.layers.CrossCorrelation2D(2, 3, padding=1, padding_mode="reflect"),
        kce.layers.MaxPooling2D(2, padding=1),
        kce.layers.MeanPooling2D(2, padding_mode="ignore", padding=1),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 1)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, np.ones((4, 1), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
