"""Helpers for tests that start processes: free localhost ports, the child environment, and
bounded runs that kill what they started by its own pid."""

import os
import signal
import socket
import subprocess
import sys
import time

import keras_cnn_ext

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the imported package lives: the checkout under `python -m pytest`, site-packages when
# the installed package is tested (CI). Children must import that same copy: only the installed
# one carries the compiled library.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(keras_cnn_ext.__file__)))


def free_ports(n):
    """`n` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def child_env(**extra):
    """The environment of a child interpreter that imports the parent's copy of the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("TF_CONFIG", None)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def start(args, log_path, **env):
    """Starts `python args...` with its output in `log_path`; returns the Popen.

    The child runs in the log's folder, not the checkout: `python -m` puts the working directory
    first on `sys.path`, which would shadow the installed package with the source tree.
    """
    log = open(log_path, "wb")  # noqa: SIM115 - closed by `finish`
    proc = subprocess.Popen([sys.executable, *args], cwd=os.path.dirname(os.path.abspath(log_path)),
                            env=child_env(**env),
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log
    proc.log_path = log_path
    return proc


def kill(proc):
    """Kills `proc` by its own pid (SIGKILL) if it is still running."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def finish(procs, timeout):
    """Waits for all `procs` until `timeout` seconds from now; kills any left by its pid.

    Returns:
        The exit codes (None for a process that had to be killed).
    """
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        kill(proc)
        proc.log_file.close()
    return codes


def tail(proc, chars=3000):
    """The end of a started process's log (for assertion messages)."""
    with open(proc.log_path, "rb") as f:
        return f.read().decode(errors="replace")[-chars:]
