"""Expected multi-worker throughput, from a measured single-worker step time and the all-reduce
volume per step (docs/scaling-out.md).

Data parallelism adds one all-reduce of every trainable parameter's gradient per step
(parameters x 4 bytes in float32). A ring all-reduce over N workers sends and receives
2 (N-1)/N times that volume per worker, so with no overlap of communication and computation:

    step time on N workers  = t_step + 2 (N-1)/N * 4 * params / bandwidth
    throughput on N workers = N * batch / (step time on N workers)

`t_step` is measured here (median of timed `train_on_batch` calls after a warm-up, on this
machine's CPU); the bandwidth is an assumption given on the command line.

    python benchmarks/bench_scaling.py [--models lenet5,resnet20,resnet18] [--batch 64]
                                       [--steps 5] [--gbits 1,10] [--workers 2,4,8]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_cnn_ext as kce  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_docs_argument, markdown_table, write_docs_table  # noqa: E402

INPUTS = {"lenet5": (28, 28, 1), "resnet20": (32, 32, 3), "resnet18": (32, 32, 3)}


def step_time(name, batch, steps):
    model = kce.models.get_model(name, input_shape=INPUTS.get(name, (32, 32, 3)),
                                 num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + model.input_shape[1:], dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model.train_on_batch(x, y)  # trace and warm up
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - began)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return statistics.median(times), params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,resnet20,resnet18")
    parser.add_argument("--batch", type=int, default=64, help="per-worker batch")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--gbits", default="1,10", help="network bandwidths in Gbit/s")
    parser.add_argument("--workers", default="2,4,8")
    add_docs_argument(parser)
    args = parser.parse_args()
    docs_rows = []
    workers = [int(n) for n in args.workers.split(",")]
    print(f"per-worker batch {args.batch}; step time: median of {args.steps} train_on_batch "
          "calls on this machine's CPU\n")
    header = ["model", "params", "all-reduce MB/step", "1-worker step (s)", "img/s 1 worker"]
    bands = [float(g) for g in args.gbits.split(",")]
    header += [f"img/s {n} workers @ {g:g} Gbit/s" for g in bands for n in workers]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.models.split(","):
        t_step, params = step_time(name, args.batch, args.steps)
        volume = 4 * params
        row = [name, f"{params:,}", f"{volume / 1e6:.2f}", f"{t_step:.3f}",
               f"{args.batch / t_step:.0f}"]
        for gbits in bands:
            bytes_per_s = gbits * 1e9 / 8
            for n in workers:
                t_comm = 2 * (n - 1) / n * volume / bytes_per_s
                rate = n * args.batch / (t_step + t_comm)
                row.append(f"{rate:.0f} ({rate / (n * args.batch / t_step):.0%})")
        print("| " + " | ".join(row) + " |")
        # the docs' summary: the largest worker count at each bandwidth, as a share of linear
        shares = [(n * args.batch / (t_step + 2 * (n - 1) / n * volume / (g * 1e9 / 8)))
                  / (n * args.batch / t_step) for g in bands for n in workers[-1:]]
        docs_rows.append([name, f"{params:,}", f"{volume / 1e6:.2f} MB", f"{t_step:.3f} s"]
                         + [f"{s:.0%}" for s in shares])
    if args.docs:  # docs/scaling-out.md
        header = ["model", "params", "all-reduce / step", "1-worker step"] + [
            f"{workers[-1]} workers @ {g:g} Gbit/s (of linear)" for g in bands]
        write_docs_table("scaling", markdown_table(header, docs_rows), "bench_scaling.py",
                         f"per-worker batch {args.batch}, median of {args.steps} steps")


if __name__ == "__main__":
    main()
