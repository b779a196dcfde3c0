"""Dilation and groups (issue 16): forward + backward, float32, against stock Keras and PyTorch.

For each case the candidates are timed in rotation in one process (`common.time_alternating`):
our `kce.ops.corr2d(..., dilation_rate=, groups=)` (implementation "auto": composite unless a
native library with the attributes is faster), the fastest stock Keras layer computing the
same numbers (`DepthwiseConv2D`, `Conv2D(groups=...)`, `Conv2D(dilation_rate=...)`; Keras has
none for a dilation with a stride > 1), each inside one `tf.function` computing the loss and
both gradients, and PyTorch's `F.conv2d` forward + backward with the same number of threads
as TensorFlow's intra-op pool. Prints the CPU model and TensorFlow's kernel family first.

    nice python benchmarks/bench_dilation_groups.py [--repeats 9] [--cases depthwise,...]
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import keras  # noqa: E402

import keras_cnn_ext as kce  # noqa: E402

# name -> (input NHWC, kernel, filters, strides, dilation, groups, the stock Keras layer)
CASES = {
    "depthwise": ((32, 56, 56, 128), 3, 128, 1, 1, 128, "DepthwiseConv2D"),
    "resnext": ((16, 28, 28, 256), 3, 256, 1, 1, 32, "Conv2D(groups=32)"),
    "dilated": ((16, 56, 56, 64), 3, 64, 1, 2, 1, "Conv2D(dilation_rate=2)"),
    "dilated_s2": ((16, 56, 56, 64), 3, 64, 2, 2, 1, None),
}


def _ours(x, w, strides, dilation, groups):
    @tf.function
    def step(x, w):
        # process-local like Keras's fit: "auto" chooses as it does in training
        with kce.ops.dispatch.process_local_scope(), tf.GradientTape() as tape:
            tape.watch([x, w])
            y = kce.ops.corr2d(x, w, strides, dilation, dilation_rate=dilation, groups=groups,
                               data_format="channels_last")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w])
    return step


def _keras(layer, x):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x] + layer.trainable_weights)
    return step


def _stock_layer(kind, kernel, filters, dilation, groups):
    if kind == "DepthwiseConv2D":
        return keras.layers.DepthwiseConv2D(kernel, padding="same", use_bias=False,
                                            depth_multiplier=filters // groups)
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, groups=groups,
                               dilation_rate=dilation)


def _torch_step(torch, x, w, strides, dilation, groups):
    functional = torch.nn.functional
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2))).contiguous().requires_grad_()
    wt = torch.tensor(np.transpose(w, (3, 2, 0, 1))).contiguous().requires_grad_()

    def step():
        xt.grad = wt.grad = None
        y = functional.conv2d(xt, wt, stride=strides, padding=dilation, dilation=dilation,
                              groups=groups)
        (y * y).sum().backward()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cases", default=",".join(CASES))
    common.add_docs_argument(parser)
    args = parser.parse_args(argv)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    print(f"{common.machine_line()}; PyTorch "
          f"{torch.__version__ if torch else 'absent'} with {threads} threads; float32, "
          f"forward + backward (input and kernel gradients), medians of {args.repeats} "
          "alternated rounds")
    rows = []
    rng = np.random.default_rng(0)
    for name in args.cases.split(","):
        shape, kernel, filters, strides, dilation, groups, stock = CASES[name]
        x = rng.standard_normal(shape).astype("float32")
        w = (rng.standard_normal((kernel, kernel, shape[3] // groups, filters)) * 0.1
             ).astype("float32")
        xt, wt = tf.constant(x), tf.constant(w)
        ours = _ours(xt, wt, strides, dilation, groups)
        fns = [lambda: [t.numpy() for t in ours(xt, wt)]]
        labels = ["kce"]
        slow_stock = None
        if stock is not None:
            layer = _stock_layer(stock, kernel, filters, dilation, groups)
            layer.build(shape)
            keras_step = _keras(layer, xt)
            if "groups" in stock and not tf.config.list_logical_devices("GPU"):
                # TF's CPU grouped-convolution gradient path takes ~100 s a step here: timed
                # once after one warm-up, outside the rotation
                slow_stock = lambda: [t.numpy() for t in keras_step(xt)]  # noqa: E731
            else:
                fns.append(lambda: [t.numpy() for t in keras_step(xt)])
                labels.append("keras")
        if torch is not None:
            fns.append(_torch_step(torch, x, w, strides, dilation, groups))
            labels.append("torch")
        times = dict(zip(labels, common.time_alternating(fns, args.repeats, warmup=2)))
        if slow_stock is not None:
            times["keras"] = common.time_alternating([slow_stock], 1, warmup=1)[0]
        ms = {k: v * 1e3 for k, v in times.items()}
        rows.append((name, f"{shape} {kernel}x{kernel} s{strides} d{dilation} g{groups}",
                     f"{ms['kce']:.1f}",
                     f"{stock}: {ms['keras']:.1f}" if "keras" in ms else "none",
                     f"{ms['kce'] / ms['keras']:.2f}" if "keras" in ms else "-",
                     f"{ms['torch']:.1f}" if "torch" in ms else "-",
                     f"{ms['kce'] / ms['torch']:.2f}" if "torch" in ms else "-"))
        print(rows[-1], flush=True)
    table = common.markdown_table(("case", "geometry", "kce ms", "stock Keras ms", "kce/keras",
                                   "torch ms", "kce/torch"), rows)
    print(table)
    if args.docs:  # docs/geometry.md
        common.write_docs_table("dilation_groups", table, "bench_dilation_groups.py",
                                f"float32 forward + both gradients, medians of {args.repeats} "
                                f"alternated rounds, PyTorch with {threads} threads")


if __name__ == "__main__":
    main()
