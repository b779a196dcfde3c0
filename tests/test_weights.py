"""Bringing torchvision weights in: same logits as torchvision, strict loading, the layout rules.

torchvision's models are built with ``weights=None`` (nothing downloads) and their batch-norm
statistics and affine parameters randomised (tests/torchvision_weights.py): at their initial
values (zeros, ones) a wrong mapping of them would still pass. The ResNet family here; VGG,
AlexNet and GoogLeNet in test_weights_torchvision.py.
"""

import sys

import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext.models import weights as kw

import torch_peer
import torchvision_weights as tw
from torchvision_weights import HW


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_same_logits_pth_and_safetensors(name, tmp_path):
    tv_model = tw.torchvision_model(name)
    x = tw.probe()
    theirs = tw.torch_logits(tv_model, x)
    pth = tw.save_pth(tv_model, tmp_path / f"{name}.pth")
    st = tw.save_safetensors(tv_model, tmp_path / f"{name}.safetensors")
    ours = kce.models.get_model(name, input_shape=(HW, HW, 3), weights=str(pth),
                                variant="torchvision", classifier_activation=None)
    # the same architecture: torchvision's parameter count exactly
    trainable = sum(int(np.prod(v.shape)) for v in ours.trainable_weights)
    assert trainable == sum(p.numel() for p in tv_model.parameters())
    tw.assert_same_logits(tw.our_logits(ours, x), theirs)
    ours_st = kce.models.get_model(name, input_shape=(HW, HW, 3), weights=st,
                                   variant="torchvision", classifier_activation=None)
    np.testing.assert_array_equal(tw.our_logits(ours_st, x), tw.our_logits(ours, x))


def test_paper_variant_differs_where_the_paper_does(tmp_path):
    # The v1 bottleneck (stride on the 1x1) has the same shapes: loading is refused rather
    # than silently giving other logits.
    with pytest.raises(ValueError, match="variant"):
        kce.models.resnet50(input_shape=(HW, HW, 3), weights={"fc.bias": np.zeros(1000)})
    with pytest.raises(ValueError, match="stride_on"):
        kce.models.resnet50(input_shape=(HW, HW, 3), variant="torchvision", stride_on="1x1")


def test_checkpoint_dict_and_keras_layers(tmp_path):
    torch = torch_peer.torch()
    tv_model = tw.torchvision_model("resnet18", seed=3)
    x = tw.probe(4)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": tv_model.state_dict()}, path)
    ours = kce.models.resnet18(input_shape=(HW, HW, 3), weights=path, variant="torchvision",
                               classifier_activation=None, layers="keras")
    tw.assert_same_logits(tw.our_logits(ours, x), tw.torch_logits(tv_model, x))


def test_mapping_source_and_strict_errors_name_the_keys():
    tv_model = tw.torchvision_model("resnet18", seed=5)
    state = tw.state_numpy(tv_model)
    model = kce.models.resnet18(input_shape=(HW, HW, 3), variant="torchvision",
                                classifier_activation=None)
    report = kw.load_weights(model, state)
    assert report == kw.LoadReport([], [], [])
    x = tw.probe(6)
    tw.assert_same_logits(tw.our_logits(model, x), tw.torch_logits(tv_model, x))

    bad = dict(state)
    dropped = bad.pop("layer3.1.bn2.running_var")
    bad["layer9.0.conv1.weight"] = dropped
    fresh = kce.models.resnet18(input_shape=(HW, HW, 3), variant="torchvision")
    before = [v.numpy() for v in fresh.weights]
    with pytest.raises(ValueError) as error:
        kw.load_weights(fresh, bad)
    message = str(error.value)
    assert "Missing key(s) (1): layer3.1.bn2.running_var" in message
    assert "Unexpected key(s) (1): layer9.0.conv1.weight" in message
    # nothing assigned on an error
    for old, var in zip(before, fresh.weights):
        np.testing.assert_array_equal(old, var.numpy())
    # strict=False loads the rest and returns both lists
    report = kw.load_weights(fresh, bad, strict=False)
    assert report.missing == ["layer3.1.bn2.running_var"]
    assert report.unexpected == ["layer9.0.conv1.weight"]
    layer = fresh.get_layer("conv4_2")
    np.testing.assert_array_equal(layer.norms[1].moving_mean.numpy(),
                                  state["layer3.1.bn2.running_mean"])
    # a wrong shape is always an error, naming the key and both shapes
    bad = dict(state)
    bad["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:, :, :1, :1]
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight: source \(1, 1, 64, 64\)"):
        kw.load_weights(fresh, bad, strict=False)


def test_other_num_classes_loads_the_backbone_and_says_so():
    tv_model = tw.torchvision_model("resnet18", seed=7)
    state = tw.state_numpy(tv_model)
    with pytest.warns(UserWarning, match="fc.weight, fc.bias"):
        model = kce.models.resnet18(input_shape=(HW, HW, 3), variant="torchvision",
                                    weights=state, num_classes=10, classifier_activation=None)
    assert model.output_shape == (None, 10)
    # the backbone is torchvision's: equal pooled features
    torch = torch_peer.torch()
    x = tw.probe(8)
    tv_model.fc = torch.nn.Identity()
    features = kce.models.resnet18(input_shape=(HW, HW, 3), variant="torchvision",
                                   include_top=False, pooling="avg")
    with pytest.warns(UserWarning, match="classifier"):
        report = kw.load_weights(features, state)
    assert report.skipped == ["fc.weight", "fc.bias"] and not report.missing
    tw.assert_same_logits(tw.our_logits(features, x), tw.torch_logits(tv_model, x))
    np.testing.assert_array_equal(model.get_layer("conv5_2").convs[1][0].kernel.numpy(),
                                  features.get_layer("conv5_2").convs[1][0].kernel.numpy())


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ImportError, match="pip install torch"):
        kw.read_source(path)


def test_bad_sources():
    with pytest.raises(ValueError, match="Expected a path ending in"):
        kw.read_source("weights.h5x")
    with pytest.raises(ValueError, match="existing file"):
        kw.read_source("/nonexistent/w.safetensors")
    with pytest.raises(TypeError, match="Invalid value for argument `weights`"):
        kw.read_source(42)
    assert set(kw.read_source({"module.fc.bias": np.ones(2)})) == {"fc.bias"}


def test_flatten_order_rule():
    # PyTorch: Linear on x.flatten() of a (C, H, W) map; ours: Dense on the (H, W, C) flatten.
    rng = np.random.default_rng(0)
    c, h, w, out = 3, 2, 4, 5
    chw = rng.standard_normal((c, h, w))
    weight = rng.standard_normal((out, c * h * w))
    theirs = weight @ chw.reshape(-1)
    ours = np.transpose(chw, (1, 2, 0)).reshape(-1) @ kw.dense_kernel(weight, (c, h, w))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # without the rule the two differ (the test can fail)
    assert not np.allclose(np.transpose(chw, (1, 2, 0)).reshape(-1) @ weight.T, theirs)
    with pytest.raises(ValueError, match="features"):
        kw.dense_kernel(weight, (c, h, w + 1))


def test_conv_kernel_rule_matches_torch():
    torch = torch_peer.torch()
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)  # groups=2 on 4 channels
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                                        padding=1, groups=2).numpy()
    layer = kce.layers.CrossCorrelation2D(4, 3, padding=1, groups=2, use_bias=False)
    layer.build((None, 6, 6, 4))
    layer.kernel.assign(kw.conv_kernel(weight))
    ours = np.asarray(layer(np.transpose(x, (0, 2, 3, 1))))
    np.testing.assert_allclose(np.transpose(ours, (0, 3, 1, 2)), theirs, atol=1e-5)


def test_torchvision_resnext_same_logits(tmp_path):
    tv_model = tw.torchvision_model("resnext50_32x4d", seed=9)
    x = tw.probe(10)
    path = tw.save_safetensors(tv_model, tmp_path / "resnext.safetensors")
    ours = kce.models.get_model("resnext50_32x4d", input_shape=(HW, HW, 3), weights=path,
                                variant="torchvision", classifier_activation=None)
    assert ours.get_layer("conv3_1").convs[1][0].groups == 32
    tw.assert_same_logits(tw.our_logits(ours, x), tw.torch_logits(tv_model, x))


@pytest.mark.parametrize("name", ["wide_resnet50_2"])
def test_torchvision_parameter_counts(name):
    torch = torch_peer.torch()
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        tv_model = getattr(torch_peer.torchvision().models, name)(weights=None)
    ours = kce.models.get_model(name, input_shape=(HW, HW, 3), layers="keras")
    trainable = sum(int(np.prod(v.shape)) for v in ours.trainable_weights)
    assert trainable == sum(p.numel() for p in tv_model.parameters())


def test_channels_first_model_takes_the_same_weights_and_nchw_inputs():
    tv_model = tw.torchvision_model("resnet18", seed=11)
    x = tw.probe(12)
    model = kce.models.resnet18(input_shape=(3, HW, HW), data_format="channels_first",
                                variant="torchvision", weights=tw.state_numpy(tv_model),
                                classifier_activation=None)
    tw.assert_same_logits(np.asarray(model(x, training=False)), tw.torch_logits(tv_model, x))


def test_grouped_bottleneck_config_round_trip():
    from keras_cnn_ext.layers.residual import BottleneckBlock

    block = BottleneckBlock(64, strides=2, groups=32, width_per_group=4, stride_on="3x3",
                            layers="keras")
    again = BottleneckBlock.from_config(block.get_config())
    assert (again.groups, again.width_per_group, again.inner_width) == (32, 4, 128)
    assert again.compute_output_shape((None, 16, 16, 256)) == (None, 8, 8, 256)


# the rest of torchvision's ResNet family (ResNet-18/50 and ResNeXt-50 above), from .pth and
# .safetensors, at 32x32 (the arithmetic per block is the same at 224): every kind of block and
# stage table once — basic blocks at 34, the deepest bottleneck table (152), the 64x4d groups,
# the doubled width. ResNet-101, ResNeXt-101 32x8d and Wide ResNet-101 are rows of the same
# tables with 45-127M parameters each (a minute of CI together for no new path); their
# parameter counts are torchvision's (test_models.py::test_paper_parameter_counts).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet34", "resnet152", "resnext101_64x4d", "wide_resnet50_2"])
def test_torchvision_resnet_family_same_logits(name, tmp_path):
    tv_model = tw.torchvision_model(name, num_classes=10, seed=13)
    x = tw.probe(14, hw=32)
    theirs = tw.torch_logits(tv_model, x)
    count = sum(p.numel() for p in tv_model.parameters())
    pth = tw.save_pth(tv_model, tmp_path / f"{name}.pth")
    st = tw.save_safetensors(tv_model, tmp_path / f"{name}.safetensors")
    del tv_model
    ours = kce.models.get_model(name, input_shape=(32, 32, 3), num_classes=10, weights=pth,
                                variant="torchvision", classifier_activation=None)
    assert tw.trainable_count(ours) == count
    from_pth = tw.our_logits(ours, x)
    tw.assert_same_logits(from_pth, theirs)
    for variable in ours.weights:  # the .safetensors file into the same model: all again
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert kw.load_weights(ours, st) == kw.LoadReport([], [], [])
    np.testing.assert_array_equal(tw.our_logits(ours, x), from_pth)
