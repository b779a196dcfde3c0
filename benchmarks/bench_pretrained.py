"""Inference of a converted ResNet-50 (224x224, 1000 classes): ours vs PyTorch on the same CPU.

torchvision's ResNet-50 (``weights=None``, batch-norm statistics randomised; the arithmetic is
that of the trained network) is saved as a state dict and converted with
`kce.models.pretrained.convert` (checked against torchvision first). Timed in rotation
(`common.time_alternating`), medians, for batch 1 and batch 32:

* torch: ``model.eval()`` under ``torch.inference_mode()``, torch's default CPU threads (one
  per core); torch_1t: the same on one thread (on a shared machine torch's spinning OpenMP
  threads can be several times slower than one thread: the faster of the two is the baseline);
* keras: ``model.predict_on_batch`` of the converted model ("auto" layers: the compiled ops
  where they are faster);
* keras_fn: the same model in one `tf.function` (``jit_compile=False``) called on a tensor,
  what a serving loop in Python does;
* savedmodel: the portable SavedModel of the same model (`kce.export.export_savedmodel`),
  reloaded, ``serve(x)``.

All take the same normalised NHWC/NCHW batch (the input normalisation is left out of the
converted model so that every contender runs the network alone). Usage:

    python benchmarks/bench_pretrained.py [--repeats 7] [--batches 1,32] [--docs]
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from common import (add_docs_argument, markdown_table, time_alternating,  # noqa: E402
                    write_docs_table)
from keras_cnn_ext import export  # noqa: E402
from keras_cnn_ext.models import _torch, pretrained  # noqa: E402

CONTENDERS = ("torch", "torch_1t", "keras", "keras_fn", "savedmodel")
OURS = CONTENDERS[2:]


def _source(folder):
    torch = _torch.torch("The benchmark")
    tv = _torch.torchvision("The benchmark")
    torch.manual_seed(0)
    model = tv.models.resnet50(weights=None)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    path = os.path.join(folder, "resnet50.pth")
    torch.save(model.state_dict(), path)
    return model.eval(), path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", default="1,32")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    torch = _torch.torch("The benchmark")
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        source, path = _source(folder)
        model, report = pretrained.convert("resnet50", path, preprocess=False, logits=True)
        print(f"converted: max |diff| {report['max_abs_diff']:.2g} of scale "
              f"{report['logits_scale']:.3g}, top-1 {report['top1_agreement']}/4", flush=True)
        export.export_savedmodel(model, os.path.join(folder, "sm"), verify=False)
        loaded = tf.saved_model.load(os.path.join(folder, "sm"))
        fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(batch).standard_normal((batch, 224, 224, 3)).astype(
                np.float32)
            xt = tf.constant(x)
            x_torch = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))

            def run_torch(threads):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    source(x_torch)
                torch.set_num_threads(default_threads)

            fns = {"torch": lambda: run_torch(default_threads), "torch_1t": lambda: run_torch(1),
                   "keras": lambda: model.predict_on_batch(x),
                   "keras_fn": lambda: np.asarray(fn(xt)),
                   "savedmodel": lambda: np.asarray(loaded.serve(xt))}
            times = dict(zip(CONTENDERS, time_alternating(
                [fns[c] for c in CONTENDERS], repeats=args.repeats, warmup=2)))
            base = min(times["torch"], times["torch_1t"])
            rows.append([batch] + [f"{times[c] * 1e3:.1f} ms" for c in CONTENDERS]
                        + [f"{times[c] / base:.2f}x" for c in OURS])
            print(rows[-1], flush=True)
    header = (["batch"] + [f"{c}" for c in CONTENDERS]
              + [f"{c} / best torch" for c in OURS])
    table = markdown_table(header, rows)
    print(table)
    if args.docs:
        write_docs_table("pretrained_inference", table, "bench_pretrained.py",
                         note=f"torch {torch.__version__}, {default_threads} threads or 1; "
                              f"medians of {args.repeats} alternated runs")


if __name__ == "__main__":
    main()
