"""Pictures: training curves, a layer's kernels, the feature maps of one input.

matplotlib is an optional extra (``pip install keras_cnn_ext[viz]``); it is imported on first
use, with the non-interactive "Agg" backend unless one was chosen already. Every function takes
an optional ``path``: given, the figure is written there (atomically) and closed; the figure is
returned either way.
"""

import math
import os

import numpy as np

from keras_cnn_ext.training import checkpointing


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "keras_cnn_ext.viz needs matplotlib, an optional extra: "
            "pip install 'keras_cnn_ext[viz]' (or pip install matplotlib)"
        ) from None
    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        checkpointing.atomic_savefig(fig, os.fspath(path), dpi=120, bbox_inches="tight")
        _pyplot().close(fig)
    return fig


def plot_training_curves(history, path=None, title="Training curves"):
    """Loss and accuracy per epoch, training and validation, side by side.

    Args:
        history: a dict of per-epoch lists (``history.json``, `keras.callbacks.History.history`)
            with "loss" and optionally "accuracy", "val_loss", "val_accuracy", "epoch".
        path: where to write the PNG (optional).
        title: the figure's title.
    """
    plt = _pyplot()
    n = len(history.get("loss", []))
    epochs = history.get("epoch") or list(range(1, n + 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "loss", "loss (cross-entropy)"),
                              (axes[1], "accuracy", "accuracy")):
        for key, name, style in ((metric, "training", "-o"), (f"val_{metric}", "validation",
                                                               "-s")):
            values = history.get(key)
            if values and any(v is not None for v in values):
                points = [(e, v) for e, v in zip(epochs, values) if v is not None]
                ax.plot(*zip(*points), style, markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0].capitalize())
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    if n and n <= 20:
        for ax in axes:
            ax.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def _grid(count):
    cols = min(count, 8)
    return int(math.ceil(count / cols)), cols


def plot_kernels(layer, path=None, input_channel=0, max_kernels=64, title=None):
    """The spatial kernels of a convolution layer (one panel per output filter).

    Args:
        layer: a layer with a 4-D ``kernel`` (M, N, C_in, C_out): `CrossCorrelation2D`,
            `keras.layers.Conv2D`.
        path: where to write the PNG (optional).
        input_channel: which input channel's slice to show.
        max_kernels: show at most this many filters.
        title: the figure's title (default: the layer's name).
    """
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) != 4:
        raise ValueError(
            "Invalid value for argument `layer`. Expected a built convolution layer with a "
            f"4-D kernel. Received: layer={getattr(layer, 'name', layer)!r}"
        )
    w = np.asarray(kernel)
    if not 0 <= input_channel < w.shape[2]:
        raise ValueError(
            f"Invalid value for argument `input_channel`. Expected 0..{w.shape[2] - 1}. "
            f"Received: input_channel={input_channel!r}"
        )
    count = min(w.shape[3], max_kernels)
    plt = _pyplot()
    rows, cols = _grid(count)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6), squeeze=False)
    limit = float(np.abs(w[:, :, input_channel, :count]).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            im = ax.imshow(w[:, :, input_channel, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"filter {i}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(title or f"Kernels of layer '{layer.name}' (input channel {input_channel}, "
                 f"{w.shape[0]}x{w.shape[1]})")
    return _finish(fig, path)


def plot_feature_maps(model, image, layer_name, path=None, max_maps=32, title=None):
    """The feature maps one input produces at a layer of a functional model.

    Args:
        model: a functional `keras.Model`.
        image: one input (H, W, C) or a batch of one.
        layer_name: the layer whose output to show (e.g. "c1" of LeNet-5).
        path: where to write the PNG (optional).
        max_maps: show at most this many channels.
        title: the figure's title.
    """
    import keras

    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"Invalid value for argument `layer_name`. Expected one of {names}. "
            f"Received: layer_name={layer_name!r}"
        ) from None
    x = np.asarray(image, dtype="float32")
    if x.ndim == 3:
        x = x[None]
    probe = keras.Model(model.input, layer.output)
    maps = np.asarray(probe(x))[0]
    if maps.ndim != 3:
        raise ValueError(
            f"Invalid value for argument `layer_name`. Expected a layer with 2-D feature "
            f"maps. Received: layer_name={layer_name!r} (output shape {maps.shape})"
        )
    count = min(maps.shape[-1], max_maps)
    plt = _pyplot()
    rows, cols = _grid(count)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6), squeeze=False)
    low, high = float(maps[..., :count].min()), float(maps[..., :count].max())
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            im = ax.imshow(maps[:, :, i], cmap="viridis", vmin=low, vmax=high)
            ax.set_title(f"channel {i}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="activation")
    fig.suptitle(title or f"Feature maps of layer '{layer_name}' "
                 f"({maps.shape[0]}x{maps.shape[1]}, {maps.shape[2]} channels)")
    return _finish(fig, path)


def plot_filtered_images(image, filtered, path=None, title="Classic kernels"):
    """An image and its filtered versions side by side, each with its kernel printed below.

    Args:
        image: the 2-D input.
        filtered: a list of ``(name, kernel, output)``: the kernel (2-D) and the 2-D result.
        path: where to write the PNG (optional).
        title: the figure's title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(filtered) + 1, figsize=(2.6 * (len(filtered) + 1), 3.4))
    axes[0].imshow(np.asarray(image), cmap="gray")
    axes[0].set_title("input")
    for ax, (name, kernel, out) in zip(axes[1:], filtered):
        ax.imshow(np.asarray(out), cmap="gray")
        ax.set_title(name)
        k = np.asarray(kernel)
        rows = "\n".join(" ".join(f"{v:g}" for v in row) for row in k)
        ax.set_xlabel("kernel\n" + rows, fontsize=8, family="monospace")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)
