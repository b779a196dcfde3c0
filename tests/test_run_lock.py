"""One writer per run folder (keras_cnn_ext.training.lock): a second process on a folder in use
is refused with exit code 2 naming the holder's pid and host and writes nothing; a SIGKILLed
holder's lock is taken over with a message; racing processes get the lock exactly once."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import proc_helper
from keras_cnn_ext.training import lock

LOCK_FILE = lock.__file__

# A child that holds a folder's lock. It loads lock.py by its path under a stub of the package
# (lock.py and keras_cnn_ext._process need only the standard library), so it starts in
# milliseconds instead of importing TensorFlow through the package's __init__. With a "go" file
# named it first waits for that file to exist, so racers try the lock at the same moment however
# slowly each one started.
HOLDER = textwrap.dedent("""
    import importlib.util, os, sys, time, types
    package = types.ModuleType("keras_cnn_ext")
    package.__path__ = [os.path.dirname(os.path.dirname(sys.argv[1]))]
    sys.modules["keras_cnn_ext"] = package
    spec = importlib.util.spec_from_file_location("kce_lock", sys.argv[1])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    hold = float(sys.argv[3])
    if len(sys.argv) > 4:
        print("ready", flush=True)
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.005)
    try:
        with lock.folder_lock(sys.argv[2], command="test holder", announce=print):
            print("locked", flush=True)
            time.sleep(hold)
    except lock.FolderLockedError as exc:
        print("refused", exc, flush=True)
        sys.exit(2)
""")


def _start_holder(tmp_path, folder, hold=600.0, name="holder", go=None):  # killed by the test
    # one script per holder: rewriting a shared one while an earlier holder's interpreter is
    # still reading it let that holder read an empty file and exit 0 with no output
    script = tmp_path / f"{name}.py"
    script.write_text(HOLDER)
    args = [str(script), LOCK_FILE, str(folder), str(hold)] + ([str(go)] if go else [])
    return proc_helper.start(args, str(tmp_path / f"{name}.log"))


def _wait_for(proc, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc_helper.tail(proc) or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert text in proc_helper.tail(proc), proc_helper.tail(proc)


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


def test_second_process_on_a_folder_in_use_exits_2_naming_pid_and_host(tmp_path):
    run = tmp_path / "runA"
    run.mkdir()
    (run / "args.json").write_text("{}")  # a run folder in use
    (tmp_path / "model.keras").write_text("not read: the lock comes first")
    # an export in progress: its target does not exist yet (it is renamed into place at the end)
    target = tmp_path / "export" / "1"
    holder = _start_holder(tmp_path, run)
    exporter = _start_holder(tmp_path, target, name="exporter")
    try:
        _wait_for(holder, "locked")
        _wait_for(exporter, "locked")
        before = _listing(tmp_path)
        commands = {
            "train": ["train", "lenet5", "--output", str(run), "--resume"],
            "tune": ["tune", "lenet5", "--output", str(run), "--resume"],
            "export": ["export", str(tmp_path / "model.keras"), "--output", str(target)],
        }
        procs = {name: proc_helper.start(["-m", "keras_cnn_ext", *argv],
                                         str(tmp_path / f"{name}.log"))
                 for name, argv in commands.items()}
        codes = dict(zip(procs, proc_helper.finish(list(procs.values()), timeout=240)))
        for name, proc in procs.items():
            text = proc_helper.tail(proc)
            assert codes[name] == 2, (name, text)
            pid = (exporter if name == "export" else holder).pid
            assert f"is in use by pid {pid} on host {socket.gethostname()}" in text, text
            assert "test holder" in text and "Traceback" not in text
        assert _listing(tmp_path) == sorted(before + [f"{n}.log" for n in procs])
        assert holder.poll() is None and exporter.poll() is None  # never disturbed
        assert not target.exists()
    finally:
        proc_helper.finish([holder, exporter], timeout=0)


def test_the_lock_of_a_sigkilled_holder_is_taken_over_with_a_message(tmp_path):
    run = tmp_path / "runB"
    holder = _start_holder(tmp_path, run)
    _wait_for(holder, "locked")
    os.kill(holder.pid, signal.SIGKILL)
    proc_helper.finish([holder], timeout=10)
    left = json.loads(open(lock.lock_path(run)).read())
    assert left["pid"] == holder.pid  # the file stays; the kernel released the flock
    messages = []
    with lock.folder_lock(run, announce=messages.append):
        assert lock.read_holder(run)["pid"] == os.getpid()
        # and a second process is refused while this one holds it
        second = _start_holder(tmp_path, run, hold=0, name="second")
        assert proc_helper.finish([second], timeout=30) == [2]
        assert f"is in use by pid {os.getpid()} on host" in proc_helper.tail(second)
    assert messages == [f"Taking over the lock on {run} left by pid {holder.pid} on host "
                        f"{socket.gethostname()} (that process is no longer running)."]
    assert not os.path.exists(lock.lock_path(run))


def test_processes_racing_for_a_stale_lock_get_it_exactly_once(tmp_path):
    run = tmp_path / "runC"
    path = lock.lock_path(run)
    with open(path, "w") as f:  # the record of a holder that is gone
        json.dump({"pid": 2 ** 22 + 17, "host": socket.gethostname()}, f)
    go = tmp_path / "go"
    racers = [_start_holder(tmp_path, run, hold=3.0, name=f"racer{i}", go=go) for i in range(4)]
    for racer in racers:
        _wait_for(racer, "ready")
    go.write_text("")
    codes = proc_helper.finish(racers, timeout=60)
    logs = [proc_helper.tail(p) for p in racers]
    assert sorted(codes) == [0, 2, 2, 2], logs
    winner = racers[codes.index(0)]
    for proc, text in zip(racers, logs):
        if proc is not winner:
            assert f"is in use by pid {winner.pid}" in text, text


def test_reentrant_within_a_process_and_released_by_the_outermost(tmp_path):
    run = tmp_path / "runD"
    with lock.folder_lock(run, announce=None):
        with lock.folder_lock(str(run) + "/", announce=None):  # another spelling, same lock
            pass
        assert os.path.exists(lock.lock_path(run))
    assert not os.path.exists(lock.lock_path(run))


def test_fallback_without_flock_takes_over_only_a_dead_pid_of_this_host(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "fcntl", None)  # a file system without flock
    run = tmp_path / "runE"
    path = lock.lock_path(run)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for holder, refused in (({"pid": sleeper.pid, "host": socket.gethostname()}, True),
                                ({"pid": 2 ** 22 + 17, "host": "another-host"}, True),
                                ({"pid": 2 ** 22 + 17, "host": socket.gethostname()}, False)):
            with open(path, "w") as f:
                json.dump(holder, f)
            messages = []
            if refused:
                with pytest.raises(lock.FolderLockedError,
                                   match=f"pid {holder['pid']} on host {holder['host']}"):
                    with lock.folder_lock(run, announce=messages.append):
                        pass
                assert json.load(open(path)) == holder  # untouched
            else:
                with lock.folder_lock(run, announce=messages.append):
                    assert lock.read_holder(run)["pid"] == os.getpid()
                assert "Taking over" in messages[0] and not os.path.exists(path)
    finally:
        proc_helper.kill(sleeper)
