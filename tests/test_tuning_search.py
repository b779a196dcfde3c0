"""Tuner construction, a real search on the embedded digits, SIGKILL + resume in a real
subprocess, and the `tune` command line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from keras_cnn_ext import cli  # noqa: E402
from keras_cnn_ext.tuning import HyperLeNet, create_tuner, search  # noqa: E402
from proc_helper import child_env  # noqa: E402



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One tfds folder for the module: digits is prepared once (offline)."""
    return str(tmp_path_factory.mktemp("tfds"))


# every test ends with a fresh Keras session (conftest)
pytestmark = pytest.mark.usefixtures("cleared_keras_session")


def test_create_tuner_never_builds_and_rejects_bad_names(tmp_path):
    calls = []

    class Counting(HyperLeNet):
        def build(self, hp):
            calls.append(1)
            return super().build(hp)

    for name in ("random", "bayesian", "hyperband"):
        tuner = create_tuner(Counting((16, 16, 1), 10), name, directory=tmp_path / name,
                             max_trials=3)
        assert tuner.oracle.max_trials == 3
        names = {hp.name for hp in tuner.oracle.get_space().space}
        assert {"conv1_kernel", "conv2_stride", "conv3_filters", "depth"} <= names
    assert calls == []  # KerasTuner's unguarded default build never happens
    with pytest.raises(ValueError, match="Received: tuner='grid'"):
        create_tuner(HyperLeNet((16, 16, 1), 10), "grid", directory=tmp_path / "g")


def test_a_foreign_hypermodel_whose_default_fails_gives_a_clear_error(tmp_path):
    def build(hp):
        hp.Int("units", 1, 4)
        raise keras_tuner.errors.FailedTrialError("the map vanishes at c3 (2x2 < 5x5)")

    with pytest.raises(ValueError, match="default configuration does not build.*2x2 < 5x5"):
        create_tuner(build, "random", directory=tmp_path)


def test_stock_tuner_constructor_builds_our_defaults_at_every_depth(tmp_path):
    # a plain keras_tuner.RandomSearch builds every conditional branch at its defaults
    tuner = keras_tuner.RandomSearch(HyperLeNet((8, 8, 1), 10), objective="val_accuracy",
                                     max_trials=1, directory=str(tmp_path))
    assert "conv3_kernel" in {hp.name for hp in tuner.oracle.get_space().space}


def test_the_oracle_redraws_configurations_that_do_not_fit(tmp_path):
    # the unshaped space (min_valid_fraction=0): many random draws make a map vanish
    hm = HyperLeNet((16, 16, 1), 10, min_valid_fraction=0.0)
    assert hm.exact_valid_fraction < 0.8
    for redraw, expect_all in ((True, True), (False, False)):
        tuner = create_tuner(hm, "random", directory=tmp_path / str(redraw), max_trials=200,
                             seed=3, redraw_unfit=redraw)
        fits = [hm.fits(tuner.oracle.populate_space(str(i))["values"]) for i in range(40)]
        assert all(fits) is expect_all


def test_search_on_digits_beats_the_default_model(tmp_path, data_dir):
    out = tmp_path / "run"
    result = search("lenet5", "digits", directory=out, max_trials=4, epochs=1,
                    image_size=16, baseline=True, data_dir=data_dir, verbose=0, seed=0)
    assert result["completed"] == 4 and result["failed"] == 0
    best, base = result["best"], result["baseline"]
    # LeNet-5's sigmoid default barely moves in one epoch; the search finds better
    assert best["score"] > base["score"] + 0.1, (best, base)
    assert base["values"]["activation"] == "sigmoid"
    assert best["geometry"][0][0] == "c1"
    for name in ("trials.csv", "scores.png", "best_model.keras", "results.json",
                 "best_hyperparameters.json", "search.json", "baseline.json"):
        assert (out / name).exists(), name
    with open(out / "trials.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
    assert {"conv1_kernel", "conv1_stride", "conv1_filters", "learning_rate"} <= set(rows[0])
    model = keras.models.load_model(out / "best_model.keras")
    assert model.get_layer("c1").kernel.shape[0] == best["values"]["conv1_kernel"]
    # a non-empty folder is refused without resume / overwrite
    with pytest.raises(FileExistsError, match="Expected an empty or new folder"):
        search("lenet5", "digits", directory=out, max_trials=4, data_dir=data_dir)


def _trial_states(project):
    states = {}
    if not os.path.isdir(project):
        return states
    for name in os.listdir(project):
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    states[name] = json.load(f)["status"]
            except (OSError, ValueError):
                pass  # never half-written (atomic rename), but be safe while polling
    return states


def _tune_command(directory, data_dir, *extra):
    return [sys.executable, "-m", "keras_cnn_ext", "tune", "lenet5", "--dataset", "digits",
            "--max-trials", "4", "--epochs", "2", "--image-size", "16", "--quiet",
            "--directory", str(directory), "--data-dir", data_dir, *extra]


@pytest.mark.slow
def test_sigkill_then_resume_reruns_only_the_trial_in_flight(tmp_path, data_dir):
    out = tmp_path / "killed"
    project = str(out / "search")
    env = child_env(TF_CPP_MIN_LOG_LEVEL=3)
    proc = subprocess.Popen(_tune_command(out, data_dir), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            states = _trial_states(project)
            if (list(states.values()).count("COMPLETED") >= 2
                    and "RUNNING" in states.values()):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _trial_states(project)
    done = sorted(t for t, s in before.items() if s == "COMPLETED")
    in_flight = [t for t, s in before.items() if s == "RUNNING"]
    assert len(done) >= 2 and len(in_flight) == 1, before
    stamps = {t: os.stat(os.path.join(project, t, "trial.json")).st_mtime_ns for t in done}

    run = subprocess.run(_tune_command(out, data_dir, "--resume"), env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    after = _trial_states(project)
    assert sorted(after) == [f"trial_{i}" for i in range(4)]
    assert set(after.values()) == {"COMPLETED"}
    # the completed trials were not run again; the one in flight was
    for t in done:
        assert os.stat(os.path.join(project, t, "trial.json")).st_mtime_ns == stamps[t], t
    with open(out / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["completed"] == 4 and results["max_trials"] == 4
    assert "Best trial" in run.stdout and "conv1: kernel" in run.stdout


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code, capsys.readouterr().err


def test_cli_bad_names_exit_2_with_the_valid_choices(tmp_path, capsys):
    code, err = _cli(["tune", "lenet6", "--directory", str(tmp_path / "a")], capsys)
    assert code == 2 and "lenet5, vgg, resnet" in err and "'lenet6'" in err
    code, err = _cli(["tune", "vgg", "--tuner", "grid", "--directory", str(tmp_path / "b")],
                     capsys)
    assert code == 2 and "random, bayesian, hyperband" in err
    code, err = _cli(["tune", "vgg", "--max-trials", "0"], capsys)
    assert code == 2 and "--max-trials" in err
    code, err = _cli(["tune", "lenet5", "--dataset", "no_such_set",
                      "--directory", str(tmp_path / "c")], capsys)
    assert code == 2 and "no_such_set" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, err = _cli(["tune", "lenet5", "--directory", str(busy)], capsys)
    assert code == 2 and "--resume" in err and "not empty" in err
    code, err = _cli(["tune", "lenet5", "--directory", str(busy), "--resume",
                      "--image-size", "16"], capsys)
    assert code == 2 and "has none" in err  # not a search folder: nothing to resume
    code, err = _cli(["tune", "lenet5", "--directory", str(busy), "--overwrite"], capsys)
    assert code == 2 and "only replaces a search folder" in err
    assert (busy / "notes.txt").read_text() == "mine"
