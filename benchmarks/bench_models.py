"""One training step of whole models: our layers against stock Keras layers and PyTorch.

    python benchmarks/bench_models.py [--repeats 11] [--steps 2] [--models all]
                                      [--jit off,on] [--no-torch] [--memory]

Candidates, timed in rotation within one process (`common.time_alternating`, the order
rotating every round so drift hits all alike), ratio of the medians:
  * ours — `layers="textbook"`, `implementation="auto"` (the dispatch rule of
    `keras_cnn_ext/ops/dispatch.py`);
  * ours, TF kernels — the same model with the composite correlation forced to TensorFlow's
    own kernels and no dropped taps: the package before the formulations of
    `ops/conv_grads.py` (the "before" of issue 11);
  * keras — `layers="keras"`: the same architecture and weights from stock Keras layers;
  * torch — the architecture written with `torch.nn` (`torch_models.py`), 2 threads, plain
    eager training step (optional: `pip install ".[bench]"`).
Keras steps are `train_on_batch` (the compiled train function: forward, loss, backward, SGD),
with `jit_compile=False` ("off", also what Keras's default "auto" picks on a machine without
GPU) or `jit_compile=True` ("on", XLA). PyTorch's OpenMP threads spin after each op and slow
whatever runs next, hence `OMP_WAIT_POLICY=PASSIVE` (set here before torch is imported).

`--kernels onednn|eigen|both` runs under TensorFlow's oneDNN CPU kernels, its own Eigen ones
(`TF_ENABLE_ONEDNN_OPTS=0`: what CPUs without AVX-512 VNNI / AVX-VNNI / AMX get), or both.
`--memory` instead runs one child process per candidate (ours / keras) for ResNet-18 at
224x224, batch 8, and reports the peak resident set size (`ru_maxrss`) after 3 steps.
"""

import argparse
import os
import resource
import subprocess
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

# (label, builder name, input shape HWC, batch)
CASES = {
    "resnet18_32": ("ResNet-18, 32x32x3, batch 32", "resnet18", (32, 32, 3), 32),
    "resnet18_224": ("ResNet-18, 224x224x3, batch 8", "resnet18", (224, 224, 3), 8),
    "resnet50_224": ("ResNet-50, 224x224x3, batch 4", "resnet50", (224, 224, 3), 4),
    "vgg11_32": ("VGG-11, 32x32x3, batch 32", "vgg11", (32, 32, 3), 32),
    "lenet5": ("LeNet-5, 28x28x1, batch 128", "lenet5", (28, 28, 1), 128),
}
NUM_CLASSES = 10


def _data(shape, batch):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch,) + shape).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=(batch,))
    return x, y


def keras_step(name, shape, batch, layers, jit, steps, formulation=None):
    """A zero-argument callable running `steps` Keras training steps of a fresh model."""
    import keras

    from keras_cnn_ext import models
    from keras_cnn_ext.ops import dispatch

    keras.utils.set_random_seed(0)
    model = models.get_model(name, input_shape=shape, num_classes=NUM_CLASSES, layers=layers)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                  jit_compile=jit)
    x, y = _data(shape, batch)

    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)

    if formulation is None:
        return run

    def run_forced():  # the train function is traced inside the block on its first call
        with dispatch.force_formulation(formulation, drop_dead_taps=False):
            run()

    return run_forced


def _import_torch():
    # Triton (a GPU compiler that torch's optimizers probe for) crashes when its LLVM is
    # loaded into a process that holds TensorFlow's: mark it absent, which torch handles.
    sys.modules.setdefault("triton", None)
    import torch

    return torch


def torch_step(name, shape, batch, steps):
    torch = _import_torch()

    from torch_models import BUILDERS

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = BUILDERS[name](NUM_CLASSES, shape[0])
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(shape, batch)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

    return run


def _torch_available():
    try:
        _import_torch()
    except ImportError:
        return False
    return True


def time_models(args):
    import keras

    from common import markdown_table, time_alternating, write_docs_table
    from keras_cnn_ext.ops import dispatch

    use_torch = not args.no_torch and _torch_available()
    rows = []
    for key in args.models.split(","):
        label, name, shape, batch = CASES[key]
        for jit in args.jit.split(","):
            jit_flag = jit == "on"
            fns = {
                "ours": keras_step(name, shape, batch, "textbook", jit_flag, args.steps),
                "ours, TF kernels": keras_step(name, shape, batch, "textbook", jit_flag,
                                               args.steps, dispatch.TF_KERNELS),
                "keras": keras_step(name, shape, batch, "keras", jit_flag, args.steps),
            }
            if use_torch:
                fns["torch"] = torch_step(name, shape, batch, args.steps)
            times = dict(zip(fns, time_alternating(list(fns.values()), args.repeats,
                                                   warmup=2)))
            ms = {k: 1e3 * t / args.steps for k, t in times.items()}
            row = [label, jit, f"{ms['ours']:.1f}", f"{ms['ours, TF kernels']:.1f}",
                   f"{ms['keras']:.1f}", f"{ms['torch']:.1f}" if use_torch else "-",
                   f"{ms['ours'] / ms['ours, TF kernels']:.2f}",
                   f"{ms['ours'] / ms['keras']:.2f}",
                   f"{ms['ours'] / ms['torch']:.2f}" if use_torch else "-",
                   f"{ms['keras'] / ms['torch']:.2f}" if use_torch else "-"]
            rows.append(row)
            print(" | ".join(row), file=sys.stderr, flush=True)
            keras.backend.clear_session()
    print(f"TensorFlow CPU kernels: {dispatch.cpu_kernels()}; ms per training step, medians "
          f"of {args.repeats} alternated runs of {args.steps} steps")
    header = ("model, one training step", "XLA", "ours ms", "ours, TF kernels ms", "keras ms",
              "torch ms", "ours / TF kernels", "ours / keras", "ours / torch", "keras / torch")
    print(markdown_table(header, rows))
    if args.docs:  # docs/benchmarks.md, "Training speed": one table per kernel family, XLA apart
        family = dispatch.cpu_kernels()
        note = f"ms per training step, medians of {args.repeats} alternated runs"
        for jit, name in (("off", f"models_{family}"),
                          ("on", "models_xla" if family == "onednn" else f"models_xla_{family}")):
            picked = [row for row in rows if row[1] == jit]
            if picked:
                write_docs_table(name, markdown_table(header, picked), "bench_models.py", note)


def _peak_rss_child(layers, steps):
    """Runs in a child: builds ResNet-18 224 (batch 8), trains `steps` steps, prints the
    resident set size after building and the peak, in MiB."""
    run = keras_step("resnet18", (224, 224, 3), 8, layers, False, 1)
    with open("/proc/self/status", encoding="utf-8") as f:
        built = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    for _ in range(steps):
        run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{built / 1024:.0f} {peak / 1024:.0f}")


def peak_memory(args):
    from common import markdown_table, write_docs_table

    rows, peaks = [], {}
    for layers in ("textbook", "keras"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", layers],
                             capture_output=True, text=True, check=True, timeout=1800)
        built, peak = (float(v) for v in out.stdout.split()[-2:])
        peaks[layers] = peak
        rows.append([layers, f"{built:.0f}", f"{peak:.0f}", f"{peak - built:.0f}"])
    from keras_cnn_ext.ops import dispatch

    print(f"TensorFlow CPU kernels: {dispatch.cpu_kernels()}")
    table = markdown_table(("ResNet-18 224x224 batch 8, layers=", "RSS after build MiB",
                            "peak RSS MiB", "peak - build MiB"), rows)
    print(table)
    if args.docs:
        write_docs_table("models_memory", table, "bench_models.py --memory",
                         "one child process per candidate, 3 training steps, ru_maxrss")
    print(f"peak RSS ours / keras: {peaks['textbook'] / peaks['keras']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--steps", type=int, default=2, help="train steps per timed call")
    parser.add_argument("--models", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--jit", default="off,on", help="'off', 'on' or 'off,on'")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--kernels", default="default",
                        choices=("default", "onednn", "eigen", "both"),
                        help="TensorFlow's CPU kernel family (a child process per family)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    from common import add_docs_argument

    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if args.kernels != "default":
        families = ("onednn", "eigen") if args.kernels == "both" else (args.kernels,)
        rest = [a for a in (sys.argv[1:] if argv is None else argv)
                if a not in ("--kernels", args.kernels) and not a.startswith("--kernels=")]
        for family in families:
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if family == "onednn" else "0")
            subprocess.run([sys.executable, os.path.abspath(__file__), *rest], env=env,
                           check=True)
        return 0
    if args.rss_child:
        return _peak_rss_child(args.rss_child, 3)
    if args.memory:
        return peak_memory(args)
    for key in args.models.split(","):
        if key not in CASES:
            parser.error(f"invalid model {key!r}; choose from {', '.join(CASES)}")
    return time_models(args)


if __name__ == "__main__":
    sys.exit(main())
