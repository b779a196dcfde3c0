"""kce.training: the main job's accuracy, run folder, refusal to overwrite, exact resume, and a
real SIGKILL in the middle of a command-line run followed by --resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_cnn_ext import training
from proc_helper import child_env

# tiny runs: 96 examples per split, 3 batches per epoch
TINY = dict(max_examples=96, batch_size=32, tensorboard=False, verbose=0)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_main_job_reaches_097_on_held_out_digits(digits_data_dir, tmp_path):
    """README command 1 with its defaults: LeNet-5, digits, 20 epochs, >= 0.97 on the test
    split, and the run folder holds every file the issue lists."""
    out = tmp_path / "run"
    metrics = training.train("lenet5", "digits", output=str(out), data_dir=digits_data_dir,
                             verbose=0)
    assert metrics["test_accuracy"] >= 0.97, metrics
    assert metrics["epochs"] == 20 and metrics["test_split"] == "test"
    for name in ("model.keras", "metrics.json", "history.json", "training_curves.png",
                 "args.json", "checkpoints/state.json", "checkpoints/epoch-0020.keras"):
        assert (out / name).exists(), name
    assert any((out / "logs" / "train").iterdir())  # TensorBoard event files
    stored = _read(out / "metrics.json")
    for key in ("test_accuracy", "test_loss", "epochs", "seconds", "model", "dataset", "seed"):
        assert stored[key] == metrics[key]
    history = _read(out / "history.json")
    assert history["epoch"] == list(range(1, 21))
    assert len(history["val_accuracy"]) == 20 and history["loss"][-1] < history["loss"][0]
    assert _read(out / "args.json")["arguments"]["model"] == "lenet5"
    again = training.evaluate(str(out / "model.keras"), "digits", data_dir=digits_data_dir)
    assert again["examples"] == 359
    assert abs(again["accuracy"] - metrics["test_accuracy"]) < 1e-6


def test_refuses_a_non_empty_output_unless_told(digits_data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not empty \(notes.txt\).*--resume.*--overwrite"):
        training.train(output=str(out), data_dir=digits_data_dir, epochs=1, **TINY)
    training.train(output=str(out), data_dir=digits_data_dir, epochs=1, overwrite=True, **TINY)
    assert (out / "model.keras").exists()
    assert (out / "notes.txt").read_text() == "mine"  # overwrite replaces run files only
    with pytest.raises(ValueError, match="argument `overwrite`"):
        training.train(output=str(out), resume=True, overwrite=True)


def test_default_output_folder_per_run(digits_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    metrics = training.train(data_dir=digits_data_dir, epochs=1, **dict(TINY, verbose=2))
    out = metrics["output"]
    assert os.path.dirname(out) == os.path.join("runs", "train")
    assert os.path.basename(out).startswith("lenet5-digits-")
    assert (tmp_path / out / "model.keras").exists()
    printed = capsys.readouterr().out
    assert f"Output folder: {out}" in printed and f"to {out}" in printed
    assert training.default_output("lenet5", "digits") != out  # never an existing folder


def test_resume_continues_exactly_and_keeps_settings(digits_data_dir, tmp_path):
    """2 epochs + resume to 3 == 3 epochs uninterrupted (same batches, same weights), and a
    resumed run refuses changed settings."""
    common = dict(data_dir=digits_data_dir, schedule="constant", seed=3, **TINY)
    straight = training.train(output=str(tmp_path / "a"), epochs=3, **common)
    training.train(output=str(tmp_path / "b"), epochs=2, **common)
    resumed = training.train(output=str(tmp_path / "b"), epochs=3, resume=True,
                             data_dir=digits_data_dir, verbose=0, tensorboard=False)
    ha, hb = (_read(tmp_path / d / "history.json") for d in ("a", "b"))
    assert hb["epoch"] == [1, 2, 3] and resumed["resumed"] and resumed["epochs"] == 3
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-5)
    np.testing.assert_allclose(hb["val_loss"], ha["val_loss"], rtol=1e-5)
    assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match=r"batch_size=16 \(the run has 32\)"):
        training.train(output=str(tmp_path / "b"), resume=True, batch_size=16)
    with pytest.raises(ValueError, match=r"argument `model`.*Received: model='lenet'"):
        training.train("lenet", output=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"argument `optimizer`"):
        training.train(optimizer="adamax", output=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"argument `epochs`"):
        training.train(epochs=0, output=str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()  # nothing written for a rejected call


def _wait_for_epochs(state_path, epochs, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _read(state_path)["completed_epochs"] >= epochs:
                return True
        except (OSError, ValueError, KeyError):
            pass  # not written yet (never half-written: the writer renames)
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing(digits_data_dir, tmp_path):
    """A command-line run killed with SIGKILL mid-run, then `--resume`: the final history has
    every epoch exactly once, and equals an uninterrupted run's."""
    out = tmp_path / "run"
    env = child_env()
    command = [sys.executable, "-m", "keras_cnn_ext", "train", "lenet5", "--dataset", "digits",
               "--data-dir", digits_data_dir, "--epochs", "8", "--max-examples", "128",
               "--no-tensorboard", "--verbose", "2", "--output", str(out)]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        reached = _wait_for_epochs(out / "checkpoints" / "state.json", 2, proc, timeout=240)
        assert reached and proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    killed_at = _read(out / "checkpoints" / "state.json")["completed_epochs"]
    assert 2 <= killed_at < 8 and not (out / "metrics.json").exists()
    done = subprocess.run(command + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Resuming after epoch {killed_at}" in done.stdout
    history = _read(out / "history.json")
    assert history["epoch"] == list(range(1, 9))
    assert all(len(values) == 8 for values in history.values())
    metrics = _read(out / "metrics.json")
    assert metrics["epochs"] == 8 and metrics["resumed"] is True
    assert [n for n in os.listdir(out / "checkpoints") if n.endswith(".keras")] == \
        ["epoch-0008.keras"]
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    # the same run never interrupted, in this process: identical losses epoch by epoch
    straight = tmp_path / "straight"
    training.train("lenet5", "digits", epochs=8, max_examples=128, data_dir=digits_data_dir,
                   output=str(straight), tensorboard=False, verbose=0)
    np.testing.assert_allclose(history["loss"], _read(straight / "history.json")["loss"],
                               rtol=1e-4)
