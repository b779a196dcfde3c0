"""A training step under each Keras 3 backend: ours vs the same network with stock Keras layers.

For every backend (JAX, PyTorch, and TensorFlow for reference) one child process (the backend
is read at the first Keras import) builds each network twice from the same builder —
``layers="textbook"`` (this package's CrossCorrelation2D / MaxPooling2D / MeanPooling2D: the
portable tier off TensorFlow) and ``layers="keras"`` (keras.layers.Conv2D / MaxPooling2D /
AveragePooling2D with the same geometry) — and times `model.train_on_batch` (forward, sparse
cross-entropy, backward, an Adam update) of both in rotation after a warm-up
(`common.time_alternating`); the ratio of the medians is computed within that one run.

* LeNet-5, 28x28x1 (digits-like), batch 32;
* ResNet-18, 32x32x3, batch 32 (skipped with the reason where the builder's blocks do not
  train on that backend).

    python benchmarks/bench_backends.py [--backends jax,torch,tensorflow] [--repeats 15]
        [--threads N] [--docs]

--threads sets OMP_NUM_THREADS (torch's and oneDNN's pools), torch.set_num_threads and
TensorFlow's intra-op pool in every child; by default each framework takes its own default.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

BACKENDS = ("jax", "torch", "tensorflow")
TARGET = 1.10  # the target: ours within 10 % of stock Keras on every backend
# (case, builder, builder kwargs, input shape, classes)
CASES = (
    ("LeNet-5 28x28", "lenet5", {}, (28, 28, 1), 10),
    ("ResNet-18 32x32", "resnet18", {"input_shape": (32, 32, 3)}, (32, 32, 3), 10),
)


def _step(builder, kwargs, shape, classes, layers, batch):
    import keras

    import keras_cnn_ext as kce

    keras.utils.set_random_seed(0)
    model = kce.models.get_model(builder, num_classes=classes, layers=layers, **kwargs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch,) + shape).astype("float32")
    y = rng.integers(0, classes, batch)
    model.train_on_batch(x, y)  # builds and compiles: a failure shows here
    return lambda: model.train_on_batch(x, y)


def child(args):
    """Times every case under this process's backend; prints one JSON line."""
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import keras

    from common import machine_line, time_alternating

    backend = keras.backend.backend()
    threads = None
    if backend == "torch":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
    rows = []
    for name, builder, kwargs, shape, classes in CASES:
        try:
            ours = _step(builder, kwargs, shape, classes, "textbook", args.batch)
            stock = _step(builder, kwargs, shape, classes, "keras", args.batch)
        except Exception as error:  # noqa: BLE001 - a builder that fails here is the result
            rows.append({"case": name, "error": f"{type(error).__name__}: "
                                                f"{str(error).splitlines()[0][:160]}"})
            print(f"{backend} {name}: not run ({rows[-1]['error']})", file=sys.stderr,
                  flush=True)
            continue
        t_ours, t_stock = time_alternating([ours, stock], repeats=args.repeats,
                                           warmup=args.warmup)
        rows.append({"case": name, "ours": t_ours, "stock": t_stock})
        print(f"{backend} {name}: ours {t_ours * 1e3:.1f} ms, stock {t_stock * 1e3:.1f} ms, "
              f"{t_ours / t_stock:.2f}x", file=sys.stderr, flush=True)
    print(json.dumps({"backend": backend, "keras": keras.__version__, "threads": threads,
                      "machine": machine_line(), "rows": rows}))


def _run_child(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(HERE),
                                                    env.get("PYTHONPATH")) if p)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--batch", str(args.batch),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True,
                         timeout=args.timeout, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"backend": backend, "rows": [], "failed": f"exit code {out.returncode}"}
    return json.loads(lines[-1])


def _table(results, batch):
    from common import markdown_table

    rows = []
    for result in results:
        threads = result.get("threads")
        backend = result["backend"] + (
            f" ({threads} thread{'s' if threads != 1 else ''})" if threads else "")
        if result.get("failed"):
            rows.append([backend, "-", "-", "-", "-", f"child failed: {result['failed']}"])
        for row in result["rows"]:
            if "error" in row:
                rows.append([backend, row["case"], "-", "-", "-",
                             f"not run: {row['error']}"])
                continue
            ratio = row["ours"] / row["stock"]
            rows.append([backend, row["case"], f"{row['ours'] * 1e3:.1f} ms",
                         f"{row['stock'] * 1e3:.1f} ms", f"{ratio:.2f}x",
                         "yes" if ratio <= TARGET else "no"])
    return markdown_table(["backend", f"training step, batch {batch}", "ours", "stock Keras",
                           "ours / stock", f"<= {TARGET:.2f}x"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated, default {','.join(BACKENDS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds per backend's child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    from common import add_docs_argument, write_docs_table

    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"invalid value for --backends: {unknown} (choose from "
                     f"{', '.join(BACKENDS)})")
    results = [_run_child(backend, args) for backend in backends]  # one at a time
    table = _table(results, args.batch)
    print(table)
    if args.docs:
        keras_version = next((r["keras"] for r in results if r.get("keras")), "?")
        write_docs_table(
            "backends", table, "bench_backends.py",
            note=f"Keras {keras_version}; medians of {args.repeats} alternated steps after "
                 f"{args.warmup} warm-up rounds, one child process per backend"
                 + (f", {args.threads} thread(s) each" if args.threads else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
