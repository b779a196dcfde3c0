"""torchvision's VGG (with and without batch norm), AlexNet and GoogLeNet weights: the same
logits as torchvision from a .pth and a .safetensors file, torchvision's parameter counts,
strict errors naming the keys, another number of classes, GoogLeNet's auxiliary heads.

Small inputs keep the suite cheap, chosen so that the map before the classifier is not one
cell (a 1x1 map pooled to 7x7 is constant, and a wrong flatten order would pass): VGG at
64x64 (2x2 -> 7x7), AlexNet at 95x95 (2x2 -> 6x6), GoogLeNet at 64x64 (its auxiliary heads'
4x4 map is the inception (4a) / (4d) map itself). torchvision's GoogLeNet is built as
``googlenet(weights=None)`` builds it: ``aux_logits=True`` and ``transform_input=False``.
"""

import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext.models import weights as kw

import torch_peer
import torchvision_weights as tw

VGG = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")
INPUT_HW = dict({name: 64 for name in VGG}, alexnet=95, googlenet=64)
# torchvision's own kwargs: GoogLeNet's initialisation stated (its default warns)
TV_KWARGS = {"googlenet": dict(init_weights=True)}
# ours: GoogLeNet with torchvision's auxiliary heads, which its weights=None state dict has
OUR_KWARGS = {"googlenet": dict(aux_classifiers=True)}

pytestmark = pytest.mark.usefixtures("cleared_keras_session")


def _main(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


# VGG-B (vgg13, vgg13_bn) is a row of the same config table between A and D, mapped by the
# same plan code, and costs a 133M-parameter round trip for no new path: its parameter counts
# are checked in test_models.py. VGG-D (vgg16, the one people port) and E keep the check; the
# .safetensors half reads the same keys as the .pth one, so it runs once per kind of network.
SAME_LOGITS = [n for n in VGG + ("alexnet", "googlenet") if not n.startswith("vgg13")]
SAFETENSORS_TOO = ("vgg11", "vgg11_bn", "alexnet", "googlenet")


@pytest.mark.parametrize("name", SAME_LOGITS)
def test_torchvision_same_logits_pth_and_safetensors(name, tmp_path):
    hw = INPUT_HW[name]
    tv_model = tw.torchvision_model(name, **TV_KWARGS.get(name, {}))
    x = tw.probe(hw=hw)
    theirs = tw.torch_logits(tv_model, x)
    count = sum(p.numel() for p in tv_model.parameters())
    pth = tw.save_pth(tv_model, tmp_path / f"{name}.pth")
    st = (tw.save_safetensors(tv_model, tmp_path / f"{name}.safetensors")
          if name in SAFETENSORS_TOO else None)
    del tv_model
    ours = kce.models.get_model(name, input_shape=(hw, hw, 3), weights=str(pth),
                                variant="torchvision", classifier_activation=None,
                                **OUR_KWARGS.get(name, {}))
    assert tw.trainable_count(ours) == count  # torchvision's architecture exactly
    from_pth = tw.our_logits(ours, x) if name != "googlenet" else np.asarray(
        _main(ours(np.transpose(x, (0, 2, 3, 1)), training=False)))
    tw.assert_same_logits(from_pth, theirs)
    if st is None:
        return
    # the .safetensors file into the same model: every weight again, the same logits
    for variable in ours.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert kw.load_weights(ours, st) == kw.LoadReport([], [], [])
    again = _main(ours(np.transpose(x, (0, 2, 3, 1)), training=False))
    np.testing.assert_array_equal(np.asarray(again), from_pth)


@pytest.fixture(scope="module")
def googlenet_source():
    """torchvision's GoogLeNet (weights=None: aux_logits=True, transform_input=False)."""
    tv_model = tw.torchvision_model("googlenet", seed=3, init_weights=True)
    assert tv_model.aux_logits and not tv_model.transform_input
    return tv_model, tw.state_numpy(tv_model)


def test_googlenet_aux_heads_are_torchvisions(googlenet_source):
    torch = torch_peer.torch()
    tv_model, state = googlenet_source
    x = tw.probe(4, hw=64)
    captured = {}
    hooks = [getattr(tv_model, f"inception{n}").register_forward_hook(
        lambda module, args, out, n=n: captured.__setitem__(n, out)) for n in ("4a", "4d")]
    try:
        theirs = tw.torch_logits(tv_model, x)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        aux = [tv_model.aux1(captured["4a"]).numpy(), tv_model.aux2(captured["4d"]).numpy()]
    ours = kce.models.googlenet(input_shape=(64, 64, 3), variant="torchvision",
                                aux_classifiers=True, weights=state, classifier_activation=None)
    outputs = [np.asarray(o) for o in ours(np.transpose(x, (0, 2, 3, 1)), training=False)]
    for mine, reference in zip(outputs, [theirs] + aux):
        tw.assert_same_logits(mine, reference)


def test_googlenet_without_aux_heads_skips_them_and_says_so(googlenet_source):
    tv_model, state = googlenet_source
    model = kce.models.googlenet(input_shape=(64, 64, 3), variant="torchvision",
                                 classifier_activation=None, layers="keras")
    with pytest.warns(UserWarning, match=r"head\(s\) aux1, aux2 \(20 tensors left out"):
        report = kw.load_weights(model, state)
    assert not report.missing and not report.unexpected
    assert sorted(report.skipped) == sorted(k for k in state if k.startswith(("aux1.", "aux2.")))
    x = tw.probe(5, hw=64)
    tw.assert_same_logits(tw.our_logits(model, x), tw.torch_logits(tv_model, x))


def test_googlenet_strict_errors_name_the_keys_and_other_classes_skip_the_head(
        googlenet_source):
    tv_model, state = googlenet_source
    bad = dict(state)
    bad["inception4b.branch3.1.bn.bias_typo"] = bad.pop("inception4b.branch3.1.bn.bias")
    model = kce.models.googlenet(input_shape=(64, 64, 3), variant="torchvision",
                                 aux_classifiers=True)
    before = [v.numpy() for v in model.weights]
    with pytest.raises(ValueError) as error:
        kw.load_weights(model, bad)
    message = str(error.value)
    assert "Missing key(s) (1): inception4b.branch3.1.bn.bias" in message
    assert "Unexpected key(s) (1): inception4b.branch3.1.bn.bias_typo" in message
    for old, var in zip(before, model.weights):  # nothing assigned
        np.testing.assert_array_equal(old, var.numpy())
    # the paper's architecture (a 5x5, no batch norm) is refused before anything loads
    with pytest.raises(ValueError, match=r"Expected 'torchvision' with these `weights`.*"
                       r"Received: variant='paper'"):
        kce.models.googlenet(input_shape=(64, 64, 3), weights=state)
    # 10 classes: everything but the classifiers (fc and the auxiliary fc2) loads
    with pytest.warns(UserWarning, match="fc.weight, fc.bias"):
        ten = kce.models.googlenet(input_shape=(64, 64, 3), variant="torchvision",
                                   aux_classifiers=True, num_classes=10, weights=state)
    assert [tuple(o.shape) for o in ten.outputs] == [(None, 10)] * 3
    np.testing.assert_array_equal(
        ten.get_layer("aux2_fc1").kernel.numpy(),
        kw.dense_kernel(state["aux2.fc1.weight"], (128, 4, 4)))


def test_alexnet_other_classes_and_no_top():
    tv_model = tw.torchvision_model("alexnet", seed=6)
    state = tw.state_numpy(tv_model)
    del tv_model
    with pytest.warns(UserWarning, match="classifier.6.weight, classifier.6.bias"):
        model = kce.models.alexnet(input_shape=(63, 63, 3), variant="torchvision",
                                   num_classes=10, weights=state)
    np.testing.assert_array_equal(model.get_layer("fc7").kernel.numpy(),
                                  state["classifier.4.weight"].T)
    features = kce.models.alexnet(input_shape=(63, 63, 3), variant="torchvision",
                                  include_top=False, pooling="avg")
    with pytest.warns(UserWarning, match="classifier"):
        report = kw.load_weights(features, state)
    assert sorted(report.skipped) == sorted(k for k in state if k.startswith("classifier."))
    assert not report.missing and not report.unexpected
    # a missing and an unexpected key, named (strict=False reports them)
    bad = {("features.99.weight" if k == "features.8.weight" else k): v for k, v in state.items()}
    with pytest.raises(ValueError, match=r"Missing key\(s\) \(1\): features\.8\.weight; "
                       r"Unexpected key\(s\) \(1\): features\.99\.weight"):
        kw.load_weights(features, bad)


def test_variant_arguments_are_checked():
    bias = {"classifier.6.bias": np.zeros(1000)}
    with pytest.raises(ValueError, match=r"Expected 'torchvision' with these `weights`"):
        kce.models.vgg16(input_shape=(32, 32, 3), weights=bias)
    with pytest.raises(ValueError, match=r"Expected 'torchvision' with these `weights`"):
        kce.models.alexnet(weights=bias, variant="paper")
    for builder in (kce.models.vgg16_c, kce.models.vgg11_lrn):
        with pytest.raises(ValueError, match=r"Expected 'paper' for configuration .* "
                           r"Received: variant='torchvision'"):
            builder(variant="torchvision")
    with pytest.raises(ValueError, match=r"Received: variant='caffe'"):
        kce.models.vgg11(variant="caffe")
    with pytest.raises(ValueError, match=r"Received: filters=\(8, 8, 8, 8, 8\)"):
        kce.models.vgg11(variant="torchvision", filters=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match=r"Received: lrn=True"):
        kce.models.alexnet(variant="torchvision", lrn=True)
    with pytest.raises(ValueError, match=r"Received: use_batch_norm=False"):
        kce.models.googlenet(variant="torchvision", use_batch_norm=False)
    with pytest.raises(ValueError, match=r"Received: transform_input=True"):
        kce.models.googlenet(transform_input=True)
    with pytest.raises(ValueError, match=r"Received: batch_norm='yes'"):
        kce.models.vgg("A", batch_norm="yes")
    # weights for the torchvision VGG need its adaptive pooling before fc6
    with pytest.raises(ValueError, match="adaptive average pooling"):
        kw.load_weights(kce.models.vgg11(input_shape=(32, 32, 3), num_classes=2,
                                         layers="keras"), bias, family="vgg")


def test_googlenet_transform_input_is_torchvisions():
    # torchvision's trained GoogLeNet sets transform_input=True (and drops the aux heads)
    tv_model = tw.torchvision_model("googlenet", seed=8, init_weights=True,
                                    aux_logits=False, transform_input=True)
    x = tw.probe(9, hw=48)
    model = kce.models.googlenet(input_shape=(48, 48, 3), variant="torchvision",
                                 transform_input=True, weights=tw.state_numpy(tv_model),
                                 classifier_activation=None)
    tw.assert_same_logits(tw.our_logits(model, x), tw.torch_logits(tv_model, x))


def test_channels_first_vgg_bn_takes_the_same_weights():
    tv_model = tw.torchvision_model("vgg11_bn", seed=10)
    x = tw.probe(11, hw=64)
    model = kce.models.vgg11_bn(input_shape=(3, 64, 64), data_format="channels_first",
                                variant="torchvision", weights=tw.state_numpy(tv_model),
                                classifier_activation=None)
    tw.assert_same_logits(np.asarray(model(x, training=False)), tw.torch_logits(tv_model, x))
