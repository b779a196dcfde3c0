"""A ResNeXt-50 (32x4d) training step at 224x224: ours vs stock Keras vs PyTorch, float32, CPU.

The network is torchvision's architecture (`kce.models.resnext50_32x4d(variant="torchvision")`,
grouped 3x3 convolutions with 32 groups in every bottleneck); one step is forward, loss
(sparse cross-entropy on 1000 classes), backward and an SGD update. Timed in rotation in one
process (`common.time_alternating`), medians:

* ours: the textbook layers ("auto": the grouped convolutions run as this package computes
  them), `model.train_on_batch`;
* keras: the same builder with stock Keras layers (`Conv2D(groups=32)`); TensorFlow's CPU
  kernels refuse grouped convolutions outside XLA, so it is compiled with `jit_compile=True`
  (where even that fails the row says so);
* torch / torch_1t: torchvision's `resnext50_32x4d` on torch's default threads and on one (on
  a shared machine the faster is the baseline).

    python benchmarks/bench_resnext_step.py [--batch 8] [--repeats 5] [--docs]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from common import add_docs_argument, markdown_table, time_alternating, write_docs_table  # noqa: E402,E501
import keras_cnn_ext as kce  # noqa: E402
from keras_cnn_ext.models import _torch  # noqa: E402


def _keras_step(layers, x, y, jit_compile):
    model = kce.models.resnext50_32x4d(variant="torchvision", layers=layers,
                                       classifier_activation=None)
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return lambda: model.train_on_batch(x, y)


def _torch_step(x, y):
    torch = _torch.torch("The benchmark")
    model = _torch.torchvision("The benchmark").models.resnext50_32x4d(weights=None).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    xt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    yt = torch.from_numpy(y.astype(np.int64))
    default = torch.get_num_threads()

    def step(threads):
        torch.set_num_threads(threads)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
        torch.set_num_threads(default)

    return (lambda: step(default)), (lambda: step(1)), default


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, 224, 224, 3)).astype(np.float32)
    y = rng.integers(0, 1000, args.batch)
    candidates = {"ours": _keras_step("textbook", x, y, False)}
    note = ""
    try:
        stock = _keras_step("keras", x, y, True)
        stock()  # XLA compiles here; a refusal shows now
        candidates["keras (XLA)"] = stock
    except Exception as error:  # noqa: BLE001 - any refusal of the stock path is the result
        note = f"stock Keras: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        print(note, flush=True)
    torch_default, torch_one, threads = _torch_step(x, y)
    candidates["torch"] = torch_default
    candidates["torch_1t"] = torch_one
    names = list(candidates)
    times = dict(zip(names, time_alternating([candidates[n] for n in names],
                                             repeats=args.repeats, warmup=1)))
    base = min(times["torch"], times["torch_1t"])
    rows = [[n, f"{times[n]:.2f} s", f"{times[n] / base:.2f}x"] for n in names]
    table = markdown_table([f"ResNeXt-50 32x4d step, batch {args.batch}, 224x224", "median",
                            "/ best torch"], rows)
    print(table)
    if args.docs:
        write_docs_table("resnext_step", table, "bench_resnext_step.py",
                         note=f"torch {threads} threads or 1; medians of {args.repeats} "
                              "alternated steps" + (f"; {note}" if note else ""))


if __name__ == "__main__":
    main()
