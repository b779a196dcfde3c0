"""Soak: resident memory and overhead against trial number over a long search (issue 20).

A random search of `HyperLeNet` on the embedded digits (16x16, a few hundred training examples,
1 epoch per trial: each trial is tiny, so 100+ trials take minutes), run twice, each in a fresh
interpreter:

* ``in-process``: `kce.tuning.create_tuner(...).search(...)`, the tuner `kce.tuning.search` and
  `keras-cnn-ext tune` use;
* ``distributed``: a chief and one worker (`keras_cnn_ext.distribute.tuning.run_distributed`) as
  two processes on 127.0.0.1; the worker runs every trial.

Every trial's ``timing.json`` (written by the process that ran it, `keras_cnn_ext.tuning.
overhead`) gives its resident memory at the start of its fit (the previous trial released, this
one built: ``rss_start_mb``) and its overhead (wall time outside the steady train / test steps).
The tables give memory at trials 1, 10, 25, 50, 100, 250, 500, 750, 1000 (those reached, and
the last) beside the number of distinct convolution layers the search has built so far (what
TensorFlow's per-shape kernel caches are keyed on), the least-squares slope over stretches of
trials (25-100, 100-250, ...; and 25..N), the median overhead and fitting per trial; the PNG
plots memory and overhead against trial number for both modes.

    python benchmarks/bench_tuning_soak.py [--trials 100] [--modes in-process,distributed]
        [--examples 320] [--image-size 16] [--docs [--docs-name NAME] [--note TEXT]]
        [--reuse WORK]

--reuse WORK makes the tables and the plot again from a finished run's work folder.
With --docs: docs/benchmarks/NAME.md (tables) and docs/benchmarks/NAME.png (NAME: tuning_soak).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(HERE)
MODES = ("in-process", "distributed")
MARKS = (1, 10, 25, 50, 100, 250, 500, 750, 1000)
WARM_UP = 25  # trials before the slope is fitted
# least-squares slopes over these stretches of trials (those the run reaches)
SEGMENTS = ((25, 100), (100, 250), (250, 500), (500, 750), (750, 1000))


# -- the child processes --------------------------------------------------------------------


def _data(examples, image_size):
    from keras_cnn_ext import data

    kwargs = dict(batch_size=64, image_size=image_size, seed=0)
    train = data.load("digits", split="train", shuffle=True, **kwargs).take(
        max(1, examples // 64)).cache()
    val = data.load("digits", split="validation", shuffle=False, **kwargs).take(2).cache()
    return train, val


def _make_tuner(args):
    from keras_cnn_ext import tuning

    hypermodel = tuning.HyperLeNet((args.image_size, args.image_size, 1), 10)

    def make():
        return tuning.create_tuner(hypermodel, "random", directory=args.dir,
                                   project_name="search", max_trials=args.trials, seed=1)
    return make


def _child(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    make = _make_tuner(args)
    if args.role == "in-process":
        train, val = _data(args.examples, args.image_size)
        make().search(train, validation_data=val, epochs=1, verbose=0)
        return
    from keras_cnn_ext.distribute import tuning as dt

    if args.role == "chief":
        cluster = dt.TuningCluster("chief", args.oracle, workers=1, worker_timeout=300)
        dt.run_distributed(cluster, make)
    else:
        train, val = _data(args.examples, args.image_size)
        cluster = dt.TuningCluster("worker", args.oracle, tuner_id="worker0",
                                   connect_timeout=120)
        dt.run_distributed(cluster, make, train, validation_data=val, epochs=1, verbose=0)


# -- the parent -----------------------------------------------------------------------------


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, role, directory, log, **extra):
    cmd = [sys.executable, os.path.abspath(__file__), "--_role", role, "--dir", directory,
           "--trials", str(args.trials), "--examples", str(args.examples),
           "--image-size", str(args.image_size)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)


def _wait(procs, deadline):
    """Waits for every process until `deadline` (monotonic); kills the rest by their pid."""
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return codes


def _conv_signatures(values):
    """The convolutions of one HyperLeNet trial, each as what its kernels are keyed on: the
    stages before it (its input's shape), its own geometry and width, the fused activation."""
    stages = [tuple(values.get(f"conv{i}_{k}") for k in ("filters", "kernel", "stride", "padding"))
              for i in range(1, int(values.get("depth", 2)) + 1)]
    return {(tuple(stages[:i + 1]), values.get("activation")) for i in range(len(stages))}


def _records(directory):
    """Per trial, in order: its timing.json, plus ``new_convs``, the running count of distinct
    convolution layers (shape, geometry, activation) the search has built up to that trial."""
    from keras_cnn_ext.tuning import overhead

    project = os.path.join(directory, "search")
    rows = []
    for name in os.listdir(project):
        if name.startswith("trial_"):
            record = overhead.read_timing(os.path.join(project, name))
            if record:
                try:
                    with open(os.path.join(project, name, "trial.json"), encoding="utf-8") as f:
                        record["convs"] = sorted(map(repr, _conv_signatures(
                            json.load(f)["hyperparameters"]["values"])))
                except (OSError, ValueError, KeyError):
                    record["convs"] = []
                rows.append((int(name[len("trial_"):]), record))
    seen = set()
    records = []
    for _, record in sorted(rows):
        seen.update(record.pop("convs"))
        record["new_convs"] = len(seen)
        records.append(record)
    return records


def run_mode(args, mode, work):
    directory = os.path.join(work, mode)
    os.makedirs(directory)
    log_path = os.path.join(work, f"{mode}.log")
    deadline = time.monotonic() + args.timeout
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        if mode == "in-process":
            codes = _wait([_start(args, "in-process", directory, log)], deadline)
        else:
            oracle = f"127.0.0.1:{_free_port()}"
            chief = _start(args, "chief", directory, log, oracle=oracle)
            worker = _start(args, "worker", directory, log, oracle=oracle)
            codes = _wait([worker, chief], deadline)
    took = time.perf_counter() - start
    with open(os.path.join(work, f"{mode}.seconds"), "w", encoding="utf-8") as f:
        f.write(f"{took}\n")
    records = _records(directory)
    if any(c != 0 for c in codes):
        print(f"{mode}: exit codes {codes}; the log ({log_path}) ends:")
        with open(log_path, encoding="utf-8", errors="replace") as f:
            print("".join(f.readlines()[-15:]))
    print(f"{mode}: {len(records)} trials in {took:.0f} s, load {os.getloadavg()[0]:.1f}")
    return dict(mode=mode, records=records, seconds=took, codes=codes)


def read_mode(work, mode):
    """A finished run's records, read again from its work folder (``--reuse``)."""
    try:
        with open(os.path.join(work, f"{mode}.seconds"), encoding="utf-8") as f:
            took = float(f.read())
    except (OSError, ValueError):
        took = None
    return dict(mode=mode, records=_records(os.path.join(work, mode)), seconds=took, codes=[])


def _slope(ys, first, last=None):
    points = [(i + 1, y) for i, y in enumerate(ys)
              if i + 1 >= first and (last is None or i + 1 <= last) and y is not None]
    if len(points) < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def summarize(result):
    records = result["records"]
    rss = [r.get("rss_start_mb") for r in records]
    marks = [m for m in MARKS if m <= len(rss)]
    if rss and len(rss) not in marks:
        marks.append(len(rss))
    cells = {m: rss[m - 1] for m in marks}
    convs = {m: records[m - 1].get("new_convs") for m in marks}
    segments = {f"{a}-{b}": _slope(rss, a, b) for a, b in SEGMENTS if b <= len(rss)}
    over = [r["overhead_s"] for r in records]
    fit = [r["fitting_s"] for r in records]
    return dict(mode=result["mode"], trials=len(records), rss=cells, convs=convs,
                segments=segments, slope=_slope(rss, WARM_UP),
                overhead=statistics.median(over) if over else None,
                overhead_late=statistics.median(over[WARM_UP:]) if len(over) > WARM_UP else None,
                fitting=statistics.median(fit) if fit else None, seconds=result["seconds"])


def table(summaries):
    """Three tables: memory (and distinct convolutions built) at marked trials, the slope over
    each stretch of trials, and the per-trial times; a column pair / column per search."""
    from common import markdown_table

    def fmt(v, spec=".0f"):
        return "-" if v is None else format(v, spec)

    marks = sorted({m for s in summaries for m in s["rss"]})
    memory = markdown_table(
        ["trial"] + [f"{s['mode']}: {h}" for s in summaries
                     for h in ("MB", "distinct convolutions so far")],
        [[m] + [c for s in summaries
                for c in (fmt(s["rss"].get(m)), fmt(s["convs"].get(m), "d"))] for m in marks])
    stretches = [f"{a}-{b}" for a, b in SEGMENTS
                 if any(f"{a}-{b}" in s["segments"] for s in summaries)]
    slopes = markdown_table(
        ["trials"] + [f"{s['mode']}: slope (MB/trial)" for s in summaries],
        [[k] + [fmt(s["segments"].get(k), ".2f") for s in summaries] for k in stretches]
        + [[f"{WARM_UP}-last"] + [fmt(s["slope"], ".2f") for s in summaries]], machine=False)
    times = markdown_table(
        ["search", "trials", "overhead / trial (s, median)",
         f"overhead after trial {WARM_UP} (s)", "fitting / trial (s)", "wall (s)"],
        [[s["mode"], s["trials"], fmt(s["overhead"], ".2f"), fmt(s["overhead_late"], ".2f"),
          fmt(s["fitting"], ".2f"), fmt(s["seconds"])] for s in summaries], machine=False)
    return "\n\n".join((memory, slopes, times))


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mem, ax_over) = plt.subplots(1, 2, figsize=(10, 3.6))
    for result in results:
        rss = [r.get("rss_start_mb") for r in result["records"]]
        trials = range(1, len(rss) + 1)
        ax_mem.plot(trials, rss, marker=".", markersize=2, linewidth=0.8, label=result["mode"])
        ax_over.plot(trials, [r["overhead_s"] for r in result["records"]], marker=".",
                     markersize=2, linewidth=0.6, label=result["mode"])
    if results and results[0]["records"]:
        # what the per-shape kernel caches are keyed on keeps growing while memory levels off
        records = results[0]["records"]
        ax_convs = ax_mem.twinx()
        ax_convs.plot(range(1, len(records) + 1), [r.get("new_convs") for r in records],
                      color="gray", linestyle="--", linewidth=1)
        ax_convs.set_ylabel("distinct convolutions built so far (dashed)", fontsize=8)
    ax_mem.set_xlabel("trial")
    ax_mem.set_ylabel("resident memory at the trial's fit (MB)")
    ax_over.set_xlabel("trial")
    # two lines: on one, the label is taller than the 3.6-inch axes and its ends are cut off
    ax_over.set_ylabel("overhead per trial (s):\nwall outside the steady steps")
    for ax in (ax_mem, ax_over):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--examples", type=int, default=320,
                        help="training examples per trial (batches of 64)")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per mode before its processes are killed")
    parser.add_argument("--json", help="also write the per-trial records here")
    parser.add_argument("--reuse", metavar="WORK",
                        help="make the tables and the plot again from a finished run's work "
                             "folder (printed at its start) instead of running the searches")
    parser.add_argument("--note", help="with --docs: a sentence added to the caption (how the "
                                           "run was made, e.g. the machine's load)")
    parser.add_argument("--docs-name", default="tuning_soak",
                        help="with --docs: the name of the table and the PNG in docs/benchmarks")
    parser.add_argument("--_role", dest="role", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--oracle", help=argparse.SUPPRESS)
    from common import add_docs_argument

    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if args.role:
        return _child(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.reuse:
        work = args.reuse
        results = [read_mode(work, mode) for mode in modes
                   if os.path.isdir(os.path.join(work, mode))]
        if not results:
            parser.error(f"argument --reuse: no folder of the modes {', '.join(modes)} in "
                         f"{work!r} (expected a work folder printed by an earlier run)")
    else:
        work = tempfile.mkdtemp(prefix="kce-soak-")
        print(f"work folder {work}, load {os.getloadavg()}")
        results = [run_mode(args, mode, work) for mode in modes]
    summaries = [summarize(r) for r in results]
    text = table(summaries)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(results=results, summaries=summaries), f)
    title = (f"HyperLeNet random search on digits ({args.image_size}x{args.image_size}, "
             f"{args.examples} examples, 1 epoch per trial)")
    if args.docs:
        from common import DOCS_TABLES, write_docs_table

        note = (f"HyperLeNet, {args.image_size}x{args.image_size} digits, {args.examples} "
                "training examples, 1 epoch per trial; memory = resident at the start of each "
                "trial's fit (timing.json `rss_start_mb`)" + (f"; {args.note}" if args.note else ""))
        # write_docs_table's comment adds " --docs" to the script name itself
        write_docs_table(args.docs_name, text, "bench_tuning_soak.py", note)
        plot(results, os.path.join(DOCS_TABLES, f"{args.docs_name}.png"), title)
    else:
        plot(results, os.path.join(work, "tuning_soak.png"), title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
