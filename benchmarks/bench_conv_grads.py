"""Every exact formulation of the correlation's three pieces, timed side by side, with the
choice of the dispatch rule (`keras_cnn_ext/ops/dispatch.py`) marked.

    python benchmarks/bench_conv_grads.py [--repeats 7] [--cases issue,models] [--dtype float32]
                                          [--kernels default|onednn|eigen|both]

For each case (the small-map shapes of issue 11 and the layers of the benchmarked models) it
builds one `tf.function` per formulation of the forward (`conv`, `gemm`), the input gradient
(`tf`, `dilate`, `phase`, `subpixel` x engine `conv` / `gemm`) and the kernel gradient (`tf`,
`gemm`), times all of a piece's candidates in alternation (medians), and prints one row per
case: each candidate's milliseconds, the fastest, the rule's choice and its time over the
fastest. TensorFlow's CPU kernels come in two families — oneDNN (the default on Linux x86 CPUs
with AVX-512 VNNI / AVX-VNNI / AMX) and its own Eigen kernels (other CPUs, or
`TF_ENABLE_ONEDNN_OPTS=0`); `--kernels both` runs the script once under each (a child process
each, since the family is fixed when TensorFlow starts). This is the script to re-run when
checking the rule on another machine.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (name, input NHWC, filters, kernel, stride, pad): the issue's cases first
ISSUE_CASES = [
    ("issue", (32, 1, 1, 512), 512, 3, 1, 1),
    ("issue", (128, 1, 1, 512), 512, 3, 1, 1),
    ("issue", (32, 2, 2, 256), 256, 3, 1, 1),
    ("issue", (8, 7, 7, 512), 512, 3, 1, 1),
    ("issue", (8, 14, 14, 256), 256, 3, 1, 1),
]
MODEL_CASES = [
    ("lenet5 C1", (128, 28, 28, 1), 6, 5, 1, 2),
    ("lenet5 C3", (128, 14, 14, 6), 16, 5, 1, 0),
    ("resnet18/32 conv2", (32, 8, 8, 64), 64, 3, 1, 1),
    ("resnet18/32 conv3_1", (32, 8, 8, 64), 128, 3, 2, 1),
    ("resnet18/32 conv4_1", (32, 4, 4, 128), 256, 3, 2, 1),
    ("resnet18/32 conv5_1", (32, 2, 2, 256), 512, 3, 2, 1),
    ("resnet18/32 short3", (32, 8, 8, 64), 128, 1, 2, 0),
    ("resnet18/224 conv1", (8, 224, 224, 3), 64, 7, 2, 3),
    ("resnet18/224 conv2", (8, 56, 56, 64), 64, 3, 1, 1),
    ("resnet18/224 conv3_1", (8, 56, 56, 64), 128, 3, 2, 1),
    ("resnet18/224 conv5_1", (8, 14, 14, 256), 512, 3, 2, 1),
    ("resnet18/224 short3", (8, 56, 56, 64), 128, 1, 2, 0),
    ("resnet50 1x1 in", (4, 56, 56, 256), 64, 1, 1, 0),
    ("resnet50 1x1 s2", (4, 56, 56, 256), 128, 1, 2, 0),
    ("resnet50 1x1 out", (4, 7, 7, 512), 2048, 1, 1, 0),
    ("vgg11/32 conv1", (32, 32, 32, 3), 64, 3, 1, 1),
    ("vgg11/32 conv3", (32, 8, 8, 128), 256, 3, 1, 1),
    ("vgg11/32 conv5", (32, 2, 2, 512), 512, 3, 1, 1),
]
ENV_KERNELS = "TF_ENABLE_ONEDNN_OPTS"


def _functions(shape, filters, k, stride, pad, dtype):
    import numpy as np
    import tensorflow as tf

    from keras_cnn_ext.ops import composite, conv_grads

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape), dtype)
    w = tf.constant(rng.standard_normal((k, k, shape[3], filters)) * 0.1, dtype)
    out = (shape[1] + 2 * pad - k) // stride + 1
    g = tf.constant(rng.standard_normal((shape[0], out, out, filters)), dtype)
    # the composite op's plan: taps that only meet padding dropped, one-cell axes unstrided
    x, taps, strides, pads, _ = composite._frame(x, (k, k), (stride, stride),
                                                 ((pad, pad), (pad, pad)), "zeros")
    (r0, r1), (c0, c1) = taps
    w = w[r0:r1 + 1, c0:c1 + 1]
    hw = tuple(x.shape[1:3])
    k = tuple(w.shape[:2])
    forward = {e: tf.function(lambda e=e: conv_grads.correlate(x, w, strides, pads, e))
               for e in conv_grads.CORRELATE}
    methods = ["tf", "dilate"] + (["phase", "subpixel"] if strides != (1, 1) else [])
    inputs = {}
    for m in methods:
        for e in (("conv",) if m == "tf" else conv_grads.CORRELATE):
            name = m if m == "tf" else f"{m}:{e}"
            inputs[name] = tf.function(
                lambda m=m, e=e: conv_grads.input_grad(g, w, hw, strides, pads, m, e))
    kernels = {m: tf.function(lambda m=m: conv_grads.kernel_grad(x, g, k, strides, pads, m))
               for m in conv_grads.KERNEL_GRADS}
    return x, w, strides, pads, {"forward": forward, "input": inputs, "kernel": kernels}


def _chosen(x, w, strides, pads):
    from keras_cnn_ext.ops import dispatch

    how = dispatch.corr2d_formulation(x, w, strides, pads)
    name = how.input_grad if how.input_grad == "tf" else f"{how.input_grad}:{how.input_engine}"
    if strides == (1, 1) and how.input_grad in ("phase", "subpixel"):
        name = f"dilate:{how.input_engine}"  # stride 1: every method is the plain formula
    return {"forward": how.forward, "input": name, "kernel": how.kernel_grad}


def run(args):
    import tensorflow as tf

    from common import markdown_table, time_alternating, write_docs_table
    from keras_cnn_ext.ops import dispatch

    cases = []
    if "issue" in args.cases:
        cases += ISSUE_CASES
    if "models" in args.cases:
        cases += MODEL_CASES
    dtype = getattr(tf, args.dtype)
    family = dispatch.cpu_kernels()
    rows, docs_rows = [], []
    tf_names = {"forward": "conv", "input": "tf", "kernel": "tf"}  # TensorFlow's own kernels
    for name, shape, filters, k, stride, pad in cases:
        x, w, strides, pads, pieces = _functions(shape, filters, k, stride, pad, dtype)
        chosen = _chosen(x, w, strides, pads)
        cells, docs_cells, rule_s, tf_s = [], [], 0.0, 0.0
        for piece, fns in pieces.items():
            times = time_alternating(list(fns.values()), args.repeats, warmup=2)
            best = min(times)
            by_name = dict(zip(fns, times))
            pick = by_name[chosen[piece]]
            listing = ", ".join(f"{n} {t * 1e3:.2f}" for n, t in zip(fns, times))
            cells += [listing, f"{chosen[piece]} ({pick / best:.2f})"]
            # the docs' cell: TensorFlow's time, "-> **choice time**" where the rule picks
            # another formulation, "(best ...)" where a third one was faster than the choice
            t_tf = by_name[tf_names[piece]]
            cell = f"{t_tf * 1e3:.1f}"
            if chosen[piece] != tf_names[piece]:
                cell += f" → **{chosen[piece]} {pick * 1e3:.1f}**"
            fastest = min(by_name, key=by_name.get)
            if by_name[fastest] < pick and fastest != chosen[piece]:
                cell += f" (best {fastest} {by_name[fastest] * 1e3:.1f})"
            docs_cells.append(cell)
            rule_s, tf_s = rule_s + pick, tf_s + t_tf
        plan = tuple(w.shape[:2])
        label = f"{name} {shape}->{filters} {k}x{k} s{stride} p{pad}"
        if plan != (k, k) or strides != (stride, stride):
            label += f" (runs {plan[0]}x{plan[1]} s{strides[0]} on {tuple(x.shape[1:3])})"
        rows.append([label] + cells)
        docs_rows.append([label] + docs_cells + [f"{rule_s / tf_s:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(f"TensorFlow CPU kernels: {family}; dtype {args.dtype}; ms, medians of "
          f"{args.repeats} alternated runs; rule = the dispatch choice (its time / fastest)")
    print(markdown_table(["case", "forward ms", "rule", "input grad ms", "rule",
                          "kernel grad ms", "rule"], rows))
    if args.docs:  # docs/benchmarks.md, "Correlation formulations and the dispatch rule"
        table = markdown_table([f"case ({args.dtype}, TF kernels {family})", "forward ms",
                                "input gradient ms", "kernel gradient ms", "rule / TF"],
                               docs_rows)
        suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
        write_docs_table(f"conv_grads_{family}{suffix}", table, "bench_conv_grads.py",
                         f"medians of {args.repeats} alternated runs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="issue,models")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kernels", default="default",
                        choices=("default", "onednn", "eigen", "both"))
    from common import add_docs_argument

    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if args.kernels == "default":
        return run(args)
    families = ("onednn", "eigen") if args.kernels == "both" else (args.kernels,)
    for family in families:
        env = dict(os.environ, **{ENV_KERNELS: "1" if family == "onednn" else "0"})
        child = ["--repeats", str(args.repeats), "--cases", args.cases, "--dtype", args.dtype]
        child += ["--docs"] if args.docs else []
        subprocess.run([sys.executable, os.path.abspath(__file__), *child], env=env,
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
