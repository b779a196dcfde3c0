"""keras_cnn_ext: textbook-exact convolutional networks for Keras 3 / TensorFlow.

Importing the package is cheap: it imports TensorFlow and Keras, never tensorflow_datasets
or keras_tuner (those load when `kce.data` / `kce.tuning` members are first used).
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

import importlib.util as _util

from keras_cnn_ext import _logs

# The `keras-cnn-ext` command prints its own output only: TensorFlow's C++ logging reads its
# level once, when TensorFlow loads, so it is set here, before the first TensorFlow import
# (a no-op for programs that import the package; see _logs.py).
_logs.prepare_process()

if _util.find_spec("tensorflow") is None:  # not a dependency of the distribution: say so
    raise ImportError(
        "keras_cnn_ext needs TensorFlow, which it does not install itself (it ships as "
        "tensorflow, tensorflow-cpu, tensorflow[and-cuda], ...): install the one for this "
        "machine, e.g. `pip install tensorflow`, or `pip install keras_cnn_ext[tensorflow]`"
    )

from keras_cnn_ext._backend import TensorFlowOnlyError  # noqa: E402,F401
from keras_cnn_ext import ops  # noqa: E402
from keras_cnn_ext import layers  # noqa: E402
from keras_cnn_ext import models  # noqa: E402
from keras_cnn_ext import analysis  # noqa: E402
from keras_cnn_ext import distribute  # noqa: E402
from keras_cnn_ext import export  # noqa: E402  (cheap: TensorFlow loads when it runs)

# Submodules with heavier dependencies (tensorflow_datasets, matplotlib, keras_tuner) load on
# first attribute access: `kce.data.load(...)` works without importing them up front.
_LAZY_SUBMODULES = {"data": "data", "training": "training", "viz": "viz", "explain": "explain",
                    "tuning": "tuning",
                    # moved into training/ (issue 18); `kce.checkpointing` keeps working
                    "checkpointing": "training.checkpointing"}


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"keras_cnn_ext.{_LAZY_SUBMODULES[name]}")
    raise AttributeError(f"module 'keras_cnn_ext' has no attribute {name!r}")


def register_ops():
    """Loads the compiled custom ops, so a SavedModel that contains them can be loaded.

    Raises:
        RuntimeError: the library is not built or does not load (the message says why).
    """
    return ops.native.register_ops()
