"""Train LeNet-5 on the embedded digits, export a SavedModel, serve it without keras_cnn_ext.

    python examples/export_and_serve.py                 # a few epochs, then export and serve
    python examples/export_and_serve.py --smoke         # one short epoch (what the tests run)
    python examples/export_and_serve.py --output out/serve --overwrite

Steps:
1. train `kce.models.lenet5` briefly on `kce.data.load("digits")` (offline, embedded);
2. `kce.export.export_savedmodel(model, OUTPUT/savedmodel/1)`: portable (stock TensorFlow
   ops only), checked op by op and verified in a fresh process; `1` is the version folder
   TF Serving expects (`tensorflow_model_server --model_base_path=OUTPUT/savedmodel`);
3. serve it from a new Python process that imports TensorFlow only — the code in `SERVER`
   below is all a serving environment needs — and compare its predictions on the test split
   with the Keras model's.

The output folder holds the SavedModel, the test batch and the served predictions.
"""

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

# What a serving process runs: no keras_cnn_ext, no Keras, no custom objects.
SERVER = r"""
import sys
import numpy as np
import tensorflow as tf

savedmodel, images_file, out_file = sys.argv[1:]
loaded = tf.saved_model.load(savedmodel)
probabilities = loaded.serve(tf.constant(np.load(images_file))).numpy()
# the same through the signature TF Serving exposes
signature = loaded.signatures["serving_default"]
(output,) = signature(**{name: tf.constant(np.load(images_file))
                         for name in signature.structured_input_signature[1]}).values()
assert np.array_equal(output.numpy(), probabilities)
assert not any(m.startswith("keras_cnn_ext") for m in sys.modules)
np.save(out_file, probabilities)
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join("output", "export_and_serve"),
                        help="folder for everything this run makes (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output folder if it exists")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--smoke", action="store_true",
                        help="one epoch of a few batches and a quick export (for the tests)")
    parser.add_argument("--data-dir", default=None, help="tfds data folder (digits is embedded)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"invalid value for --epochs: {args.epochs} (expected a positive integer)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output) and os.listdir(args.output):
        if not args.overwrite:
            print(f"error: {args.output} exists and is not empty (pass --overwrite to replace "
                  "it)", file=sys.stderr)
            return 2
        shutil.rmtree(args.output)
    os.makedirs(args.output, exist_ok=True)

    import keras

    import keras_cnn_ext as kce

    keras.utils.set_random_seed(0)
    load = dict(image_size=28, data_dir=args.data_dir)
    train = kce.data.load("digits", split="train", batch_size=32, **load)
    test = kce.data.load("digits", split="test", batch_size=512, **load)
    if args.smoke:
        train = train.take(4)

    # 1. train
    model = kce.models.lenet5(input_shape=(28, 28, 1), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # (kce.data.load already shuffles the training split; fit's own shuffle is for arrays)
    model.fit(train, epochs=1 if args.smoke else args.epochs, shuffle=False,
              verbose=0 if args.smoke else 2)
    images, labels = (np.asarray(t) for t in next(iter(test)))
    expected = np.asarray(model.predict(images, verbose=0))

    # 2. export: portable, op-checked, verified in a fresh process (skipped in smoke mode:
    #    step 3 reloads the export without the package anyway)
    savedmodel = os.path.join(args.output, "savedmodel", "1")
    report = kce.export.export_savedmodel(model, savedmodel, verify=not args.smoke)
    print(f"exported {savedmodel}: {report['size_bytes'] / 1e6:.2f} MB, "
          f"{len(report['ops'])} op types, all stock TensorFlow: {report['portable']}")

    # 3. serve from a process that cannot import keras_cnn_ext (-I: isolated mode)
    images_file = os.path.join(args.output, "test_images.npy")
    served_file = os.path.join(args.output, "served_probabilities.npy")
    np.save(images_file, images)
    subprocess.run([sys.executable, "-I", "-c", SERVER, savedmodel, images_file, served_file],
                   check=True, timeout=600,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    served = np.load(served_file)

    diff = float(np.max(np.abs(served - expected)))
    keras_acc = float(np.mean(expected.argmax(1) == labels))
    served_acc = float(np.mean(served.argmax(1) == labels))
    print(f"test accuracy: Keras model {keras_acc:.3f}, served SavedModel {served_acc:.3f} "
          f"({len(labels)} images); max |difference| of the probabilities {diff:.3g}")
    if diff > 1e-5 or keras_acc != served_acc:
        print("error: the served SavedModel differs from the Keras model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
