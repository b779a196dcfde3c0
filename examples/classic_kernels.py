"""The lecture slides' classic kernels applied to a handwritten digit.

The slides (5.4 "卷积运算") show three hand-made kernels - edge detection, sharpening and a
Gaussian blur - and the 1x2 kernel [1, -1] that finds vertical edges (white->black gives 1,
black->white -1). This script first reproduces the slides' edge example exactly, then applies
all four kernels with `kce.ops.corr2d` ('same' padding, replicate padding mode: the slides'
复制填充) to a digit from the embedded data set and saves the figure.

    python examples/classic_kernels.py                    # writes classic_kernels.png
    python examples/classic_kernels.py --output DIR       # ... into DIR
"""

import argparse
import os
import sys

import numpy as np

import keras_cnn_ext as kce

KERNELS = {
    "edge detection": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], "float32"),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "float32"),
    "Gaussian blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], "float32") / 16,
    "vertical edges [1, -1]": np.array([[1, -1]], "float32"),
}


def slides_edge_example():
    """The slides' 6x8 image (4 black middle columns) and K = [1, -1]: returns Y."""
    image = np.ones((6, 8), "float32")
    image[:, 2:6] = 0
    return kce.ops.reference.corr2d(image, KERNELS["vertical edges [1, -1]"])


def apply(image, kernel):
    """corr2d of a 2-D image with a 2-D kernel, output the size of the input."""
    x = np.asarray(image, "float32")[None, :, :, None]
    y = kce.ops.corr2d(x, kernel[:, :, None, None], padding="same", padding_mode="replicate")
    return np.asarray(y)[0, :, :, 0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=".", help="folder for classic_kernels.png")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    parser.add_argument("--smoke", action="store_true", help="(the same run: it is quick)")
    args = parser.parse_args(argv)

    y = slides_edge_example()
    expected = np.tile([0, 1, 0, 0, 0, -1, 0], (6, 1))
    print("Slides' edge example, Y = corr2d(X, [1, -1]):\n", y.astype(int))
    if not np.array_equal(y, expected):
        print("differs from the slides!", file=sys.stderr)
        return 1

    images, labels = next(iter(kce.data.load("digits", split="test", batch_size=1,
                                             image_size=32, data_dir=args.data_dir,
                                             cache=False)))
    digit = images.numpy()[0, :, :, 0]
    results = []
    for name, kernel in KERNELS.items():
        out = apply(digit, kernel)
        # the same numbers as the book's definition, computed by the NumPy reference
        np.testing.assert_allclose(
            out, kce.ops.reference.corr2d(digit, kernel, padding="same",
                                          padding_mode="replicate"), atol=1e-5)
        shown = kernel * 16 if name == "Gaussian blur" else kernel  # print it as the slides do
        results.append((name if name != "Gaussian blur" else "Gaussian blur (1/16 x)", shown,
                        out))
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "classic_kernels.png")
    kce.viz.plot_filtered_images(digit, results, path,
                                 title=f"The slides' classic kernels on a digit (label "
                                       f"{int(labels[0])}, 32x32; each panel scaled to its "
                                       f"own range)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
