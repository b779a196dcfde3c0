"""The embedded offline data set "digits": a tensorflow-datasets builder over scikit-learn's copy
of the UCI handwritten digits (1,797 images of 8x8 pixels, 10 classes).

The data ship inside scikit-learn (`sklearn.datasets.load_digits`), so preparing this builder
never touches the network. It is a regular `tfds.core.GeneratorBasedBuilder` (registered with
tensorflow-datasets as ``"kce_digits"`` when this module is imported): preparing writes TFRecord
files under ``<data_dir>/kce_digits/1.0.0/`` once, and `as_dataset` reads them like any tfds set.

Images are stored as uint8 in 0..255 (the original 0..16 grey levels times 255/16, rounded), so
the pipeline normalises every data set the same way (divide by 255).

**Splits** (fixed, identical on every machine and version): stratified by class. The indices of
each class, in the order of `load_digits`, are permuted with ``numpy.random.RandomState(1797)``
(the legacy generator, whose stream NumPy keeps stable); the first ``round(0.2 * n)`` go to
``test``, the next ``round(0.1 * n)`` to ``validation``, the rest to ``train``:

=========== ======== ===========================
split       examples per class (0..9)
=========== ======== ===========================
train       1,259    124 128 124 128 127 128 127 125 122 126
validation  179      18 18 18 18 18 18 18 18 17 18
test        359      36 36 35 37 36 36 36 36 35 36
=========== ======== ===========================

(`split_indices` computes them; the test suite checks this table.)
"""

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

SPLIT_SEED = 1797
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
SPLITS = ("train", "validation", "test")
IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10


def _raw():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def split_indices(labels=None):
    """The fixed train / validation / test indices into `load_digits()` (sorted arrays)."""
    if labels is None:
        labels = _raw()[1]
    rng = np.random.RandomState(SPLIT_SEED)
    parts = {name: [] for name in SPLITS}
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(TEST_FRACTION * len(idx)))
        n_val = int(round(VALIDATION_FRACTION * len(idx)))
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


class KceDigits(tfds.core.GeneratorBasedBuilder):
    """UCI handwritten digits (8x8 grey images, 10 classes) from scikit-learn, fixed splits."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: stratified 70/10/20 split, seed 1797."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # tfds's own lookup of a builder's source file needs the `importlib_resources` backport
        # for builders outside its package (even on Python >= 3.9, where it is not installed);
        # the answer is simply this file (it has no checksums file beside it: no downloads).
        return epath.Path(__file__)

    # tfds announces every preparation as "Downloading and preparing dataset Unknown size
    # ..." and "... downloaded and prepared": nothing is downloaded here, and the pipeline
    # says what happens instead ("Preparing the embedded data set 'digits' ... no network").
    def _log_download_bytes(self):
        pass

    def _log_download_done(self):
        pass

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The 1,797 8x8 handwritten digits of the UCI 'Optical Recognition of "
                "Handwritten Digits' test set as shipped in scikit-learn, grey levels 0..16 "
                "scaled to 0..255, with fixed stratified train/validation/test splits."
            ),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=IMAGE_SHAPE),
                "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            }),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=(
                "@misc{alpaydin1998optical, author = {Alpaydin, E. and Kaynak, C.}, "
                "title = {Optical Recognition of Handwritten Digits}, "
                "howpublished = {UCI Machine Learning Repository}, year = {1998}}"
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data are inside scikit-learn
        images, labels = _raw()
        indices = split_indices(labels)
        return {name: self._generate_examples(images, labels, indices[name])
                for name in SPLITS}

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
