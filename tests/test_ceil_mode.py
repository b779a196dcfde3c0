"""`ceil_mode` of the pooling ops and layers: PyTorch's output rounding in every tier.

PyTorch is the peer whose numbers the argument copies: every tier (reference, composite,
native) is checked against `torch.nn.functional.max_pool2d` / `avg_pool2d` in float64, forward
and gradient, on random geometries. Torch pads symmetrically by at most half the window and its
max pooling pads with -inf (our "ignore"); the other cases (asymmetric padding, the book's
zero-padded max) are the same pooling of an explicitly padded input (`F.pad` with 0 or -inf,
no torch padding), whose windows are ours; torch then keeps a last window that starts in the
padding, which ours drops, so its output is cropped to ours. The native op must be built
(as in CI); nothing here is skipped.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext import layers as L
from keras_cnn_ext.layers import factory
from keras_cnn_ext.ops import geometry, native, nn, reference
from layer_test_helper import run_layer_test
from torch_peer import torch

TIERS = ("reference", "composite", "native")
OPS = {"max": nn.max_pool2d, "mean": nn.mean_pool2d}


def _random_geometry(rng, symmetric):
    """(window, strides, pads, (H, W)) with each pad side < the window (and, symmetric, at
    most half of it, torch's limit); sizes from 1 (a 1x1 input can give 2 ceil columns)."""
    window = tuple(int(v) for v in rng.integers(1, 5, 2))
    strides = tuple(int(v) for v in rng.integers(1, 4, 2))
    if symmetric:
        pads = tuple((p, p) for p in (int(rng.integers(0, m // 2 + 1)) for m in window))
    else:
        pads = tuple(tuple(int(v) for v in rng.integers(0, m, 2)) for m in window)
    hw = tuple(max(int(rng.integers(1, 9)), m - sum(p)) for m, p in zip(window, pads))
    return window, strides, pads, hw


def _torch_pool(pool, x, window, strides, pads, padding_mode, ceil_mode, out_hw):
    """Torch's pooling of NCHW float64 `x` (a leaf tensor) cropped to our `out_hw`."""
    t = torch()
    F = t.nn.functional
    symmetric = all(p[0] == p[1] and 2 * p[0] <= m for p, m in zip(pads, window))
    if symmetric and (pool == "mean" or padding_mode == "ignore"):
        tp = (pads[0][0], pads[1][0])
        if pool == "max":
            y = F.max_pool2d(x, window, strides, tp, ceil_mode=ceil_mode)
        else:
            y = F.avg_pool2d(x, window, strides, tp, ceil_mode=ceil_mode,
                             count_include_pad=padding_mode == "zeros")
        assert tuple(y.shape[2:]) == tuple(out_hw)  # the output sizes agree exactly
        return y
    flat = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    if pool == "max":
        fill = float("-inf") if padding_mode == "ignore" else 0.0
        y = F.max_pool2d(F.pad(x, flat, value=fill), window, strides, ceil_mode=ceil_mode)
    elif padding_mode == "zeros":
        y = F.avg_pool2d(F.pad(x, flat), window, strides, ceil_mode=ceil_mode,
                         count_include_pad=True)
    else:  # the mean of the real cells: sum over real-cell count
        ones = t.ones_like(x)
        y = (F.avg_pool2d(F.pad(x, flat), window, strides, ceil_mode=ceil_mode)
             / F.avg_pool2d(F.pad(ones, flat), window, strides, ceil_mode=ceil_mode))
    assert y.shape[2] >= out_hw[0] and y.shape[3] >= out_hw[1]
    return y[:, :, :out_hw[0], :out_hw[1]]


def _ours(pool, tier, x_nchw, upstream, window, strides, pads, padding_mode, ceil_mode,
          data_format):
    """(y, dL/dx) of one tier in NCHW, L = sum(y * upstream)."""
    to = (0, 2, 3, 1) if data_format == "channels_last" else (0, 1, 2, 3)
    x = tf.constant(np.transpose(x_nchw, to))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = OPS[pool](x, window, strides, pads, padding_mode=padding_mode,
                      data_format=data_format, implementation=tier, ceil_mode=ceil_mode)
        g = np.transpose(upstream, to)
        loss = tf.reduce_sum(y * g)
    dx = tape.gradient(loss, x).numpy()
    back = (0, 3, 1, 2) if data_format == "channels_last" else (0, 1, 2, 3)
    return np.transpose(y.numpy(), back), np.transpose(dx, back)


def _cases(count, seed, symmetric):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        window, strides, pads, hw = _random_geometry(rng, symmetric)
        out.append(pytest.param(window, strides, pads, hw,
                                "channels_last" if i % 3 else "channels_first",
                                id=f"{i}-{window}-{strides}-{pads}-{hw}"))
    return out


def _check_against_torch(pool, padding_mode, window, strides, pads, hw, data_format,
                         ceil_mode=True):
    t = torch()
    rng = np.random.default_rng(abs(hash((window, strides, pads, hw))) % 2**32)
    x = rng.standard_normal((2, 3) + hw)
    out_hw = geometry.spatial_output_shape(hw, window, strides, pads, ceil_mode)
    upstream = rng.standard_normal((2, 3) + tuple(out_hw))
    tx = t.tensor(x, requires_grad=True)
    ty = _torch_pool(pool, tx, window, strides, pads, padding_mode, ceil_mode, out_hw)
    (ty * t.tensor(upstream)).sum().backward()
    expected_y, expected_dx = ty.detach().numpy(), tx.grad.numpy()
    for tier in TIERS:
        y, dx = _ours(pool, tier, x, upstream, window, strides, pads, padding_mode, ceil_mode,
                      data_format)
        np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12, err_msg=tier)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12, err_msg=tier)


@pytest.mark.parametrize("pool, padding_mode", [("max", "ignore"), ("mean", "zeros"),
                                                ("mean", "ignore")])
@pytest.mark.parametrize("window, strides, pads, hw, data_format",
                         _cases(10, 16, symmetric=True))
def test_every_tier_matches_torch_symmetric(pool, padding_mode, window, strides, pads, hw,
                                            data_format):
    _check_against_torch(pool, padding_mode, window, strides, pads, hw, data_format)


@pytest.mark.parametrize("pool, padding_mode", [("max", "zeros"), ("max", "ignore"),
                                                ("mean", "zeros"), ("mean", "ignore")])
@pytest.mark.parametrize("window, strides, pads, hw, data_format",
                         _cases(8, 61, symmetric=False))
def test_every_tier_matches_torch_per_side_padding(pool, padding_mode, window, strides, pads,
                                                   hw, data_format):
    _check_against_torch(pool, padding_mode, window, strides, pads, hw, data_format)


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_floor_mode_still_matches_torch(pool):
    _check_against_torch(pool, "ignore" if pool == "max" else "zeros", (3, 2), (2, 2),
                         ((1, 1), (1, 1)), (7, 6), "channels_last", ceil_mode=False)


def test_output_size_is_torchs_on_a_grid():
    """Every small (size, window, stride, pad) torch accepts: the same output size, the drop
    rule included (a 3-row input, window 2, stride 2, padding 1: 2 rows, not 3)."""
    F = torch().nn.functional
    dropped = 0
    for size in range(1, 8):
        for m in range(1, 5):
            for s in range(1, 5):
                for p in range(0, m // 2 + 1):
                    if size + 2 * p < m:
                        continue
                    x = torch().zeros(1, 1, size, 1)
                    rows = F.max_pool2d(x, (m, 1), (s, 1), (p, 0), ceil_mode=True).shape[2]
                    assert geometry.output_size(size, m, s, p, ceil_mode=True) == rows
                    naive = -(-(size + 2 * p - m) // s) + 1
                    dropped += naive != rows
    assert geometry.output_size(3, 2, 2, 1, ceil_mode=True) == 2
    assert dropped > 0


def _numerical_grad(fn, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (fn(up) - fn(down)) / (2 * eps)
    return g


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("pool, padding_mode", [("max", "zeros"), ("max", "ignore"),
                                                ("mean", "zeros"), ("mean", "ignore")])
def test_gradients_match_numerical_ones(tier, pool, padding_mode):
    rng = np.random.default_rng(3)
    # distinct values well apart, so that no max changes within eps
    x = (rng.permutation(2 * 5 * 4 * 2).reshape(2, 5, 4, 2) * 0.1 - 3.0).astype("float64")
    args = dict(pool_size=(2, 3), strides=(2, 2), padding=((1, 0), (0, 2)),
                padding_mode=padding_mode, data_format="channels_last", ceil_mode=True)
    w = rng.standard_normal(tuple(OPS[pool](x, implementation="reference", **args).shape))

    def loss(v):
        return float(np.sum(OPS[pool](v, implementation=tier, **args).numpy() * w))

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = tf.reduce_sum(OPS[pool](xt, implementation=tier, **args) * w)
    np.testing.assert_allclose(tape.gradient(value, xt).numpy(), _numerical_grad(loss, x),
                               atol=1e-6)


@pytest.mark.parametrize("tier", TIERS)
def test_nan_rule_unchanged_in_the_last_window(tier):
    """A NaN in ceil_mode's last (partial) window gives NaN and takes that window's gradient;
    the overhang cells (which hold -inf in the composite tier) never win."""
    x = -np.ones((1, 5, 5, 1))
    x[0, 4, 3, 0] = np.nan
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = nn.max_pool2d(xt, 2, padding_mode="zeros", data_format="channels_last",
                          implementation=tier, ceil_mode=True)
        loss = tf.reduce_sum(y)
    dx = tape.gradient(loss, xt).numpy()
    np.testing.assert_array_equal(np.isnan(y.numpy()[0, :, :, 0]),
                                  [[0, 0, 0], [0, 0, 0], [0, 1, 0]])
    expected = reference.max_pool2d_grad(x, np.ones((1, 3, 3, 1)), 2, padding_mode="zeros",
                                         ceil_mode=True)
    np.testing.assert_array_equal(dx, expected)
    assert dx[0, 4, 3, 0] == 1 and dx[0, 4, 4, 0] == 1  # the last window: its one real cell


def test_native_channels_first_one_cell_input():
    """A 1x1 channels_first input whose ceil output has 2 columns: the native CPU kernels
    must not take the channels_last fast path (the input's channel stride is 1 there too)."""
    x = np.arange(6.0).reshape(2, 3, 1, 1)
    for op in (nn.max_pool2d, nn.mean_pool2d):
        y = op(x, (3, 4), (2, 2), (1, 2), padding_mode="ignore", data_format="channels_first",
               implementation="native", ceil_mode=True).numpy()
        assert y.shape == (2, 3, 1, 2)
        np.testing.assert_array_equal(y, np.repeat(x, 2, axis=3))


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("layer_cls, op", [(L.MaxPooling2D, reference.max_pool2d),
                                           (L.MeanPooling2D, reference.mean_pool2d)],
                         ids=["max", "mean"])
@pytest.mark.parametrize("config", [
    dict(pool_size=2, ceil_mode=True),
    dict(pool_size=3, strides=2, padding=1, padding_mode="ignore", ceil_mode=True),
    dict(pool_size=(2, 3), strides=(2, 2), padding=((1, 0), (0, 2)), ceil_mode=True,
         data_format="channels_first"),
], ids=["default", "ignore", "channels_first"])
def test_pooling_layers_pass_the_layer_helper(layer_cls, op, config, tmp_path):
    data_format = config.get("data_format", "channels_last")
    shape = (2, 7, 6, 2) if data_format == "channels_last" else (2, 2, 8, 6)
    kwargs = {k: v for k, v in config.items() if k != "pool_size"}
    layer = run_layer_test(layer_cls, config, shape,
                           lambda x, _: op(x, config["pool_size"], **kwargs),
                           tmp_path=tmp_path)
    assert layer.get_config()["ceil_mode"] is True
    floor = layer_cls(**dict(config, ceil_mode=False)).compute_output_shape(shape)
    assert layer.compute_output_shape(shape) != floor  # ceil adds a row or column


def test_layer_default_and_builder_helper():
    assert L.MaxPooling2D(2).get_config()["ceil_mode"] is False
    (layer,) = factory.pool2d_layers("textbook", "max", 3, 2, ceil_mode=True)
    assert layer.ceil_mode and layer.compute_output_shape((1, 8, 8, 1)) == (1, 4, 4, 1)
    assert factory.pool2d_layers("keras", "mean", 2)[0].__class__.__name__ == "AveragePooling2D"
    with pytest.raises(ValueError, match="Keras pooling has no ceil mode"):
        factory.pool2d_layers("keras", "max", 2, ceil_mode=True)


# --------------------------------------------------------------------------- bad input

BAD = [1, 0, "True", None, 1.0, np.int64(1)]
MESSAGE = "Invalid value for argument `ceil_mode`. Expected a bool. Received: ceil_mode="


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_non_bool_ceil_mode_is_rejected_everywhere(value):
    x = np.zeros((1, 4, 4, 1), "float32")
    checks = [
        lambda: kce.ops.max_pool2d(x, 2, ceil_mode=value),
        lambda: kce.ops.mean_pool2d(x, 2, ceil_mode=value),
        lambda: L.MaxPooling2D(2, ceil_mode=value),
        lambda: L.MeanPooling2D(2, ceil_mode=value),
        lambda: factory.pool2d_layers("textbook", "max", 2, ceil_mode=value),
        lambda: geometry.output_size(4, 2, ceil_mode=value),
    ]
    for check in checks:
        with pytest.raises(ValueError) as info:
            check()
        assert str(info.value) == MESSAGE + repr(value)


def test_builder_pool_helper():
    import keras

    from keras_cnn_ext.models import _common

    net = _common.Net("net", "textbook", (5, 5, 1), "channels_last")
    x = keras.Input((5, 5, 1))
    assert tuple(net.pool(x, "max", 2, name="p", ceil_mode=True).shape) == (None, 3, 3, 1)
    assert tuple(net.pool(x, "mean", 2, name="q").shape) == (None, 2, 2, 1)
    with pytest.raises(ValueError, match="Expected a bool. Received: ceil_mode='yes'"):
        net.pool(x, "max", 2, name="r", ceil_mode="yes")


def test_native_op_rejects_a_bad_attr_without_aborting():
    module = native.load()
    x = tf.ones((1, 4, 4, 1))
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        module.keras_cnn_ext_max_pool2d(x, ksize=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
                                        ceil_mode="yes")
    y = module.keras_cnn_ext_max_pool2d(x, ksize=[2, 2], strides=[2, 2], pads=[0, 1, 0, 1],
                                        ceil_mode=True)
    assert tuple(y.shape) == (1, 2, 2, 1)  # 5 padded rows: the window at row 4 starts in padding
