"""SavedModel export: export time, size on disk, and serving latency of the reloaded export.

For each model (the builders' default input shapes: LeNet-5 28x28x1, ResNet-18 224x224x3 with
1000 classes), it exports a portable and a native SavedModel with `kce.export.export_savedmodel`
(verification included, timed separately), reloads both with `tf.saved_model.load`, and times
`loaded.serve(x)` against the Keras model's `model.predict(x)` (and `predict_on_batch`) on the same
batch, alternating the candidates (`common.time_alternating`); ratios are of medians.

`--speed` instead checks that the export-aware "auto" (issue 21: compiled ops only in traces
that stay in the process) costs training and inference nothing: for each model it builds two
copies with the same weights, traces one's `fit`/`predict` functions under the old rule ("auto"
may choose compiled ops in any trace: `dispatch.process_local_scope()` around the first call)
and the other's under the new one, asserts both graphs hold the same compiled ops, and times
`train_on_batch`, `predict_on_batch` and `predict` of the two alternately, with a third copy
under the new rule as an A/A control of the noise. Usage:

    python benchmarks/bench_export.py [--repeats 15] [--models lenet5,resnet18] [--json FILE]
    python benchmarks/bench_export.py --speed [--repeats 21] [--models lenet5,resnet18]
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from common import (add_docs_argument, machine_line, markdown_table,  # noqa: E402
                    time_alternating, write_docs_table)
from keras_cnn_ext import export, models  # noqa: E402
from keras_cnn_ext.ops import dispatch, native  # noqa: E402

# (builder name, batch size of the latency comparison)
CASES = {"lenet5": 128, "resnet18": 8}
# --speed: builder name -> (batch size, builder arguments); models with max pooling (the op
# "auto" compiles); ResNet-18 at 64x64 keeps a training step short on a CPU
SPEED_CASES = {"lenet5": (64, {}),
               "resnet18": (16, {"input_shape": (64, 64, 3), "num_classes": 10})}
# "before": traced as before issue 21; "after": the export-aware rule; "after_again": a second
# copy under the same rule, whose ratio to "after" shows the noise between identical graphs
SPEED_RULES = ("before", "after", "after_again")


def _traced_native_ops(function):
    """The compiled op types in every concrete function reachable from a Keras step function."""
    found, seen = set(), set()
    stack = [function]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, tf.types.experimental.GenericFunction):
            for concrete in value._list_all_concrete_functions():
                graph = concrete.graph.as_graph_def()
                nodes = list(graph.node) + [n for f in graph.library.function
                                            for n in f.node_def]
                found.update(n.op for n in nodes if n.op.startswith("KerasCnnExt>"))
        elif callable(value) and getattr(value, "__closure__", None):
            stack.extend(c.cell_contents for c in value.__closure__)
    return sorted(found)


def speed(name, batch, kwargs, repeats):
    """train_on_batch / predict_on_batch / predict medians, old rule vs export-aware "auto"."""
    rng = np.random.default_rng(0)
    copies, first = {}, None
    # built in reverse order, so that "before" is not also "the first model of the process"
    for rule in reversed(SPEED_RULES):
        keras_model = models.get_model(name, **kwargs)
        if first is None:
            first = keras_model
        else:
            keras_model.set_weights(first.get_weights())
        keras_model.compile("sgd", "sparse_categorical_crossentropy")
        copies[rule] = keras_model
    copies = {rule: copies[rule] for rule in SPEED_RULES}
    shape = tuple(first.input_shape[1:])
    classes = first.output_shape[-1]
    x = rng.uniform(size=(batch,) + shape).astype("float32")
    y = rng.integers(0, classes, size=batch)
    for rule, keras_model in copies.items():
        # the first call traces; "before" traces as every trace did before issue 21
        scope = (dispatch.process_local_scope() if rule == "before"
                 else contextlib.nullcontext())
        with scope:
            keras_model.train_on_batch(x, y)
            keras_model.predict_on_batch(x)
            keras_model.predict(x, batch_size=batch, verbose=0)
    ops = {rule: (_traced_native_ops(m.train_function), _traced_native_ops(m.predict_function))
           for rule, m in copies.items()}
    if len({repr(v) for v in ops.values()}) != 1:
        raise AssertionError(f"the rules traced different compiled ops: {ops}")
    candidates, labels = [], []
    for what in WHAT:
        for rule in SPEED_RULES:
            m = copies[rule]
            if what == "train_on_batch":
                candidates.append(lambda m=m: m.train_on_batch(x, y))
            elif what == "predict_on_batch":
                candidates.append(lambda m=m: m.predict_on_batch(x))
            else:
                candidates.append(lambda m=m: m.predict(x, batch_size=batch, verbose=0))
            labels.append((what, rule))
    medians = time_alternating(candidates, repeats=repeats, warmup=3)
    row = {"model": name, "input": "x".join(map(str, shape)), "batch": batch,
           "native_ops_train": ops["after"][0], "native_ops_predict": ops["after"][1]}
    for (what, rule), median in zip(labels, medians):
        row[f"{what}_{rule}_ms"] = median * 1e3
    for what in WHAT:
        row[f"{what}_ratio"] = row[f"{what}_after_ms"] / row[f"{what}_before_ms"]
        row[f"{what}_noise"] = row[f"{what}_after_again_ms"] / row[f"{what}_after_ms"]
    return row


WHAT = ("train_on_batch", "predict_on_batch", "predict")


def print_speed_table(rows, repeats):
    """Prints the before/after table and returns it."""
    print()
    print(f"{machine_line()}; native: {native.status()}; medians of {repeats} alternated "
          "runs in one process")
    table = markdown_table(
        ["model (input), batch", "compiled ops in fit / predict", "step", "before ms",
         "after ms", "after / before", "A/A noise (after again / after)"],
        [[f"{r['model']} ({r['input']}), {r['batch']}",
          f"{', '.join(r['native_ops_train']) or 'none'} / "
          f"{', '.join(r['native_ops_predict']) or 'none'}", what,
          f"{r[what + '_before_ms']:.1f}", f"{r[what + '_after_ms']:.1f}",
          f"{r[what + '_ratio']:.3f}", f"{r[what + '_noise']:.3f}"]
         for r in rows for what in WHAT], machine=False)
    print(table)
    return table


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
    """Prints the two tables and returns them (export, serving latency)."""
    files = markdown_table(
        ["model (input)", "export", "compiled ops kept", "size", "export time", "verify time",
         "max abs diff"],
        [[f"{r['model']} ({r['input']})", kind, ", ".join(r[kind + "_native_ops"]) or "none",
          f"{r[kind + '_mb']:.2f} MB", f"{r[kind + '_export_s']:.2f} s",
          f"{r[kind + '_verify_s']:.1f} s", f"{r[kind + '_max_abs_diff']:.2g}"]
         for r in rows for kind in ("portable", "native") if kind + "_mb" in r])
    latency = markdown_table(
        ["model, batch", "predict", "predict_on_batch", "SavedModel serve (portable)",
         "serve / predict", "serve / predict_on_batch", "native serve / predict"],
        [[f"{r['model']}, {r['batch']}", f"{r['predict_ms']:.1f} ms",
          f"{r['predict_on_batch_ms']:.1f} ms", f"{r['portable_serve_ms']:.1f} ms",
          f"{r['portable_serve_vs_predict']:.2f}", f"{r['portable_serve_vs_predict_on_batch']:.2f}",
          f"{r['native_serve_vs_predict']:.2f}" if "native_serve_vs_predict" in r else "n/a"]
         for r in rows])
    print(f"\n{files}\n\n{latency}")
    return files, latency


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", default=None,
                        help="comma-separated (default: lenet5,resnet18; --speed: "
                             "lenet5,resnet18)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    add_docs_argument(parser)
    parser.add_argument("--speed", action="store_true",
                        help="training / inference speed of 'auto', before vs after issue 21")
    args = parser.parse_args(argv)
    cases = SPEED_CASES if args.speed else CASES
    names = (args.models or ("lenet5,resnet18" if args.speed else ",".join(CASES))).split(",")
    unknown = [n for n in names if n not in cases]
    if unknown:
        parser.error(f"invalid value for --models: {','.join(unknown)} "
                     f"(choose from {', '.join(cases)})")
    rows = []
    if args.speed:
        for name in names:
            rows.append(speed(name, *cases[name], args.repeats))
            print(json.dumps(rows[-1]), flush=True)
        table = print_speed_table(rows, args.repeats)
        if args.docs:  # docs/export.md
            write_docs_table("export_speed", table, "bench_export.py --speed",
                             f"medians of {args.repeats} alternated runs")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(rows, f, indent=2)
        return 0
    with tempfile.TemporaryDirectory(prefix="kce-bench-export-") as work:
        for name in names:
            rows.append(bench(name, CASES[name], args.repeats, work))
            print(json.dumps(rows[-1]), flush=True)
    files, latency = print_tables(rows)
    if args.docs:  # docs/export-and-serving.md
        write_docs_table("export_size", files, "bench_export.py")
        write_docs_table("export_latency", latency, "bench_export.py",
                         f"medians of {args.repeats} alternated runs")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
