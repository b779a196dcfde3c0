"""Side-by-side timing helpers: alternate the candidates in one run, report medians and ratios.

The machines are noisy, so each case times its candidates in rotation (A, B, C, B, C, A, ...)
after a warm-up, and the ratio of the medians is what the README quotes.
"""

import statistics
import time


def time_alternating(fns, repeats=15, warmup=3):
    """Returns the median seconds of each zero-argument callable, timed in rotation."""
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
    return [statistics.median(t) for t in times]


def time_pair(fn_a, fn_b, repeats=15, warmup=3):
    """Returns (median seconds of A, median seconds of B), timed alternately."""
    return tuple(time_alternating((fn_a, fn_b), repeats, warmup))


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
