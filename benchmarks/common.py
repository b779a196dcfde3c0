"""Side-by-side timing helpers: alternate the candidates in one run, report medians and ratios.

The machines are noisy, so each case times its candidates in rotation (A, B, C, B, C, A, ...)
after a warm-up, and the ratio of the medians is what the docs quote. With --docs a script also
writes its table(s) into docs/benchmarks/ (`write_docs_table`), which the docs pages include.
"""

import os
import platform
import statistics
import time


def time_alternating(fns, repeats=15, warmup=3):
    """Returns the median seconds of each zero-argument callable, timed in rotation."""
    return [statistics.median(t) for t in time_alternating_samples(fns, repeats, warmup)]


def noise(samples):
    """The spread of one candidate's timings: the interquartile range over the median."""
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return (q[2] - q[0]) / q[1]


def time_alternating_samples(fns, repeats=15, warmup=3):
    """Every timing (seconds) of each zero-argument callable, timed in rotation."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    order = list(range(len(fns)))
    for _ in range(repeats):
        # rotate who goes first so drift (thermal, other load) hits every candidate equally
        for i in order:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
        order = order[1:] + order[:1]
    return times


def time_pair(fn_a, fn_b, repeats=15, warmup=3):
    """Returns (median seconds of A, median seconds of B), timed alternately."""
    return tuple(time_alternating((fn_a, fn_b), repeats, warmup))


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line():
    """One line naming what a table was measured on: CPU model, logical cores, TensorFlow and
    its CPU kernel family (oneDNN or Eigen: `TF_ENABLE_ONEDNN_OPTS` and the CPU decide, and
    the two give different tables), e.g. "machine: AMD EPYC, 2 cores, TF 2.21.0 (oneDNN)"."""
    import tensorflow as tf

    try:
        from keras_cnn_ext.ops import dispatch

        family = {"onednn": "oneDNN", "eigen": "Eigen"}[dispatch.cpu_kernels()]
    except ImportError:
        family = "unknown"
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    forced = f", TF_ENABLE_ONEDNN_OPTS={setting}" if setting is not None else ""
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores, TF {tf.__version__} "
            f"({family} CPU kernels{forced})")


def traced_gradient(op, inputs, upstream):
    """A `tf.function` of op(*inputs) and its gradients with respect to `inputs` (a tensor or a
    list of tensors, as `tape.gradient` returns them) for the given upstream gradient: the
    forward + backward step the benchmarks time."""
    import tensorflow as tf

    watched = inputs if isinstance(inputs, (list, tuple)) else [inputs]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(watched)
            y = op(*watched)
        return tape.gradient(y, inputs, output_gradients=upstream)
    return step


def markdown_table(header, rows, machine=True):
    """A markdown table, preceded by `machine_line()` (the numbers mean nothing without it)."""
    lines = [machine_line(), ""] if machine else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the tables of the documentation --------------------------------------------------------
# The docs pages include docs/benchmarks/<name>.md (pymdownx.snippets); a script run with
# --docs rewrites its files there, so a measured table reaches the docs without copying.
DOCS_TABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "docs", "benchmarks")


def add_docs_argument(parser):
    parser.add_argument(
        "--docs", action="store_true",
        help="also write the table(s) into docs/benchmarks/, which the documentation "
             "includes (run the full default set of cases: the file is replaced)")


def machine():
    """`machine_line()` without its "machine: " prefix, for a table's caption."""
    return machine_line().split(": ", 1)[1]


def write_docs_table(name, table, script, note=""):
    """Writes docs/benchmarks/<name>.md: the table and a caption saying where, when and how it
    was measured (load average included: these machines are shared). Temp file, then rename."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    caption = (f"*Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}, load "
               f"average {load}: `python benchmarks/{script}`" + (f"; {note}" if note else "")
               + ".*")
    text = (f"<!-- written by benchmarks/{script} --docs: rerun it rather than editing -->\n"
            f"{table}\n\n{caption}\n")
    os.makedirs(DOCS_TABLES, exist_ok=True)
    path = os.path.join(DOCS_TABLES, f"{name}.md")
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)
    print(f"wrote {os.path.relpath(path)}")
    return path
