"""The builders' per-stage arguments (used by the hypermodels): defaults reproduce the papers,
other layouts follow the layer tables, bad values are named."""

import keras
import pytest

from keras_cnn_ext import layers, models
from keras_cnn_ext.models import lenet
from keras_cnn_ext.models.resnet import CIFAR_RESNET_WIDTHS, resnet_config
from keras_cnn_ext.models.vgg import VGG_CONFIGS, vgg_config


def _shapes(model):
    return {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}


def test_default_tables_are_the_papers():
    assert lenet.lenet_config() == (lenet.LENET5_CONFIG, lenet.LENET5_DENSE)
    assert vgg_config(VGG_CONFIGS["A"]["stages"])[:2] == (
        ("conv1_1", "conv", 64, 3, 1, 1), ("pool1", "pool", None, 2, 2, 0))
    rows = resnet_config(CIFAR_RESNET_WIDTHS, (3, 3, 3))
    assert [r[0] for r in rows[:4]] == ["conv2_1", "conv2_2", "conv2_3", "conv3_1"]
    assert [r[4] for r in rows] == [1, 1, 1, 2, 1, 1, 2, 1, 1]


def test_lenet_with_three_stages_kernels_and_strides():
    model = models.lenet5(input_shape=(32, 32, 1), filters=(4, 8, 16), kernel_sizes=(3, 5, 3),
                          strides=(2, 1, 1), paddings=("same", "same", 0), dense_units=(32,),
                          layers="keras")
    shapes = _shapes(model)
    assert shapes["c1"] == (16, 16, 4) and shapes["s2"] == (8, 8, 4)
    assert shapes["c3"] == (8, 8, 8) and shapes["s4"] == (4, 4, 8)
    assert shapes["c5"] == (2, 2, 16) and shapes["s6"] == (1, 1, 16)
    assert shapes["c7"] == (32,) and shapes["output"] == (10,)
    with pytest.raises(ValueError, match=r"Received: kernel_sizes=\(3, 5\)"):
        models.lenet5(filters=(4, 8, 16), kernel_sizes=(3, 5))


def test_vgg_custom_layout_and_cifar_resnet():
    model = models.vgg(((3,), (5, 1)), input_shape=(16, 16, 3), num_classes=4,
                       filters=(8, 16), strides=(2, 1), dense_units=(32,), layers="keras")
    shapes = _shapes(model)
    assert shapes["conv1_1"] == (8, 8, 8) and shapes["pool1"] == (4, 4, 8)
    assert shapes["conv2_2"] == (4, 4, 16) and shapes["fc6"] == (32,)
    assert shapes["fc7"] == (4,) and model.name == "vgg"
    with pytest.raises(ValueError, match="Received: config=\\(\\(\\),\\)"):
        models.vgg(((),))
    assert (models.cifar_resnet(layers="keras").count_params()
            == models.resnet20(layers="keras").count_params())
    net = models.cifar_resnet(depths=(1, 2), filters=(8, 16), strides=(2, 1), kernel_sizes=5,
                              stem_kernel=5, stem_stride=2, input_shape=(16, 16, 3),
                              shortcut="projection", layers="keras")
    shapes = _shapes(net)
    assert shapes["conv1"] == (8, 8, 16) and shapes["conv2_1"] == (4, 4, 8)
    assert shapes["conv3_2"] == (4, 4, 16) and "conv3_3" not in shapes
    assert net.get_layer("conv3_1").kernel_size == 5


def test_residual_block_kernel_size_round_trip():
    block = layers.ResidualBlock(8, kernel_size=5, layers="keras")
    assert block.compute_output_shape((None, 9, 9, 8)) == (None, 9, 9, 8)
    again = layers.ResidualBlock.from_config(block.get_config())
    assert again.kernel_size == 5
    block.build((None, 9, 9, 8))
    assert tuple(block.convs[0][-1].kernel.shape) == (5, 5, 8, 8)
    with pytest.raises(ValueError, match="Received: kernel_size=0"):
        layers.ResidualBlock(8, kernel_size=0)
    keras.backend.clear_session()
