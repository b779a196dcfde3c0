"""Geometry: the textbook output-size formula and the padding spellings (docs/semantics.md).

Sizes are checked against a brute-force count of window positions, not against the formula
itself, so the formula is tested rather than restated.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops import geometry, output_size


def count_positions(size, window, stride, before, after):
    """Number of positions k >= 0 where a window starting at k*stride fits the padded axis."""
    padded = size + before + after
    return sum(1 for k in range(padded + 1) if k * stride + window <= padded)


# ---------------------------------------------------------------------------- output_size
@pytest.mark.parametrize("size, window, stride, pad, expected", [
    (4, 3, 1, 0, 2),    # example 24.2
    (4, 3, 1, 1, 4),    # example 24.3
    (7, 3, 2, 0, 3),    # example 24.4
    (5, 3, 1, 1, 5),    # seed 001, 'same' F=3 pad=1
    (5, 3, 2, 0, 2),    # seed 001, stride 2
    (32, 5, 1, 0, 28),  # LeNet C1
    (224, 11, 4, 2, 55),  # AlexNet conv1 (224 + 4 - 11) // 4 + 1
    (3, 3, 1, 0, 1),    # kernel == input
    (1, 1, 5, 0, 1),    # stride larger than the input
])
def test_output_size_known_values(size, window, stride, pad, expected):
    assert output_size(size, window, strides=stride, padding=pad) == expected
    assert count_positions(size, window, stride, pad, pad) == expected


def test_output_size_matches_brute_force():
    for size in range(1, 12):
        for window in range(1, 6):
            for stride in range(1, 5):
                for before in range(0, 4):
                    for after in range(0, 4):
                        expected = count_positions(size, window, stride, before, after)
                        if size + before + after < window:
                            continue
                        assert output_size(size, window, stride, (before, after)) == expected
                        # d2l's form: floor((n - k + p_total + s) / s)
                        assert expected == (size - window + before + after + stride) // stride


def test_output_size_tuples_and_2d_paddings():
    assert output_size((4, 7), 3, padding=1) == (4, 7)
    assert output_size((4, 7), (3, 1), strides=(1, 2), padding=(1, 0)) == (4, 4)
    assert output_size((6, 8), (1, 2)) == (6, 7)
    assert output_size((5, 5), 3, padding=((1, 0), (0, 2))) == (4, 5)
    assert output_size((5, 5), 3, padding="same") == (5, 5)
    assert output_size((5, 5), 3, padding="full") == (7, 7)
    assert output_size((5, 5), 3, padding="valid") == (3, 3)
    assert output_size((5, 6), 3, strides=2, padding="same") == (3, 3)


def test_output_size_word_padding_on_a_scalar():
    assert output_size(5, 3, padding="same") == 5
    assert output_size(5, 3, padding="full") == 7
    assert output_size(5, 4, padding="same") == 5
    assert output_size(9, 4, strides=4, padding="same") == 3


def test_window_output_size_unknown_stays_unknown():
    assert geometry.window_output_size(None, 3, 1, (1, 1)) is None
    assert geometry.spatial_output_shape((None, 6), (3, 3), (1, 2), ((1, 1), (0, 0))) == (
        None, 2)


# -------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("padding, window, expected", [
    (0, (3, 3), ((0, 0), (0, 0))),
    (2, (3, 3), ((2, 2), (2, 2))),
    ((1, 2), (3, 3), ((1, 1), (2, 2))),
    ([1, 2], (3, 3), ((1, 1), (2, 2))),
    (((1, 0), (2, 3)), (3, 3), ((1, 0), (2, 3))),
    ([[1, 0], [2, 3]], (3, 3), ((1, 0), (2, 3))),
    ("valid", (3, 5), ((0, 0), (0, 0))),
    ("full", (3, 5), ((2, 2), (4, 4))),
    ("same", (3, 5), ((1, 1), (2, 2))),
    ("same", (4, 2), ((1, 2), (0, 1))),   # textbook/PyTorch: (M-1)//2 before, rest after
    ("same", (1, 1), ((0, 0), (0, 0))),
    ("SAME", (3, 3), ((1, 1), (1, 1))),
    ("Full", (2, 2), ((1, 1), (1, 1))),
    (np.int64(1), (3, 3), ((1, 1), (1, 1))),
])
def test_resolve_padding(padding, window, expected):
    pads = geometry.resolve_padding(padding, window)
    assert pads == expected
    assert all(type(p) is int for pair in pads for p in pair)


def test_same_keeps_the_size_at_stride_one_and_gives_ceil_at_stride_s():
    for size in range(1, 14):
        for window in range(1, 7):
            pads = geometry.resolve_padding("same", (window, window))
            assert pads[0][0] == (window - 1) // 2
            assert pads[0][0] + pads[0][1] == window - 1
            for stride in range(1, 5):
                out = count_positions(size, window, stride, *pads[0])
                assert out == math.ceil(size / stride), (size, window, stride)
                assert output_size(size, window, stride, "same") == out


def test_full_padding_is_m_minus_one():
    for size in range(1, 8):
        for window in range(1, 6):
            assert output_size(size, window, padding="full") == size + window - 1


def test_validate_padding_returns_spelling_only():
    assert geometry.validate_padding("Same") == "same"
    assert geometry.validate_padding(3) == ((3, 3), (3, 3))
    assert geometry.validate_padding((0, 1)) == ((0, 0), (1, 1))
    assert geometry.validate_padding(geometry.MAX_PADDING) == ((geometry.MAX_PADDING,) * 2,) * 2


@pytest.mark.parametrize("value, expected", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([1, 4], (1, 4)), (np.int32(2), (2, 2)),
])
def test_normalize_tuple(value, expected):
    result = geometry.normalize_tuple(value, "kernel_size")
    assert result == expected
    assert all(type(v) is int for v in result)


def test_normalize_tuple_allow_zero():
    assert geometry.normalize_tuple(0, "padding", allow_zero=True) == (0, 0)


def test_normalize_choice_is_case_insensitive():
    assert geometry.normalize_choice("Zeros", "padding_mode", geometry.CORR_PADDING_MODES) == (
        "zeros")
    assert geometry.normalize_data_format("CHANNELS_FIRST") == "channels_first"


def test_check_pool_padding_accepts_sides_smaller_than_window_only():
    assert geometry.check_pool_padding(((1, 0), (2, 2)), (2, 3)) is None
    for pads in (((2, 0), (0, 0)), ((0, 2), (0, 0)), ((0, 0), (3, 0)), ((0, 0), (0, 3))):
        with pytest.raises(ValueError, match=r"smaller than the pooling window \(2, 3\)"):
            geometry.check_pool_padding(pads, (2, 3), received="given")


@pytest.mark.parametrize("size, window, stride", [
    (s, m, st) for s in (1, 4, 5, 7, 8) for m in (1, 2, 3, 4) for st in (1, 2, 3) if m <= s
])
def test_tf_same_pads_match_tensorflow(size, window, stride):
    """`tf_same_pads` must describe what TensorFlow's 'SAME' really does (the composite ops
    hand 'SAME' to TF only where it equals the textbook padding)."""
    x = tf.reshape(tf.range(size, dtype=tf.float64) + 1.0, (1, size, 1, 1))
    kernel = tf.ones((window, 1, 1, 1), tf.float64)
    same = tf.nn.conv2d(x, kernel, (1, stride, 1, 1), "SAME").numpy()
    before, after = geometry.tf_same_pads(size, window, stride)
    explicit = tf.nn.conv2d(tf.pad(x, ((0, 0), (before, after), (0, 0), (0, 0))), kernel,
                            (1, stride, 1, 1), "VALID").numpy()
    np.testing.assert_array_equal(same, explicit)


@pytest.mark.parametrize("name", ["validate_padding", "resolve_padding", "normalize_tuple",
                                  "normalize_choice", "check_pool_padding", "output_size",
                                  "spatial_output_shape"])
def test_geometry_is_autograph_convertible(name):
    """The ops call these while a `tf.function` traces; AutoGraph converts them, and a construct
    it cannot convert (e.g. `:=`) prints "AutoGraph could not transform ... Please report this
    to the TensorFlow team" to every user of the ops inside a tf.function."""
    converted = tf.autograph.to_graph(getattr(geometry, name))
    args = {
        "validate_padding": ((1, 2),), "resolve_padding": ("same", (3, 4)),
        "normalize_tuple": (3, "kernel_size"),
        "normalize_choice": ("Zeros", "padding_mode", geometry.CORR_PADDING_MODES),
        "check_pool_padding": (((1, 0), (1, 1)), (2, 2)), "output_size": (7, 3, 2),
        "spatial_output_shape": ((5, 6), (3, 3), (2, 1), ((1, 1), (0, 0))),
    }[name]
    assert converted(*args) == getattr(geometry, name)(*args)


# ------------------------------------------------------------------- the other helpers
def test_normalize_int():
    assert geometry.normalize_int(np.int64(4), "filters") == 4
    assert type(geometry.normalize_int(np.int64(4), "filters")) is int
    assert geometry.normalize_int(0, "padding", minimum=0) == 0
    with pytest.raises(ValueError, match=r"Expected an integer >= 1. Received: units=0"):
        geometry.normalize_int(0, "units")
    for bad in (2.5, 2.0, "2", None, True):
        with pytest.raises(ValueError, match=rf"Received: units={bad!r}"):
            geometry.normalize_int(bad, "units")


def test_layout_helpers():
    assert geometry.spatial_axes("channels_last") == (1, 2)
    assert geometry.spatial_axes("channels_first") == (2, 3)
    assert geometry.image_shape((5, 7), 3, "channels_first") == (3, 5, 7)
    assert geometry.image_shape((5, 7), 3, "channels_last") == (5, 7, 3)
    x = np.zeros((2, 5, 7, 3))
    assert np.transpose(x, geometry.TO_CHANNELS_FIRST).shape == (2, 3, 5, 7)
    assert np.transpose(np.transpose(x, geometry.TO_CHANNELS_FIRST),
                        geometry.TO_CHANNELS_LAST).shape == x.shape
    assert geometry.tf_data_format("channels_first") == "NCHW"
    assert geometry.flat_pads(((1, 2), (3, 4))) == [1, 2, 3, 4]


def test_padded_output_size_works_on_tensors():
    size = tf.constant(7)
    assert int(geometry.padded_output_size(size, 3, 2, (1, 1))) == output_size(7, 3, 2, 1)


def test_is_tf_same():
    assert geometry.is_tf_same((8, 8), (3, 3), (2, 2), ((0, 1), (0, 1)))  # TF: extra after
    assert not geometry.is_tf_same((8, 8), (3, 3), (2, 2), ((1, 1), (1, 1)))
    assert not geometry.is_tf_same((None, 8), (3, 3), (1, 1), ((1, 1), (1, 1)))
