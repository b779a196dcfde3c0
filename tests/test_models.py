"""Model builders and registry: the test matrix, exact parameter counts, stage shapes."""

import keras
import numpy as np
import pytest

from keras_cnn_ext import models

CIFAR = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
# the smallest convenient input of each model (AlexNet needs 67x67, VGG 32x32)
TINY_SHAPES = {"lenet5": (28, 28, 1), "alexnet": (67, 67, 3)}
# deeper copies of lenet5 / alexnet / vgg11 / googlenet / resnet18 / resnet50 / resnet20: the
# slowest part of the matrix, marked so that `-m "not slow"` gives a quick run
TORCHVISION_ONLY = ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
                    "wide_resnet101_2")  # ResNet-50's blocks, grouped or wider
DEEPER = ("vgg13", "vgg16_c", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet34",
          "resnet101", "resnet152", "resnet32", "resnet44", "resnet56", "resnet110") + TORCHVISION_ONLY
# ResNeXt-101 and the Wide ResNets are ResNeXt-50's / ResNet-50's blocks at other widths and
# depths (25-127 M parameters: minutes of the matrix for no new code); their parameter counts
# are checked below and against torchvision in test_weights.py
WIDE_COPIES = ("resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
MATRIX = [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n
          for n in models.list_models() if n not in WIDE_COPIES]
# the layout and twin checks once per family: the deeper copies repeat the same blocks and
# layers (their layers and data_format come from the same Net helper), and at 2-5 minutes of
# CI for no new code path they stay in the matrix above only
FAMILIES = [n for n in models.list_models() if n not in DEEPER or n == "resnext50_32x4d"]
# the deepest copies (ResNet-101/152 repeat ResNet-50's bottleneck blocks, ResNet-110 ResNet-56's
# basic ones) skip the matrix's train step, traced predict and .keras round trip: those take
# 15-25 s each there and run the same code as their family's entry; an eager forward remains.
# ResNeXt-50 (the grouped blocks' entry) skips the train step only: its trace is as slow, and
# the grouped correlation's gradients are tested against torch in test_dilation_groups.py
FORWARD_ONLY = ("resnet101", "resnet152", "resnet110")
NOT_TRAINED = FORWARD_ONLY + TORCHVISION_ONLY


def _tiny_shape(name):
    return TINY_SHAPES.get(name, (8, 8, 3) if name in CIFAR else (32, 32, 3))


# every test ends with a fresh Keras session (conftest)
pytestmark = pytest.mark.usefixtures("cleared_keras_session")


def test_list_models():
    names = models.list_models()
    assert names == sorted(names)
    assert set(names) == {
        "lenet5", "alexnet", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19",
        "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20",
        "resnet32", "resnet44", "resnet56", "resnet110", *TORCHVISION_ONLY}


def test_get_model_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Received: name='resnet19'") as info:
        models.get_model("resnet19")
    assert "lenet5" in str(info.value) and "vgg16_c" in str(info.value)


def test_get_model_aliases():
    assert models.get_model("VGG-A", input_shape=(32, 32, 3), num_classes=2,
                            layers="keras").name == "vgg11"


@pytest.mark.parametrize("name", MATRIX)
def test_model_matrix(name, tmp_path):
    """Build at a tiny input, forward, one train step, .keras round trip."""
    shape = _tiny_shape(name)
    model = models.get_model(name, input_shape=shape, num_classes=3)
    assert model.name == name
    x = np.random.default_rng(0).uniform(size=(2,) + shape).astype("float32")
    probs = np.asarray(model(x, training=False) if name in FORWARD_ONLY
                       else model.predict_on_batch(x))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if name in FORWARD_ONLY:
        return
    if name not in NOT_TRAINED:
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy")
        loss = model.train_on_batch(x, np.array([0, 2]))
        assert np.isfinite(loss)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # deep ResNets at a 1x1 final map can overflow in inference mode after one step at init:
    # compare with NaNs allowed (the weights above are the real check); eager calls, since
    # tracing a predict function again costs more than the call
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(model(x, training=False)))


@pytest.mark.parametrize("name", FAMILIES)
def test_textbook_and_keras_layers_have_the_same_parameters(name):
    shape = _tiny_shape(name)
    textbook = models.get_model(name, input_shape=shape, num_classes=7)
    stock = models.get_model(name, input_shape=shape, num_classes=7, layers="keras")
    assert textbook.count_params() == stock.count_params()
    assert not any(layer.__class__.__module__.startswith("keras_cnn_ext.layers.conv")
                   for layer in stock.layers)


def _channels_first(shape):
    return (shape[2], shape[0], shape[1])


@pytest.mark.parametrize("name", FAMILIES)
def test_channels_first(name):
    """Every model in channels_first (from `keras.config.image_data_format()`, as
    keras.applications reads it) has the same weights as its channels_last twin and, given
    them, computes the same function."""
    shape = _tiny_shape(name)
    last = models.get_model(name, input_shape=shape, num_classes=3, classifier_activation=None)
    keras.config.set_image_data_format("channels_first")
    first = models.get_model(name, input_shape=_channels_first(shape), num_classes=3,
                             classifier_activation=None)
    assert first.input_shape == (None,) + _channels_first(shape)
    formats = {layer.data_format for layer in first.layers if hasattr(layer, "data_format")}
    assert formats == {"channels_first"}, formats
    assert [w.shape for w in first.weights] == [w.shape for w in last.weights]
    first.set_weights(last.get_weights())
    x = np.random.default_rng(2).uniform(size=(2,) + shape).astype("float32")
    np.testing.assert_allclose(np.asarray(first.predict_on_batch(np.transpose(x, (0, 3, 1, 2)))),
                               np.asarray(last.predict_on_batch(x)), rtol=1e-4, atol=1e-4)


def test_explicit_data_format_overrides_the_keras_setting():
    keras.config.set_image_data_format("channels_first")
    model = models.lenet5(data_format="channels_last", layers="keras")
    assert model.input_shape == (None, 28, 28, 1)
    assert models.lenet5(layers="keras").input_shape == (None, 1, 28, 28)
    assert models.resnet20(input_shape=(3, 8, 8)).get_layer("conv2_1").data_format == (
        "channels_first")


def test_textbook_and_keras_twins_compute_the_same_function():
    a = models.resnet18(input_shape=(33, 33, 3), num_classes=4, classifier_activation=None)
    b = models.resnet18(input_shape=(33, 33, 3), num_classes=4, classifier_activation=None,
                        layers="keras")
    b.set_weights(a.get_weights())
    x = np.random.default_rng(1).uniform(size=(2, 33, 33, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), rtol=1e-4, atol=1e-4)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# (builder name, kwargs, expected count at 224x224x3 / 1000 classes, trainable only)
PAPER_COUNTS = [
    ("vgg11", 132_863_336), ("vgg11_lrn", 132_863_336), ("vgg13", 133_047_848),
    ("vgg16_c", 133_638_952), ("vgg16", 138_357_544), ("vgg19", 143_667_240),
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808),
    ("alexnet", 62_378_344), ("googlenet", 6_998_552),
    # torchvision's vgg*_bn (test_weights_torchvision compares with torchvision's models too)
    ("vgg11_bn", 132_868_840), ("vgg13_bn", 133_053_736), ("vgg16_bn", 138_365_992),
    ("vgg19_bn", 143_678_248),
    # torchvision's (test_weights compares them with torchvision's models too)
    pytest.param("resnext50_32x4d", 25_028_904, marks=pytest.mark.slow),
    pytest.param("resnext101_32x8d", 88_791_336, marks=pytest.mark.slow),
    pytest.param("resnext101_64x4d", 83_455_272, marks=pytest.mark.slow),
    pytest.param("wide_resnet50_2", 68_883_240, marks=pytest.mark.slow),
    pytest.param("wide_resnet101_2", 126_886_696, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,count", PAPER_COUNTS)
def test_paper_parameter_counts(name, count):
    model = models.get_model(name)  # the paper's input; built, never run
    assert _trainable(model) == count


# variant="torchvision" at 224x224x3 / 1000 classes: torchvision's counts (sum(p.numel()))
TORCHVISION_COUNTS = [
    ("vgg11", {}, 132_863_336), ("vgg16_bn", {}, 138_365_992),
    ("alexnet", {}, 61_100_840), ("googlenet", {}, 6_624_904),
    ("googlenet", dict(aux_classifiers=True), 13_004_888),  # aux_logits=True
]


@pytest.mark.parametrize("name,kwargs,count", TORCHVISION_COUNTS)
def test_torchvision_variant_parameter_counts(name, kwargs, count):
    model = models.get_model(name, variant="torchvision", layers="keras", **kwargs)
    assert _trainable(model) == count


def test_lenet5_parameters_and_shapes():
    model = models.lenet5()
    assert model.count_params() == 61_706
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}
    assert shapes["c1"] == (28, 28, 6) and shapes["s2"] == (14, 14, 6)
    assert shapes["c3"] == (10, 10, 16) and shapes["s4"] == (5, 5, 16)
    assert shapes["c5"] == (120,) and shapes["f6"] == (84,) and shapes["output"] == (10,)
    mean = models.lenet5(subsampling="mean", layers="keras")
    assert mean.get_layer("s2").__class__.__name__ == "AveragePooling2D"
    with pytest.raises(ValueError, match="Received: subsampling='median'"):
        models.lenet5(subsampling="median")


@pytest.mark.parametrize("depth,count", [(20, 269_722), (32, 464_154), (44, 658_586),
                                         (56, 853_018), (110, 1_727_962)])
def test_cifar_resnet_parameters(depth, count):
    model = models.get_model(f"resnet{depth}")
    assert _trainable(model) == count  # the paper: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
    blocks = [layer for layer in model.layers if type(layer).__name__ == "ResidualBlock"]
    assert len(blocks) == (depth - 2) // 2  # 6n + 2 layers: 3n blocks of two convolutions


def test_resnet_stage_shapes():
    model = models.resnet50()
    out = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}
    assert out["conv1"] == (112, 112, 64) and out["pool1"] == (56, 56, 64)
    assert out["conv2_3"] == (56, 56, 256) and out["conv3_4"] == (28, 28, 512)
    assert out["conv4_6"] == (14, 14, 1024) and out["conv5_3"] == (7, 7, 2048)
    assert out["fc"] == (1000,)
    cifar = models.resnet20()
    out = {layer.name: tuple(layer.output.shape[1:]) for layer in cifar.layers[1:]}
    assert out["conv2_3"] == (32, 32, 16) and out["conv3_1"] == (16, 16, 32)
    assert out["conv4_3"] == (8, 8, 64)


def test_googlenet_shapes_and_aux_classifiers():
    model = models.googlenet(layers="keras")
    channels = [model.get_layer(f"inception_{n}").output.shape[-1]
                for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert channels == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert tuple(model.get_layer("inception_3a").output.shape[1:3]) == (28, 28)
    assert tuple(model.get_layer("inception_5b").output.shape[1:3]) == (7, 7)
    aux = models.googlenet(aux_classifiers=True, layers="keras", num_classes=5)
    assert [tuple(o.shape) for o in aux.outputs] == [(None, 5)] * 3
    # each: 1x1 conv 128 (on 512 / 528 channels), fc 4*4*128 -> 1024, fc 1024 -> classes
    aux_params = sum(128 * c + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    assert 6_998_552 + aux_params == 13_378_280
    assert models.googlenet(aux_classifiers=True, layers="keras").count_params() == 13_378_280


def test_vgg_and_alexnet_shapes():
    vgg = models.vgg16(layers="keras", include_top=False)  # no 100M-weight fc6 to allocate
    assert tuple(vgg.get_layer("pool5").output.shape[1:]) == (7, 7, 512)
    assert [layer.name for layer in vgg.layers if layer.name.startswith("conv3")] == [
        "conv3_1", "conv3_2", "conv3_3"]
    c = models.vgg16_c(layers="keras", include_top=False)
    assert c.get_layer("conv3_3").kernel.shape == (1, 1, 256, 256)
    assert models.vgg11_lrn(layers="keras", include_top=False).get_layer("norm1") is not None
    alex = models.alexnet(layers="keras", include_top=False)
    assert tuple(alex.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    with pytest.raises(ValueError, match="Received: config='F'"):
        models.vgg("F")


@pytest.mark.parametrize("name,shape,layer", [
    ("vgg16", (16, 16, 3), "pool5"), ("alexnet", (60, 60, 3), "pool5"),
    ("lenet5", (8, 8, 1), "c3"), ("googlenet", (32, 32, 3), "aux1_pool"),
])
@pytest.mark.parametrize("layers", ["textbook", "keras"])
def test_too_small_input_names_the_layer(name, shape, layer, layers):
    with pytest.raises(ValueError, match=f"too small for {name}.*at layer '{layer}'"):
        models.get_model(name, input_shape=shape, layers=layers,
                         **({"aux_classifiers": True} if name == "googlenet" else {}))


def test_small_inputs_work_with_global_pooling():
    assert models.resnet18(input_shape=(1, 1, 3), num_classes=2).output_shape == (None, 2)
    assert models.resnet50(input_shape=(64, 48, 3), include_top=False).output_shape == (
        None, 2, 2, 2048)


@pytest.mark.parametrize("pooling,shape", [(None, (None, 1, 1, 512)), ("avg", (None, 512)),
                                           ("max", (None, 512))])
def test_headless_models(pooling, shape):
    model = models.resnet18(input_shape=(32, 32, 3), include_top=False, pooling=pooling,
                            layers="keras")
    assert model.output_shape == shape
    vgg = models.vgg11(input_shape=(64, 64, 3), include_top=False, pooling=pooling,
                       layers="keras")
    assert vgg.output_shape[-1] == 512


def test_classifier_activation_and_options():
    model = models.resnet20(input_shape=(8, 8, 3), classifier_activation=None)
    assert model.get_layer("fc").activation.__name__ == "linear"
    v2 = models.resnet18(input_shape=(16, 16, 3), preactivation=True, layers="keras")
    assert v2.get_layer("conv2_1").preactivation and v2.get_layer("post_bn") is not None
    b = models.resnet20(input_shape=(8, 8, 3), shortcut="auto", layers="keras")
    assert b.count_params() > models.resnet20(input_shape=(8, 8, 3), layers="keras").count_params()
    torch_style = models.resnet50(stride_on="3x3", input_shape=(32, 32, 3), layers="keras")
    assert torch_style.get_layer("conv3_1").stride_on == "3x3"


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_shape=(32, 32)), "input_shape"), (dict(num_classes=0), "num_classes=0"),
    (dict(pooling="sum"), "pooling='sum'"), (dict(include_top="yes"), "include_top='yes'"),
    (dict(layers="torch"), "layers='torch'"), (dict(data_format="NCHW"), "data_format='NCHW'"),
    (dict(input_shape=(32, 32, None)), "channels"),
    (dict(input_shape=(None, 32, 32), data_format="channels_first"), "channels"),
])
def test_invalid_builder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.resnet18(**kwargs)
