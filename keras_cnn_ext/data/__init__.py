"""Data sets for training: tensorflow-datasets names and the embedded offline set "digits".

* `load(name, split="train", batch_size=128, image_size=None, channels=None, data_dir=None,
  shuffle=None, seed=0, ...)` -> a batched, prefetched `tf.data.Dataset` of ``(image, label)``,
  images float32 in [0, 1] resized to `image_size`.
* `info(name)` -> classes, image shape, split sizes.
* "digits": the 1,797 8x8 UCI handwritten digits shipped in scikit-learn, as a tfds builder with
  fixed train (1,259) / validation (179) / test (359) splits (`keras_cnn_ext.data.digits`).

Importing this package does not import tensorflow_datasets; the first `load` / `info` does.
"""

from keras_cnn_ext.data.catalog import info, standard_splits
from keras_cnn_ext.data.pipeline import (
    DatasetNotAvailableError, default_data_dir, list_datasets, load, preprocess, resolve_name,
)

__all__ = ["load", "info", "list_datasets", "resolve_name", "standard_splits", "preprocess",
           "default_data_dir", "DatasetNotAvailableError"]
