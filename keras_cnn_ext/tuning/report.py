"""What a search leaves behind: the trials as rows, a text table, trials.csv, a score plot."""

import csv
import math
import os

from keras_cnn_ext.tuning import overhead

# kernel / stride / filters of one stage are shown together as "k/s/f"
_GEOMETRY = ("kernel", "stride", "filters")
# per-trial columns that are not hyperparameters (from trial_<id>/timing.json): the seconds of
# steady training + validation steps, and the rest of the trial's wall time
_FIXED = ("trial", "status", "score", "fit_s", "overhead_s")


def trial_rows(tuner, complete=None, order=None):
    """One dict per trial, in trial order: ``trial``, ``status``, ``score`` (None unless
    completed), ``fit_s`` / ``overhead_s`` (the trial's seconds of steady training and
    validation steps, and the rest of its wall time; None without a timing record, see
    `keras_cnn_ext.tuning.overhead`) and the hyperparameter values (KerasTuner's "tuner/..."
    bookkeeping left out).

    Args:
        tuner: a KerasTuner tuner.
        complete: values -> the configuration actually built (e.g. a stride not searched at
            that depth shows as 1); default the trial's values as they are.
        order: hyperparameter names in the order of the columns.
    """
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        values = {k: v for k, v in trial.hyperparameters.values.items()
                  if not k.startswith("tuner/")}
        if complete is not None:
            values = complete(values)
        if order is not None:  # every row has every name, None where inactive
            values = dict({n: values.get(n) for n in order}, **values)
        score = float(trial.score) if trial.status == "COMPLETED" else None
        timing = trial_timing(tuner, trial_id) or {}
        rows.append(dict(trial=trial_id, status=trial.status, score=score,
                         fit_s=timing.get("fitting_s"), overhead_s=timing.get("overhead_s"),
                         **values))
    return rows


def trial_timing(tuner, trial_id):
    """The timing record of a trial (`overhead.write_timing`), or None."""
    # not tuner.get_trial_dir: it creates the folder
    return overhead.read_timing(os.path.join(str(tuner.project_dir), f"trial_{trial_id}"))


def hyperparameter_names(rows):
    names = []
    for row in rows:
        for key in row:
            if key not in _FIXED and key not in names:
                names.append(key)
    return [n for n in names if any(row.get(n) is not None for row in rows)]


def write_csv(rows, path):
    """trials.csv: one line per trial (empty cells for inactive hyperparameters)."""
    fields = list(_FIXED) + hyperparameter_names(rows)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    os.replace(tmp, path)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _columns(names):
    """Column titles and how to read them: per-stage "k/s/f" groups, then the others."""
    groups, seen, columns = {}, set(), []
    for name in names:
        prefix, _, suffix = name.rpartition("_")
        if suffix in _GEOMETRY and prefix:
            groups.setdefault(prefix, {})[suffix] = name
    for name in names:
        prefix, _, suffix = name.rpartition("_")
        if suffix in _GEOMETRY and prefix in groups:
            if prefix not in seen:
                seen.add(prefix)
                parts = [groups[prefix].get(key) for key in _GEOMETRY]
                columns.append((f"{prefix} k/s/f", parts))
        else:
            columns.append((name, [name]))
    return columns


def format_table(rows):
    """The trials as a text table; a stage's kernel/stride/filters read "k/s/f"."""
    columns = [(name, [name]) for name in _FIXED
               if name in ("trial", "status", "score") or any(r.get(name) is not None
                                                              for r in rows)]
    columns += _columns(hyperparameter_names(rows))
    cells = [[title for title, _ in columns]]
    for row in rows:
        line = []
        for _, keys in columns:
            vals = [row.get(k) for k in keys if k is not None]
            line.append("-" if all(v is None for v in vals) else
                        "/".join(_fmt(v) for v in vals))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def searched(space):
    """``{name: choices}`` of the hyperparameters with more than one possible value (choices
    None for a continuous range)."""
    out = {}
    for hp in space:
        kind = hp.__class__.__name__
        if kind == "Fixed" or hp.name.startswith("tuner/"):
            continue
        if kind == "Boolean":
            out.setdefault(hp.name, [False, True])
        elif kind == "Choice":
            if len(hp.values) > 1:
                out.setdefault(hp.name, list(hp.values))
        else:  # Int, Float: a range
            out.setdefault(hp.name, None)
    return out


def _log_axis(ax, values):
    """A log x axis labelled at whole decades only, spanning at least one full decade.

    Matplotlib labels the minor ticks (2x10^-3, 3x10^-3, ...) of a log axis that spans less than
    a decade or so, and in a panel a few centimetres wide those labels run into one another.
    """
    from matplotlib import ticker

    ax.set_xscale("log")
    values = [v for v in values if v and v > 0]
    if values:
        first = math.floor(math.log10(min(values)))
        last = max(math.ceil(math.log10(max(values))), first + 1)
        ax.set_xlim(10.0 ** first / 1.25, 10.0 ** last * 1.25)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, numticks=5))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=range(2, 10), numticks=50))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_scores(rows, choices, path, *, objective="val_accuracy", title=None, baseline=None):
    """One panel per searched hyperparameter: the objective of every completed trial against
    its value; failed trials as red crosses on the bottom axis, the default configuration's
    score (if given) as a dashed line. Written through a temporary name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in choices if any(r.get(n) is not None for r in rows)]
    cols = min(4, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False)
    done = [r for r in rows if r["score"] is not None]
    lo = min([r["score"] for r in done], default=0.0)
    for ax, name in zip(axes.flat, names):
        options = choices[name]
        pos = (lambda v: v) if options is None else options.index
        used = [r for r in rows if r.get(name) is not None and
                (options is None or r[name] in options)]
        ok = [r for r in used if r["score"] is not None]
        ax.scatter([pos(r[name]) for r in ok], [r["score"] for r in ok], color="tab:blue",
                   label="completed trial")
        failed = [pos(r[name]) for r in used if r["score"] is None]
        if failed:
            ax.scatter(failed, [lo] * len(failed), marker="x", color="tab:red",
                       label="failed trial")
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
                       label="default configuration")
        if options is not None:
            ax.set_xticks(range(len(options)), [str(v) for v in options])
            ax.set_xlim(-0.5, len(options) - 0.5)
        elif name == "learning_rate":
            _log_axis(ax, [r[name] for r in used])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(objective, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if names:
        axes.flat[0].legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title or f"{objective} against each searched hyperparameter")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
