"""Kill-safe files for long jobs: atomic writes and the per-epoch checkpoint of a training run.

Every file is written under a temporary name in the same folder, flushed to disk and renamed
over its final name (`os.replace` is atomic on POSIX and Windows): a SIGKILL at any instant
leaves either the old or the new file, never a half-written one.

A run's resumable state is two files in ``DIR/checkpoints/``:

* ``epoch-NNNN.keras`` — the whole model (weights and optimizer state) after epoch NNNN;
* ``state.json`` — the number of completed epochs, the name of that checkpoint and the history
  of every completed epoch.

`EpochCheckpoint` writes the model first, then the state that points at it, and only then
deletes the previous checkpoint, so ``state.json`` always names a complete file. (Keras'
`BackupAndRestore` writes its files in place and deletes them at the end of training; this
keeps the last checkpoint and the whole history instead.)
"""

import json
import os
import time

import keras

STATE = "state.json"


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path):
    folder, name = os.path.split(os.fspath(path))
    # keep the extension: Keras decides the format from it (".keras")
    return os.path.join(folder or ".", f".{name}.tmp-{os.getpid()}-{name}")


def atomic_write_text(path, text):
    """Writes `text` to `path` via a temporary file and a rename."""
    tmp = _temporary(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_model(model, path):
    """`model.save(path)` (a ``.keras`` file) via a temporary file and a rename."""
    tmp = _temporary(path)
    model.save(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_savefig(figure, path, **kwargs):
    """`figure.savefig(path)` via a temporary file and a rename."""
    tmp = _temporary(path)
    figure.savefig(tmp, format=os.path.splitext(path)[1][1:] or "png", **kwargs)
    os.replace(tmp, path)


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def remove_temporaries(folder):
    """Deletes temporary files a killed writer left behind (``.NAME.tmp-PID-NAME``)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp-" in name:
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def load_state(checkpoint_dir):
    """The last completed epoch's state, or None; the model file it names must exist."""
    state = read_json(os.path.join(checkpoint_dir, STATE))
    if state is None:
        return None
    path = os.path.join(checkpoint_dir, state["checkpoint"])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The checkpoint {path} named by {os.path.join(checkpoint_dir, STATE)} is missing: "
            "the run folder was changed by hand; start a new run (or --overwrite)."
        )
    state["checkpoint_path"] = path
    return state


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model, the history and the state after every epoch, kill-safe.

    Args:
        checkpoint_dir: the folder of checkpoints and ``state.json``.
        history: per-epoch lists of the epochs completed before (a resumed run), or {}.
        on_epoch_saved: optional callable ``(history)`` run after each saved epoch (writes the
            run's ``history.json`` and the curves).
    """

    def __init__(self, checkpoint_dir, history=None, on_epoch_saved=None):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.on_epoch_saved = on_epoch_saved
        self._started = None
        os.makedirs(checkpoint_dir, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._started or time.perf_counter())
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                  "seconds": seconds}
        completed = self.history.get("epoch", [])
        if completed and completed[-1] >= epoch + 1:
            raise RuntimeError(f"epoch {epoch + 1} was already recorded: {completed}")
        for key in set(self.history) | set(record):
            # a metric that first appears now gets None for the earlier epochs
            column = self.history.setdefault(key, [None] * len(completed))
            column.append(record.get(key))
        name = f"epoch-{epoch + 1:04d}.keras"
        atomic_save_model(self.model, os.path.join(self.checkpoint_dir, name))
        atomic_write_json(os.path.join(self.checkpoint_dir, STATE), {
            "completed_epochs": epoch + 1, "checkpoint": name, "history": self.history})
        # only now may older checkpoints go (also any a kill left behind)
        for old in os.listdir(self.checkpoint_dir):
            if old.startswith("epoch-") and old.endswith(".keras") and old != name:
                os.remove(os.path.join(self.checkpoint_dir, old))
        if self.on_epoch_saved is not None:
            self.on_epoch_saved(self.history)
