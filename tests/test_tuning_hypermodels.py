"""Hypermodels: names and defaults, pinned values, geometry checked before building, the
fraction of random configurations that fit 16x16, 28x28 and 32x32 inputs."""

import re
import subprocess
import sys

import keras
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from keras_cnn_ext import models  # noqa: E402
from keras_cnn_ext.tuning import HyperLeNet, HyperResNet, HyperVGG  # noqa: E402
from proc_helper import child_env  # noqa: E402

FAMILIES = (HyperLeNet, HyperVGG, HyperResNet)
SIZES = (16, 28, 32)


# every test ends with a fresh Keras session (conftest)
pytestmark = pytest.mark.usefixtures("cleared_keras_session")


def _hp(**pinned):
    hp = keras_tuner.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    return hp


def test_importing_the_package_does_not_import_keras_tuner(tmp_path):
    code = ("import sys, keras_cnn_ext as k; assert 'keras_tuner' not in sys.modules; "
            "k.tuning.HyperLeNet; assert 'keras_tuner' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(TF_CPP_MIN_LOG_LEVEL=3),
                   cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("cls", FAMILIES)
def test_every_stage_searches_kernel_stride_and_filters(cls):
    hm = cls((32, 32, 3), 10)
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    names = {p.name for p in hp.space}
    assert {"depth", "learning_rate", "optimizer"} <= names
    for stage in range(1, max(hm.space.depths) + 1):
        stage_names = [n for n in names if re.match(rf"(conv|stage){stage}_", n)]
        for word in ("kernel", "stride", "filters"):
            assert any(word in n for n in stage_names), (stage, word, sorted(names))
    optimizer = next(p for p in hp.space if p.name == "optimizer")
    assert set(optimizer.values) == {"adam", "sgd", "rmsprop"}


def test_lenet_defaults_are_lenet5():
    hm = HyperLeNet((28, 28, 1), 10)
    values = hm.default_values()
    assert values["depth"] == 2
    assert (values["conv1_kernel"], values["conv1_stride"], values["conv1_filters"],
            values["conv1_padding"]) == (5, 1, 6, "same")
    assert (values["conv2_kernel"], values["conv2_stride"], values["conv2_filters"],
            values["conv2_padding"]) == (5, 1, 16, "valid")
    assert values["activation"] == "sigmoid" and values["optimizer"] == "adam"
    assert values["learning_rate"] == pytest.approx(1e-3)
    model = hm.build(keras_tuner.HyperParameters())
    paper = models.lenet5()
    assert model.count_params() == paper.count_params() == 61_706
    assert ([(l.name, tuple(l.output.shape[1:])) for l in model.layers]
            == [(l.name, tuple(l.output.shape[1:])) for l in paper.layers])
    assert model.optimizer.__class__.__name__ == "Adam"


def test_vgg_and_resnet_defaults_follow_the_papers():
    vgg = HyperVGG((32, 32, 3), 10).default_values()
    assert vgg["depth"] == 5
    assert [vgg[f"stage{i}_convs"] for i in range(1, 6)] == [1, 1, 2, 2, 2]  # configuration A
    assert [vgg[f"stage{i}_filters"] for i in range(1, 6)] == [64, 128, 256, 512, 512]
    assert all(vgg[f"stage{i}_kernel"] == 3 and vgg[f"stage{i}_stride"] == 1
               for i in range(1, 6))
    hm = HyperResNet((32, 32, 3), 10)
    res = hm.default_values()
    assert res["depth"] == 3 and res["stem_kernel"] == 3 and res["stem_stride"] == 1
    assert [res[f"stage{i}_filters"] for i in (1, 2, 3)] == [16, 32, 64]
    assert [res[f"stage{i}_stride"] for i in (1, 2, 3)] == [1, 2, 2]
    assert [res[f"stage{i}_blocks"] for i in (1, 2, 3)] == [3, 3, 3]
    # ResNet-20's layout: the same blocks and map sizes
    model = hm.build(keras_tuner.HyperParameters())
    paper = models.resnet20()
    assert ([(l.name, tuple(l.output.shape[1:])) for l in model.layers]
            == [(l.name, tuple(l.output.shape[1:])) for l in paper.layers])


@pytest.mark.parametrize("cls", FAMILIES)
def test_defaults_fit_at_every_depth_and_at_tiny_inputs(cls):
    # KerasTuner's constructor builds every conditional branch at its defaults
    for size in (8,) + SIZES:
        hm = cls((size, size, 1), 10)
        for depth in hm.space.depths:
            assert hm.fits({"depth": depth}), (size, depth)


def test_pinned_values_with_hp_fixed():
    hm = HyperLeNet((28, 28, 1), 10)
    model = hm.build(_hp(conv1_kernel=3, conv1_stride=2, conv1_filters=8, activation="relu",
                         optimizer="sgd", learning_rate=0.05))
    c1 = model.get_layer("c1")
    assert tuple(c1.kernel.shape) == (3, 3, 1, 8)
    assert tuple(c1.output.shape[1:3]) == (14, 14)  # 'same', stride 2
    assert model.optimizer.__class__.__name__ == "SGD"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)

    vgg = HyperVGG((32, 32, 3), 10).build(_hp(depth=2, stage1_kernel=5, stage1_stride=2,
                                              stage2_convs=3, stage2_filters=16,
                                              dense_units=128))
    assert tuple(vgg.get_layer("conv1_1").kernel.shape) == (5, 5, 3, 64)
    assert tuple(vgg.get_layer("conv1_1").output.shape[1:3]) == (16, 16)
    assert tuple(vgg.get_layer("conv2_3").output.shape[1:]) == (8, 8, 16)
    assert tuple(vgg.get_layer("fc6").output.shape[1:]) == (128,)

    res = HyperResNet((16, 16, 3), 4).build(_hp(depth=2, stage1_kernel=5, stage2_stride=1,
                                                stage2_filters=8, stage2_blocks=1))
    assert res.get_layer("conv2_1").kernel_size == 5
    assert tuple(res.get_layer("conv3_1").output.shape[1:]) == (16, 16, 8)
    assert "conv3_2" not in [layer.name for layer in res.layers]


@pytest.mark.parametrize("cls", FAMILIES)
@pytest.mark.parametrize("size", SIZES)
def test_at_least_90_percent_of_random_configurations_fit(cls, size):
    hm = cls((size, size, 1), 10)
    assert hm.exact_valid_fraction >= 0.95
    fraction = hm.valid_fraction(n=1000, seed=size)
    assert fraction >= 0.90
    # the exact propagation of map sizes agrees with KerasTuner-style sampling
    assert abs(fraction - hm.exact_valid_fraction) < 0.03


def test_strides_are_limited_by_the_remaining_size():
    hm = HyperVGG((32, 32, 3), 10)
    # five poolings use up 32x32: a stride 2 on stage 1 is only searched for shallower nets
    assert 5 not in hm.space.active["stage1_stride"]
    assert 1 in hm.space.active["stage1_stride"]
    assert hm.fits({"depth": 5})
    assert not hm.fits({"depth": 5, "stage3_stride": 2})  # pinned outside the space


def test_vanishing_map_raises_failed_trial_error_with_the_geometry():
    hm = HyperLeNet((16, 16, 1), 10)
    pins = dict(depth=2, conv1_kernel=7, conv1_padding="valid", conv2_kernel=7,
                conv2_padding="valid")
    with pytest.raises(keras_tuner.errors.FailedTrialError) as info:
        hm.build(_hp(**pins))
    message = str(info.value)
    for part in ("input 16x16", "c1 10x10", "s2 5x5", "'c3'", "padded size 5 < kernel size 7"):
        assert part in message, message
    # the builder agrees: that network cannot be built
    values = hm.configuration(pins)
    with pytest.raises(ValueError, match="vanishes at layer 'c3'"):
        hm._build_model(values)


@pytest.mark.parametrize("cls", FAMILIES)
def test_geometry_is_the_built_models_geometry(cls):
    hm = cls((28, 28, 1), 10)
    checked = 0
    for values in hm.sample(20, seed=3):
        if not hm.fits(values) or checked == 2:
            continue
        keras.backend.clear_session()
        hp = keras_tuner.HyperParameters()
        hp.values = dict(values)
        model = hm.build(hp)
        built = {layer.name: tuple(layer.output.shape[1:3]) for layer in model.layers}
        for name, hw in hm.geometry(values):
            assert built[name] == hw, (name, values)
        checked += 1
    assert checked == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: input_shape=\(1, 1, 1\)"):
        HyperLeNet((1, 1, 1), 10)
    with pytest.raises(ValueError, match="Received: input_shape=\\(None, 28, 1\\)"):
        HyperVGG((None, 28, 1), 10)
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        HyperResNet((28, 28, 1), 1)


def test_fit_makes_the_training_variables_first_and_traces_the_train_step_once():
    # issue 20: made lazily inside the first trace, the optimizer's slots made TensorFlow trace
    # the train step a second time (2 traces per trial; measured, docs/tuning-soak.md)
    import numpy as np
    import tensorflow as tf

    from keras_cnn_ext.tuning import overhead
    from keras_cnn_ext.tuning.base import build_training_state

    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    hm = HyperLeNet((12, 12, 1), 10)
    hp = _hp(optimizer="adam")
    model = hm.build(hp)
    assert build_training_state(model, x) is False  # arrays: Keras builds lazily, as before
    assert not model.optimizer.built
    traces = []
    step = model.train_step
    model.train_step = lambda batch: traces.append(batch) or step(batch)
    clock = overhead.TrialClock()
    clock.trial_begins()
    hm.fit(hp, model, data, epochs=1, verbose=0, callbacks=[clock])
    record = clock.trial_ends()
    assert len(traces) == 1
    # Adam: iterations, learning rate, and two slots per trainable variable
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    assert record["compile_s"] > 0  # counted as the trial's compile, not as "other"
    assert build_training_state(model, data) is False  # built already: nothing to do
