"""Dilation and groups in the native correlation op: forward + backward against stock TF/Keras and
PyTorch, and the default geometry (dilation 1, 1 group) against the library built before them.

    python benchmarks/bench_native_geometry.py [--repeats 7] [--old-lib PATH] [--keras-xla]
        [--cases geometry,default]

`geometry`: forward + both gradients, float32, channels_last, inside tf.function, for the cases of
issue 16; each candidate is timed in rotation after a warm-up (medians of alternated runs in one
process). Stock = the fastest stock way to the same numbers: `tf.nn.depthwise_conv2d` (what Keras'
DepthwiseConv2D runs), Keras' grouped `Conv2D` (`keras.ops.conv`, compiled with XLA on CPU since
TensorFlow's CPU Conv2D has no groups), the dilated `tf.nn.conv2d`; with dilation AND stride 2
(which Keras' Conv2D refuses) the dilated convolution at stride 1 followed by a strided slice.
PyTorch: `torch.nn.functional.conv2d` on NCHW tensors with as many threads as TensorFlow.

`default`: the default geometry through this checkout's library and through `--old-lib` (e.g. a
build of the main branch), each in its own worker process (a process cannot load two libraries
registering the same ops), asked for one timed call in turn.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common import (add_docs_argument, machine_line, markdown_table,  # noqa: E402
                    time_alternating, write_docs_table)

GEOMETRY_CASES = [
    # (label, input NHWC, filters, kernel, stride, dilation, groups)
    ("depthwise 3x3", (32, 56, 56, 128), 128, 3, 1, 1, 128),
    ("ResNeXt grouped 3x3, 32 groups", (16, 28, 28, 256), 256, 3, 1, 1, 32),
    ("dilated 3x3 d=2", (16, 56, 56, 64), 64, 3, 1, 2, 1),
    ("dilated 3x3 d=2 stride 2", (16, 56, 56, 64), 64, 3, 2, 2, 1),
]
DEFAULT_CASES = [
    # (input NHWC, filters, kernel, stride, pad): bench_native.py's cases
    ((128, 28, 28, 1), 6, 5, 1, 2),
    ((32, 32, 32, 64), 64, 3, 1, 1),
    ((16, 56, 56, 64), 128, 3, 2, 1),
]


def geometry_functions(shape, filters, k, stride, dilation, groups, slow_stock=False):
    import keras
    import tensorflow as tf
    import torch

    from keras_cnn_ext.ops import native

    rng = np.random.default_rng(0)
    n, h, w, c = shape
    pad = dilation * (k - 1) // 2
    x = rng.standard_normal(shape).astype(np.float32)
    kern = (rng.standard_normal((k, k, c // groups, filters)) * 0.1).astype(np.float32)
    out = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    dy = rng.standard_normal((n, out, out, filters)).astype(np.float32)
    xt, kt, dyt = tf.constant(x), tf.constant(kern), tf.constant(dy)

    def make(op):
        @tf.function
        def f():
            with tf.GradientTape() as tape:
                tape.watch([xt, kt])
                y = op(xt, kt)
            return tape.gradient(y, [xt, kt], output_gradients=dyt)
        return f

    def native_op(a, b):
        return native.corr2d(a, b, (stride, stride), ((pad, pad), (pad, pad)), "zeros",
                             "cross_correlation", "channels_last", (dilation, dilation), groups)

    if groups == c and filters == c:
        def stock_op(a, b):  # (k, k, C, 1): DepthwiseConv2D's kernel
            return tf.nn.depthwise_conv2d(a, tf.reshape(b, (k, k, c, 1)), [1, 1, 1, 1], "SAME")
        stock_name = "tf.nn.depthwise_conv2d"
    elif groups > 1 and slow_stock:
        def stock_op(a, b):
            return keras.ops.conv(a, b, strides=stride, padding="same")
        stock_name = "keras Conv2D(groups) (XLA)"
    elif groups > 1:
        def stock_op(a, b):  # what Keras 2 did on CPU: one convolution per group
            parts = zip(tf.split(a, groups, axis=-1), tf.split(b, groups, axis=-1))
            return tf.concat([tf.nn.conv2d(p, q, stride, "SAME") for p, q in parts], axis=-1)
        stock_name = "per-group tf.nn.conv2d + concat"
    elif stride == 1:
        def stock_op(a, b):
            return keras.ops.conv(a, b, 1, "same", dilation_rate=dilation)
        stock_name = "keras Conv2D(dilation_rate)"
    else:
        def stock_op(a, b):
            return keras.ops.conv(a, b, 1, "same", dilation_rate=dilation)[:, ::stride, ::stride]
        stock_name = "keras Conv2D(dilation_rate) s1 + slice"

    fns = [make(native_op), make(stock_op)]
    results = [f() for f in fns]  # the same numbers
    for a, b in zip(results[0], results[1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-3, atol=2e-3)

    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tw = torch.tensor(kern.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    tdy = torch.tensor(dy.transpose(0, 3, 1, 2).copy())

    def torch_fn():
        tx.grad = tw.grad = None
        y = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=pad, dilation=dilation,
                                       groups=groups)
        y.backward(tdy)

    def run(f):
        def call():
            for t in tf.nest.flatten(f()):
                t.shape
        return call

    flops = 2 * 3 * n * out * out * filters * k * k * (c // groups)
    return [run(fns[0]), run(fns[1]), torch_fn], stock_name, flops


def geometry_table(repeats, keras_xla=False):
    import torch
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    torch.set_num_threads(threads)
    header = ["case (fwd+bwd, float32)", "native ms", "stock ms", "stock way", "torch ms",
              "native/stock", "native/torch", "native GFLOP/s"]
    rows = []
    for label, shape, filters, k, stride, dilation, groups in GEOMETRY_CASES:
        fns, stock_name, flops = geometry_functions(shape, filters, k, stride, dilation, groups)
        t_nat, t_stock, t_torch = time_alternating(fns, repeats)
        if groups > 1 and groups < shape[3] and keras_xla:
            # Keras' own grouped Conv2D (XLA on CPU) takes minutes per call here: one timed call
            slow, _, _ = geometry_functions(shape, filters, k, stride, dilation, groups, True)
            t_keras = time_alternating([slow[1]], 1, warmup=1)[0]
            print(f"{label}: keras Conv2D(groups) (XLA) fwd+bwd one call {t_keras * 1e3:.0f} ms",
                  flush=True)
        rows.append([f"{label} {shape}->{filters}", f"{t_nat * 1e3:.1f}", f"{t_stock * 1e3:.1f}",
                     stock_name, f"{t_torch * 1e3:.1f}", f"{t_nat / t_stock:.2f}",
                     f"{t_nat / t_torch:.2f}", f"{flops / t_nat / 1e9:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    return header, rows


# ----------------------------------------------------------------------------- default geometry


def worker():
    """Serves timed calls of DEFAULT_CASES through the library KERAS_CNN_EXT_NATIVE_LIB names."""
    import tensorflow as tf

    from keras_cnn_ext.ops import native

    fns = []
    rng = np.random.default_rng(0)
    for shape, filters, k, stride, pad in DEFAULT_CASES:
        x = tf.constant(rng.standard_normal(shape), tf.float32)
        w = tf.constant(rng.standard_normal((k, k, shape[3], filters)) * 0.1, tf.float32)
        out = (shape[1] + 2 * pad - k) // stride + 1
        dy = tf.constant(rng.standard_normal((shape[0], out, out, filters)), tf.float32)

        @tf.function
        def f(x=x, w=w, dy=dy, stride=stride, pad=pad):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = native.corr2d(x, w, (stride, stride), ((pad, pad), (pad, pad)), "zeros",
                                  "cross_correlation", "channels_last")
            return tape.gradient(y, [x, w], output_gradients=dy)
        f()
        f()
        fns.append(f)
    print(json.dumps({"ready": native.status()}), flush=True)
    for line in sys.stdin:
        i = int(line)
        start = time.perf_counter()
        for t in fns[i]():
            t.shape
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def default_table(old_lib, new_lib, repeats):
    procs = []
    for lib in (old_lib, new_lib):
        env = dict(os.environ, KERAS_CNN_EXT_NATIVE_LIB=lib, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("KERAS_CNN_EXT_NATIVE_CPU_ALGO", None)
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print(f"worker {lib}: {json.loads(p.stdout.readline())['ready']}", flush=True)
        procs.append(p)

    def ask(p, i):
        p.stdin.write(f"{i}\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())["seconds"]

    header = ["default geometry (fwd+bwd, float32)", "before ms", "after ms", "after/before"]
    rows = []
    for i, (shape, filters, k, stride, pad) in enumerate(DEFAULT_CASES):
        times = [[], []]
        for r in range(repeats + 1):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for j in order:
                t = ask(procs[j], i)
                if r:  # the first round warms up
                    times[j].append(t)
        old, new = (statistics.median(t) for t in times)
        rows.append([f"corr2d {shape}->{filters} {k}x{k} s{stride} p{pad}", f"{old * 1e3:.1f}",
                     f"{new * 1e3:.1f}", f"{new / old:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    return header, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="geometry,default")
    parser.add_argument("--keras-xla", action="store_true",
                        help="also time Keras' grouped Conv2D (XLA; minutes per call on CPU)")
    parser.add_argument("--old-lib", help="library built before dilation/groups (for `default`)")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    from keras_cnn_ext.ops import native

    if not native.supports_dilation_groups():
        print(f"native ops without dilation/groups: {native.status()}")
        return 1
    print(machine_line())
    tables = []
    if "geometry" in args.cases:
        tables.append(geometry_table(args.repeats, args.keras_xla))
    if "default" in args.cases:
        if not args.old_lib:
            print("--old-lib not given: the default-geometry comparison is skipped")
        else:
            tables.append(default_table(args.old_lib, native.library_path(), args.repeats))
    print()
    for (header, rows), name in zip(tables, ("native_geometry", "native_geometry_default")):
        table = markdown_table(header, rows)
        print(table + "\n")
        if args.docs:  # docs/native-geometry.md
            write_docs_table(name, table, "bench_native_geometry.py",
                             f"fwd+bwd float32, medians of {args.repeats} alternated runs")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        sys.exit(main())
