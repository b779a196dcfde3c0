"""Tests of `keras_cnn_ext.distribute.tuning`: KerasTuner's chief/worker search with bounded
waits, on 127.0.0.1 with free ports; processes bounded in time and killed by their pid."""

import json
import os
import signal
import time

import pytest

from keras_cnn_ext.distribute import tuning

from proc_helper import finish, free_ports, kill, start, tail

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tuning_child.py")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- configuration


def test_conditional_hyperparameters_cross_to_protobuf_silently_and_unchanged(capsys):
    """KerasTuner 1.4 prints a conditional hyperparameter's first value each time it is turned
    into a protobuf (every trial of a distributed search); the replacement is silent and makes
    the same messages: the space round-trips with every kind of parent value."""
    import keras_tuner

    tuning.quiet_condition_protos()
    tuning.quiet_condition_protos()  # idempotent
    hp = keras_tuner.HyperParameters()
    for parent, values, value in (("depth", [1, 2, 3], 2), ("act", ["relu", "tanh"], "relu"),
                                  ("bn", [True, False], True), ("lr", [0.1, 0.01], 0.1)):
        hp.Choice(parent, values, default=value)
        with hp.conditional_scope(parent, values[:1]):
            hp.Int(f"{parent}_child", 1, 8, default=4)
    capsys.readouterr()
    proto = hp.to_proto()
    assert capsys.readouterr().out == ""
    again = keras_tuner.HyperParameters.from_proto(proto)
    assert again.values == hp.values
    conditions = {p.name: [c.get_config() for c in p.conditions] for p in again.space}
    assert conditions["depth_child"] == [{"name": "depth", "values": [1]}]
    assert conditions["act_child"] == [{"name": "act", "values": ["relu"]}]
    assert conditions["bn_child"] == [{"name": "bn", "values": [True]}]
    assert conditions["lr_child"] == [{"name": "lr", "values": [0.1]}]



def test_cluster_validates_its_arguments():
    with pytest.raises(ValueError, match=r"argument `role`.*Received: role='boss'"):
        tuning.TuningCluster("boss", "127.0.0.1:1")
    with pytest.raises(ValueError, match=r"argument `oracle`.*Received: oracle='localhost'"):
        tuning.TuningCluster("chief", "localhost")
    with pytest.raises(ValueError, match=r"Received: oracle='h:70000'"):
        tuning.TuningCluster("chief", "h:70000")
    with pytest.raises(ValueError, match=r"contains 'chief'.*Received: tuner_id='mischief'"):
        tuning.TuningCluster("worker", "h:1", tuner_id="mischief")
    with pytest.raises(ValueError, match=r"argument `heartbeat_timeout`"):
        tuning.TuningCluster("worker", "h:1", tuner_id="w", heartbeat_interval=5,
                             heartbeat_timeout=5)
    with pytest.raises(ValueError, match=r"argument `workers`"):
        tuning.TuningCluster("chief", "h:1", workers=["tuner0", "chief1"])


def test_roles_and_keras_tuner_ids():
    chief = tuning.TuningCluster("chief", "10.0.0.1:8000", tuner_id="main")
    assert chief.environ() == {"KERASTUNER_TUNER_ID": "chief",
                               "KERASTUNER_ORACLE_IP": "10.0.0.1",
                               "KERASTUNER_ORACLE_PORT": "8000"}
    assert tuning.TuningCluster("chief", "h:1", tuner_id="chief-a").keras_tuner_id == "chief-a"
    assert tuning.TuningCluster("chief", "h:1", workers="tuner0, tuner1").workers == (
        "tuner0", "tuner1")
    assert tuning.TuningCluster("chief", "h:1", workers="3").workers == 3


def test_cluster_from_keras_tuner_environment():
    assert tuning.TuningCluster.from_env({}) is None
    env = {"KERASTUNER_TUNER_ID": "tuner3", "KERASTUNER_ORACLE_IP": "10.1.2.3",
           "KERASTUNER_ORACLE_PORT": "9000"}
    worker = tuning.TuningCluster.from_env(env, connect_timeout=5)
    assert (worker.role, worker.tuner_id, worker.oracle, worker.connect_timeout) == (
        "worker", "tuner3", "10.1.2.3:9000", 5.0)
    env.update(KERASTUNER_TUNER_ID="chief", KERAS_CNN_EXT_TUNER_WORKERS="tuner0,tuner3")
    chief = tuning.TuningCluster.from_env(env)
    assert (chief.role, chief.workers) == ("chief", ("tuner0", "tuner3"))
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID"):
        tuning.TuningCluster.from_env({"KERASTUNER_ORACLE_IP": "h"})


# ----------------------------------------------------------------------------- bounded waits


def test_worker_fails_fast_when_no_chief_answers():
    (port,) = free_ports(1)
    cluster = tuning.TuningCluster("worker", f"127.0.0.1:{port}", tuner_id="tuner0",
                                   connect_timeout=1.5)

    def make_tuner():  # never reached: the worker checks the chief first
        raise AssertionError("the tuner must not be built without a chief")

    began = time.monotonic()
    with pytest.raises(tuning.TuningClusterError,
                       match=rf"no tuning chief answered at 127.0.0.1:{port} within 1.5 s"):
        tuning.run_distributed(cluster, make_tuner)
    assert time.monotonic() - began < 30
    assert "KERASTUNER_TUNER_ID" not in os.environ  # the variables are restored


def test_chief_gives_up_naming_the_workers_that_never_came(tmp_path):
    keras_tuner = pytest.importorskip("keras_tuner")
    import keras

    def build(hp):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("u", 1, 4))])
        model.compile(loss="mse")
        return model

    (port,) = free_ports(1)
    cluster = tuning.TuningCluster("chief", f"127.0.0.1:{port}", workers="tuner0,tuner1",
                                   worker_timeout=1.5)

    def make_tuner():
        return keras_tuner.RandomSearch(build, objective="loss", max_trials=2,
                                        directory=str(tmp_path), project_name="p")

    with pytest.raises(tuning.TuningClusterError,
                       match=r"no tuner worker connected .* within 1.5 s "
                             r"\(missing: tuner0, tuner1\)"):
        tuning.run_distributed(cluster, make_tuner)
    status = _read(tmp_path / "p" / tuning.STATUS_FILE)
    assert status["state"] == "gave_up" and "tuner0, tuner1" in status["error"]


# ----------------------------------------------------------------------------- subprocesses


def _search(tmp_path, max_trials, pauses):
    ports = free_ports(1)
    oracle = f"127.0.0.1:{ports[0]}"
    directory = str(tmp_path / "search")
    ids = [f"tuner{i}" for i in range(len(pauses))]
    chief = start([CHILD, "chief", oracle, directory, str(tmp_path / "chief.json"),
                   str(max_trials), ",".join(ids)], str(tmp_path / "chief.log"))
    workers = [start([CHILD, "worker", oracle, directory, str(tmp_path / f"{t}.json"),
                      str(max_trials), t, str(pause)], str(tmp_path / f"{t}.log"))
               for t, pause in zip(ids, pauses)]
    return chief, workers, os.path.join(directory, "search", tuning.STATUS_FILE)


@pytest.mark.slow
def test_cli_chief_and_two_workers_complete_every_trial_exactly_once(digits_data_dir, tmp_path):
    """`keras-cnn-ext tune --distributed`: a chief and 2 workers search LeNet-5's space on the
    embedded digits; every trial is completed exactly once and the chief writes the results."""
    (port,) = free_ports(1)
    directory = tmp_path / "tune"
    command = ["-m", "keras_cnn_ext", "tune", "lenet5", "--dataset", "digits", "--data-dir",
               digits_data_dir, "--max-trials", "3", "--epochs", "1", "--directory",
               str(directory), "--quiet", "--oracle", f"127.0.0.1:{port}",
               "--heartbeat-timeout", "20"]
    chief = start(command + ["--distributed", "chief", "--workers", "tuner0,tuner1"],
                  str(tmp_path / "chief.log"))
    workers = [start(command + ["--distributed", "worker", "--tuner-id", t],
                     str(tmp_path / f"{t}.log")) for t in ("tuner0", "tuner1")]
    codes = finish([chief, *workers], timeout=300)
    assert codes == [0, 0, 0], "\n-----\n".join(tail(p) for p in (chief, *workers))
    results = _read(directory / "results.json")
    assert results["completed"] == 3 and results["failed"] == 0
    status = _read(directory / "search" / tuning.STATUS_FILE)
    assert status["state"] == "done" and status["lost"] == []
    assert status["ended"] == {"0": 1, "1": 1, "2": 1}  # each trial ended exactly once
    assert all(len(who) == 1 for who in status["assignments"].values())
    ran = sorted(t for who in status["assignments"].values() for t in who)
    assert set(ran) <= {"tuner0", "tuner1"} and len(ran) == 3
    assert (directory / "best_model.keras").exists() and (directory / "trials.csv").exists()
    out = tail(chief, 20000)
    assert "Distributed search: 3 trial(s) ended once each" in out
    for t, proc in zip(("tuner0", "tuner1"), workers):
        assert f"Worker {t} ran trial(s)" in tail(proc)


def test_cli_distributed_flags_are_checked(capsys):
    from keras_cnn_ext.cli import main

    for argv, message in (
            (["--distributed", "boss"], "--distributed"),
            (["--distributed", "worker", "--oracle", "h:1"], "--tuner-id"),
            (["--distributed", "worker", "--oracle", "h:1", "--tuner-id", "chief-1"],
             "contains 'chief'"),
            (["--distributed", "chief"], "--oracle"),
            (["--oracle", "h:1"], "go with --distributed")):
        with pytest.raises(SystemExit) as exit_info:
            main(["tune", "lenet5", *argv])
        assert exit_info.value.code == 2, (argv, message)
        assert message in capsys.readouterr().err, argv


@pytest.mark.slow
def test_killed_worker_does_not_hang_the_chief_and_its_trial_is_rerun(tmp_path):
    # tuner1 pauses 20 s per trial, so it is surely inside a trial when it is killed
    chief, workers, status_path = _search(tmp_path, max_trials=3, pauses=[0, 20])
    victim = workers[1]
    deadline = time.monotonic() + 180
    trial = None
    while time.monotonic() < deadline and trial is None:
        time.sleep(0.5)
        if os.path.exists(status_path):
            trial = _read(status_path)["running"].get("tuner1")
        if chief.poll() is not None:
            break
    assert trial is not None, "tuner1 never started a trial:\n" + tail(chief)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at, killed_wall = time.monotonic(), time.time()
    codes = finish([chief, workers[0]], timeout=180)
    kill(victim)
    assert codes == [0, 0], "\n-----\n".join(tail(p) for p in (chief, workers[0]))
    recovery = time.monotonic() - killed_at
    result = _read(tmp_path / "chief.json")
    assert result["state"] == "done"
    assert result["trials"] == result["completed"] == 3
    assert result["ended"] == {t: 1 for t in result["status"]}
    assert [(e["tuner_id"], e["trial"]) for e in result["lost"]] == [("tuner1", trial)]
    assert result["assignments"][trial] == ["tuner1", "tuner0"]
    assert trial in _read(tmp_path / "tuner0.json")["trials"]
    detected = result["lost"][0]["at"] - killed_wall
    assert 0 < detected < 60  # heartbeat_timeout is 6 s in the child
    print(f"killed tuner1 in trial {trial}: declared lost {detected:.1f} s later, "
          f"search finished {recovery:.1f} s after the kill")


@pytest.mark.slow
def test_chief_killed_and_restarted_resumes_and_keeps_the_running_trials(tmp_path):
    chief, workers, status_path = _search(tmp_path, max_trials=4, pauses=[4, 4])
    deadline = time.monotonic() + 180
    running = {}
    while time.monotonic() < deadline and len(running) < 2 and chief.poll() is None:
        time.sleep(0.3)
        if os.path.exists(status_path):
            running = _read(status_path)["running"]
    assert len(running) == 2, "the workers never ran two trials at once:\n" + tail(chief)
    kill(chief)  # SIGKILL, by its pid
    chief.log_file.close()
    restarted = start([CHILD, "chief", _read(status_path)["oracle"], str(tmp_path / "search"),
                       str(tmp_path / "chief.json"), "4", "tuner0,tuner1"],
                      str(tmp_path / "chief2.log"))
    codes = finish([restarted, *workers], timeout=200)
    assert codes == [0, 0, 0], "\n-----\n".join(tail(p) for p in (restarted, *workers))
    result = _read(tmp_path / "chief.json")
    assert result["state"] == "done"
    assert result["trials"] == result["completed"] == 4
    assert result["ended"] == {t: 1 for t in result["status"]}
    ran = [_read(tmp_path / f"tuner{i}.json")["trials"] for i in range(2)]
    assert sorted(ran[0] + ran[1]) == sorted(result["status"])  # nothing ran twice
    for tuner_id, trial in running.items():  # the in-flight trials stayed with their workers
        assert result["assignments"][trial] == [tuner_id]
        assert trial in ran[int(tuner_id[-1])]
