"""kce.viz: training curves, kernels, feature maps; the optional-extra error."""

import sys

import numpy as np
import pytest

import keras_cnn_ext as kce
from keras_cnn_ext import viz

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = {"epoch": [1, 2, 3], "loss": [2.3, 1.2, 0.6], "accuracy": [0.1, 0.6, 0.8],
           "val_loss": [2.2, 1.4, 0.9], "val_accuracy": [0.2, 0.5, 0.7]}


def test_training_curves(tmp_path):
    path = tmp_path / "curves.png"
    fig = viz.plot_training_curves(HISTORY, str(path), title="lenet5 on digits")
    assert path.read_bytes()[:8] == PNG
    loss, acc = fig.axes
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("epoch", "loss (cross-entropy)")
    assert (acc.get_title(), acc.get_ylabel()) == ("Accuracy", "accuracy")
    assert [line.get_label() for line in loss.lines] == ["training", "validation"]
    np.testing.assert_allclose(acc.lines[1].get_ydata(), HISTORY["val_accuracy"])
    assert fig._suptitle.get_text() == "lenet5 on digits"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # written atomically


def test_kernels_and_feature_maps(tmp_path):
    model = kce.models.lenet5()
    fig = viz.plot_kernels(model.get_layer("c1"), str(tmp_path / "k.png"))
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 6  # c1 has 6 filters
    np.testing.assert_allclose(images[2].images[0].get_array(),
                               np.asarray(model.get_layer("c1").kernel)[:, :, 0, 2])
    digit = np.zeros((28, 28, 1), "float32")
    digit[8:20, 12:16] = 1.0
    fig = viz.plot_feature_maps(model, digit, "c1", str(tmp_path / "f.png"))
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6 and panels[0].images[0].get_array().shape == (28, 28)
    expected = np.asarray(model.get_layer("c1")(digit[None]))[0, :, :, 3]
    np.testing.assert_allclose(panels[3].images[0].get_array(), expected, rtol=1e-5,
                               atol=1e-6)
    assert (tmp_path / "k.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match=r"argument `layer_name`.*c1, s2"):
        viz.plot_feature_maps(model, digit, "conv1")
    with pytest.raises(ValueError, match=r"argument `layer`"):
        viz.plot_kernels(model.get_layer("s2"))
    with pytest.raises(ValueError, match=r"argument `input_channel`"):
        viz.plot_kernels(model.get_layer("c3"), input_channel=6)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'keras_cnn_ext\[viz\]'"):
        viz.plot_training_curves(HISTORY)
