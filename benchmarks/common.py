"""Side-by-side timing helpers: alternate A and B in one run, report medians and ratios.

The machines are noisy, so each case times the two candidates in alternation (A, B, A, B, ...)
after a warm-up, and the ratio of the medians is what the README quotes.
"""

import statistics
import time


def time_pair(fn_a, fn_b, repeats=15, warmup=3):
    """Returns (median seconds of A, median seconds of B), timed alternately."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for i in range(repeats):
        # Alternate which one goes first so drift (thermal, other load) hits both equally.
        order = ((fn_a, times_a), (fn_b, times_b)) if i % 2 == 0 else (
            (fn_b, times_b), (fn_a, times_a))
        for fn, times in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
