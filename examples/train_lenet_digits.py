"""Train LeNet-5 on the embedded digits (the README's main job, from Python) and draw what it
learned: the training curves, the 6 kernels of its first layer and the feature maps of a test
digit.

    python examples/train_lenet_digits.py                 # 20 epochs, ~0.98 test accuracy
    python examples/train_lenet_digits.py --smoke         # 1 epoch on 64 examples (tests)

Everything lands in one run folder (see `keras_cnn_ext.training.train`), plus kernels.png and
feature_maps.png drawn here. Works offline: digits ships inside scikit-learn.
"""

import argparse
import os
import sys

import keras_cnn_ext as kce


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="run folder (default runs/train/...)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 64 examples")
    args = parser.parse_args(argv)

    smoke = dict(epochs=1, max_examples=64, tensorboard=False) if args.smoke else {}
    metrics = kce.training.train("lenet5", "digits", output=args.output, data_dir=args.data_dir,
                                 overwrite=args.output is not None, **smoke)
    out = metrics["output"]
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs")

    import keras

    model = keras.models.load_model(os.path.join(out, "model.keras"))
    kce.viz.plot_kernels(model.get_layer("c1"), os.path.join(out, "kernels.png"),
                         title="LeNet-5 layer c1: the 6 learned 5x5 kernels")
    images, labels = next(iter(kce.data.load("digits", split="test", batch_size=1,
                                             image_size=28, data_dir=args.data_dir,
                                             cache=False)))
    kce.viz.plot_feature_maps(model, images[0], "c1", os.path.join(out, "feature_maps.png"),
                              title=f"Feature maps of layer c1 for a test digit "
                                    f"(label {int(labels[0])})")
    print(f"kernels.png and feature_maps.png written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
