"""keras_cnn_ext.analysis: parameters, MACs, receptive fields."""

import keras
import pytest

from keras_cnn_ext import analysis, models
from keras_cnn_ext.layers.inception import InceptionModule
from keras_cnn_ext.layers.residual import ResidualBlock


# every test ends with a fresh Keras session (conftest)
pytestmark = pytest.mark.usefixtures("cleared_keras_session")


@pytest.mark.parametrize("layers", ["textbook", "keras"])
def test_two_3x3_convolutions_see_5x5(layers):
    from keras_cnn_ext.layers.factory import conv2d_layers
    inputs = keras.Input((7, 7, 1))
    x = inputs
    for i in range(2):
        for layer in conv2d_layers(layers, 1, 3, name=f"c{i}"):
            x = layer(x)
    rows = analysis.summarize(keras.Model(inputs, x))
    assert [r.receptive_field for r in rows] == [(3, 3), (5, 5)]
    assert [r.jump for r in rows] == [(1, 1), (1, 1)]
    assert [r.macs for r in rows] == [5 * 5 * 9, 3 * 3 * 9]
    assert [r.params for r in rows] == [10, 10]


def test_lenet5_rows():
    rows = analysis.summarize(models.lenet5())
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows] == ["c1", "s2", "c3", "s4", "flatten", "c5", "f6", "output"]
    # R_n = R_{n-1} + (k_n - 1) j_{n-1}, j_n = j_{n-1} s_n
    assert [by_name[n].receptive_field[0] for n in ("c1", "s2", "c3", "s4", "flatten")] == [
        5, 6, 14, 16, 32]
    assert [by_name[n].jump[0] for n in ("c1", "s2", "c3", "s4")] == [1, 2, 2, 4]
    assert by_name["c1"].macs == 28 * 28 * 6 * 25 and by_name["c3"].macs == 10 * 10 * 16 * 150
    assert analysis.total_macs(models.lenet5()) == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert sum(r.params for r in rows) == 61_706
    assert by_name["s4"].output_shape == (None, 5, 5, 16)


PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6,
               "resnet152": 11.3}


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_resnet_macs_match_the_paper(name):
    model = models.get_model(name, layers="keras")
    rows = analysis.summarize(model)
    macs = sum(r.macs for r in rows)
    assert abs(macs / 1e9 - PAPER_GMACS[name]) / PAPER_GMACS[name] < 0.05
    assert sum(r.params for r in rows) == model.count_params()


def test_bottleneck_stride_placement_changes_macs_not_params():
    v1 = models.resnet50(input_shape=(64, 64, 3), layers="keras")
    v15 = models.resnet50(input_shape=(64, 64, 3), layers="keras", stride_on="3x3")
    assert v1.count_params() == v15.count_params()
    assert analysis.total_macs(v15) > analysis.total_macs(v1)


def test_residual_and_inception_blocks():
    inputs = keras.Input((16, 16, 8))
    x = ResidualBlock(8, name="res")(inputs)                  # 3x3, 3x3: RF 5
    x = ResidualBlock(16, strides=2, name="down")(x)          # 3x3/2, 3x3: +2, +2*2
    x = InceptionModule(4, 4, 4, 2, 4, 4, name="incep")(x)    # widest branch 5x5 at jump 2
    rows = analysis.summarize(keras.Model(inputs, x))
    assert [r.receptive_field for r in rows] == [(5, 5), (11, 11), (19, 19)]
    assert [r.jump for r in rows] == [(1, 1), (2, 2), (2, 2)]
    assert rows[0].macs == 2 * 16 * 16 * 9 * 8 * 8
    assert rows[1].macs == 8 * 8 * (9 * 8 * 16 + 9 * 16 * 16 + 8 * 16)  # + 1x1 projection
    assert rows[2].macs == 8 * 8 * (16 * (4 + 4 + 2 + 4) + 9 * 4 * 4 + 25 * 2 * 4)


def test_multi_branch_takes_the_largest_field():
    inputs = keras.Input((9, 9, 1))
    a = keras.layers.Conv2D(2, 1, name="a")(inputs)
    b = keras.layers.Conv2D(2, 5, padding="same", name="b")(inputs)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    rows = {r.name: r for r in analysis.summarize(keras.Model(inputs, x))}
    assert rows["add"].receptive_field == (5, 5)
    assert rows["pool"].receptive_field == (6, 6) and rows["pool"].jump == (2, 2)
    assert rows["gap"].receptive_field == (6 + 3 * 2, 6 + 3 * 2)


def test_sequential_shared_layers_and_table():
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, name="c"),
                              keras.layers.Flatten(name="f"), keras.layers.Dense(4, name="d")])
    rows = analysis.summarize(model)
    assert [r.macs for r in rows] == [4 * 4 * 18 * 3, 0, 48 * 4]
    shared = keras.layers.Dense(3, name="shared")
    inputs = keras.Input((3,))
    out = shared(shared(inputs))
    rows = analysis.summarize(keras.Model(inputs, out))
    assert [r.params for r in rows] == [12, 0] and [r.macs for r in rows] == [9, 9]
    table = analysis.format_table(analysis.summarize(models.resnet20(input_shape=(8, 8, 3))))
    assert "conv2_1" in table and "ResidualBlock" in table
    assert table.splitlines()[-1].split()[1] == f"{models.resnet20().count_params():,}"
