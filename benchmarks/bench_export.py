"""SavedModel export: export time, size on disk, and serving latency of the reloaded export.

For each model (the builders' default input shapes: LeNet-5 28x28x1, ResNet-18 224x224x3 with
1000 classes), it exports a portable and a native SavedModel with `kce.export.export_savedmodel`
(verification included, timed separately), reloads both with `tf.saved_model.load`, and times
`loaded.serve(x)` against the Keras model's `model.predict(x)` (and `predict_on_batch`) on the same
batch, alternating the candidates (`common.time_alternating`); ratios are of medians. Usage:

    python benchmarks/bench_export.py [--repeats 15] [--models lenet5,resnet18] [--json FILE]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from common import markdown_table, time_alternating  # noqa: E402
from keras_cnn_ext import export, models  # noqa: E402
from keras_cnn_ext.ops import native  # noqa: E402

# (builder name, batch size of the latency comparison)
CASES = {"lenet5": 128, "resnet18": 8}


def bench(name, batch, repeats, work):
    model = models.get_model(name)
    shape = tuple(model.input_shape[1:])
    x = np.random.default_rng(0).uniform(size=(batch,) + shape).astype("float32")
    row = {"model": name, "input": "x".join(map(str, shape)), "batch": batch,
           "params": model.count_params()}
    kinds = ["portable"] + (["native"] if native.available() else [])
    loaded = {}
    for kind in kinds:
        path = os.path.join(work, f"{name}_{kind}")
        start = time.perf_counter()
        report = export.export_savedmodel(model, path, portable=kind == "portable")
        row[f"{kind}_total_s"] = time.perf_counter() - start
        row[f"{kind}_export_s"] = report["export_seconds"]
        row[f"{kind}_verify_s"] = report["verify_seconds"]
        row[f"{kind}_mb"] = report["size_bytes"] / 1e6
        row[f"{kind}_max_abs_diff"] = report["max_abs_diff"]
        row[f"{kind}_native_ops"] = report["native_ops"]
        loaded[kind] = tf.saved_model.load(path)
    tensor = tf.constant(x)
    candidates = [lambda: model.predict(x, batch_size=batch, verbose=0),
                  lambda: model.predict_on_batch(x)]
    candidates += [(lambda obj=obj: obj.serve(tensor).numpy()) for obj in loaded.values()]
    medians = time_alternating(candidates, repeats=repeats, warmup=3)
    row["predict_ms"], row["predict_on_batch_ms"] = medians[0] * 1e3, medians[1] * 1e3
    for kind, median in zip(loaded, medians[2:]):
        row[f"{kind}_serve_ms"] = median * 1e3
        row[f"{kind}_serve_vs_predict"] = median / medians[0]
        row[f"{kind}_serve_vs_predict_on_batch"] = median / medians[1]
    return row


def print_tables(rows):
    print()
    print(markdown_table(
        ["model (input)", "export", "compiled ops kept", "size", "export time", "verify time",
         "max abs diff"],
        [[f"{r['model']} ({r['input']})", kind, ", ".join(r[kind + "_native_ops"]) or "none",
          f"{r[kind + '_mb']:.2f} MB", f"{r[kind + '_export_s']:.2f} s",
          f"{r[kind + '_verify_s']:.1f} s", f"{r[kind + '_max_abs_diff']:.2g}"]
         for r in rows for kind in ("portable", "native") if kind + "_mb" in r]))
    print()
    print(markdown_table(
        ["model, batch", "predict", "predict_on_batch", "SavedModel serve (portable)",
         "serve / predict", "serve / predict_on_batch", "native serve / predict"],
        [[f"{r['model']}, {r['batch']}", f"{r['predict_ms']:.1f} ms",
          f"{r['predict_on_batch_ms']:.1f} ms", f"{r['portable_serve_ms']:.1f} ms",
          f"{r['portable_serve_vs_predict']:.2f}", f"{r['portable_serve_vs_predict_on_batch']:.2f}",
          f"{r['native_serve_vs_predict']:.2f}" if "native_serve_vs_predict" in r else "n/a"]
         for r in rows]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"invalid value for --models: {','.join(unknown)} "
                     f"(choose from {', '.join(CASES)})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kce-bench-export-") as work:
        for name in names:
            rows.append(bench(name, CASES[name], args.repeats, work))
            print(json.dumps(rows[-1]), flush=True)
    print_tables(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
