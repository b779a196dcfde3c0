"""A quiet `keras-cnn-ext` command: TensorFlow's C++/absl and Python log lines off by default.

This module imports nothing but the standard library: `keras_cnn_ext/__init__.py` calls
`prepare_process()` before it imports TensorFlow, because TensorFlow's C++ logging reads its
level from the environment once, when the library loads. What was measured on TF 2.21 (CPU
wheel):

* ``TF_CPP_MIN_LOG_LEVEL=2`` set *before* ``import tensorflow`` removes every C++ line the
  commands printed: ``WARNING: All log messages before absl::InitializeLog() is called...``,
  ``I0000 ... cpu_feature_guard.cc`` (with its "To enable the following instructions" line),
  the oneDNN notice, and the run-time ``W0000 ... cache_dataset_ops.cc`` lines. At level 1 the
  "before absl::InitializeLog()" line still appears, and setting the variable after the import
  changes nothing, hence the timing. ERROR lines (level 2) still print: errors surface.
* The Python side is ordinary `logging` (the ``absl`` logger: tensorflow-datasets' "Variant
  folder ... has no dataset_info.json"; the ``tensorflow`` logger) and `warnings` raised inside
  Keras / TensorFlow; `quiet_python_logs()` raises those loggers to ERROR and ignores warnings
  attributed to those packages (this package's own warnings still show).

Only the command line is quieted, never a program that imports the package: `prepare_process()`
acts only when this process *is* the ``keras-cnn-ext`` script or ``python -m keras_cnn_ext``,
and a variable the user set is never overridden. ``--debug`` or ``-v`` / ``--show-logs`` on the
command line keeps every line.
"""

import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings

# the command-line flags that bring the log lines back (read from sys.argv before parsing:
# the C++ level must be decided before TensorFlow loads, long before argparse runs)
SHOW_LOGS_FLAGS = ("--debug", "-v", "--show-logs")
COMMAND = "keras-cnn-ext"
_QUIET_LOGGERS = ("absl", "tensorflow", "tensorflow_datasets", "keras_tuner", "h5py")
_QUIET_WARNING_MODULES = r"(keras|tensorflow|tensorflow_datasets|keras_tuner|absl|tf2onnx)(\.|$)"


def is_command_line(argv=None, orig_argv=None):
    """Whether this process was started as the `keras-cnn-ext` command.

    >>> is_command_line(["/usr/bin/keras-cnn-ext", "info"], [])
    True
    >>> is_command_line(["-m"], ["python", "-m", "keras_cnn_ext", "info"])
    True
    >>> is_command_line(["/usr/bin/pytest"], ["python", "-m", "pytest"])
    False
    """
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]).split(".")[0] == COMMAND:
        return True
    # `python -m keras_cnn_ext`: while the package is imported, sys.argv[0] is still "-m"
    for i, arg in enumerate(orig_argv[:-1]):
        if arg == "-m":
            return orig_argv[i + 1] in ("keras_cnn_ext", "keras_cnn_ext.cli")
        if arg.startswith("-m"):
            return arg[2:] in ("keras_cnn_ext", "keras_cnn_ext.cli")
    return False


def wants_logs(argv=None):
    """Whether the command line asks for TensorFlow's log lines (--debug, -v, --show-logs)."""
    argv = sys.argv[1:] if argv is None else argv
    return any(arg in SHOW_LOGS_FLAGS for arg in argv)


def quiet_native_logs(environ=None):
    """Sets TensorFlow's C++ log level to ERROR unless the user chose one (before the import)."""
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # gRPC (the distributed search's oracle) logs through absl too, with its own variable
    environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextlib.contextmanager
def quiet_python_logs():
    """Within the block, the third-party loggers are at ERROR and their packages' warnings are
    ignored; both are restored afterwards (`keras_cnn_ext.cli.main` may run inside a program)."""
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_QUIET_WARNING_MODULES)
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


# C++ lines that TensorFlow writes while its libraries load whatever TF_CPP_MIN_LOG_LEVEL says
# (measured on TF 2.21 with oneDNN on, i.e. AVX-512 machines: the absl pre-initialisation
# notice and port.cc's "oneDNN custom operations are on", once per loaded library): absl's
# INFO/WARNING lines ("I0000 00:00:...", "W0000 ...") and that notice. E and F lines pass.
_LOAD_NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\])")


def drop_load_noise(data):
    r"""`data` (bytes written to stderr) without TensorFlow's load-time INFO/WARNING lines.

    >>> drop_load_noise(b"I0000 00:00:1.5   42 port.cc:153] oneDNN custom operations are on\n"
    ...                 b"E0000 00:00:1.6   42 op.cc:1] a real error\n")
    b'E0000 00:00:1.6   42 op.cc:1] a real error\n'
    """
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not _LOAD_NOISE.match(line))


def import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 captured, then writes back what it printed
    minus the load-time INFO/WARNING lines. The level variable alone does not silence them
    (absl writes its notices before it reads any setting), and they come from C++, below
    Python's `sys.stderr`, so only the descriptor can catch them. An import error still
    propagates, and everything else written meanwhile (Python warnings, E lines) is kept."""
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow  # noqa: F401 - loaded here so that its notices are caught
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                kept = drop_load_noise(captured.read())
                if kept:
                    os.write(2, kept)
    finally:
        os.close(saved)


def prepare_process():
    """Called first by the package: quiets the C++ logs when this is the command line."""
    if is_command_line() and not wants_logs():
        quiet_native_logs()
        import_tensorflow_quietly()
