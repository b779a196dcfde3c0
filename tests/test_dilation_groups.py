"""Dilation and groups (issue 16): PyTorch's `Conv2d` geometry in every tier.

Forward and both gradients of `reference`, `composite` (and `native` where the loaded library
has the attributes: `native.supports_dilation_groups()`) against
`torch.nn.functional.conv2d` in float64 on random geometries — dilation, groups (depthwise
included), strides, per-side padding, every padding mode (asymmetric / replicate / reflect
padding emulated by `F.pad` before a padding=0 conv), convolution mode, both data formats —
numerical gradients, the shared layer-test helper, the output-size formula, analysis, explain
and bad input.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
import torch_peer
from keras_cnn_ext import analysis, explain
from keras_cnn_ext.ops import composite, geometry, native, reference
from layer_test_helper import run_layer_test

TORCH_PAD_MODES = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect"}


def _tiers():
    tiers = ["reference", "composite"]
    if native.supports_dilation_groups():
        tiers.append("native")
    return tiers


def random_case(rng):
    """A random geometry: groups dividing C and F (a third of the cases depthwise), dilation
    and stride 1-3 per axis, per-side padding 0-2, an input the dilated kernel fits."""
    groups = int(rng.integers(1, 4))
    if rng.random() < 0.3:
        channels = groups
        filters = groups * int(rng.integers(1, 3))
    else:
        channels = groups * int(rng.integers(1, 3))
        filters = groups * int(rng.integers(1, 3))
    window = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilations = tuple(int(v) for v in rng.integers(1, 4, 2))
    strides = tuple(int(v) for v in rng.integers(1, 4, 2))
    span = geometry.effective_window(window, dilations)
    hw = tuple(int(e + rng.integers(0, 4)) for e in span)
    padding_mode = str(rng.choice(["zeros", "replicate", "reflect"]))
    pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(2))
    if padding_mode == "reflect":
        pads = tuple((min(a, s - 1), min(b, s - 1)) for (a, b), s in zip(pads, hw))
    return dict(x_shape=(2,) + hw + (channels,), kernel_shape=window + (channels // groups,
                                                                          filters),
                strides=strides, pads=pads, padding_mode=padding_mode, dilations=dilations,
                groups=groups, mode=str(rng.choice(["cross_correlation", "convolution"])),
                data_format=str(rng.choice(["channels_last", "channels_first"])))


def torch_corr2d(x, w, upstream, case):
    """PyTorch's forward, dL/dx and dL/dw of sum(y * upstream), all NHWC / HWIO float64."""
    torch = torch_peer.torch()
    functional = torch.nn.functional
    used = w[::-1, ::-1] if case["mode"] == "convolution" else w
    xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    wt = torch.tensor(np.ascontiguousarray(used)).permute(3, 2, 0, 1).contiguous()
    wt.requires_grad_()
    (top, bottom), (left, right) = case["pads"]
    xp = functional.pad(xt, (left, right, top, bottom),
                        mode=TORCH_PAD_MODES[case["padding_mode"]])
    y = functional.conv2d(xp, wt, stride=case["strides"], dilation=case["dilations"],
                          groups=case["groups"])
    (y * torch.tensor(upstream).permute(0, 3, 1, 2)).sum().backward()
    dw = wt.grad.permute(2, 3, 1, 0).numpy()
    if case["mode"] == "convolution":
        dw = dw[::-1, ::-1]
    return (y.detach().permute(0, 2, 3, 1).numpy(), xt.grad.permute(0, 2, 3, 1).numpy(), dw)


def _to(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def _from(x, data_format):
    return x if data_format == "channels_last" else np.transpose(x, (0, 2, 3, 1))


def run_tier(tier, x, w, upstream, case):
    """Forward and both gradients through `kce.ops.corr2d(implementation=tier)`, NHWC."""
    fmt = case["data_format"]
    xt, wt = tf.constant(_to(x, fmt)), tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch([xt, wt])
        y = kce.ops.corr2d(xt, wt, case["strides"], case["pads"],
                           padding_mode=case["padding_mode"], mode=case["mode"],
                           data_format=fmt, implementation=tier,
                           dilation_rate=case["dilations"], groups=case["groups"])
        loss = tf.reduce_sum(y * _to(upstream, fmt))
    dx, dw = tape.gradient(loss, [xt, wt])
    return _from(y.numpy(), fmt), _from(dx.numpy(), fmt), dw.numpy()


@pytest.mark.parametrize("tier", _tiers())
@pytest.mark.parametrize("seed", range(4))
def test_random_geometries_against_torch(tier, seed):
    rng = np.random.default_rng(1600 + seed)
    for _ in range(6 if tier != "reference" else 3):
        case = random_case(rng)
        x = rng.normal(size=case["x_shape"])
        w = rng.normal(size=case["kernel_shape"])
        y_ref = reference.corr2d(x, w, case["strides"], case["pads"], case["padding_mode"],
                                 case["mode"], "channels_last", case["dilations"],
                                 case["groups"])
        upstream = rng.normal(size=y_ref.shape)
        expected = torch_corr2d(x, w, upstream, case)
        got = run_tier(tier, x, w, upstream, case)
        for name, e, g in zip(("y", "dx", "dw"), expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, err_msg=f"{name} {case}")


def test_reference_gradient_against_torch(rng):
    """`reference.corr2d_grad` (the formulas with the dilated, rotated kernel per group)."""
    for _ in range(8):
        case = random_case(rng)
        x = rng.normal(size=case["x_shape"])
        w = rng.normal(size=case["kernel_shape"])
        y = reference.corr2d(x, w, case["strides"], case["pads"], case["padding_mode"],
                             case["mode"], "channels_last", case["dilations"], case["groups"])
        upstream = rng.normal(size=y.shape)
        dx, dw = reference.corr2d_grad(
            x, w, upstream, case["strides"], case["pads"], padding_mode=case["padding_mode"],
            mode=case["mode"], dilations=case["dilations"], groups=case["groups"])
        t_y, t_dx, t_dw = torch_corr2d(x, w, upstream, case)
        np.testing.assert_allclose(y, t_y, atol=1e-10)
        np.testing.assert_allclose(dx, t_dx, atol=1e-10)
        np.testing.assert_allclose(dw, t_dw, atol=1e-10)


@pytest.mark.parametrize("case", [
    dict(strides=(1, 1), dilations=(2, 2), groups=1, padding_mode="zeros"),
    dict(strides=(2, 2), dilations=(2, 2), groups=2, padding_mode="replicate"),
    dict(strides=(2, 1), dilations=(3, 2), groups=4, padding_mode="reflect"),
    dict(strides=(3, 2), dilations=(2, 3), groups=1, padding_mode="zeros"),
], ids=lambda c: f"s{c['strides']}-d{c['dilations']}-g{c['groups']}-{c['padding_mode']}")
@pytest.mark.parametrize("tier", ["composite"])
def test_numerical_gradient(case, tier, rng):
    x = rng.uniform(-1, 1, size=(1, 5, 5, 4))
    w = rng.uniform(-1, 1, size=(2, 2, 4 // case["groups"], 4))

    @tf.function  # traced once: the finite differences call it hundreds of times
    def fn(a, b):
        return kce.ops.corr2d(a, b, case["strides"], ((1, 0), (0, 1)),
                              padding_mode=case["padding_mode"], mode="convolution",
                              implementation=tier, dilation_rate=case["dilations"],
                              groups=case["groups"], data_format="channels_last")

    theoretical, numerical = tf.test.compute_gradient(fn, [x, w])
    for t, n in zip(theoretical, numerical):
        assert np.any(t != 0)
        np.testing.assert_allclose(t, n, atol=1e-6)


def test_unknown_spatial_sizes_use_the_dilated_kernel(rng):
    """Sizes unknown at trace time: the explicit dilated kernel, the same numbers."""
    x = rng.normal(size=(2, 9, 8, 4))
    w = rng.normal(size=(3, 2, 2, 6))
    pads = ((1, 0), (2, 1))
    y = reference.corr2d(x, w, (2, 1), pads, dilations=(3, 2), groups=2)
    upstream = rng.normal(size=y.shape)
    dx, dw = reference.corr2d_grad(x, w, upstream, (2, 1), pads, dilations=(3, 2), groups=2)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float64),
                                  tf.TensorSpec(w.shape, tf.float64),
                                  tf.TensorSpec((None, None, None, 6), tf.float64)])
    def run(a, b, u):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            out = composite.corr2d(a, b, (2, 1), pads, dilations=(3, 2), groups=2)
            loss = tf.reduce_sum(out * u)
        return (out,) + tuple(tape.gradient(loss, [a, b]))

    for got, expected in zip(run(x, w, upstream), (y, dx, dw)):
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)


def test_same_and_full_on_the_dilated_kernel():
    """'same' keeps the size at stride 1 with the textbook split of D*(M-1); 'full' pads
    D*(M-1) on each side (PyTorch's padding='same' / the transposed-conv size)."""
    x = np.arange(2 * 7 * 6 * 2, dtype="float64").reshape(2, 7, 6, 2)
    w = np.ones((3, 2, 1, 2))
    y = kce.ops.corr2d(x, w, 1, "same", dilation_rate=(2, 3), groups=2)
    assert y.shape == (2, 7, 6, 2)
    pads = geometry.same_pads((5, 4))
    np.testing.assert_allclose(y.numpy(), reference.corr2d(x, w, 1, pads, dilations=(2, 3),
                                                           groups=2))
    full = kce.ops.corr2d(x, w, 1, "full", dilation_rate=2, groups=2)
    assert full.shape == (2, 7 + 4, 6 + 2, 2)
    assert geometry.output_size((7, 6), (3, 2), 1, "full", dilation_rate=2) == (11, 8)
    assert geometry.output_size(56, 3, 2, 2, dilation_rate=2) == 28


def test_default_geometry_unchanged(rng):
    """dilation 1, groups 1 spelled out: the same numbers as the plain op, bit for bit."""
    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    w = rng.normal(size=(3, 3, 3, 4)).astype("float32")
    plain = kce.ops.corr2d(x, w, 2, 1, padding_mode="reflect").numpy()
    spelled = kce.ops.corr2d(x, w, 2, 1, padding_mode="reflect", dilation_rate=1,
                             groups=1).numpy()
    np.testing.assert_array_equal(plain, spelled)


# ----------------------------------------------------------------------------- layer
LAYER_CONFIGS = [
    dict(filters=4, kernel_size=3, dilation_rate=2, padding="same"),
    dict(filters=6, kernel_size=(3, 2), strides=2, dilation_rate=(2, 1), groups=3,
         padding=1, padding_mode="reflect", mode="convolution"),
    dict(filters=6, kernel_size=3, groups=3, padding=1, padding_mode="replicate",
         data_format="channels_first"),                      # depthwise, multiplier 2
]


@pytest.mark.parametrize("config", LAYER_CONFIGS,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_layer_helper(config, tmp_path):
    fmt = config.get("data_format", "channels_last")
    shape = (2, 9, 8, 3) if fmt == "channels_last" else (2, 3, 9, 8)

    def expected(x, weights):
        x = _from(x, fmt)
        y = reference.corr2d(x, weights[0], config.get("strides", 1), config["padding"],
                             config.get("padding_mode", "zeros"),
                             config.get("mode", "cross_correlation"), "channels_last",
                             config.get("dilation_rate", 1), config.get("groups", 1))
        return _to(y + weights[1], fmt)

    layer = run_layer_test(kce.layers.CrossCorrelation2D,
                           dict(config, bias_initializer="glorot_uniform"), shape, expected,
                           tmp_path=tmp_path)
    groups = config.get("groups", 1)
    kernel = geometry.normalize_tuple(config["kernel_size"], "kernel_size")
    assert layer.kernel.shape == kernel + (3 // groups, config["filters"])
    assert layer.count_params() == (np.prod(kernel) * 3 // groups + 1) * config["filters"]
    assert layer.get_config()["groups"] == groups


def test_factory_passes_dilation_and_groups():
    from keras_cnn_ext.layers import factory

    (textbook,) = factory.conv2d_layers("textbook", 8, 3, padding="same", dilation_rate=2,
                                        groups=4, data_format="channels_last")
    assert (textbook.dilation_rate, textbook.groups) == ((2, 2), 4)
    keras_layers = factory.conv2d_layers("keras", 8, 3, padding="same", dilation_rate=2,
                                         groups=4, data_format="channels_last")
    (stock,) = keras_layers
    assert (tuple(stock.dilation_rate), stock.groups, stock.padding) == ((2, 2), 4, "same")
    x = np.random.default_rng(0).normal(size=(1, 9, 9, 8)).astype("float32")
    textbook.build(x.shape)
    stock.build(x.shape)
    stock.set_weights(textbook.get_weights())
    np.testing.assert_allclose(textbook(x).numpy(), stock(x).numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- analysis
def test_analysis_macs_per_group_and_dilated_receptive_field():
    import keras

    inputs = keras.Input((16, 16, 8))
    x = kce.layers.CrossCorrelation2D(16, 3, padding="same", groups=4, name="g")(inputs)
    x = kce.layers.CrossCorrelation2D(16, 3, padding="same", dilation_rate=2, name="d")(x)
    rows = analysis.summarize(keras.Model(inputs, x))
    assert rows[0].macs == 16 * 16 * 3 * 3 * (8 // 4) * 16
    assert rows[1].macs == 16 * 16 * 3 * 3 * 16 * 16
    assert rows[0].receptive_field == (3, 3)
    assert rows[1].receptive_field == (3 + 4, 3 + 4)     # a dilated 3x3 spans 5
    assert (rows[0].groups, rows[1].dilation) == (4, (2, 2))
    table = analysis.format_table(rows)
    assert "dilation" in table and "groups" in table


def test_explain_dilation():
    result = explain.explain_corr2d(np.arange(25).reshape(5, 5), np.ones((2, 2)), dilation=2)
    np.testing.assert_array_equal(result.output,
                                  reference.corr2d(np.arange(25).reshape(5, 5),
                                                   np.ones((2, 2)), dilations=2))
    assert "dilation 2" in result.text
    assert "D(M-1)+1" in result.text.replace(" ", "")


# ----------------------------------------------------------------------------- bad input
X = np.ones((1, 6, 6, 4), "float32")


@pytest.mark.parametrize("value", [0, -1, (1, 0), 1.5, "2"])
def test_bad_dilation_rate(value):
    pattern = f"`dilation_rate`.*Received: dilation_rate={value!r}"
    with pytest.raises(ValueError, match=pattern.replace("(", r"\(").replace(")", r"\)")):
        kce.ops.corr2d(X, np.ones((3, 3, 4, 2), "float32"), dilation_rate=value)
    with pytest.raises(ValueError, match=r"`dilation_rate`"):
        kce.layers.CrossCorrelation2D(2, 3, dilation_rate=value)


@pytest.mark.parametrize("groups, filters", [(3, 6), (2, 3), (0, 4)])
def test_bad_groups(groups, filters):
    """Groups not dividing the channels (4) or the filters: the same words everywhere."""
    from keras_cnn_ext.layers import factory

    pattern = rf"Invalid value for argument `groups`\..*Received: groups={groups}"
    channels = 4 // groups if groups and 4 % groups == 0 else 1
    with pytest.raises(ValueError, match=pattern):
        kce.ops.corr2d(X, np.ones((3, 3, channels, filters), "float32"), groups=groups)
    with pytest.raises(ValueError, match=pattern):
        layer = kce.layers.CrossCorrelation2D(filters, 3, groups=groups)
        layer.build(X.shape)
    with pytest.raises(ValueError, match=pattern):
        factory.conv2d_layers("textbook", filters, 3, groups=groups)[0].build(X.shape)


def test_effective_kernel_too_large():
    pattern = r"`dilation_rate`.*D\*\(M-1\)\+1 = 7.*Received: dilation_rate=\(3, 3\)"
    with pytest.raises(ValueError, match=pattern):
        kce.ops.corr2d(X, np.ones((3, 3, 4, 2), "float32"), dilation_rate=3)
    with pytest.raises(ValueError, match=pattern):
        kce.layers.CrossCorrelation2D(2, 3, dilation_rate=3).build(X.shape)
    with pytest.raises(ValueError, match=pattern):
        reference.corr2d(X, np.ones((3, 3, 4, 2)), dilations=3)


def test_explicit_native_on_an_old_library():
    """Without the attributes, implementation='native' says why; 'auto' runs composite."""
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 4)).astype("float32")
    w = np.ones((3, 3, 2, 4), "float32")
    auto = kce.ops.corr2d(x, w, dilation_rate=2, groups=2)
    np.testing.assert_allclose(auto.numpy(), reference.corr2d(x, w, dilations=2, groups=2),
                               atol=1e-4)
    if native.available() and not native.supports_dilation_groups():
        with pytest.raises(RuntimeError, match="predates dilation and groups"):
            kce.ops.corr2d(x, w, dilation_rate=2, groups=2, implementation="native")
