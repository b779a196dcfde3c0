"""A five-minute tour: the book's worked examples, learning a kernel from data, LeNet-5.

Run with `python examples/demo.py`. Every printed matrix is a number from the textbook
(chapter 24) or the lecture notes, computed by the package's layers; the script checks each
one against the book and exits non-zero if any differs.
"""

import sys

import numpy as np

import keras
import keras_cnn_ext as kce

X = np.array([[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]], "float32")
W = np.array([[2, 1, 2], [0, 0, 3], [0, 0, 2]], "float32")
X7 = np.array([
    [3, 2, 0, 1, 0, 2, 1], [0, 2, 1, 2, 1, 2, 1], [2, 0, 0, 3, 0, 0, 2],
    [2, 3, 1, 0, 1, 1, 3], [2, 2, 1, 1, 0, 3, 1], [1, 1, 0, 0, 1, 2, 2],
    [2, 1, 0, 3, 2, 1, 1]], "float32")

# (title, layer arguments, input matrix, kernel matrix or None for pooling, the book's answer)
EXAMPLES = [
    ("Example 24.2: Y = W * X", dict(padding=0), X, W, [[11, 18], [6, 22]]),
    ("Example 24.3: zero padding 1", dict(padding=1), X, W,
     [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]]),
    ("Example 24.4: stride 2", dict(strides=2), X7, W,
     [[11, 4, 11], [9, 6, 15], [8, 10, 13]]),
    ("Example 24.5: an L-shaped feature detector", dict(),
     np.array([[0, 0, 0, 0], [0, 2, 0, 0], [0, 2, 0, 0], [0, 2, 2, 2]], "float32"),
     np.array([[2, 0, 0], [2, 0, 0], [2, 2, 2]], "float32"), [[4, 8], [8, 20]]),
    ("Example 24.7: 2x2 max pooling, stride 2", dict(), X, None, [[3, 2], [3, 3]]),
]


def run_example(args, x, kernel):
    """Applies one layer with the given kernel (no bias) to a single-channel matrix."""
    if kernel is None:
        layer = kce.layers.MaxPooling2D(2, data_format="channels_last", **args)
    else:
        layer = kce.layers.CrossCorrelation2D(
            1, kernel.shape, use_bias=False, data_format="channels_last", **args)
        layer.build((None,) + x.shape + (1,))
        layer.set_weights([kernel[:, :, None, None]])
    return layer(x[None, :, :, None])[0, :, :, 0].numpy()


def learn_edge_kernel():
    """The lecture notes' exercise: recover the edge detector K = [1, -1] from (X, Y) pairs."""
    image = np.ones((6, 8), "float32")
    image[:, 2:6] = 0.0
    target = kce.ops.reference.corr2d(image, np.array([[1.0, -1.0]]))
    layer = kce.layers.CrossCorrelation2D(1, (1, 2), use_bias=False,
                                          data_format="channels_last")
    model = keras.Sequential([keras.Input((6, 8, 1)), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(image[None, :, :, None], target[None, :, :, None].astype("float32"),
              epochs=200, verbose=0)
    return layer.get_weights()[0][:, :, 0, 0]


def main():
    failures = 0
    for title, args, x, kernel, expected in EXAMPLES:
        y = run_example(args, x, kernel)
        ok = np.array_equal(y, np.array(expected, "float32"))
        failures += not ok
        print(f"{title}{'' if ok else '   <-- differs from the book'}\n{y.astype(int)}\n")
    learned = learn_edge_kernel()
    print(f"Learned edge kernel (the notes' answer is [[1, -1]]): {np.round(learned, 3)}")
    if not np.allclose(learned, [[1.0, -1.0]], atol=0.05):
        failures += 1
        print("   <-- did not converge to [[1, -1]]")
    lenet = kce.models.lenet5()
    print("\nLeNet-5 (the notes' definition) layer by layer:")
    print(kce.analysis.format_table(kce.analysis.summarize(lenet)))
    if lenet.count_params() != 61_706:
        failures += 1
        print("   <-- LeNet-5 should have 61,706 parameters")
    print(f"\nNative custom ops: {kce.ops.native_status()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
