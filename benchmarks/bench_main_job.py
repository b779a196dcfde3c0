"""The main job, `keras-cnn-ext train lenet5 --dataset digits`, with textbook and stock Keras
layers side by side: whole-command wall time, training time, test accuracy; ratio of medians.

    python benchmarks/bench_main_job.py                 # 3 alternated runs of each
    python benchmarks/bench_main_job.py --repeats 5 --json /tmp/main_job.json

Each run is the real command in a fresh process (`python -m keras_cnn_ext train ...`, the
console script's code path), so the wall time includes starting Python and importing
TensorFlow. The CPU seconds (user + system of the child) are reported too: on a shared machine
they are far less disturbed by other load than the wall time. Runs alternate textbook, keras, keras, textbook, ... so drift hits both alike.
The embedded data set is prepared once, untimed, in a temporary data folder.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_docs_argument, markdown_table, write_docs_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(layers, data_dir, out, extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    command = [sys.executable, "-m", "keras_cnn_ext", "train", "lenet5", "--dataset", "digits",
               "--layers", layers, "--data-dir", data_dir, "--output", out, "--overwrite",
               "--verbose", "0"] + extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, timeout=900)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"wall": wall, "cpu": cpu, "train": metrics["seconds"],
            "accuracy": metrics["test_accuracy"], "epochs": metrics["epochs"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the raw runs here")
    add_docs_argument(parser)
    parser.add_argument("extra", nargs="*", help="more train flags (after --)")
    args = parser.parse_args(argv)

    sys.path.insert(0, ROOT)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        data_dir = os.path.join(work, "tfds")
        from keras_cnn_ext.data import pipeline

        pipeline._prepare_digits(pipeline._tfds(), data_dir)  # untimed, once
        runs = {"textbook": [], "keras": []}
        order = ["textbook", "keras"]
        for _ in range(args.repeats):
            for layers in order:
                result = run_once(layers, data_dir, os.path.join(work, layers), args.extra)
                runs[layers].append(result)
                print(f"{layers:8s} wall {result['wall']:6.1f} s  cpu {result['cpu']:6.1f} s  "
                      f"training "
                      f"{result['train']:6.1f} s  test accuracy {result['accuracy']:.4f}",
                      flush=True)
            order.reverse()
    metrics = ("wall", "cpu", "train", "accuracy")
    med = {k: {m: statistics.median(r[m] for r in v) for m in metrics} for k, v in runs.items()}
    labels = {"textbook": "textbook (`--layers textbook`, the default)",
              "keras": "stock Keras (`--layers keras`)"}
    rows = [[labels[k], f"{med[k]['wall']:.1f}", f"{med[k]['cpu']:.1f}", f"{med[k]['train']:.1f}",
             f"{med[k]['accuracy']:.4f}", runs[k][0]["epochs"]] for k in ("textbook", "keras")]
    rows.append(["ratio textbook / keras"] + [
        f"{med['textbook'][m] / med['keras'][m]:.3f}" for m in ("wall", "cpu", "train")]
        + ["", ""])
    print(f"load average before/after: {load_before} / {os.getloadavg()}")
    table = markdown_table(["layers", "whole command, wall s", "CPU s (user + sys)",
                            "training s (`fit`)", "test accuracy", "epochs"], rows)
    print(table)
    if args.docs:  # docs/training.md, "The main job"
        write_docs_table("main_job", table, "bench_main_job.py",
                         f"the real command in fresh processes, medians of {args.repeats}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"runs": runs, "medians": med}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
