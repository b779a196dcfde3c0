"""One training step of whole models: layers="textbook" (ours) against layers="keras" (stock).

Both twins have the same architecture and the same weights; each step is `train_on_batch`
(Keras's compiled `tf.function` train step: forward, loss, backward, SGD update). The steps are
timed in alternation after a warm-up (`common.time_pair`), and the ratio of the medians is
reported (target <= 1.05). Usage:

    python benchmarks/bench_models.py [--repeats 15] [--steps 3]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from common import markdown_table, time_pair  # noqa: E402
from keras_cnn_ext import models  # noqa: E402

# (label, builder name, input shape, batch, builder kwargs)
CASES = [
    ("ResNet-18, 32x32x3, batch 32", "resnet18", (32, 32, 3), 32, dict(num_classes=10)),
    ("LeNet-5, 28x28x1, batch 128", "lenet5", (28, 28, 1), 128, dict(num_classes=10)),
]


def _step_fn(model, x, y, steps):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")

    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3, help="train steps per timed call")
    args = parser.parse_args()
    rows = []
    for label, name, shape, batch, kwargs in CASES:
        keras.utils.set_random_seed(0)
        ours = models.get_model(name, input_shape=shape, layers="textbook", **kwargs)
        stock = models.get_model(name, input_shape=shape, layers="keras", **kwargs)
        stock.set_weights(ours.get_weights())
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(batch,) + shape).astype("float32")
        y = rng.integers(0, kwargs["num_classes"], size=(batch,))
        t_ours, t_stock = time_pair(_step_fn(ours, x, y, args.steps),
                                    _step_fn(stock, x, y, args.steps), repeats=args.repeats)
        rows.append((label, f"{1e3 * t_ours / args.steps:.1f}",
                     f"{1e3 * t_stock / args.steps:.1f}", f"{t_ours / t_stock:.3f}"))
        print(f"{label}: {rows[-1][1]} ms vs {rows[-1][2]} ms", file=sys.stderr, flush=True)
        keras.backend.clear_session()
    print(markdown_table(("model, one train step", "textbook ms", "keras ms", "ratio"), rows))


if __name__ == "__main__":
    main()
