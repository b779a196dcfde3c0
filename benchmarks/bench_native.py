"""Native custom ops vs composite vs stock TensorFlow: forward + backward inside tf.function.

    python benchmarks/bench_native.py [--repeats 9] [--dtype float32] [--cases conv,pool]

Each case builds three tf.functions computing the op and the gradients with respect to every
input (given a fixed upstream gradient), times them in alternation (native, composite, stock,
then rotated) after a warm-up, and prints the medians and the ratios as a markdown table.
Stock = `tf.nn.conv2d` (what keras Conv2D runs; "SAME" padding of the same cost) and
`tf.nn.max_pool2d` / `tf.nn.avg_pool2d` (keras MaxPooling2D / AveragePooling2D).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import (add_docs_argument, markdown_table, time_alternating,  # noqa: E402
                    traced_gradient, write_docs_table)
from keras_cnn_ext.ops import composite, native  # noqa: E402

CONV_CASES = [
    # (input NHWC, filters, kernel, stride, pad)
    ((128, 28, 28, 1), 6, 5, 1, 2),
    ((32, 32, 32, 64), 64, 3, 1, 1),
    ((16, 56, 56, 64), 64, 3, 1, 1),
    ((16, 56, 56, 64), 128, 3, 2, 1),
]
POOL_CASES = [
    # (input NHWC, kind, window, stride)
    ((16, 112, 112, 64), "max", 2, 2),
    ((16, 112, 112, 64), "mean", 2, 2),
    ((128, 28, 28, 6), "max", 2, 2),  # LeNet-5's pools: few channels
    ((128, 10, 10, 16), "max", 2, 2),
    ((128, 28, 28, 6), "mean", 2, 2),
]


def _run(fn):
    def call():
        out = fn()
        for t in tf.nest.flatten(out):
            t.shape  # CPU tf.functions return finished tensors; no copy to NumPy
    return call


def conv_functions(shape, filters, k, stride, pad, dtype):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape), dtype)
    w = tf.constant(rng.standard_normal((k, k, shape[3], filters)) * 0.1, dtype)
    out = (shape[1] + 2 * pad - k) // stride + 1
    dy = tf.constant(rng.standard_normal((shape[0], out, out, filters)), dtype)
    pads = ((pad, pad), (pad, pad))

    def make(op):
        return traced_gradient(op, [x, w], dy)

    native_fn = make(lambda a, b: native.corr2d(a, b, (stride, stride), pads, "zeros",
                                                "cross_correlation", "channels_last"))
    composite_fn = make(lambda a, b: composite.corr2d(a, b, (stride, stride), pads, "zeros",
                                                      "cross_correlation", "channels_last"))
    stock_fn = make(lambda a, b: tf.nn.conv2d(a, b, stride, "SAME"))
    flops = 2 * 3 * shape[0] * out * out * filters * k * k * shape[3]  # fwd + 2 grads
    return [native_fn, composite_fn, stock_fn], flops


def pool_functions(shape, kind, window, stride, dtype):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape), dtype)
    out = (shape[1] - window) // stride + 1
    dy = tf.constant(rng.standard_normal((shape[0], out, out, shape[3])), dtype)
    pads = ((0, 0), (0, 0))
    nat = native.max_pool2d if kind == "max" else native.mean_pool2d
    comp = composite.max_pool2d if kind == "max" else composite.mean_pool2d
    stock = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d

    def make(op):
        return traced_gradient(op, x, dy)

    return [
        make(lambda a: nat(a, (window, window), (stride, stride), pads, "zeros",
                           "channels_last")),
        make(lambda a: comp(a, (window, window), (stride, stride), pads, "zeros",
                            "channels_last")),
        make(lambda a: stock(a, window, stride, "VALID")),
    ], None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--cases", default="conv,pool")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if not native.available():
        print(f"native ops unavailable: {native.status()}")
        return 1
    dtype = getattr(tf, args.dtype)
    rows = []
    header = ["case (fwd+bwd, " + args.dtype + ")", "native ms", "composite ms", "stock ms",
              "native/composite", "native/stock", "composite/stock", "native GFLOP/s"]
    cases = []
    if "conv" in args.cases:
        for shape, filters, k, stride, pad in CONV_CASES:
            label = f"corr2d {shape}->{filters} {k}x{k} s{stride} p{pad}"
            cases.append((label, lambda c=(shape, filters, k, stride, pad): conv_functions(
                *c, dtype)))
    if "pool" in args.cases:
        for shape, kind, window, stride in POOL_CASES:
            label = f"{kind}_pool2d {shape} {window}x{window} s{stride}"
            cases.append((label, lambda c=(shape, kind, window, stride): pool_functions(
                *c, dtype)))
    for label, build in cases:
        fns, flops = build()
        t_nat, t_comp, t_stock = time_alternating([_run(f) for f in fns], args.repeats)
        gflops = f"{flops / t_nat / 1e9:.1f}" if flops else "-"
        rows.append([label, f"{t_nat * 1e3:.1f}", f"{t_comp * 1e3:.1f}",
                     f"{t_stock * 1e3:.1f}", f"{t_nat / t_comp:.2f}", f"{t_nat / t_stock:.2f}",
                     f"{t_comp / t_stock:.2f}", gflops])
        print(" | ".join(rows[-1]), flush=True)
    print()
    table = markdown_table(header, rows)
    print(table)
    if args.docs:  # docs/native-ops.md
        suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
        write_docs_table(f"native{suffix}", table, "bench_native.py",
                         f"medians of {args.repeats} alternated runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
