"""Child of tests/test_backends.py: the portable tier against the NumPy reference on one
Keras backend (KERAS_BACKEND, set by the parent; JAX_ENABLE_X64=1 for float64 on JAX).

Forward and gradients (through the backend's own autodiff: jax.grad, torch's backward,
tf.GradientTape) in float64 over a matrix of cases, plus directional numerical derivatives on
a few. Off TensorFlow, TensorFlow is blocked from importing and only `geometry`, `reference`
and `portable` are loaded: the tier must not need it. Prints one JSON line (the largest
differences) and exits 1 on the first failure after printing what failed.

    KERAS_BACKEND=jax JAX_ENABLE_X64=1 python tests/_backends_child.py
"""

import importlib
import json
import os
import sys
import time
import traceback
import types

BACKEND = os.environ["KERAS_BACKEND"]
ROOT = os.environ.get("KCE_PACKAGE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))

if BACKEND != "tensorflow":
    sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
    # the two subpackages as bare namespaces: their __init__ (which imports TF) never runs
    for name, sub in (("keras_cnn_ext", "keras_cnn_ext"), ("keras_cnn_ext.ops",
                                                           "keras_cnn_ext/ops")):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(ROOT, sub)]
        sys.modules[name] = package

import keras  # noqa: E402
import numpy as np  # noqa: E402

geometry = importlib.import_module("keras_cnn_ext.ops.geometry")
reference = importlib.import_module("keras_cnn_ext.ops.reference")
portable = importlib.import_module("keras_cnn_ext.ops.portable")

from _autodiff import value_and_grads  # noqa: E402  (this script's folder, tests/)

assert keras.backend.backend() == BACKEND, keras.backend.backend()
TOL = 1e-10


def evaluate(fn, inputs):
    return keras.ops.convert_to_numpy(fn(*[keras.ops.convert_to_tensor(a) for a in inputs]))


def max_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert (nan_a == nan_b).all(), "NaN in different cells"
    same_inf = np.isinf(a) & (a == b)
    ok = ~nan_a & ~same_inf
    return float(np.max(np.abs(a[ok] - b[ok]), initial=0.0))


# ------------------------------------------------------------------------------- cases
RNG = np.random.default_rng(19)


def _x(shape):
    return RNG.normal(size=shape)


CORR_CASES = [
    # (name, x shape, kernel shape, keyword arguments)
    ("valid", (2, 6, 7, 3), (3, 3, 3, 4), {}),
    ("explicit sides, stride (2, 1)", (2, 7, 6, 2), (3, 2, 2, 3),
     dict(strides=(2, 1), padding=((1, 2), (0, 1)))),
    ("same replicate, stride 2", (1, 7, 8, 2), (3, 3, 2, 2),
     dict(strides=2, padding="same", padding_mode="replicate")),
    ("full, convolution", (2, 4, 5, 2), (3, 2, 2, 3),
     dict(padding="full", mode="convolution")),
    ("reflect (2, 1), stride (1, 2), convolution", (1, 6, 7, 2), (3, 3, 2, 2),
     dict(strides=(1, 2), padding=(2, 1), padding_mode="reflect", mode="convolution")),
    ("dilation (2, 1), same, stride 2", (2, 9, 8, 2), (3, 3, 2, 3),
     dict(strides=2, padding="same", dilations=(2, 1))),
    ("groups 2, replicate, dilation 2", (1, 8, 9, 4), (3, 2, 2, 6),
     dict(padding=1, padding_mode="replicate", dilations=2, groups=2)),
    ("depthwise, reflect, stride 2", (2, 7, 7, 3), (3, 3, 1, 3),
     dict(strides=2, padding=1, padding_mode="reflect", groups=3)),
    ("depthwise multiplier 2, convolution", (1, 5, 6, 2), (2, 2, 1, 4),
     dict(groups=2, mode="convolution", padding=((0, 1), (1, 0)))),
    ("channels_first, same, dilation 2, groups 2", (2, 4, 7, 6), (3, 3, 2, 2),
     dict(padding="same", dilations=2, groups=2, data_format="channels_first")),
    ("1x1, stride 2", (2, 5, 6, 3), (1, 1, 3, 2), dict(strides=2)),
    ("stride 3 > kernel, zeros", (1, 8, 7, 1), (2, 2, 1, 2), dict(strides=3, padding=1)),
    ("stride and dilation 2, replicate, groups 2", (1, 9, 10, 2), (2, 3, 1, 4),
     dict(strides=(2, 3), dilations=2, padding=(1, 2), padding_mode="replicate", groups=2)),
]

POOL_CASES = [
    # (name, x, keyword arguments)  -- x a shape (normal) or an array
    ("2x2 default stride", (2, 6, 6, 3), dict(pool_size=2)),
    ("3x3 stride 2 pad 1 zeros", (2, 7, 7, 2), dict(pool_size=3, strides=2, padding=1)),
    ("3x3 stride 2 pad 1 ignore", (2, 7, 7, 2),
     dict(pool_size=3, strides=2, padding=1, padding_mode="ignore")),
    ("(3, 2) stride (2, 1) sides ignore", (1, 7, 6, 2),
     dict(pool_size=(3, 2), strides=(2, 1), padding=((1, 2), (0, 1)), padding_mode="ignore")),
    ("ceil_mode zeros", (2, 7, 6, 2), dict(pool_size=3, strides=2, padding=1, ceil_mode=True)),
    ("ceil_mode ignore", (1, 6, 7, 2),
     dict(pool_size=3, strides=2, padding=1, padding_mode="ignore", ceil_mode=True)),
    ("ceil_mode no padding", (1, 6, 6, 1), dict(pool_size=3, strides=2, ceil_mode=True)),
    ("same, stride 1", (1, 5, 5, 2), dict(pool_size=3, strides=1, padding="same")),
    ("channels_first ceil ignore", (2, 3, 7, 5),
     dict(pool_size=2, strides=2, padding=1, padding_mode="ignore", ceil_mode=True,
          data_format="channels_first")),
]


def _ties():
    return RNG.integers(0, 2, size=(2, 6, 6, 2)).astype(np.float64)


def _nans():
    x = RNG.normal(size=(2, 7, 7, 2))
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = x[1, 3, 4, 1] = x[1, 4, 4, 1] = np.nan
    x[0, 5, 5, :] = np.nan
    x[1, 0:2, 0:2, 0] = np.nan  # a window of NaN only
    return x


def _negative_infs():
    x = -np.abs(RNG.normal(size=(1, 6, 6, 2))) - 1.0  # padded zeros win under 'zeros'
    x[0, 2:4, 2:4, 0] = -np.inf
    return x


POOL_CASES += [
    ("ties, overlapping", _ties(), dict(pool_size=3, strides=1, padding=1)),
    # torch: no NaN and every padded cell counted -> torch's own kernel (first of equal maxima)
    ("ties 2x2 tiled", _ties(), dict(pool_size=2)),
    ("ties 3x3 stride 2 channels_first", np.transpose(_ties(), (0, 3, 1, 2)),
     dict(pool_size=3, strides=2, padding=((0, 1), (1, 0)), data_format="channels_first")),
    ("ties ignore ceil", _ties(), dict(pool_size=2, strides=2, padding=1,
                                       padding_mode="ignore", ceil_mode=True)),
    ("NaN zeros", _nans(), dict(pool_size=3, strides=2, padding=1)),
    ("NaN ignore overlapping", _nans(), dict(pool_size=2, strides=1, padding_mode="ignore")),
    ("NaN 2x2", _nans()[:, :6, :6], dict(pool_size=2)),
    ("negative, zeros win; -inf", _negative_infs(), dict(pool_size=3, strides=2, padding=1)),
    ("-inf ignore", _negative_infs(), dict(pool_size=2, strides=2, padding=1,
                                           padding_mode="ignore")),
]


def _pool_arrays(spec):
    return _x(spec) if isinstance(spec, tuple) else spec


def _reference_pool_kwargs(kwargs):
    kwargs = dict(kwargs)
    return kwargs.pop("pool_size"), kwargs


# ------------------------------------------------------------------------------- checks
def check_corr(results):
    worst = {"forward": 0.0, "grad_x": 0.0, "grad_kernel": 0.0}
    for name, x_shape, k_shape, kwargs in CORR_CASES:
        x, w = _x(x_shape), _x(k_shape)
        fn = lambda x, w, kw=kwargs: portable.corr2d(x, w, **kw)  # noqa: E731
        want = reference.corr2d(x, w, **kwargs)
        upstream = _x(want.shape)
        y, (dx, dw) = value_and_grads(fn, [x, w], upstream, our_backward=True)
        want_dx, want_dw = reference.corr2d_grad(x, w, upstream, **kwargs)
        diffs = {"forward": max_diff(y, want), "grad_x": max_diff(dx, want_dx),
                 "grad_kernel": max_diff(dw, want_dw)}
        for key, value in diffs.items():
            assert value < TOL, f"corr2d {name}: {key} differs by {value}"
            worst[key] = max(worst[key], value)
    results["corr2d"] = dict(worst, cases=len(CORR_CASES))


def check_pool(results, op):
    forward_ref = getattr(reference, op)
    grad_ref = getattr(reference, op + "_grad")
    worst = {"forward": 0.0, "grad_x": 0.0}
    for name, spec, kwargs in POOL_CASES:
        x = _pool_arrays(spec)
        fn = lambda x, kw=kwargs: getattr(portable, op)(x, **kw)  # noqa: E731
        pool_size, rest = _reference_pool_kwargs(kwargs)
        want = forward_ref(x, pool_size, **rest)
        upstream = _x(want.shape)
        y, (dx,) = value_and_grads(fn, [x], upstream, our_backward=True)
        want_dx = grad_ref(x, upstream, pool_size, **rest)
        diffs = {"forward": max_diff(y, want), "grad_x": max_diff(dx, want_dx)}
        for key, value in diffs.items():
            assert value < TOL, f"{op} {name}: {key} differs by {value}"
            worst[key] = max(worst[key], value)
    results[op] = dict(worst, cases=len(POOL_CASES))


def check_numerical(results, eps=1e-6, directions=3):
    """<grad, v> against (f(x + eps v) - f(x - eps v)) / (2 eps) of sum(f * upstream)."""
    cases = [
        ("corr2d groups 2 replicate dilation 2",
         lambda x, w: portable.corr2d(x, w, padding=1, padding_mode="replicate", dilations=2,
                                      groups=2, strides=(1, 2)),
         [_x((1, 7, 8, 4)), _x((3, 2, 2, 4))]),
        ("corr2d reflect convolution",
         lambda x, w: portable.corr2d(x, w, padding=(2, 1), padding_mode="reflect",
                                      mode="convolution", strides=2),
         [_x((2, 6, 6, 2)), _x((3, 3, 2, 3))]),
        ("max_pool2d ceil zeros", lambda x: portable.max_pool2d(
            x, 3, strides=2, padding=1, ceil_mode=True), [_x((2, 7, 6, 2))]),
        ("mean_pool2d ceil ignore", lambda x: portable.mean_pool2d(
            x, 3, strides=2, padding=1, padding_mode="ignore", ceil_mode=True),
         [_x((2, 7, 6, 2))]),
    ]
    worst = 0.0
    for name, fn, inputs in cases:
        y = evaluate(fn, inputs)
        upstream = _x(y.shape)
        _, grads = value_and_grads(fn, inputs, upstream, our_backward=True)
        for _ in range(directions):
            vs = [_x(a.shape) for a in inputs]
            plus = evaluate(fn, [a + eps * v for a, v in zip(inputs, vs)])
            minus = evaluate(fn, [a - eps * v for a, v in zip(inputs, vs)])
            numeric = np.sum((plus - minus) * upstream) / (2 * eps)
            analytic = sum(np.sum(g * v) for g, v in zip(grads, vs))
            rel = abs(numeric - analytic) / max(1.0, abs(analytic))
            assert rel < 1e-6, f"numerical gradient {name}: {numeric} vs {analytic}"
            worst = max(worst, rel)
    results["numerical"] = {"max_rel_diff": worst, "cases": len(cases)}


def check_jit(results):
    """JAX: the gradient under jax.jit (the tier's backward is a custom VJP in the jaxpr)."""
    if BACKEND != "jax":
        return
    import jax
    import jax.numpy as jnp

    x, w = _x((2, 7, 7, 4)), _x((3, 3, 2, 4))
    kwargs = dict(strides=2, padding="same", padding_mode="reflect", groups=2, dilations=2)
    upstream = _x(reference.corr2d(x, w, **kwargs).shape)

    def loss(x, w):
        return jnp.sum(portable.corr2d(x, w, **kwargs) * upstream) + jnp.sum(
            portable.max_pool2d(x, 3, strides=2, padding=1, ceil_mode=True))

    jaxpr = str(jax.make_jaxpr(loss)(x, w))
    assert jaxpr.count("custom_vjp_call") >= 2, "no custom gradient in the jaxpr"
    dx, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    want_dx, want_dw = reference.corr2d_grad(x, w, upstream, **kwargs)
    want_dx = want_dx + reference.max_pool2d_grad(
        x, np.ones(reference.max_pool2d(x, 3, 2, 1, ceil_mode=True).shape), 3, 2, 1,
        ceil_mode=True)
    results["jit"] = {"grad_x": max_diff(dx, want_dx), "grad_kernel": max_diff(dw, want_dw)}
    assert max(results["jit"].values()) < TOL, results["jit"]


def main():
    start = time.monotonic()
    results = {"backend": BACKEND}
    try:
        check_corr(results)
        check_pool(results, "max_pool2d")
        check_pool(results, "mean_pool2d")
        check_numerical(results)
        check_jit(results)
    except Exception:  # noqa: BLE001 - reported to the parent
        traceback.print_exc()
        print(json.dumps(results))
        return 1
    results["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    results["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
