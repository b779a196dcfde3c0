"""Forward + backward time of our layers against the fastest stock Keras way to the same numbers.

Stock baseline per case: `keras.layers.Conv2D(padding='same')` where TensorFlow's SAME equals
the symmetric padding, else `ZeroPadding2D` + `Conv2D(padding='valid')`; pooling against
`keras.layers.MaxPooling2D` / `AveragePooling2D`. Both run as one `tf.function` computing the
output and the gradients with respect to input and weights. Usage:

    python benchmarks/bench_layers.py [--repeats 15] [--implementation auto]

Prints a markdown table: median milliseconds of each and the ratio ours / stock (target
<= 1.05 for implementation='auto').
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_cnn_ext as kce  # noqa: E402
from common import add_docs_argument, markdown_table, time_pair, write_docs_table  # noqa: E402
from keras_cnn_ext.ops import geometry  # noqa: E402

# (label, input shape, filters or None for pooling, window, stride, padding, kind)
CASES = [
    ("corr 5x5 pad 2, (128,28,28,1)->6", (128, 28, 28, 1), 6, 5, 1, 2, "corr"),
    ("corr 3x3 pad 1, (32,32,32,64)->64", (32, 32, 32, 64), 64, 3, 1, 1, "corr"),
    ("corr 3x3 pad 1, (16,56,56,64)->64", (16, 56, 56, 64), 64, 3, 1, 1, "corr"),
    ("corr 3x3 s2 pad 1, (16,56,56,64)->128", (16, 56, 56, 64), 128, 3, 2, 1, "corr"),
    ("max pool 2x2, (16,112,112,64)", (16, 112, 112, 64), None, 2, 2, 0, "max"),
    ("mean pool 2x2, (16,112,112,64)", (16, 112, 112, 64), None, 2, 2, 0, "mean"),
]


def stock_layers(shape, filters, window, stride, padding, kind):
    """The fastest stock Keras layer stack computing the same numbers."""
    if kind == "max":
        return [keras.layers.MaxPooling2D(window, stride)]
    if kind == "mean":
        return [keras.layers.AveragePooling2D(window, stride)]
    pads = geometry.resolve_padding(padding, (window, window))
    same = all(geometry.tf_same_pads(size, window, stride) == p
               for size, p in zip(shape[1:3], pads))
    if same:
        return [keras.layers.Conv2D(filters, window, stride, padding="same")]
    return [keras.layers.ZeroPadding2D(pads),
            keras.layers.Conv2D(filters, window, stride, padding="valid")]


def our_layers(filters, window, stride, padding, kind, implementation):
    if kind == "max":
        return [kce.layers.MaxPooling2D(window, stride, padding,
                                        implementation=implementation)]
    if kind == "mean":
        return [kce.layers.MeanPooling2D(window, stride, padding,
                                         implementation=implementation)]
    return [kce.layers.CrossCorrelation2D(filters, window, stride, padding,
                                          implementation=implementation)]


def fwd_bwd(layers, x, upstream):
    """A compiled step computing the outputs and the gradients with respect to the input and
    all weights, for a fixed upstream gradient (so nothing but the layer is timed)."""
    model = keras.Sequential(layers)
    model.build(x.shape)
    weights = model.trainable_variables

    @tf.function
    def step():
        # a step that stays in this process, like Keras's fit: "auto" may pick the compiled
        # ops here (a plain tf.function could be exported, so it gets the portable ones)
        with kce.ops.dispatch.process_local_scope(), tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
        return tape.gradient(y, [x] + weights, output_gradients=upstream)

    # On the CPU a tf.function returns finished tensors: nothing to copy or wait for.
    return model, step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--implementation", default="auto")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for label, shape, filters, window, stride, padding, kind in CASES:
        x = tf.constant(rng.standard_normal(shape), tf.float32)
        layers = our_layers(filters, window, stride, padding, kind, args.implementation)
        out_shape = layers[0].compute_output_shape(shape)
        upstream = tf.constant(rng.standard_normal(out_shape), tf.float32)
        ours, run_ours = fwd_bwd(layers, x, upstream)
        stock, run_stock = fwd_bwd(stock_layers(shape, filters, window, stride, padding,
                                                kind), x, upstream)
        if ours.weights:
            stock.set_weights(ours.get_weights())
        np.testing.assert_allclose(ours(x).numpy(), stock(x).numpy(), rtol=1e-4, atol=1e-3)
        t_ours, t_stock = time_pair(run_ours, run_stock, repeats=args.repeats)
        rows.append((label, f"{t_ours * 1e3:.1f}", f"{t_stock * 1e3:.1f}",
                     f"{t_ours / t_stock:.2f}"))
        print(rows[-1], flush=True)
    print()
    table = markdown_table(
        ("case (fwd+bwd, float32)", f"ours ({args.implementation}) ms", "stock Keras ms",
         "ratio"), rows)
    print(table)
    if args.docs and args.implementation == "auto":  # docs/benchmarks.md, "Layers"
        write_docs_table("layers", table, "bench_layers.py",
                         f"medians of {args.repeats} alternated runs")


if __name__ == "__main__":
    main()
