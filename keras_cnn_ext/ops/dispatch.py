"""Chooses an implementation for `implementation="auto"`.

Rule (measured in `benchmarks/`, see the README table): "auto" uses the compiled native op
only where it is loaded and was measured at least as fast as the composite path for that op,
device and dtype (`NATIVE_PREFERRED`); everywhere else it uses the composite path, which is
XLA- and GPU-compatible. The environment variable `KERAS_CNN_EXT_IMPLEMENTATION`
(`auto` | `composite` | `native`) overrides "auto" for the whole process.
"""

import os

ENV_VAR = "KERAS_CNN_EXT_IMPLEMENTATION"

# (op, device type, dtype name) triples where the native op won the benchmarks.
NATIVE_PREFERRED = frozenset()


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
            "`python build_native.py --inplace` (or `pip install .`), or use "
            "implementation='composite'."
        )
    return native


def resolve(implementation, op_name, dtype=None, device="CPU"):
    """Maps "auto" (and the environment override) to a concrete implementation name."""
    if implementation != "auto":
        return implementation
    forced = forced_implementation()
    if forced is not None:
        return forced
    key = (op_name, device, getattr(dtype, "name", dtype))
    if key in NATIVE_PREFERRED and _native_module().available():
        return "native"
    return "composite"
