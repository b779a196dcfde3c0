"""A quiet command line: by default `keras-cnn-ext` prints its own output only, no TensorFlow
C++/absl log line and no tensorflow-datasets "Downloading" for the embedded digits (nothing is
downloaded); `-v` / `--debug` bring the log lines back. Real subprocesses, bounded in time."""

import re
import subprocess
import sys

import proc_helper
from keras_cnn_ext import _logs

# what TensorFlow / absl / tfds print: C++ log lines (I0000 00:00:... file.cc:N]), the absl
# pre-initialisation notice and its follow-up, Python's absl logger, tfds's download notices,
# and Python warnings raised inside the libraries
NOISE = [
    re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M),
    re.compile(r"absl::InitializeLog"),
    re.compile(r"cpu_feature_guard|oneDNN custom operations|rebuild TensorFlow with"),
    re.compile(r"^(WARNING|INFO|ERROR):(absl|tensorflow)", re.M),
    re.compile(r"Downloading|downloaded and prepared"),
    re.compile(r"(UserWarning|DeprecationWarning|FutureWarning):"),
]


def test_default_train_output_is_the_commands_own(tmp_path):
    log = tmp_path / "train.log"
    # a fresh tfds folder, so the embedded set is prepared by this command; and no
    # TF_CPP_MIN_LOG_LEVEL from the test environment: the command must quiet TensorFlow itself
    proc = proc_helper.start(
        ["-m", "keras_cnn_ext", "train", "lenet5", "--dataset", "digits", "--epochs", "1",
         "--max-examples", "64", "-b", "32", "-o", str(tmp_path / "run"), "--verbose", "2"],
        str(log), TF_CPP_MIN_LOG_LEVEL=None, TFDS_DATA_DIR=tmp_path / "tfds")
    assert proc_helper.finish([proc], timeout=300) == [0], proc_helper.tail(proc)
    text = log.read_text()
    assert "Preparing the embedded data set 'digits'" in text and "test accuracy" in text
    for pattern in NOISE:
        assert not pattern.search(text), (pattern.pattern, text)
    own = ("Preparing the embedded", "Output folder:", "Epoch ", "test accuracy",
           "Wrote model.keras")
    foreign = [line for line in text.splitlines() if line.strip()
               and not line.startswith(own) and not re.match(r"^\d+/\d+ - ", line)]
    assert not foreign, text


_LEVEL_CODE = ("import os, sys; sys.argv = ['/usr/bin/keras-cnn-ext'] + sys.argv[1:]; "
               "import keras_cnn_ext; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")


def _levels_at_import(cases):
    """TF_CPP_MIN_LOG_LEVEL as each process sees it right after importing the package (the
    moment TensorFlow loaded). `cases`: (argv, TF_CPP_MIN_LOG_LEVEL given, started as the
    command line?) each; the processes run side by side (each spends seconds importing
    TensorFlow), bounded and killed by their pid."""
    procs = []
    for argv, level, as_command in cases:
        args = ["-c", _LEVEL_CODE if as_command else
                "import os, keras_cnn_ext; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))", *argv]
        procs.append(subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env=proc_helper.child_env(TF_CPP_MIN_LOG_LEVEL=level)))
    levels = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            levels.append(out.split()[-1])
    finally:
        for proc in procs:
            proc_helper.kill(proc)
    return levels


def test_the_log_lines_return_with_v_or_debug_and_a_users_level_is_kept():
    train, verbose, users, program = _levels_at_import([
        (("train", "lenet5"), None, True),
        (("info", "-v"), None, True),  # --debug, --show-logs: below
        (("info",), "0", True),  # the user's choice wins
        ((), None, False),  # a program that imports the package is never quieted
    ])
    assert train == "2"  # ours
    # not ours ("2"); where jax is installed, TensorFlow's import imports it (tf.lite) and jax
    # sets a default of "1" (after TensorFlow's C++ side has read the level): not None then
    unquieted = ("None", "1")
    assert verbose in unquieted and program in unquieted
    assert users == "0"


def test_command_line_detection():
    assert _logs.is_command_line(["/venv/bin/keras-cnn-ext", "train"], [])
    assert _logs.is_command_line(["-m"], ["/venv/bin/python", "-u", "-m", "keras_cnn_ext"])
    assert _logs.is_command_line(["-m"], ["python", "-mkeras_cnn_ext", "info"])
    assert not _logs.is_command_line(["-m"], ["python", "-m", "pytest", "-m", "keras_cnn_ext"])
    assert not _logs.is_command_line(["script.py"], ["python", "script.py"])
    for flag in ("-v", "--debug", "--show-logs"):
        assert _logs.wants_logs(["train", "lenet5", flag])
    assert not _logs.wants_logs(["info"]) and not _logs.wants_logs(["train", "--verbose", "2"])
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    _logs.quiet_native_logs(env)
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0"  # the user's choice wins
