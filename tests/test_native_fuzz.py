"""Raw-op fuzz test of the compiled custom ops: >= 500 random attribute / shape combinations per
op (window, stride, padding in [-2, 70]; dimensions in {0, 1, 2, 7, 65534}; wrong attribute
lengths; gradient tensors and size vectors of the wrong shape; for the correlation ops random valid
and invalid `dilations` and `groups` in every case), run in child processes so that an
abort or a crash is seen as an exit code. Every case must return a tensor of the predicted shape
or raise InvalidArgumentError, and the prediction (valid or not) must match the op's decision.
The pooling ops run another >= 500 cases each with `ceil_mode=True` (PyTorch's rounding).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

CASES_PER_OP = 520
CEIL_CASES_PER_OP = 520   # the pooling ops again, with ceil_mode=True
POOL_OPS = ("max_pool2d", "max_pool2d_grad", "mean_pool2d", "mean_pool2d_grad")
OPS = ("corr2d", "corr2d_backprop_input", "corr2d_backprop_filter", "max_pool2d",
       "max_pool2d_grad", "mean_pool2d", "mean_pool2d_grad")
CORR_OPS = OPS[:3]
DIMS = (0, 1, 2, 7, 65534)
MAX_ELEMENTS = (1 << 31) - 1
ALLOC_LIMIT = 400_000      # elements of any tensor a case may allocate
WORK_LIMIT = 20_000_000    # multiply-adds of a correlation case


# ----------------------------------------------------------------------------- prediction


def _axis(size, k, s, before, after, pmode, pooling, ceil_mode=False):
    if k < 1:
        return None
    if pooling and size < 1:
        return None
    if pmode == "reflect" and (before > 0 or after > 0) and (before >= size or after >= size):
        return None
    if pmode == "replicate" and size < 1 and (before > 0 or after > 0):
        return None
    padded = size + before + after
    if padded < k:
        return None
    if ceil_mode:  # PyTorch: ceil, then no last window starting in the after-padding
        out = -(-(padded - k) // s) + 1
        return out - 1 if (out - 1) * s >= size + before else out
    return (padded - k) // s + 1


def _split(shape, fmt):
    n, a, b, c = shape
    return (n, a, b, c) if fmt == "NHWC" else (n, b, c, a)


def _join(fmt, n, h, w, c):
    return [n, h, w, c] if fmt == "NHWC" else [n, c, h, w]


def _extent(k, d):
    """The dilated kernel's extent, or None when it exceeds the ops' 2^31-1 limit."""
    if k < 1 or d == 1:
        return k
    e = d * (k - 1) + 1
    return e if e <= MAX_ELEMENTS else None


def predict(case):
    """The output shape the op must produce, or None when it must raise InvalidArgumentError."""
    a = case["attrs"]
    pooling = "pool" in case["op"]
    if len(a["strides"]) != 2 or min(a["strides"]) < 1:
        return None
    dh = dw = groups = 1
    if "dilations" in a:
        if len(a["dilations"]) != 2 or not all(1 <= d <= MAX_ELEMENTS for d in a["dilations"]):
            return None
        if not 1 <= a["groups"] <= MAX_ELEMENTS:
            return None
        (dh, dw), groups = a["dilations"], a["groups"]
    if len(a["pads"]) != 4 or min(a["pads"]) < 0:
        return None
    if pooling:
        if len(a["ksize"]) != 2 or min(a["ksize"]) < 1:
            return None
        kh, kw = a["ksize"]
        t, b, l, r = a["pads"]
        if t >= kh or b >= kh or l >= kw or r >= kw:
            return None
    fmt = a["data_format"]
    op = case["op"]
    shapes = case["shapes"]
    if op in ("corr2d", "corr2d_backprop_filter", "max_pool2d", "max_pool2d_grad",
              "mean_pool2d"):
        xs = shapes["x"]
    else:
        xs = shapes["sizes"]
        if len(xs) != 4 or min(xs) < 0:
            return None
    if len(xs) != 4:
        return None
    n, h, w, c = _split(xs, fmt)
    t, b, l, r = a["pads"]
    sh, sw = a["strides"]
    if pooling:
        kh, kw = a["ksize"]
        f = c
    else:
        ks = shapes["sizes"] if op == "corr2d_backprop_filter" else shapes["kernel"]
        if len(ks) != 4 or min(ks) < 0:
            return None
        if c % groups or ks[3] % groups or ks[2] * groups != c:
            return None
        kh, kw, _, f = ks
        kh, kw = _extent(kh, dh), _extent(kw, dw)
        if kh is None or kw is None:
            return None
    ceil_mode = bool(a.get("ceil_mode", False))
    oh = _axis(h, kh, sh, t, b, a["padding_mode"], pooling, ceil_mode)
    ow = _axis(w, kw, sw, l, r, a["padding_mode"], pooling, ceil_mode)
    if oh is None or ow is None:
        return None
    y = _join(fmt, n, oh, ow, f)
    if op in ("corr2d", "max_pool2d", "mean_pool2d"):
        return y if np.prod(y, dtype=np.float64) <= MAX_ELEMENTS else None
    if shapes["dy"] != y:
        return None
    if op == "corr2d_backprop_filter":
        return list(shapes["sizes"])
    return list(xs)


# ----------------------------------------------------------------------------- generation


def _val(rng):
    return int(rng.integers(-2, 71)) if rng.random() < 0.7 else int(rng.choice([1, 2, 3]))


def _list(rng, n):
    length = n if rng.random() < 0.9 else int(rng.choice([0, 1, n - 1, n + 1]))
    return [_val(rng) for _ in range(length)]


def _shape(rng):
    pool = DIMS[:4] if rng.random() < 0.5 else DIMS[1:4]
    shape = [int(rng.choice(pool)) for _ in range(4)]
    if rng.random() < 0.4:  # one huge axis, the others small
        shape[int(rng.integers(0, 4))] = 65534
        for i in range(4):
            if shape[i] == 7:
                shape[i] = int(rng.choice([0, 1, 2]))
    if rng.random() < 0.03:
        shape = shape[: int(rng.integers(0, 4))]  # wrong rank
    return shape


def _elements(shape):
    return int(np.prod(shape, dtype=np.float64)) if shape else 1


def make_case(op, rng, ceil_mode=False, geometry=False):
    """A random case of `op`; `ceil_mode`: a pooling case with PyTorch's rounding; `geometry`: a
    correlation case with `dilations` and `groups` (else the ops' defaults)."""
    pooling = "pool" in op
    fmt = "NHWC" if rng.random() < 0.7 else "NCHW"
    attrs = {"strides": _list(rng, 2), "pads": _list(rng, 4), "data_format": fmt}
    if ceil_mode:
        attrs["ceil_mode"] = True
    if rng.random() < 0.5:  # mostly small, valid-looking geometry
        attrs["strides"] = [int(rng.integers(1, 4)) for _ in range(2)]
        attrs["pads"] = [int(rng.integers(0, 3)) for _ in range(4)]
    if pooling:
        attrs["ksize"] = _list(rng, 2) if rng.random() < 0.5 else [int(rng.integers(1, 4))
                                                                   for _ in range(2)]
        attrs["padding_mode"] = str(rng.choice(["zeros", "ignore"]))
    else:
        attrs["padding_mode"] = str(rng.choice(["zeros", "replicate", "reflect"]))
        attrs["mode"] = str(rng.choice(["cross_correlation", "convolution"]))
    if geometry:
        u = rng.random()
        attrs["dilations"] = ([1, 1] if u < 0.3 else
                              [int(rng.integers(1, 3)) for _ in range(2)] if u < 0.75 else
                              [int(rng.choice([1, 2, 2 ** 30, 2 ** 31])), 1] if u < 0.8 else
                              _list(rng, 2))
    x = _shape(rng)
    if ceil_mode and rng.random() < 0.6:
        # ceil_mode cases lean to valid geometry (its rounding is what they test): windows of
        # 1-4, each pad side below the window, small non-empty sizes
        attrs["ksize"] = [int(rng.integers(1, 5)) for _ in range(2)]
        attrs["strides"] = [int(rng.integers(1, 5)) for _ in range(2)]
        k = attrs["ksize"]
        attrs["pads"] = [int(rng.integers(0, k[i // 2])) for i in range(4)]
        x = [int(rng.integers(1, 9)) for _ in range(4)]
    shapes = {}
    if op in ("corr2d", "corr2d_backprop_filter", "max_pool2d", "max_pool2d_grad",
              "mean_pool2d"):
        shapes["x"] = x
    else:
        shapes["sizes"] = x if rng.random() < 0.95 else [int(v) for v in
                                                         rng.integers(-2, 8, size=int(rng.integers(2, 6)))]
    if not pooling:
        c = _split(x, fmt)[3] if len(x) == 4 else 1
        kh, kw = (max(0, v) for v in (_val(rng), _val(rng)))
        if rng.random() < 0.5:
            kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if not pooling and geometry:
        # groups: mostly a divisor of the channels (depthwise among them), sometimes not, sometimes
        # out of range; rarely 1 together with dilation 1 (the other cases have those)
        divisors = [g for g in (1, 2, 7) if c % g == 0 and g <= max(c, 1)]
        u = rng.random()
        groups = (int(rng.choice(divisors)) if u < 0.75 else int(rng.choice([2, 3, 7])) if u < 0.88
                  else int(rng.choice([0, -1, 4, 65534, 2 ** 31])))
        if groups == 1 and attrs["dilations"] == [1, 1] and rng.random() < 0.95:
            if len(divisors) > 1:
                groups = int(rng.choice(divisors[1:]))
            else:
                attrs["dilations"] = [int(rng.integers(1, 3)), 2]
        attrs["groups"] = groups
        f = int(rng.choice(DIMS[:4]))
        if groups >= 1 and rng.random() < 0.9:
            f = groups * int(rng.choice([0, 1, 2, 3]))  # filters divisible by groups
            if c % groups == 0:
                c //= groups  # per-group kernel channels
    if not pooling:
        if rng.random() < 0.1:
            c = int(rng.choice(DIMS[:4]))  # channel mismatch
        kernel = [kh, kw, c, f if geometry else int(rng.choice(DIMS[:4]))]
        if op == "corr2d_backprop_filter":
            shapes["sizes"] = kernel
        else:
            shapes["kernel"] = kernel
    # the upstream gradient: the right shape, or a perturbed one
    case = {"op": op, "attrs": attrs, "shapes": shapes,
            "dtype": str(rng.choice(["float32", "float64", "float16"]))}
    if op in ("corr2d_backprop_input", "corr2d_backprop_filter", "max_pool2d_grad",
              "mean_pool2d_grad"):
        fwd = dict(case, op={"corr2d_backprop_input": "corr2d", "corr2d_backprop_filter": "corr2d",
                             "max_pool2d_grad": "max_pool2d", "mean_pool2d_grad": "max_pool2d"}[op],
                   shapes=dict(shapes, dy=None))
        if op == "corr2d_backprop_input":
            fwd["shapes"] = {"x": shapes["sizes"], "kernel": shapes["kernel"]}
        elif op == "corr2d_backprop_filter":
            fwd["shapes"] = {"x": shapes["x"], "kernel": shapes["sizes"]}
        elif op == "mean_pool2d_grad":
            fwd["shapes"] = {"x": shapes["sizes"]}
        y = predict(fwd)
        dy = list(y) if y is not None else [1, 1, 1, 1]
        if rng.random() < 0.25:
            dy = list(dy)
            if rng.random() < 0.2:
                dy = dy[:3]
            else:
                i = int(rng.integers(0, 4))
                dy[i] = dy[i] + int(rng.choice([-1, 1, 2])) if dy[i] > 0 else 1
        shapes["dy"] = dy
    return case


def affordable(case, expected):
    """Keeps the memory and time of a case small (the shape logic is what is being tested)."""
    shapes = case["shapes"]
    for name in ("x", "kernel", "dy"):
        if name in shapes and shapes[name] is not None and _elements(shapes[name]) > ALLOC_LIMIT:
            return False
    if expected is not None:
        if _elements(expected) > ALLOC_LIMIT:
            return False
        if "corr" in case["op"]:
            k = shapes.get("kernel") or shapes["sizes"]
            if len(k) == 4:
                ys = expected if case["op"] == "corr2d" else shapes["dy"]
                if _elements(ys) * k[0] * k[1] * k[2] > WORK_LIMIT:
                    return False
                if k[0] * k[1] * k[2] > ALLOC_LIMIT:
                    return False
    return True


def generate(seed, per_op=CASES_PER_OP, ceil_per_op=CEIL_CASES_PER_OP):
    rng = np.random.default_rng(seed)
    cases = []
    # every op with its default geometry, the pooling ops with ceil_mode, then the correlation
    # ops with dilations and groups
    for op, ceil_mode, geometry, n in ([(op, False, False, per_op) for op in OPS]
                                       + [(op, True, False, ceil_per_op) for op in POOL_OPS]
                                       + [(op, False, True, per_op) for op in CORR_OPS]):
        count = 0
        while count < n:
            case = make_case(op, rng, ceil_mode, geometry)
            expected = predict(case)
            if not affordable(case, expected):
                continue
            case["expected"] = expected
            cases.append(case)
            count += 1
    return cases


# ----------------------------------------------------------------------------- child process


def run_child():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from keras_cnn_ext.ops import native

    module = native.load()
    fns = {op: getattr(module, "keras_cnn_ext_" + op) for op in OPS}
    cases = json.load(sys.stdin)
    results = []
    for i, case in enumerate(cases):
        sys.stderr.write(f"CASE {i}\n")
        sys.stderr.flush()
        dtype = getattr(tf, case["dtype"])
        shapes = case["shapes"]
        a = dict(case["attrs"])
        try:
            args = []
            for name in {"corr2d": ("x", "kernel"),
                         "corr2d_backprop_input": ("sizes", "kernel", "dy"),
                         "corr2d_backprop_filter": ("x", "sizes", "dy"),
                         "max_pool2d": ("x",), "max_pool2d_grad": ("x", "dy"),
                         "mean_pool2d": ("x",), "mean_pool2d_grad": ("sizes", "dy")}[case["op"]]:
                if name == "sizes":
                    args.append(tf.constant(shapes["sizes"], tf.int32))
                else:
                    args.append(tf.ones(shapes[name], dtype))
            y = fns[case["op"]](*args, **a)
            results.append(["ok", list(y.shape)])
        except tf.errors.InvalidArgumentError:
            results.append(["invalid", None])
        except Exception as exc:  # noqa: BLE001 - reported as a failure by the parent
            results.append(["other", f"{type(exc).__name__}: {str(exc)[:300]}"])
    json.dump(results, sys.stdout)


# ----------------------------------------------------------------------------- the test


def _native_available():
    from keras_cnn_ext.ops import native

    return native.available()


@pytest.mark.skipif(not _native_available(), reason="native ops not built")
def test_fuzz_raw_ops_never_abort():
    import concurrent.futures

    cases = generate(seed=20240601)
    batches = [cases[i::2] for i in range(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    # the children import the same keras_cnn_ext as this process (installed or checkout)
    import keras_cnn_ext

    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_cnn_ext.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")

    def run(args):
        index, batch = args
        # the second child runs the CPU "direct" path (the per-element functors of the GPU)
        child_env = dict(env, KERAS_CNN_EXT_NATIVE_CPU_ALGO="direct" if index else "fast")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"],
                              input=json.dumps(batch), capture_output=True, text=True,
                              env=child_env, timeout=300)
        return batch, proc

    aborts, problems, counts = [], [], {"ok": 0, "invalid": 0}
    ceil_counts = {op: {"ok": 0, "invalid": 0} for op in POOL_OPS}
    new_attrs = {"ok": 0, "invalid": 0}  # correlation cases with dilation or groups != 1
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for batch, proc in pool.map(run, enumerate(batches)):
            if proc.returncode != 0:
                started = [ln for ln in proc.stderr.splitlines() if ln.startswith("CASE ")]
                last = int(started[-1].split()[1]) if started else None
                aborts.append((proc.returncode, batch[last] if last is not None else None,
                               proc.stderr[-1500:]))
                continue
            for case, (kind, value) in zip(batch, json.loads(proc.stdout)):
                if kind == "other":
                    problems.append((case, value))
                    continue
                counts[kind] += 1
                if case["attrs"].get("ceil_mode"):
                    ceil_counts[case["op"]][kind] += 1
                a = case["attrs"]
                if "dilations" in a and (a["dilations"] != [1, 1] or a["groups"] != 1):
                    new_attrs[kind] += 1
                if kind == "ok" and value != case["expected"]:
                    problems.append((case, f"returned shape {value}"))
                if kind == "invalid" and case["expected"] is not None:
                    problems.append((case, "raised InvalidArgumentError for a valid case"))
    print(f"fuzz: {len(cases)} cases ({CASES_PER_OP} per op, the correlation ops twice: with "
          f"and without dilations/groups, the pooling ops twice: with and without ceil_mode), "
          f"{counts['ok']} ok, {counts['invalid']} InvalidArgumentError, {len(aborts)} aborts; "
          f"with dilation or groups != 1: {new_attrs['ok']} ok, {new_attrs['invalid']} "
          "InvalidArgumentError; ceil_mode=True: "
          + ", ".join(f"{op} {c['ok']} ok / {c['invalid']} invalid"
                      for op, c in ceil_counts.items()))
    assert not aborts, aborts[:1]
    assert not problems, problems[:5]
    assert counts["ok"] > 0.1 * len(cases) and counts["invalid"] > 0.1 * len(cases)
    for op, c in ceil_counts.items():  # every ceil_mode case ran, both outcomes among them
        assert c["ok"] + c["invalid"] == CEIL_CASES_PER_OP and min(c.values()) > 50, (op, c)
    # at least 500 cases per correlation op with the new attributes, valid ones among them
    assert sum(new_attrs.values()) >= 3 * 500 and new_attrs["ok"] >= 0.1 * 3 * 500, new_attrs


if __name__ == "__main__" and "--child" in sys.argv:
    run_child()
