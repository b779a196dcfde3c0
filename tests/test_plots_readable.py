"""Every PNG reads at a glance: no two tick labels of an axis overlap (tune's scores.png with
learning rates inside one decade, across many decades; the training curves at 20 epochs)."""

import itertools

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keras_cnn_ext import viz  # noqa: E402
from keras_cnn_ext.tuning import report  # noqa: E402


def _overlaps(fig):
    """(axis title, label, label) for every pair of drawn tick labels that overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for axis, ticks in (("x", ax.get_xticklabels(which="both")),
                            ("y", ax.get_yticklabels(which="both"))):
            lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
            drawn = [t for t in ticks if t.get_visible() and t.get_text()
                     and lo <= (t.get_position()[0] if axis == "x" else t.get_position()[1]) <= hi]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn]
            for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
                if box_a.overlaps(box_b):
                    found.append((ax.get_title(), a, b))
    return found


def _scores_figure(monkeypatch, tmp_path, learning_rates):
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure plot_scores drew
    rows = [{"score": 0.5 + 0.01 * i, "learning_rate": lr, "optimizer": "adam", "depth": 2}
            for i, lr in enumerate(learning_rates)]
    report.plot_scores(rows, {"learning_rate": None, "optimizer": ["adam", "sgd", "rmsprop"],
                              "depth": [1, 2, 3]}, str(tmp_path / "scores.png"))
    assert (tmp_path / "scores.png").stat().st_size > 0
    return figures[0]


@pytest.mark.parametrize("learning_rates", [
    [0.0012, 0.0021, 0.0031, 0.0051, 0.0083],  # inside one decade: minor labels overlapped
    [1e-4, 3e-4, 2e-3],
    [1e-6, 1e-1],                             # five decades
    [5e-3],
])
def test_scores_png_learning_rate_labels_do_not_overlap(monkeypatch, tmp_path, learning_rates):
    fig = _scores_figure(monkeypatch, tmp_path, learning_rates)
    try:
        assert _overlaps(fig) == []
        ax = next(a for a in fig.axes if a.get_title() == "learning_rate")
        lo, hi = ax.get_xlim()
        assert lo <= min(learning_rates) and max(learning_rates) <= hi
        labelled = [t for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        assert len(labelled) >= 2  # at least two decades named: the scale can be read
    finally:
        fig.clf()


def test_training_curves_labels_do_not_overlap():
    history = {"loss": [1.0 / e for e in range(1, 21)], "val_loss": [1.1 / e for e in range(1, 21)],
               "accuracy": [1 - 0.5 / e for e in range(1, 21)],
               "val_accuracy": [1 - 0.6 / e for e in range(1, 21)]}
    fig = viz.plot_training_curves(history)
    assert _overlaps(fig) == []
    plt.close(fig)
