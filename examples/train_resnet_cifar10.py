"""Train the CIFAR ResNet-20 (He et al. 2016, section 4.2) on CIFAR-10 from tensorflow-datasets.

    python examples/train_resnet_cifar10.py --data-dir ~/tensorflow_datasets
    python examples/train_resnet_cifar10.py --smoke       # 1 epoch on fake data (tests)

Getting the data: CIFAR-10 is not embedded. Nothing is downloaded unless asked for; without the
data the script stops at once and says how to provide it. On a machine with network access either
pass --download (tensorflow-datasets fetches and prepares it, about 160 MB, into --data-dir or
~/tensorflow_datasets), or run `tfds build cifar10 --data_dir DIR` and copy DIR to the training
machine, then pass --data-dir DIR (or set TFDS_DATA_DIR=DIR).

The recipe: random crops after 4-pixel zero padding and horizontal flips (the paper's
augmentation), Adam with a cosine schedule, batch 128. 30 epochs reach about 0.85-0.88 test
accuracy (several hours on a 2-core CPU; a GPU makes it minutes).
"""

import argparse
import contextlib
import sys

import keras_cnn_ext as kce


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", default=None, help="run folder (default runs/train/...)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    parser.add_argument("--download", action="store_true", help="let tfds download CIFAR-10")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output")
    parser.add_argument("--smoke", action="store_true",
                        help="1 epoch on 32 fake images (tfds.testing.mock_data): no data needed")
    args = parser.parse_args(argv)

    settings = dict(epochs=args.epochs, batch_size=128, learning_rate=1e-3, schedule="cosine",
                    augment="crop_flip")
    context = contextlib.nullcontext()
    if args.smoke:
        import tensorflow_datasets as tfds

        settings.update(epochs=1, batch_size=16, max_examples=32, tensorboard=False)
        context = tfds.testing.mock_data(num_examples=32)
    try:
        with context:
            metrics = kce.training.train(
                "resnet20", "cifar10", output=args.output, data_dir=args.data_dir,
                download=args.download, resume=args.resume,
                overwrite=args.output is not None and not args.resume, **settings)
    except kce.data.DatasetNotAvailableError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
          f"({metrics['output']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
