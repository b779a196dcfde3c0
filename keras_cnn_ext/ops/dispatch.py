"""Chooses an implementation for `implementation="auto"`.

Rule (measured with `benchmarks/bench_native.py`, table in docs/native-ops.md): "auto" uses the compiled
native op only where it is loaded and was measured at least as fast as the composite path for
that op, device and dtype (`NATIVE_PREFERRED`), and never inside an XLA cluster (the native ops
have no XLA kernels), and never in a graph that may leave the process (below). Everywhere else
it uses the composite path, which XLA and GPUs run. The environment variable
`KERAS_CNN_EXT_IMPLEMENTATION` (`auto` | `composite` | `native`) overrides "auto" for the whole
process; `implementation_scope` overrides every choice (explicit ones too) for the ops created
inside a block, e.g. while a portable SavedModel is traced.

Export-aware "auto" (docs/export.md): the compiled ops exist only in a process that loaded the
library, so "auto" puts them only where the graph runs in this process and nowhere else:
eager calls, and functions traced inside `strategy.run` — which is how Keras's `fit`,
`evaluate` and `predict` run every step, on the default strategy as on `MirroredStrategy` — or
inside `process_local_scope()`. Any other trace — `model.export` in every format (its
`ExportArchive` traces `model.__call__` in a plain `tf.function`), `tf.saved_model.save`,
tf2onnx, a user's own `tf.function` — gets the composite ops: stock TensorFlow ops, the same
numbers, loadable anywhere. Explicit `implementation="native"` is kept everywhere; exporting a
layer that runs it fails loudly instead (`check_exportable`).

>>> resolve("composite", "corr2d")  # an explicit choice is kept
'composite'
>>> supports_jit("native")  # the compiled ops have no XLA kernels
False
"""

import collections
import contextlib
import contextvars
import functools
import os

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from keras_cnn_ext.ops import native

ENV_VAR = "KERAS_CNN_EXT_IMPLEMENTATION"

# (op, device type, dtype) -> the fewest channels from which the native op won the benchmarks
# on the project's CPUs (`benchmarks/bench_native.py`, docs/native-ops.md): pooling is a fused pad + pool
# without a padded copy, the channel axis in vector pieces of 4, 8 or 16. Max pooling, native /
# stock `tf.nn.max_pool2d` (forward + the oneDNN gradient paired with it), float32, 2x2 stride 2:
# 0.44-0.58 at 1-3 channels, 0.67-0.83 at 6 (LeNet-5's first pool; 2.5x before the pieces),
# 0.57-0.90 at 16, 0.63-0.80 at 32-64; overlapping 3x3 stride 2 windows 0.81-1.07; the forward
# pass alone 0.71-1.05; float64 0.19-0.33; float16 still 1.4-2.6x composite (kept composite).
# Mean pooling 0.4-0.7x. The correlation's im2col + GEMM beats TensorFlow only in float64 and
# float16 (TF's float32 oneDNN convolution is 1.4-1.9x faster). The GPU kernels are not
# benchmarked yet: composite there.
NATIVE_PREFERRED = {
    ("max_pool2d", "CPU", "float32"): 1,
    ("max_pool2d", "CPU", "float64"): 1,
    ("mean_pool2d", "CPU", "float16"): 1,
    ("mean_pool2d", "CPU", "float32"): 1,
    ("mean_pool2d", "CPU", "float64"): 1,
    ("corr2d", "CPU", "float16"): 1,
    ("corr2d", "CPU", "float64"): 1,
}


# Set by `implementation_scope`; a ContextVar so that a scope entered in one thread (or asyncio
# task) never changes what ops traced concurrently elsewhere resolve to.
_scoped = contextvars.ContextVar("keras_cnn_ext_implementation_scope", default=None)
# Set by `process_local_scope`: graphs traced inside stay in this process.
_process_local = contextvars.ContextVar("keras_cnn_ext_process_local", default=False)
# Set by `native_export_scope`: an export may keep compiled ops (kce.export, portable=False).
_native_export = contextvars.ContextVar("keras_cnn_ext_native_export", default=False)


class NonPortableExportError(ValueError):
    """An export would put ops into the artifact that only this process can run."""


@contextlib.contextmanager
def process_local_scope():
    """Functions traced inside the block run in this process only: "auto" may choose the
    compiled ops there, as it does in eager calls and in Keras's `fit`/`evaluate`/`predict`.

    For a custom training loop's own `tf.function` (enter the block inside the function body,
    or around its first call, where it is traced). Do not export such a function: the
    artifact would need keras_cnn_ext; `model.export` inside the block fails loudly.

    >>> with process_local_scope():
    ...     in_process_trace()
    True
    """
    token = _process_local.set(True)
    try:
        yield
    finally:
        _process_local.reset(token)


@contextlib.contextmanager
def native_export_scope():
    """Exports inside the block may keep the compiled ops (and "auto" chooses them as in this
    process): `kce.export.export_savedmodel(portable=False)`, whose loading then needs
    `kce.register_ops()`."""
    token = _native_export.set(True)
    local = _process_local.set(True)
    try:
        yield
    finally:
        _process_local.reset(local)
        _native_export.reset(token)


def _default_replica_context():
    try:
        from tensorflow.python.distribute import distribute_lib

        return distribute_lib._get_default_replica_context()  # pylint: disable=protected-access
    except (ImportError, AttributeError):  # private API moved: treat every trace as foreign
        return None


def in_process_trace():
    """Whether ops created now run only in this process, so that "auto" may use compiled ops.

    True in eager execution, inside `process_local_scope()`, and inside `strategy.run(...)`
    (a non-default replica context, `tf.distribute.get_replica_context()`'s docstring): Keras's
    trainer runs every `fit`/`evaluate`/`predict` step through `distribute_strategy.run`, while
    `model.export`'s `ExportArchive`, `tf.saved_model.save` and tf2onnx trace outside it. When
    unsure (a TensorFlow without the private hook) the answer is False: portable, never wrong.
    """
    if tf.executing_eagerly() or _process_local.get():
        return True
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica: inside `strategy.scope()`, not in a step
        return False
    default = _default_replica_context()
    return default is not None and context is not default


def check_exportable(layer, implementation):
    """Raises `NonPortableExportError` if exporting `layer` would put ops into the artifact that
    need this process (the compiled ops, or the NumPy reference's Python callbacks).

    Called when an export walks the model's objects (`Layer._trackable_children` with
    `save_type="savedmodel"`: Keras's `ExportArchive` for every `model.export` format, and
    `tf.saved_model.save`), after the endpoint was traced and before anything is written.
    """
    if _native_export.get():
        return
    chosen = effective(implementation)
    if chosen == "auto" and not (_process_local.get() and native.available()):
        return
    if chosen == "composite":
        return
    if chosen == "auto":
        reason = "was traced inside `kce.ops.dispatch.process_local_scope()`"
    elif implementation == chosen:
        reason = f"has implementation='{chosen}'"
    else:
        reason = f"runs implementation='{chosen}' ({ENV_VAR}={chosen})"
    ops = ("the compiled ops (KerasCnnExt>...), which load only where keras_cnn_ext is "
           "installed" if chosen != "reference" else
           "Python callbacks into NumPy (EagerPyFunc), which no other process can run")
    raise NonPortableExportError(
        f"Layer '{layer.name}' {reason}: an export would contain {ops}, and an ONNX or LiteRT "
        "file would be invalid. For a portable artifact (stock TensorFlow ops, the same "
        "numbers), build the layer with implementation='auto' or 'composite', or export inside "
        "`with kce.ops.dispatch.implementation_scope('composite'):`, or use "
        "`kce.export.export_model(model, path, format=...)`. To keep the compiled ops in a "
        "SavedModel on purpose: `kce.export.export_savedmodel(model, path, portable=False)` "
        "(loading it needs `kce.register_ops()`)."
    )


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
    if in_xla_context() or not in_process_trace():
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


# ----------------------------------------------------------------------------- composite corr2d
#
# How the composite correlation computes its three pieces (`ops/conv_grads.py`), from
# `benchmarks/bench_conv_grads.py --kernels both` (docs/benchmarks.md, "Correlation formulations"). The
# rules compare shapes, not milliseconds, so that they carry over to other CPUs: TensorFlow's
# kernels lose where the map is small next to the channels (fixed per-call set-up, and in the
# Eigen family a transposed convolution whose cost grows far beyond its arithmetic), and win
# elsewhere. Symbols, of the planned problem (taps that only meet padding dropped):
#   HW = input map area H·W, KL = output positions K·L, C = input channels,
#   T = kernel taps M·N, S = stride product S_h·S_w.
# The first row of a piece whose condition holds wins; a piece no row matches runs
# TensorFlow's kernel (forward "conv", input "tf", kernel "tf").
#
#  kernels   piece      formulation   when                      measured, ms: TF -> this row
CORR2D_RULES = (
    # oneDNN: tiny maps next to the channels are matmuls (TF's per-call set-up dominates)
    ("onednn", "forward", "gemm", "64*KL <= C"),             # (32,2,2,512) 3x3: 60.4 -> 6.5
    ("onednn", "input", "phase:gemm", "64*KL <= C"),         # (32,2,2,512) 3x3: 100 -> 31.4
    ("onednn", "kernel", "gemm", "16*KL <= C"),              # (32,4,4,128) s2: 11.9 -> 8.8
    # Eigen: Conv2DBackpropInput is pathological where the map is smaller than the channels
    ("eigen", "input", "phase:gemm", "64*KL <= C"),          # (32,1,1,512): 51.2 -> 2.4
    ("eigen", "input", "phase:gemm", "T == 1 and S*HW < C"),  # (4,7,7,512) 1x1: 44.7 -> 15.4
    ("eigen", "input", "phase:conv", "S*HW < C"),            # (32,2,2,256): 160 -> 22.7
    # Eigen: Conv2DBackpropFilter loses to the book's correlation wherever the kernel is
    # bigger than 1x1 at stride 1 (images as channels; a 1x1 kernel would make the upstream
    # map the whole "kernel")
    ("eigen", "kernel", "gemm", "16*KL <= C"),               # (128,1,1,512): 3.2 -> 1.5
    ("eigen", "kernel", "swap", "T > 1 and S == 1"),         # (128,28,28,1) 5x5: 75 -> 26
)
# Which rows apply: the CPU kernel family of the dtype (TensorFlow's float64 / float16
# convolutions are Eigen kernels even where oneDNN is on); dtypes and devices not listed
# (bfloat16, float16, GPUs: not measured yet) keep TensorFlow's kernels.
RULE_DTYPES = {"float32": None, "float64": "eigen"}   # None: the process's family

Formulation = collections.namedtuple(
    "Formulation", ("forward", "input_grad", "input_engine", "kernel_grad"))
TF_KERNELS = Formulation("conv", "tf", "conv", "tf")
_forced_formulation = []


@contextlib.contextmanager
def force_formulation(formulation, drop_dead_taps=True):
    """Makes every composite correlation traced inside the block use `formulation` (a
    `Formulation` or a 4-tuple); `drop_dead_taps=False` also keeps kernel taps that only meet
    padding (TF_KERNELS + False = the composite op before the formulations existed). For
    benchmarks and tests."""
    _forced_formulation.append((Formulation(*formulation), drop_dead_taps))
    try:
        yield
    finally:
        _forced_formulation.pop()


def drop_dead_taps():
    """Whether the composite correlation drops the kernel taps that only meet padding."""
    return _forced_formulation[-1][1] if _forced_formulation else True


# CPUs on which TensorFlow's Linux x86 build turns oneDNN on by default (TF's util.cc).
_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                         "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_kernels():
    """Which family of TensorFlow CPU kernels runs float32 convolutions: 'onednn' or 'eigen'.

    TensorFlow uses oneDNN where it was built with it and `TF_ENABLE_ONEDNN_OPTS` (or, unset,
    the CPU: AVX-512 VNNI / BF16, AVX-VNNI or AMX on Linux) allows it; else its own Eigen
    kernels, whose `Conv2DBackpropInput` is the pathological one of docs/toolchain.md.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return "onednn" if _pywrap_util_port.IsMklEnabled() else "eigen"
    except (ImportError, AttributeError):  # private API moved: decide as TensorFlow does
        setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
        if setting in ("0", "false"):
            return "eigen"
        if setting in ("1", "true"):
            return "onednn"
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = next((line for line in f if line.startswith("flags")), "").split()
        except OSError:
            return "eigen"
        return "onednn" if set(flags) & set(_ONEDNN_DEFAULT_FLAGS) else "eigen"


def rule_kernels(dtype, device="CPU"):
    """The `CORR2D_RULES` family that applies to `dtype` on `device`, or None (TF kernels)."""
    if device != "CPU" or dtype not in RULE_DTYPES:
        return None
    return RULE_DTYPES[dtype] or cpu_kernels()


def _value(term, sizes):
    value = 1
    for factor in term.split("*"):
        factor = factor.strip()
        value *= int(factor) if factor.isdigit() else sizes[factor]
    return value


_COMPARE = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b,
            ">": lambda a, b: a > b}


def rule_holds(condition, sizes):
    """Evaluates a `CORR2D_RULES` condition ("64*KL <= C and T > 1") for `sizes`."""
    for clause in condition.split(" and "):
        left, op, right = clause.split()
        if not _COMPARE[op](_value(left, sizes), _value(right, sizes)):
            return False
    return True


def choose_formulation(kernels, hw, out_hw, channels, window=(3, 3), strides=(1, 1)):
    """The formulation `CORR2D_RULES` gives for a problem (None kernels: TF's).

    >>> choose_formulation("eigen", hw=(2, 2), out_hw=(2, 2), channels=256)
    Formulation(forward='conv', input_grad='phase', input_engine='gemm', kernel_grad='gemm')
    """
    sizes = {"HW": hw[0] * hw[1], "KL": out_hw[0] * out_hw[1], "C": channels,
             "T": window[0] * window[1], "S": strides[0] * strides[1]}
    chosen = {"forward": "conv", "input": "tf:conv", "kernel": "tf"}
    decided = set()
    for family, piece, formulation, condition in CORR2D_RULES:
        if family == kernels and piece not in decided and rule_holds(condition, sizes):
            chosen[piece] = formulation
            decided.add(piece)
    method, engine = chosen["input"].split(":")
    return Formulation(chosen["forward"], method, engine, chosen["kernel"])


def corr2d_formulation(frame, kernel, strides, pads, static=True):
    """How the composite correlation of NHWC `frame` with `kernel` computes its pieces.

    Spatial sizes unknown at trace time, devices and dtypes without measured rules, and
    formulations forced by `force_formulation` are handled here; otherwise `CORR2D_RULES`.
    """
    if _forced_formulation:
        return _forced_formulation[-1][0]
    hw = tuple(frame.shape[1:3])
    if not static or any(not isinstance(d, int) for d in hw + (frame.shape[3],)):
        return TF_KERNELS
    kernels = "eigen" if in_xla_context() and device_type(frame) == "CPU" else rule_kernels(
        frame.dtype.name, device_type(frame))
    if kernels is None:
        return TF_KERNELS
    window = tuple(kernel.shape[:2])
    out_hw = tuple((size + p[0] + p[1] - m) // s + 1
                   for size, m, s, p in zip(hw, window, strides, pads))
    return choose_formulation(kernels, hw, out_hw, frame.shape[3], window, tuple(strides))
