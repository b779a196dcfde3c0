"""Every worked example of the seed documents, through the NumPy reference (2-D textbook
notation and 4-D arrays), the composite and reference implementations of `kce.ops` (float32
and float64, channels_last and channels_first) and the Keras layers.

Sources (shared/seeds/):
* 000 (textbook chapter 24): examples 24.2, 24.3, 24.4, 24.5, 24.6 (answer worked out here),
  24.7;
* 001 (lecture slides): the zero-padded 4x4 example, the "10 10 10 0 0" image with the
  [[1, 0, -1]] x 3 kernel (valid, same, stride 2), the [1, -1] edge detector (the slide's first
  image row has an OCR typo; d2l's image has every row [1, 1, 0, 0, 0, 0, 1, 1]);
* 003 (d2l notes): the two-input-channel example (= 56, d2l: [[56, 72], [104, 120]]), the max
  pooling example (4, 5, 7, 8), d2l's corr2d example [[19, 25], [37, 43]].
"""

import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext.ops import reference

# ---------------------------------------------------------------------------------------------
# The book's matrices
X_BOOK = np.array([[3, 2, 0, 1],
                   [0, 2, 1, 2],
                   [2, 0, 0, 3],
                   [2, 3, 1, 2]])
W_BOOK = np.array([[2, 1, 2],
                   [0, 0, 3],
                   [0, 0, 2]])
X_24_4 = np.array([[3, 2, 0, 1, 0, 2, 1],
                   [0, 2, 1, 2, 1, 2, 1],
                   [2, 0, 0, 3, 0, 0, 2],
                   [2, 3, 1, 0, 1, 1, 3],
                   [2, 2, 1, 1, 0, 3, 1],
                   [1, 1, 0, 0, 1, 2, 2],
                   [2, 1, 0, 3, 2, 1, 1]])
X_24_5 = np.array([[0, 0, 0, 0],
                   [0, 2, 0, 0],
                   [0, 2, 0, 0],
                   [0, 2, 2, 2]])
W_24_5 = np.array([[2, 0, 0],
                   [2, 0, 0],
                   [2, 2, 2]])
X_24_6 = {  # (R, G, B)
    "R": X_BOOK,
    "G": np.array([[3, 2, 0, 1],
                   [2, 1, 0, 1],
                   [1, 0, 2, 1],
                   [2, 1, 0, 0]]),
    "B": np.array([[4, 2, 0, 1],
                   [0, 3, 1, 0],
                   [3, 1, 0, 2],
                   [2, 2, 0, 1]]),
}
W_24_6 = {
    "R": W_BOOK,
    "G": np.array([[1, 0, 1],
                   [0, 1, 0],
                   [1, 0, 1]]),
    "B": np.array([[1, 0, -1],
                   [1, 0, -1],
                   [1, 0, -1]]),
}
# Example 24.6 worked by hand (the book does not print the answer):
#   X_R * W_R = [[11, 18], [6, 22]]                       (example 24.2)
#   X_G * W_G: corners + centre of each 3x3 window
#     y11 = 3+0+1+2 + 1 = 7, y12 = 2+1+0+1 + 0 = 4, y21 = 2+0+2+0 + 0 = 4, y22 = 1+1+1+0 + 2 = 5
#   X_B * W_B: left column minus right column of each window
#     y11 = (4+0+3)-(0+1+0) = 6, y12 = (2+3+1)-(1+0+2) = 3,
#     y21 = (0+3+2)-(1+0+0) = 4, y22 = (3+1+2)-(0+2+1) = 3
#   Y = [[11+7+6, 18+4+3], [6+4+4, 22+5+3]] = [[24, 25], [14, 30]]
Y_24_6_PER_CHANNEL = {"R": [[11, 18], [6, 22]], "G": [[7, 4], [4, 5]], "B": [[6, 3], [4, 3]]}
Y_24_6 = [[24, 25], [14, 30]]

# seed 001: the zero-padded 4x4 example
X_PAD = np.array([[1, 3, -1, 2],
                  [2, -2, 0, 1],
                  [1, 4, 0, -1],
                  [-1, 0, 3, 2]])
W_PAD = np.array([[0, 1, 0],
                  [1, -1, 1],
                  [0, 1, 0]])
Y_PAD = [[4, -5, 6, -2],
         [-2, 11, -2, 0],
         [4, -5, 6, 4],
         [2, 6, -1, 0]]

# seed 001: "10 10 10 0 0" with the vertical-edge kernel
X_TENS = np.array([[10, 10, 10, 0, 0]] * 5)
W_EDGE3 = np.array([[1, 0, -1]] * 3)

# seed 001 / d2l: the [1, -1] edge detector on a 6x8 image
X_EDGE = np.array([[1, 1, 0, 0, 0, 0, 1, 1]] * 6)
W_EDGE = np.array([[1, -1]])
Y_EDGE = [[0, 1, 0, 0, 0, -1, 0]] * 6

# seed 003 / d2l
X_ARANGE = np.arange(9).reshape(3, 3)
K_D2L = np.array([[0, 1], [2, 3]])

CORR_EXAMPLES = {
    # name: (X, W, kwargs, expected)
    "24.2": (X_BOOK, W_BOOK, {}, [[11, 18], [6, 22]]),
    "24.3 zero padding": (X_BOOK, W_BOOK, {"padding": 1},
                          [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]]),
    "24.4 stride 2": (X_24_4, W_BOOK, {"strides": 2},
                      [[11, 4, 11], [9, 6, 15], [8, 10, 13]]),
    "24.5 L detector": (X_24_5, W_24_5, {}, [[4, 8], [8, 20]]),
    "001 padded 4x4": (X_PAD, W_PAD, {"padding": 1}, Y_PAD),
    "001 padded 4x4 'same'": (X_PAD, W_PAD, {"padding": "same"}, Y_PAD),
    "001 valid": (X_TENS, W_EDGE3, {"padding": "valid"}, [[0, 30, 30]] * 3),
    "001 same": (X_TENS, W_EDGE3, {"padding": "same"},
                 [[-20, 0, 20, 20, 0]] + [[-30, 0, 30, 30, 0]] * 3 + [[-20, 0, 20, 20, 0]]),
    "001 same as padding 1": (X_TENS, W_EDGE3, {"padding": 1},
                              [[-20, 0, 20, 20, 0]] + [[-30, 0, 30, 30, 0]] * 3
                              + [[-20, 0, 20, 20, 0]]),
    "001 stride 2": (X_TENS, W_EDGE3, {"strides": 2}, [[0, 30], [0, 30]]),
    "001/d2l edge detector": (X_EDGE, W_EDGE, {}, Y_EDGE),
    "d2l corr2d": (X_ARANGE, K_D2L, {}, [[19, 25], [37, 43]]),
}

POOL_EXAMPLES = {
    # name: (op name, X, kwargs, expected)
    "24.7 max 2x2 stride 2": ("max_pool2d", X_BOOK, {"pool_size": 2}, [[3, 2], [3, 3]]),
    "24.7 max, explicit stride": ("max_pool2d", X_BOOK, {"pool_size": 2, "strides": 2},
                                  [[3, 2], [3, 3]]),
    "003 max (4, 5, 7, 8)": ("max_pool2d", X_ARANGE, {"pool_size": 2, "strides": 1},
                             [[4, 5], [7, 8]]),
    # d2l's average-pooling companion of the same example: (0+1+3+4)/4 = 2, ...
    "d2l mean 2x2 stride 1": ("mean_pool2d", X_ARANGE, {"pool_size": 2, "strides": 1},
                              [[2, 3], [5, 6]]),
    # the book's matrix, 2x2 mean pooling by hand: (3+2+0+2)/4, (0+1+1+2)/4, ...
    "24.7 mean 2x2 stride 2": ("mean_pool2d", X_BOOK, {"pool_size": 2},
                               [[7 / 4, 4 / 4], [7 / 4, 6 / 4]]),
}


def _to4d(matrix, data_format="channels_last"):
    x = np.asarray(matrix)[None, :, :, None]
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def _from4d(y, data_format="channels_last"):
    y = np.asarray(y)
    return y[0, :, :, 0] if data_format == "channels_last" else y[0, 0]


# ------------------------------------------------------------------------------ cross-corr
@pytest.mark.parametrize("name", CORR_EXAMPLES)
def test_corr_example_reference_matrix(name):
    x, w, kwargs, expected = CORR_EXAMPLES[name]
    np.testing.assert_array_equal(reference.corr2d(x, w, **kwargs), expected)


@pytest.mark.parametrize("name", CORR_EXAMPLES)
def test_corr_example_reference_4d(name):
    x, w, kwargs, expected = CORR_EXAMPLES[name]
    y = reference.corr2d(_to4d(x), np.asarray(w)[:, :, None, None], **kwargs)
    assert y.shape == (1,) + np.shape(expected) + (1,)
    np.testing.assert_array_equal(y[0, :, :, 0], expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("implementation", ["composite", "reference"])
@pytest.mark.parametrize("name", CORR_EXAMPLES)
def test_corr_example_ops(name, implementation, data_format, dtype):
    x, w, kwargs, expected = CORR_EXAMPLES[name]
    y = kce.ops.corr2d(_to4d(x, data_format).astype(dtype),
                       np.asarray(w, dtype)[:, :, None, None], data_format=data_format,
                       implementation=implementation, **kwargs)
    assert y.dtype == dtype
    np.testing.assert_array_equal(_from4d(y, data_format), expected)


@pytest.mark.parametrize("name", CORR_EXAMPLES)
def test_corr_example_layer(name):
    x, w, kwargs, expected = CORR_EXAMPLES[name]
    layer = kce.layers.CrossCorrelation2D(1, np.shape(w), use_bias=False,
                                          data_format="channels_last", **kwargs)
    layer.build((None,) + np.shape(x) + (1,))
    layer.set_weights([np.asarray(w, "float32")[:, :, None, None]])
    np.testing.assert_array_equal(_from4d(layer(_to4d(x).astype("float32"))), expected)


def test_corr_example_layer_with_bias_and_channels_first():
    # Example 24.2 with a bias of 0.5 added to every output (one bias per filter).
    layer = kce.layers.Corr2D(1, 3, data_format="channels_first")
    layer.build((None, 1, 4, 4))
    layer.set_weights([W_BOOK.astype("float32")[:, :, None, None], np.array([0.5], "float32")])
    y = layer(_to4d(X_BOOK, "channels_first").astype("float32"))
    np.testing.assert_array_equal(_from4d(y, "channels_first"),
                                  np.array([[11, 18], [6, 22]]) + 0.5)


@pytest.mark.parametrize("implementation", ["reference", "composite"])
def test_convolution_mode_flips_the_kernel(implementation):
    """Mathematical convolution = cross-correlation with the kernel rotated by 180° (seed 003:
    flip the kernel left-right and up-down, then cross-correlate)."""
    flipped = W_BOOK[::-1, ::-1]
    y = kce.ops.corr2d(_to4d(X_BOOK).astype("float64"), flipped[:, :, None, None].astype(float),
                       mode="convolution", implementation=implementation)
    np.testing.assert_array_equal(_from4d(y), [[11, 18], [6, 22]])
    np.testing.assert_array_equal(reference.corr2d(X_BOOK, flipped, mode="convolution"),
                                  [[11, 18], [6, 22]])


# ------------------------------------------------------------------------- example 24.6
def _x_24_6(data_format="channels_last"):
    x = np.stack([X_24_6[c] for c in "RGB"], axis=-1)[None].astype("float64")
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def _w_24_6():
    return np.stack([W_24_6[c] for c in "RGB"], axis=-1)[:, :, :, None].astype("float64")


def test_example_24_6_per_channel_by_hand():
    for c in "RGB":
        np.testing.assert_array_equal(reference.corr2d(X_24_6[c], W_24_6[c]),
                                      Y_24_6_PER_CHANNEL[c])
    total = sum(reference.corr2d(X_24_6[c], W_24_6[c]) for c in "RGB")
    np.testing.assert_array_equal(total, Y_24_6)


def test_example_24_6_reference_3d_equals_sum_of_2d():
    y = reference.corr2d(_x_24_6(), _w_24_6())
    per_channel_sum = sum(reference.corr2d(X_24_6[c], W_24_6[c]) for c in "RGB")
    np.testing.assert_array_equal(y[0, :, :, 0], per_channel_sum)
    np.testing.assert_array_equal(y[0, :, :, 0], Y_24_6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("implementation", ["composite", "reference"])
def test_example_24_6_ops(implementation, data_format):
    y = kce.ops.corr2d(_x_24_6(data_format), _w_24_6(), data_format=data_format,
                       implementation=implementation)
    np.testing.assert_array_equal(_from4d(y, data_format), Y_24_6)


def test_example_24_6_layer():
    layer = kce.layers.CrossCorrelation2D(1, 3, use_bias=False, data_format="channels_last")
    layer.build((None, 4, 4, 3))
    layer.set_weights([_w_24_6().astype("float32")])
    np.testing.assert_array_equal(layer(_x_24_6().astype("float32"))[0, :, :, 0], Y_24_6)


# -------------------------------------------------------------- d2l two input channels
X_D2L_2CH = np.stack([np.arange(9).reshape(3, 3), np.arange(1, 10).reshape(3, 3)], axis=-1)
K_D2L_2CH = np.stack([[[0, 1], [2, 3]], [[1, 2], [3, 4]]], axis=-1)[:, :, :, None]


def test_two_channel_example_first_cell_is_56():
    # (1*1 + 2*2 + 4*3 + 5*4) + (0*0 + 1*1 + 3*2 + 4*3) = 56
    y = reference.corr2d(X_D2L_2CH[None], K_D2L_2CH)
    assert y[0, 0, 0, 0] == 56
    np.testing.assert_array_equal(y[0, :, :, 0], [[56, 72], [104, 120]])


@pytest.mark.parametrize("implementation", ["composite", "reference"])
def test_two_channel_example_ops(implementation):
    y = kce.ops.corr2d(X_D2L_2CH[None].astype("float32"), K_D2L_2CH.astype("float32"),
                       implementation=implementation)
    np.testing.assert_array_equal(y[0, :, :, 0], [[56, 72], [104, 120]])


def test_two_channel_example_layer():
    layer = kce.layers.Corr2D(1, 2, use_bias=False, data_format="channels_last")
    layer.build((None, 3, 3, 2))
    layer.set_weights([K_D2L_2CH.astype("float32")])
    np.testing.assert_array_equal(layer(X_D2L_2CH[None].astype("float32"))[0, :, :, 0],
                                  [[56, 72], [104, 120]])


# ---------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("name", POOL_EXAMPLES)
def test_pool_example_reference(name):
    op, x, kwargs, expected = POOL_EXAMPLES[name]
    fn = getattr(reference, op)
    np.testing.assert_allclose(fn(x, **kwargs), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(fn(_to4d(x), **kwargs)[0, :, :, 0], expected, rtol=0,
                               atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("implementation", ["composite", "reference"])
@pytest.mark.parametrize("name", POOL_EXAMPLES)
def test_pool_example_ops(name, implementation, data_format, dtype):
    op, x, kwargs, expected = POOL_EXAMPLES[name]
    y = getattr(kce.ops, op)(_to4d(x, data_format).astype(dtype), data_format=data_format,
                             implementation=implementation, **kwargs)
    assert y.dtype == dtype
    np.testing.assert_allclose(_from4d(y, data_format), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", POOL_EXAMPLES)
def test_pool_example_layer(name):
    op, x, kwargs, expected = POOL_EXAMPLES[name]
    cls = kce.layers.MaxPool2D if op == "max_pool2d" else kce.layers.MeanPool2D
    layer = cls(data_format="channels_last", **kwargs)
    np.testing.assert_allclose(_from4d(layer(_to4d(x).astype("float32"))), expected, rtol=0,
                               atol=1e-6)


def test_pooling_is_per_channel():
    """Seed 003: pooling handles each input channel separately (no sum over channels)."""
    x = np.stack([X_ARANGE, X_ARANGE + 1], axis=-1)[None].astype("float32")
    y = kce.ops.max_pool2d(x, 2, strides=1, implementation="composite")
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 5], [7, 8]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[5, 6], [8, 9]])


def test_output_size_formula_of_the_examples():
    assert kce.ops.output_size(4, 3) == 2              # 24.2
    assert kce.ops.output_size(4, 3, padding=1) == 4   # 24.3
    assert kce.ops.output_size(7, 3, strides=2) == 3   # 24.4
    assert kce.ops.output_size(5, 3, strides=2) == 2   # 001 stride 2
    assert kce.ops.output_size((6, 8), (1, 2)) == (6, 7)  # edge detector
