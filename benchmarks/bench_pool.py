"""Max pooling: "auto", native, composite and stock `tf.nn.max_pool2d`, forward and forward +
backward, float32, in one process.

    python benchmarks/bench_pool.py [--rounds 21] [--shape 16,112,112,64] [--ceil-mode]

Each tf.function is timed in rotation with the others (after a warm-up), so load drifting on
a shared machine hits every candidate alike; the table gives the medians, each candidate's
noise (interquartile range / median) and the ratios to stock. Run it once more with
`TF_ENABLE_ONEDNN_OPTS=0` for the Eigen kernels; the first line says which family ran.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import (add_docs_argument, markdown_table, noise, traced_gradient,  # noqa: E402
                    time_alternating_samples, write_docs_table)
from keras_cnn_ext.ops import composite, dispatch, geometry, native, nn  # noqa: E402


def candidates(window, stride, ceil_mode):
    pads = ((0, 0), (0, 0))
    args = ((window, window), (stride, stride), pads, "zeros", "channels_last", ceil_mode)
    def auto(a):
        # process-local, as inside Keras's fit (a plain tf.function gets the portable ops)
        with dispatch.process_local_scope():
            return nn.max_pool2d(a, window, stride, data_format="channels_last",
                                 ceil_mode=ceil_mode)

    out = {
        "auto": auto,
        "native": lambda a: native.max_pool2d(a, *args),
        "composite": lambda a: composite.max_pool2d(a, *args),
    }
    if not ceil_mode:  # stock has no ceil mode
        out["stock"] = lambda a: tf.nn.max_pool2d(a, window, stride, "VALID")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--shape", default="16,112,112,64")
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--ceil-mode", action="store_true")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape), tf.float32)
    out = geometry.spatial_output_shape(shape[1:3], (args.window,) * 2, (args.stride,) * 2,
                                        geometry.NO_PADDING, args.ceil_mode)
    dy = tf.constant(rng.standard_normal((shape[0],) + out + (shape[3],)), tf.float32)

    def forward(op):
        return tf.function(lambda: op(x))

    def forward_backward(op):
        return traced_gradient(op, x, dy)

    ops = candidates(args.window, args.stride, args.ceil_mode)
    names = list(ops)
    rows = []
    for label, make in (("forward", forward), ("forward + backward", forward_backward)):
        fns = [make(ops[n]) for n in names]
        samples = time_alternating_samples([lambda f=f: f() for f in fns], args.rounds, 3)
        medians = {n: statistics.median(t) for n, t in zip(names, samples)}
        for n, t in zip(names, samples):
            ratio = f"{medians[n] / medians['stock']:.2f}" if "stock" in medians else "-"
            rows.append([label, n, f"{medians[n] * 1e3:.2f}", f"{noise(t) * 100:.0f}%", ratio])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(f"max pooling {shape} {args.window}x{args.window} stride {args.stride}, float32"
          f"{', ceil_mode' if args.ceil_mode else ''}, medians of {args.rounds} alternated "
          "rounds")
    table = markdown_table(["pass", "implementation", "median ms", "noise (IQR/median)",
                            "/ stock"], rows)
    print(table)
    if args.docs:  # docs/pooling.md includes one file per CPU kernel family
        name = f"pool_{dispatch.cpu_kernels()}" + ("_ceil" if args.ceil_mode else "")
        write_docs_table(name, table, "bench_pool.py",
                         f"max pooling {shape} {args.window}x{args.window} stride "
                         f"{args.stride}, float32, medians of {args.rounds} alternated rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
