"""Bringing keras.applications weights in: both file formats, same outputs, strict loading.

keras.applications' models are built with ``weights=None`` (nothing downloads) and their
convolution biases, batch-norm statistics and affine parameters randomised: at their initial
values (zero biases, zero means, unit variances) a wrong mapping of them, or a bias dropped
instead of folded, would still pass. The files are written here in both layouts: Keras 3's
``.weights.h5`` by Keras, the legacy ``.h5`` of the published files by `_save_published_h5`
(Keras 3 writes the legacy layout only through ``model.save("x.h5")``, under
``model_weights``, which is checked too).
"""

import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext.models import weights as kw


def _randomise(model, seed=0, kernels=False):
    """Random conv / dense biases and batch-norm parameters and statistics; `kernels`: also
    He-normal kernels (VGG has no batch norm to keep the scale)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            if kernels:
                fan_in = int(np.prod(layer.kernel.shape[:-1]))
                layer.kernel.assign(rng.standard_normal(layer.kernel.shape) * np.sqrt(2 / fan_in))
            if layer.use_bias:
                layer.bias.assign(rng.standard_normal(layer.bias.shape) * 0.2)
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.standard_normal(n) * 0.2)
            layer.moving_mean.assign(rng.standard_normal(n) * 0.2)
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
    return model


def _save_published_h5(model, path, chunks=1):
    """The layout of keras.applications' published files (Keras 2 ``save_weights("x.h5")``):
    root attributes ``layer_names`` (every layer, in order; split into ``layer_names0``, ...
    when `chunks` > 1, as Keras does past the HDF5 header limit), ``backend``,
    ``keras_version``; per layer a group with ``weight_names`` ``"<layer>/<var>:0"`` (the
    trainable variables, then the others), each the path of its dataset in the group."""
    names = [layer.name.encode("utf8") for layer in model.layers]
    with h5py.File(path, "w") as f:
        if chunks == 1:
            f.attrs["layer_names"] = names
        else:
            for i, part in enumerate(np.array_split(np.array(names), chunks)):
                f.attrs[f"layer_names{i}"] = list(part)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            weight_names = [f"{layer.name}/{v.name}:0".encode("utf8") for v in variables]
            group.attrs["weight_names"] = weight_names
            for name, v in zip(weight_names, variables):
                group.create_dataset(name.decode("utf8"), data=v.numpy())
    return path


def _expected_state(model):
    return {f"{layer.name}/{v.name}": v.numpy() for layer in model.layers
            for v in layer.trainable_weights + layer.non_trainable_weights}


def _assert_same_state(state, expected):
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def _assert_same_outputs(ours, theirs):
    scale = float(np.max(np.abs(theirs)))
    assert scale > 1e-3
    diff = float(np.max(np.abs(ours - theirs)))
    assert diff <= 1e-4 * scale, (diff, scale)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


def _probe(hw, seed=1):
    return np.random.default_rng(seed).standard_normal((2, hw, hw, 3)).astype(np.float32)


# ---------------------------------------------------------------- the readers, on a tiny model


def _tiny():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(5, 1, use_bias=False, name="c2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(3, name="d")(x)
    return _randomise(keras.Model(inputs, x, name="tiny"), kernels=True)


def test_readers_give_the_same_names_and_arrays_for_every_layout(tmp_path):
    model = _tiny()
    expected = _expected_state(model)
    assert sorted(expected) == ["bn/beta", "bn/gamma", "bn/moving_mean", "bn/moving_variance",
                                "c1/bias", "c1/kernel", "c2/kernel", "d/bias", "d/kernel"]
    model.save_weights(tmp_path / "tiny.weights.h5")  # layers/<class key>/vars/<i>
    model.save(tmp_path / "tiny_model.h5")  # legacy, under model_weights
    model.save(tmp_path / "tiny.keras")  # a zip holding model.weights.h5
    _save_published_h5(model, tmp_path / "published.h5")
    _save_published_h5(model, tmp_path / "chunked.hdf5", chunks=3)
    for name in ("tiny.weights.h5", "tiny_model.h5", "tiny.keras", "published.h5",
                 "chunked.hdf5"):
        _assert_same_state(kw.read_source(tmp_path / name), expected)
    # the Keras 3 file has no variable names: the class key and the index say them
    with h5py.File(tmp_path / "tiny.weights.h5", "r") as f:
        assert f["layers/batch_normalization/vars"].attrs["name"] == "bn"
        assert sorted(f["layers/batch_normalization/vars"]) == ["0", "1", "2", "3"]


def test_reader_names_unknown_weight_names_by_order(tmp_path):
    # the oldest published files (Keras 1) name the weights "block1_conv1_W_1:0"; Keras loads
    # by order, and so does the reader
    model = _tiny()
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            group = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}_{'Wb'[i] if i < 2 else i}_1:0".encode()
                     for i in range(len(variables))]
            group.attrs["weight_names"] = names
            for name, v in zip(names, variables):
                group.create_dataset(name.decode(), data=v.numpy())
    _assert_same_state(kw.read_source(path), _expected_state(model))


def test_bad_keras_files(tmp_path):
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="Invalid value for argument `weights`.*HDF5"):
        kw.read_source(not_h5)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("something")
    with pytest.raises(ValueError, match="Expected a Keras weight file"):
        kw.read_source(empty)
    archive = tmp_path / "x.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="model.weights.h5"):
        kw.read_source(archive)
    assert kw.source_variant(tmp_path / "a.weights.h5") == "keras"
    assert kw.source_variant({"conv1_conv/kernel": np.zeros(1)}) == "keras"
    assert kw.source_variant({"state_dict": {"conv1.weight": np.zeros(1)}}) == "torchvision"
    assert kw.source_variant("a.onnx") is None


def test_conv_bias_folds_exactly_into_the_batch_norm():
    # keras.applications: Conv2D(bias) -> BN; ours: Conv2D(no bias) -> BN, mean - bias
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    theirs = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(4, 3),
                               keras.layers.BatchNormalization(epsilon=1.001e-5)])
    _randomise(theirs, 4)
    conv, norm = theirs.layers
    ours = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(4, 3, use_bias=False),
                             keras.layers.BatchNormalization(epsilon=1.001e-5)])
    oconv, onorm = ours.layers
    oconv.kernel.assign(conv.kernel)
    for name in ("gamma", "beta", "moving_variance"):
        getattr(onorm, name).assign(getattr(norm, name))
    onorm.moving_mean.assign(kw.fold_conv_bias(norm.moving_mean.numpy(), conv.bias.numpy()))
    want = np.asarray(theirs(x, training=False))
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), want, atol=1e-5)
    # the bias matters: without the fold the outputs differ (the test can fail)
    onorm.moving_mean.assign(norm.moving_mean)
    assert np.max(np.abs(np.asarray(ours(x, training=False)) - want)) > 1e-2
    # in training the batch mean absorbs the bias: equal without any fold
    np.testing.assert_allclose(np.asarray(ours(x, training=True)),
                               np.asarray(theirs(x, training=True)), atol=1e-4)
    with pytest.raises(ValueError, match="cannot fold"):
        kw.fold_conv_bias(np.zeros(4), np.zeros(3))


# ---------------------------------------------------------------- ResNet50 / 101 / 152

RESNET_HW = 64


@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    """keras.applications' ResNet50, randomised, and its files in both layouts."""
    model = _randomise(keras.applications.ResNet50(
        weights=None, input_shape=(RESNET_HW, RESNET_HW, 3), classifier_activation=None))
    folder = tmp_path_factory.mktemp("keras_resnet50")
    model.save_weights(folder / "resnet50.weights.h5")
    _save_published_h5(model, folder / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    return model, folder / "resnet50_weights_tf_dim_ordering_tf_kernels.h5", (
        folder / "resnet50.weights.h5")


def test_keras_resnet50_same_outputs_from_both_formats(keras_resnet50):
    theirs_model, legacy, keras3 = keras_resnet50
    state = kw.read_source(legacy)
    _assert_same_state(kw.read_source(keras3), state)
    assert len(state) == 320 and "conv2_block1_0_conv/bias" in state
    x = _probe(RESNET_HW)
    theirs = np.asarray(theirs_model(x, training=False))
    ours = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3), variant="keras",
                               weights=legacy, classifier_activation=None)
    _assert_same_outputs(np.asarray(ours(x, training=False)), theirs)
    # the architecture's numbers: keras.applications' less the 53 folded conv biases
    block = ours.get_layer("conv3_1")
    assert (block.stride_on, block.batch_norm_epsilon, block.batch_norm_momentum) == (
        "1x1", 1.001e-5, 0.99)
    biases = sum(int(np.prod(layer.bias.shape)) for layer in theirs_model.layers
                 if isinstance(layer, keras.layers.Conv2D))
    assert ours.count_params() == theirs_model.count_params() - biases
    # the Keras 3 file, into stock Keras layers: the same outputs
    ours3 = kce.models.get_model("resnet50", input_shape=(RESNET_HW, RESNET_HW, 3),
                                 variant="keras", weights=keras3, classifier_activation=None,
                                 layers="keras")
    _assert_same_outputs(np.asarray(ours3(x, training=False)), theirs)


def test_keras_resnet_strict_errors_name_the_keys(keras_resnet50):
    _, legacy, _ = keras_resnet50
    state = kw.read_source(legacy)
    bad = dict(state)
    bad["conv9_block1_1_conv/kernel"] = bad.pop("conv4_block2_2_bn/moving_variance")
    del bad["conv3_block1_0_conv/bias"]  # a folded bias is required too
    model = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3), variant="keras")
    before = [v.numpy() for v in model.weights]
    with pytest.raises(ValueError) as error:
        kw.load_weights(model, bad)
    message = str(error.value)
    assert ("Missing key(s) (2): conv3_block1_0_conv/bias, conv4_block2_2_bn/moving_variance"
            in message)
    assert "Unexpected key(s) (1): conv9_block1_1_conv/kernel" in message
    for old, var in zip(before, model.weights):  # nothing assigned on an error
        np.testing.assert_array_equal(old, var.numpy())
    bad = dict(state)
    bad["conv1_conv/kernel"] = state["conv1_conv/kernel"][:3]
    with pytest.raises(ValueError, match=r"conv1_conv/kernel: source \(3, 7, 3, 64\)"):
        kw.load_weights(model, bad)
    # the paper variant (epsilon 1e-5) is refused, naming the variant to build
    paper = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3))
    with pytest.raises(ValueError, match="epsilon 1e-05; the source's is 1.001e-05.*'keras'"):
        kw.load_weights(paper, legacy)
    # and so is torchvision's (its v1.5 bottleneck has the same shapes)
    tv = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3), variant="torchvision")
    with pytest.raises(ValueError, match="variant='keras'"):
        kw.load_weights(tv, legacy, family="keras_resnet")


def test_keras_resnet_other_num_classes_and_no_top(keras_resnet50):
    theirs_model, legacy, keras3 = keras_resnet50
    with pytest.warns(UserWarning, match="predictions/kernel, predictions/bias"):
        model = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3), variant="keras",
                                    weights=keras3, num_classes=10)
    assert model.output_shape == (None, 10)
    features = kce.models.resnet50(input_shape=(RESNET_HW, RESNET_HW, 3), variant="keras",
                                   include_top=False, pooling="avg")
    with pytest.warns(UserWarning, match="classifier"):
        report = kw.load_weights(features, legacy)
    assert report == kw.LoadReport([], [], ["predictions/kernel", "predictions/bias"])
    pooled = keras.Model(theirs_model.input, theirs_model.get_layer("avg_pool").output)
    x = _probe(RESNET_HW, 2)
    _assert_same_outputs(np.asarray(features(x, training=False)),
                         np.asarray(pooled(x, training=False)))


def test_keras_variant_arguments():
    shape = dict(input_shape=(RESNET_HW, RESNET_HW, 3))
    with pytest.raises(ValueError, match=r"Expected 'keras' with these `weights`.*"
                                         r"Received: variant='paper'"):
        kce.models.resnet50(weights="resnet50.h5", **shape)
    with pytest.raises(ValueError, match="Received: variant='torchvision'"):
        kce.models.resnet50(weights="resnet50.weights.h5", variant="torchvision", **shape)
    with pytest.raises(ValueError, match=r"Expected 'torchvision'.*Received: variant='keras'"):
        kce.models.resnet50(weights="resnet50.pth", variant="keras", **shape)
    with pytest.raises(ValueError, match=r"Expected None or '1x1' with variant='keras'"):
        kce.models.resnet50(variant="keras", stride_on="3x3", **shape)
    with pytest.raises(ValueError, match="keras.applications has ResNet50"):
        kce.models.resnet18(variant="keras", **shape)
    with pytest.raises(ValueError, match="Received: variant='keras'"):
        kce.models.resnext50_32x4d(variant="keras", **shape)
    with pytest.raises(ValueError, match="Received: variant='tf'"):
        kce.models.resnet50(variant="tf", **shape)
    with pytest.raises(ValueError, match=r"'keras_resnet' or 'keras_vgg'.*googlenet"):
        kw.load_weights(kce.models.googlenet(**shape), {"conv1_conv/kernel": np.zeros(1)})


def test_keras_resnet101_same_outputs(tmp_path):
    theirs_model = _randomise(keras.applications.ResNet101(
        weights=None, input_shape=(RESNET_HW, RESNET_HW, 3), classifier_activation=None), 5)
    path = _save_published_h5(theirs_model, tmp_path / "resnet101.h5")
    ours = kce.models.resnet101(input_shape=(RESNET_HW, RESNET_HW, 3), variant="keras",
                                weights=path, classifier_activation=None, layers="keras")
    x = _probe(RESNET_HW, 6)
    _assert_same_outputs(np.asarray(ours(x, training=False)),
                         np.asarray(theirs_model(x, training=False)))


def test_keras_resnet152_plan_covers_the_file_names():
    # names and shapes only (ResNet152's outputs are ResNet50's and 101's blocks, more of them)
    theirs_model = keras.applications.ResNet152(weights=None, input_shape=(32, 32, 3))
    ours = kce.models.resnet152(input_shape=(32, 32, 3), variant="keras", layers="keras")
    entries, _ = kw.keras_resnet_plan(ours)
    shapes = {k: tuple(v.shape) for k, v in _expected_state(theirs_model).items()}
    assert sorted(e.key for e in entries) == sorted(shapes)
    for e in entries:
        if e.target is not None:
            assert tuple(e.target.shape) == shapes[e.key], e.key


# ---------------------------------------------------------------- VGG16 / VGG19

# VGG16 at 64x64: a 2x2x512 map before the flatten, whose order matters; VGG19 at the
# smallest input, 32x32 (1x1x512), for time
@pytest.mark.parametrize("name, hw", [("vgg16", 64), ("vgg19", 32)])
def test_keras_vgg_same_outputs_from_both_formats(name, hw, tmp_path):
    app = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}[name]
    theirs_model = _randomise(app(weights=None, input_shape=(hw, hw, 3),
                                  classifier_activation=None), 7, kernels=True)
    keras3 = tmp_path / f"{name}.weights.h5"
    theirs_model.save_weights(keras3)
    legacy = _save_published_h5(theirs_model, tmp_path / f"{name}.h5")
    _assert_same_state(kw.read_source(keras3), kw.read_source(legacy))
    x = _probe(hw, 8)
    theirs = np.asarray(theirs_model(x, training=False))
    for path in (legacy, keras3):
        ours = getattr(kce.models, name)(input_shape=(hw, hw, 3), classifier_activation=None)
        assert kw.load_weights(ours, path, family="keras_vgg") == kw.LoadReport([], [], [])
        _assert_same_outputs(np.asarray(ours(x, training=False)), theirs)
    # the family is read from the source's names and the model's
    ours = getattr(kce.models, name)(input_shape=(hw, hw, 3), num_classes=10)
    with pytest.warns(UserWarning, match="predictions/kernel, predictions/bias"):
        report = kw.load_weights(ours, keras3)
    assert report.skipped == ["predictions/kernel", "predictions/bias"]
    np.testing.assert_array_equal(ours.get_layer("fc7").kernel.numpy(),
                                  theirs_model.get_layer("fc2").kernel.numpy())


def test_keras_vgg_no_top_and_strict_errors(tmp_path):
    theirs_model = _randomise(keras.applications.VGG16(
        weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)), 9,
        kernels=True)
    path = tmp_path / "vgg16_notop.weights.h5"
    theirs_model.save_weights(path)
    ours = kce.models.vgg16(input_shape=(32, 32, 3), include_top=False, pooling="avg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a no-top file into a no-top model: nothing skipped
        assert kw.load_weights(ours, path) == kw.LoadReport([], [], [])
    x = _probe(32, 10)
    _assert_same_outputs(np.asarray(ours(x, training=False)),
                         np.asarray(theirs_model(x, training=False)))
    # into a model with a top, the dense layers are missing
    top = kce.models.vgg16(input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"Missing key\(s\) \(6\): fc1/kernel, fc1/bias"):
        kw.load_weights(top, path)
    bad = kw.read_source(path)
    bad["block6_conv1/kernel"] = bad.pop("block5_conv3/bias")
    with pytest.raises(ValueError, match=r"Missing key\(s\) \(1\): block5_conv3/bias; "
                                         r"Unexpected key\(s\) \(1\): block6_conv1/kernel"):
        kw.load_weights(ours, bad)
