"""Loader and gradients of the compiled custom ops (`custom_ops/`, built by `build_native.py`).

The library `_kce_ops.so` next to this file (or the one named by the environment variable
`KERAS_CNN_EXT_NATIVE_LIB`) is loaded lazily, on the first call of `available()`, `load()` or an
op — never when the package is imported. The TensorFlow version it was built against is read from
`_kce_ops.json` beside it and compared with `tf.__version__` before loading: on a mismatch, or when
loading fails, one warning is issued, the reason is kept for `status()`, and the rest of the package
uses the composite implementation.

The ops (all namespaced `KerasCnnExt>...`): `Corr2D`, `Corr2DBackpropInput`,
`Corr2DBackpropFilter`, `MaxPool2D`, `MaxPool2DGrad`, `MeanPool2D`, `MeanPool2DGrad`; dtypes float16,
bfloat16, float32, float64. Their gradients are registered here with `tf.RegisterGradient` (once,
at load time), so `tf.GradientTape` and SavedModels containing the ops work; the correlation
gradients and the mean-pool gradient are themselves differentiable.

The ops have no XLA kernels: layers that use this path must set `supports_jit = False`.

Environment: `KERAS_CNN_EXT_NATIVE_LIB` (explicit library path), `KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct`
(CPU kernels run the per-element functors shared with the CUDA kernels instead of im2col + GEMM;
for testing). The library also refuses to load (one warning, composite fallback) on a CPU lacking
the instruction-set level it was compiled for (recorded in `_kce_ops.json`).

>>> os.path.basename(library_path()) if ENV_LIB not in os.environ else LIB_NAME
'_kce_ops.so'
>>> status() == f"loaded from {library_path()}" if available() else bool(status())
True
"""

import functools
import json
import os
import threading
import warnings

import tensorflow as tf

from keras_cnn_ext.ops import geometry
from keras_cnn_ext.ops.native_config import BUILD_ERROR_NAME, ENV_LIB, INFO_NAME, LIB_NAME
from keras_cnn_ext.ops.native_config import missing_cpu_flags as _missing_cpu_flags

_lock = threading.Lock()
_state = {"tried": False, "module": None, "path": None, "error": None, "warned": False}
_grads_registered = False


def library_path():
    """Where the loader looks for the library."""
    env = os.environ.get(ENV_LIB)
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), LIB_NAME)


def _read_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _build_info(path):
    return _read_json(os.path.join(os.path.dirname(path), INFO_NAME))


def _warn_once(message):
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(
            f"keras_cnn_ext: the compiled ops are not used ({message}); falling back to the "
            "composite implementation.",
            RuntimeWarning,
            stacklevel=3,
        )


def _try_load():
    _state["tried"] = True
    path = library_path()
    _state["path"] = path
    if not os.path.exists(path):
        # An install that tried to build and failed left its reason here (build_native.py); say
        # so once, since pip shows nothing of a build step that did not fail the install.
        failed = _read_json(os.path.join(os.path.dirname(path), BUILD_ERROR_NAME))
        if failed:
            _state["error"] = (
                f"the native build failed when the package was installed: "
                f"{str(failed.get('error', '?')).splitlines()[0]} (build them with "
                "`python build_native.py --inplace` in a source checkout, or reinstall with "
                "`pip install --no-build-isolation .`)"
            )
        else:
            _state["error"] = (
                f"library not built: {path} does not exist (run `pip install .` or "
                "`python build_native.py --inplace`)"
            )
        if failed or os.environ.get(ENV_LIB):
            _warn_once(_state["error"])
        return
    info = _build_info(path)
    built_for = (info or {}).get("tensorflow_version")
    if built_for is not None and built_for != tf.__version__:
        _state["error"] = (
            f"{path} was built for TensorFlow {built_for} but TensorFlow {tf.__version__} is "
            "installed; rebuild with `pip install .` or `python build_native.py --inplace`"
        )
        _warn_once(_state["error"])
        return
    missing = _missing_cpu_flags((info or {}).get("cpu_flags", ()))
    if missing:
        _state["error"] = (
            f"{path} was compiled for {info.get('march')} but this CPU lacks "
            f"{', '.join(missing)}; rebuild on this machine (`python build_native.py --inplace`) "
            "or with KCE_NATIVE_MARCH=x86-64-v2"
        )
        _warn_once(_state["error"])
        return
    try:
        module = tf.load_op_library(path)
    except Exception as exc:  # noqa: BLE001 - any load failure means: use composite
        _state["error"] = f"loading {path} failed: {type(exc).__name__}: {exc}"
        _warn_once(_state["error"])
        return
    _register_gradients(module)
    _state["module"] = module
    _state["error"] = None


def load():
    """Returns the loaded op module; raises `RuntimeError` with the reason when unavailable."""
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _try_load()
    if _state["module"] is None:
        raise RuntimeError(f"keras_cnn_ext native ops unavailable: {_state['error']}")
    return _state["module"]


def available():
    """Whether the compiled ops can be used in this process (tries to load them once)."""
    try:
        load()
    except RuntimeError:
        return False
    return True


def status():
    """`"loaded from <path>"`, or why the library is not available."""
    if available():
        return f"loaded from {_state['path']}"
    return _state["error"]


def register_ops():
    """Loads the library so that SavedModels containing the ops can be loaded; raises if
    it is unavailable."""
    return load()


# ----------------------------------------------------------------------------- attributes


def _str_attr(op, name):
    value = op.get_attr(name)
    return value.decode() if isinstance(value, bytes) else value


def _corr_attrs(op):
    attrs = dict(
        strides=list(op.get_attr("strides")),
        pads=list(op.get_attr("pads")),
        padding_mode=_str_attr(op, "padding_mode"),
        mode=_str_attr(op, "mode"),
        data_format=_str_attr(op, "data_format"),
    )
    if supports_dilation_groups():  # a library with dilation / groups (issue 16)
        attrs.update(dilations=list(op.get_attr("dilations")), groups=op.get_attr("groups"))
    return attrs


@functools.lru_cache(maxsize=None)
def _op_has_dilation_groups():
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get("KerasCnnExt>Corr2D")
    names = [a.name for a in op_def.attr] if op_def is not None else []
    return "dilations" in names and "groups" in names


def supports_dilation_groups():
    """Whether the loaded library's `KerasCnnExt>Corr2D` has the `dilations` and `groups`
    attributes (libraries built before issue 16 do not); False when none is loaded."""
    return available() and _op_has_dilation_groups()


def _pool_attrs(op):
    return dict(
        ksize=list(op.get_attr("ksize")),
        strides=list(op.get_attr("strides")),
        pads=list(op.get_attr("pads")),
        padding_mode=_str_attr(op, "padding_mode"),
        data_format=_str_attr(op, "data_format"),
        ceil_mode=bool(op.get_attr("ceil_mode")),
    )


# ----------------------------------------------------------------------------- gradients


def _register_gradients(module):
    global _grads_registered
    if _grads_registered:
        return

    def shape32(t):
        return tf.shape(t, out_type=tf.int32)

    def register(name, fn):
        try:
            tf.RegisterGradient(name)(fn)
        except KeyError:  # already registered (e.g. the module was reloaded)
            pass

    def corr2d_grad(op, dy):
        x, w = op.inputs
        attrs = _corr_attrs(op)
        dx = module.keras_cnn_ext_corr2d_backprop_input(shape32(x), w, dy, **attrs)
        dw = module.keras_cnn_ext_corr2d_backprop_filter(x, shape32(w), dy, **attrs)
        return [dx, dw]

    def corr2d_backprop_input_grad(op, g):
        sizes, w, dy = op.inputs
        attrs = _corr_attrs(op)
        ddy = module.keras_cnn_ext_corr2d(g, w, **attrs)
        dw = module.keras_cnn_ext_corr2d_backprop_filter(g, shape32(w), dy, **attrs)
        return [None, dw, ddy]

    def corr2d_backprop_filter_grad(op, g):
        x, sizes, dy = op.inputs
        attrs = _corr_attrs(op)
        dx = module.keras_cnn_ext_corr2d_backprop_input(shape32(x), g, dy, **attrs)
        ddy = module.keras_cnn_ext_corr2d(x, g, **attrs)
        return [dx, None, ddy]

    def max_pool2d_grad(op, dy):
        (x,) = op.inputs
        return [module.keras_cnn_ext_max_pool2d_grad(x, dy, **_pool_attrs(op))]

    def mean_pool2d_grad(op, dy):
        (x,) = op.inputs
        return [module.keras_cnn_ext_mean_pool2d_grad(shape32(x), dy, **_pool_attrs(op))]

    def mean_pool2d_grad_grad(op, g):
        # The mean-pool gradient is linear in dy; its adjoint is the mean pool itself.
        return [None, module.keras_cnn_ext_mean_pool2d(g, **_pool_attrs(op))]

    register("KerasCnnExt>Corr2D", corr2d_grad)
    register("KerasCnnExt>Corr2DBackpropInput", corr2d_backprop_input_grad)
    register("KerasCnnExt>Corr2DBackpropFilter", corr2d_backprop_filter_grad)
    register("KerasCnnExt>MaxPool2D", max_pool2d_grad)
    register("KerasCnnExt>MeanPool2D", mean_pool2d_grad)
    register("KerasCnnExt>MeanPool2DGrad", mean_pool2d_grad_grad)
    _grads_registered = True


# ----------------------------------------------------------------------------- ops


def corr2d(x, kernel, strides=(1, 1), padding=geometry.NO_PADDING, padding_mode="zeros",
           mode="cross_correlation", data_format="channels_last", dilations=(1, 1), groups=1):
    """Cross-correlation (or convolution, `mode="convolution"`) of `x` with `kernel`.

    Args (normalised, as `geometry.normalize_corr_args` returns them; the signature of
    `reference.corr2d` and `composite.corr2d`):
        x: 4-D tensor in `data_format` layout.
        kernel: (M, N, C_in / groups, C_out).
        strides: (sh, sw) ints.
        padding: ((top, bottom), (left, right)) ints.
        padding_mode: "zeros", "replicate" or "reflect".
        mode: "cross_correlation" or "convolution" (kernel flipped in both spatial axes).
        data_format: "channels_last" or "channels_first".
        dilations: (dh, dw) ints >= 1: kernel taps that many cells apart (PyTorch's `dilation`).
        groups: int >= 1 dividing C_in and C_out (PyTorch's `groups`; C_in groups = depthwise).
            A library without these attributes (`supports_dilation_groups()`) accepts only the
            defaults.

    Returns:
        The output tensor (no bias), in `data_format` layout.
    """
    extra = {}
    if tuple(dilations) != (1, 1) or groups != 1:
        if not supports_dilation_groups():
            raise RuntimeError(
                "implementation='native' was requested for `corr2d` with "
                f"dilation_rate={tuple(dilations)} and groups={groups}, but the compiled "
                f"library ({status()}) predates dilation and groups; rebuild it with "
                "`python build_native.py --inplace`, or use implementation='composite'.")
        extra = dict(dilations=list(dilations), groups=int(groups))
    return load().keras_cnn_ext_corr2d(
        x, kernel, strides=list(strides), pads=geometry.flat_pads(padding),
        padding_mode=padding_mode, mode=mode, data_format=geometry.tf_data_format(data_format),
        **extra)


def _pool_attrs_of(pool_size, strides, padding, padding_mode, data_format, ceil_mode=False):
    attrs = dict(ksize=list(pool_size),
                 strides=list(geometry.pool_strides(pool_size, strides)),
                 pads=geometry.flat_pads(padding), padding_mode=padding_mode,
                 data_format=geometry.tf_data_format(data_format))
    if ceil_mode:  # left out when false: the graphs of the ops stay as they were
        attrs["ceil_mode"] = True
    return attrs


def max_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
               data_format="channels_last", ceil_mode=False):
    """Max pooling; `padding_mode` "zeros" (padded cells hold 0) or "ignore"; `ceil_mode`
    PyTorch's output rounding."""
    return load().keras_cnn_ext_max_pool2d(
        x, **_pool_attrs_of(pool_size, strides, padding, padding_mode, data_format, ceil_mode))


def mean_pool2d(x, pool_size, strides=None, padding=geometry.NO_PADDING, padding_mode="zeros",
                data_format="channels_last", ceil_mode=False):
    """Mean pooling; `padding_mode` "zeros" (divide by M*N) or "ignore" (count real cells);
    with `ceil_mode` the cells past the padded input are not counted."""
    return load().keras_cnn_ext_mean_pool2d(
        x, **_pool_attrs_of(pool_size, strides, padding, padding_mode, data_format, ceil_mode))
