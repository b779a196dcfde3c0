"""Chooses an implementation for `implementation="auto"`.

Rule (measured with `benchmarks/bench_native.py`, table in the README): "auto" uses the compiled
native op only where it is loaded and was measured at least as fast as the composite path for
that op, device and dtype (`NATIVE_PREFERRED`), and never inside an XLA cluster (the native ops
have no XLA kernels). Everywhere else it uses the composite path, which XLA and GPUs run. The
environment variable `KERAS_CNN_EXT_IMPLEMENTATION` (`auto` | `composite` | `native`) overrides
"auto" for the whole process.
"""

import functools
import os

ENV_VAR = "KERAS_CNN_EXT_IMPLEMENTATION"

# (op, device type, dtype) where the native op won the benchmarks on the project's CPUs:
# pooling is a fused pad + pool without a padded copy (0.4-0.8x TensorFlow's time); the
# correlation's im2col + GEMM beats TensorFlow only in float64 and float16 (TF's float32
# oneDNN convolution is faster: 1.4-1.9x). GPU kernels are not benchmarked yet: composite.
NATIVE_PREFERRED = frozenset({
    ("max_pool2d", "CPU", "float32"),
    ("max_pool2d", "CPU", "float64"),
    ("mean_pool2d", "CPU", "float16"),
    ("mean_pool2d", "CPU", "float32"),
    ("mean_pool2d", "CPU", "float64"),
    ("corr2d", "CPU", "float16"),
    ("corr2d", "CPU", "float64"),
})


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
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.lru_cache(maxsize=None)
def _gpu_visible():
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def device_type(x=None):
    """'GPU' or 'CPU': where an op on `x` runs (its placement if known, else TF's default)."""
    device = getattr(x, "device", "") or ""
    if "GPU" in device.upper():
        return "GPU"
    if "CPU" in device.upper():
        return "CPU"
    return "GPU" if _gpu_visible() else "CPU"


def _native_module():
    from keras_cnn_ext.ops import native

    return native


def native_required(op_name):
    """Returns the native module or raises a clear error saying why it is unavailable."""
    native = _native_module()
    if not native.available():
        raise RuntimeError(
            f"implementation='native' was requested for `{op_name}`, but the compiled custom "
            f"ops are not available: {native.status()}. Build them with "
            "`python build_native.py --inplace` (or `pip install --no-build-isolation .`), or "
            "use implementation='composite'."
        )
    return native


def resolve(implementation, op_name, x=None):
    """Maps "auto" (and the environment override) to a concrete implementation name."""
    if implementation != "auto":
        return implementation
    forced = forced_implementation()
    if forced is not None:
        return forced
    if in_xla_context():
        return "composite"
    dtype = getattr(getattr(x, "dtype", None), "name", None)
    if (op_name, device_type(x), dtype) in NATIVE_PREFERRED and _native_module().available():
        return "native"
    return "composite"


def supports_jit(implementation):
    """Whether XLA can compile a layer with this `implementation` ("auto" falls back to
    composite inside XLA unless the environment forces native)."""
    if implementation == "auto":
        return forced_implementation() != "native"
    return implementation == "composite"
