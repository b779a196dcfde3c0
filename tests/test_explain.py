"""kce.explain: the book's worked examples 24.2-24.4 and 24.7 step by step, and arbitrary
settings agreeing with the reference and the composite ops."""

import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext import explain

BOOK = {
    "24.2": [[11, 18], [6, 22]],
    "24.3": [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]],
    "24.4": [[11, 4, 11], [9, 6, 15], [8, 10, 13]],
    "24.7": [[3, 2], [3, 3]],
}


@pytest.mark.parametrize("name", sorted(BOOK))
def test_worked_examples_reproduce_the_book(name):
    result = explain.explain_example(name)
    np.testing.assert_array_equal(result.output, BOOK[name])
    lines = result.text.splitlines()
    assert lines[0].startswith(f"Example {name}")
    assert lines[-len(BOOK[name]) - 1] == "Y ="
    printed = [[float(v) for v in row.split()] for row in lines[-len(BOOK[name]):]]
    assert printed == BOOK[name]


def test_each_window_shows_its_products_and_sum():
    text = explain.explain_example("24.2").text
    assert "y11 = 2*3 + 1*2 + 2*0 + 0*0 + 0*2 + 3*1 + 0*2 + 0*0 + 2*0 = 11" in text
    assert "y22 = 2*2 + 1*1 + 2*2 + 0*0 + 0*0 + 3*3 + 0*3 + 0*1 + 2*2 = 22" in text
    text = explain.explain_example("24.3").text
    assert "padded input X^ (zeros padding" in text
    assert "\n  0  0  0  0  0  0\n  0  3  2  0  1  0\n" in text  # the book's X^
    assert "K = floor((I + 2*1 - M) / S) + 1 = floor((4 + 2 - 3) / 1) + 1 = 4" in text
    text = explain.explain_example("24.4").text
    assert "y23 = 2*0 + 1*0 + 2*2 + 0*1 + 0*1 + 3*3 + 0*0 + 0*3 + 2*1 = 15" in text
    assert "(rows 3-5, columns 5-7 of X)" in text
    text = explain.explain_example("24.7").text
    assert "y21 = max(2, 0, 2, 3) = 3    (rows 3-4, columns 1-2)" in text


def test_random_settings_match_the_reference_and_composite_ops(rng):
    for _ in range(12):
        x = rng.integers(-3, 4, size=(int(rng.integers(3, 7)), int(rng.integers(3, 7))))
        w = rng.integers(-2, 3, size=(int(rng.integers(1, 4)), int(rng.integers(1, 4))))
        strides = int(rng.integers(1, 3))
        padding = ((int(rng.integers(0, 2)), int(rng.integers(0, 2))),
                   (int(rng.integers(0, 2)), int(rng.integers(0, 2))))
        mode = ["cross_correlation", "convolution"][int(rng.integers(0, 2))]
        result = explain.explain_corr2d(x, w, strides, padding, mode=mode)
        fast = kce.ops.corr2d(x[None, :, :, None].astype("float32"),
                              w[:, :, None, None].astype("float32"), strides, padding,
                              mode=mode, implementation="composite")
        np.testing.assert_allclose(result.output, np.asarray(fast)[0, :, :, 0], atol=1e-5)
        kind = ["max", "mean"][int(rng.integers(0, 2))]
        pooled = explain.explain_pool2d(x, 2, 1, 1, kind=kind, padding_mode="ignore")
        fn = kce.ops.reference.max_pool2d if kind == "max" else kce.ops.reference.mean_pool2d
        np.testing.assert_allclose(pooled.output, fn(x, 2, 1, 1, padding_mode="ignore"))


def test_bad_input():
    with pytest.raises(ValueError, match="argument `name`"):
        explain.explain_example("24.9")
    with pytest.raises(ValueError, match="argument `x`"):
        explain.explain_corr2d([1, 2, 3], [[1]])
    with pytest.raises(ValueError, match="argument `mode`"):
        explain.explain_corr2d([[1]], [[1]], mode="conv")
    with pytest.raises(ValueError, match="argument `--kernel`"):
        explain.parse_matrix("1 2; x 4", "--kernel")
    np.testing.assert_array_equal(explain.parse_matrix("1, 2\n3 4"), [[1, 2], [3, 4]])
