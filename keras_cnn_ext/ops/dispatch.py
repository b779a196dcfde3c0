"""Chooses an implementation for `implementation="auto"`.

Rule (measured with `benchmarks/bench_native.py`, table in the README): "auto" uses the compiled
native op only where it is loaded and was measured at least as fast as the composite path for
that op, device and dtype (`NATIVE_PREFERRED`), and never inside an XLA cluster (the native ops
have no XLA kernels). Everywhere else it uses the composite path, which XLA and GPUs run. The
environment variable `KERAS_CNN_EXT_IMPLEMENTATION` (`auto` | `composite` | `native`) overrides
"auto" for the whole process; `implementation_scope` overrides every choice (explicit ones too)
for the ops created inside a block, e.g. while a portable SavedModel is traced.

>>> resolve("composite", "corr2d")  # an explicit choice is kept
'composite'
>>> supports_jit("native")  # the compiled ops have no XLA kernels
False
"""

import contextlib
import contextvars
import functools
import os

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from keras_cnn_ext.ops import native

ENV_VAR = "KERAS_CNN_EXT_IMPLEMENTATION"

# (op, device type, dtype) -> the fewest channels from which the native op won the benchmarks
# on the project's CPUs (`benchmarks/bench_native.py`, README): pooling is a fused pad + pool
# without a padded copy (0.4-0.8x TensorFlow's time), except max pooling over few channels,
# where TensorFlow's kernel wins (2.6x faster at 6 channels, even at 16); the correlation's
# im2col + GEMM beats TensorFlow only in float64 and float16 (TF's float32 oneDNN convolution
# is 1.4-1.9x faster). The GPU kernels are not benchmarked yet: composite there.
NATIVE_PREFERRED = {
    ("max_pool2d", "CPU", "float32"): 32,
    ("max_pool2d", "CPU", "float64"): 32,
    ("mean_pool2d", "CPU", "float16"): 1,
    ("mean_pool2d", "CPU", "float32"): 1,
    ("mean_pool2d", "CPU", "float64"): 1,
    ("corr2d", "CPU", "float16"): 1,
    ("corr2d", "CPU", "float64"): 1,
}


# Set by `implementation_scope`; a ContextVar so that a scope entered in one thread (or asyncio
# task) never changes what ops traced concurrently elsewhere resolve to.
_scoped = contextvars.ContextVar("keras_cnn_ext_implementation_scope", default=None)


@contextlib.contextmanager
def implementation_scope(implementation):
    """Every op created inside the block uses `implementation`, whatever the layer's argument,
    the "auto" rule or the environment variable say.

    All implementations compute the same numbers, so this changes which kernels a traced graph
    contains, not what it computes. `kce.export.export_savedmodel(portable=True)` traces under
    `implementation_scope("composite")`, so no compiled op (and no NumPy reference op) enters
    the SavedModel. The choice is made when an op is *created*: the block must enclose the
    tracing of a `tf.function` (a function traced before keeps its kernels).

    Args:
        implementation: 'composite', 'native' or 'reference'.

    >>> with implementation_scope("composite"):
    ...     resolve("native", "max_pool2d")
    'composite'
    """
    if implementation not in ("composite", "native", "reference"):
        raise ValueError(
            "Invalid value for argument `implementation`. Expected one of 'composite', "
            f"'native', 'reference'. Received: implementation={implementation!r}"
        )
    token = _scoped.set(implementation)
    try:
        yield
    finally:
        _scoped.reset(token)


def forced_implementation():
    """The process-wide override from the environment, or None."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in ("composite", "native"):
        raise ValueError(
            f"Invalid value for environment variable `{ENV_VAR}`. Expected one of 'auto', "
            f"'composite', 'native'. Received: {ENV_VAR}={value!r}"
        )
    return value


def in_xla_context():
    """Whether ops created now are compiled by XLA (`tf.function(jit_compile=True)`)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.lru_cache(maxsize=None)
def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))


def device_type(x=None):
    """'GPU' or 'CPU': where an op on `x` runs (its placement if known, else TF's default)."""
    device = getattr(x, "device", "") or ""
    if "GPU" in device.upper():
        return "GPU"
    if "CPU" in device.upper():
        return "CPU"
    return "GPU" if _gpu_visible() else "CPU"


def native_required(op_name):
    """Returns the native module or raises a clear error saying why it is unavailable."""
    if not native.available():
        raise RuntimeError(
            f"implementation='native' was requested for `{op_name}`, but the compiled custom "
            f"ops are not available: {native.status()}. Build them with "
            "`python build_native.py --inplace` (or `pip install .`), or "
            "use implementation='composite'."
        )
    return native


def resolve(implementation, op_name, x=None, channels=None):
    """Maps "auto" (and the environment override) to a concrete implementation name.

    Args:
        implementation: 'auto', 'composite', 'native' or 'reference'.
        op_name: 'corr2d', 'max_pool2d' or 'mean_pool2d'.
        x: the input tensor (its dtype and placement decide), or None.
        channels: the number of input channels, if known.
    """
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if implementation != "auto":
        return implementation
    forced = forced_implementation()
    if forced is not None:
        return forced
    if in_xla_context():
        return "composite"
    dtype = getattr(getattr(x, "dtype", None), "name", None)
    min_channels = NATIVE_PREFERRED.get((op_name, device_type(x), dtype))
    if (min_channels is not None and channels is not None and channels >= min_channels
            and native.available()):
        return "native"
    return "composite"


def effective(implementation):
    """The implementation a layer runs before the input is known: "auto" under a forced
    environment setting becomes that setting; inside `implementation_scope`, the scope's."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if implementation == "auto":
        return forced_implementation() or "auto"
    return implementation


def supports_jit(implementation):
    """Whether XLA can compile a layer with this `implementation` ("auto" falls back to
    composite inside XLA unless the environment forces native)."""
    return effective(implementation) in ("auto", "composite")
