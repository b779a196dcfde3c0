"""kce.data: the embedded digits builder, tfds names (mocked), the offline failure, arguments."""

import numpy as np
import pytest

from keras_cnn_ext import data
from keras_cnn_ext.data import digits

# the table in keras_cnn_ext/data/digits.py (and docs/data.md)
SPLIT_TABLE = {
    "train": [124, 128, 124, 128, 127, 128, 127, 125, 122, 126],
    "validation": [18, 18, 18, 18, 18, 18, 18, 18, 17, 18],
    "test": [36, 36, 35, 37, 36, 36, 36, 36, 35, 36],
}


def _arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.stack(xs), np.array(ys)


def test_digits_splits_are_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    first, second = digits.split_indices(), digits.split_indices()
    for name, counts in SPLIT_TABLE.items():
        np.testing.assert_array_equal(first[name], second[name])
        assert np.bincount(labels[first[name]], minlength=10).tolist() == counts
    everything = np.concatenate(list(first.values()))
    assert len(everything) == 1797 and len(np.unique(everything)) == 1797
    assert data.info("digits")["splits"] == {"train": 1259, "validation": 179, "test": 359}


def test_digits_builder_holds_the_sklearn_images(digits_data_dir):
    """Each prepared split holds exactly its sklearn examples, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    indices = digits.split_indices()
    for split in ("train", "validation", "test"):
        x, y = _arrays(data.load("digits", split=split, batch_size=None,
                                 data_dir=digits_data_dir))
        assert x.shape == (len(indices[split]), 8, 8, 1) and x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        expected = np.rint(bunch.images[indices[split]] * 255 / 16) / 255

        def fingerprints(images, labels):
            return sorted((int(lab), img.round(6).tobytes())
                          for img, lab in zip(images.reshape(len(images), -1), labels))

        assert fingerprints(x, y) == fingerprints(expected.astype(np.float32),
                                                  bunch.target[indices[split]])


def test_resize_to_model_inputs(digits_data_dir):
    ds = data.load("digits", split="test", batch_size=50, image_size=28,
                   data_dir=digits_data_dir)
    images, labels = next(iter(ds))
    assert images.shape == (50, 28, 28, 1) and labels.dtype.name == "int64"
    rgb, _ = next(iter(data.load("digits", split="test", batch_size=8, image_size=(32, 32),
                                 channels=3, data_dir=digits_data_dir)))
    rgb = rgb.numpy()
    assert rgb.shape == (8, 32, 32, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])  # grey copied to every channel


def test_shuffle_is_seeded(digits_data_dir):
    def order(seed):
        ds = data.load("digits", split="train", batch_size=64, seed=seed,
                       data_dir=digits_data_dir)
        return next(iter(ds))[1].numpy().tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    unshuffled = data.load("digits", split="test", batch_size=64, data_dir=digits_data_dir)
    assert next(iter(unshuffled))[1].numpy().tolist() == \
        next(iter(unshuffled))[1].numpy().tolist()


def test_tfds_name_through_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("mnist", split="train", batch_size=5, image_size=32, channels=3,
                       data_dir=str(tmp_path))
        batches = [(x.shape, y.shape) for x, y in ds]
    assert batches[0] == ((5, 32, 32, 3), (5,)) and len(batches) == 3
    facts = data.info("mnist", data_dir=str(tmp_path))
    assert facts["num_classes"] == 10 and facts["image_shape"] == (28, 28, 1)
    assert facts["prepared"] is False


def test_missing_tfds_set_fails_at_once_with_a_hint(tmp_path, monkeypatch):
    """Offline: no GCS probe, no download attempt, a message that says how to provide it."""
    from etils.epath import backend

    probes = []

    def no_gcs(method):
        def wrapped(self, path, *args, **kwargs):
            if str(path).startswith("gs://"):
                probes.append(str(path))
                raise AssertionError(f"GCS probed: {path}")
            return method(self, path, *args, **kwargs)
        return wrapped

    for name in ("exists", "isdir", "listdir", "glob", "open"):
        monkeypatch.setattr(backend._TfBackend, name, no_gcs(getattr(backend._TfBackend, name)))
    with pytest.raises(data.DatasetNotAvailableError) as info:
        data.load("cifar10", split="train", data_dir=str(tmp_path))
    message = str(info.value)
    for hint in (str(tmp_path), "--data-dir", "TFDS_DATA_DIR", "tfds build cifar10",
                 "download=True"):
        assert hint in message
    assert isinstance(info.value, FileNotFoundError)
    assert data.resolve_name("fashion_mnist") == "fashion_mnist"
    assert probes == []


def test_tfds_data_dir_set_after_import_is_where_digits_go(tmp_path, monkeypatch):
    """$TFDS_DATA_DIR is read at each call (tfds itself reads it once, at import): the embedded
    set is prepared and read there, and a missing set's message names that folder."""
    folder = tmp_path / "from_env"
    monkeypatch.setenv("TFDS_DATA_DIR", str(folder))
    images, labels = next(iter(data.load("digits", split="test", batch_size=359)))
    assert images.shape == (359, 8, 8, 1) and (folder / "kce_digits").is_dir()
    _, same = next(iter(data.load("digits", split="test", batch_size=359,
                                  data_dir=str(folder))))
    assert np.array_equal(labels.numpy(), same.numpy())
    with pytest.raises(data.DatasetNotAvailableError, match=str(folder)):
        data.load("cifar10", split="train")


def test_bad_arguments_name_the_argument(digits_data_dir):
    with pytest.raises(ValueError, match=r"argument `name`.*Received: name='no_such_set'"):
        data.load("no_such_set")
    with pytest.raises(ValueError, match=r"argument `name`"):
        data.info(None)
    for kwargs, name in ((dict(image_size=0), "image_size"), (dict(batch_size=0), "batch_size"),
                         (dict(channels=2), "channels"), (dict(seed=-1), "seed"),
                         (dict(image_size=(28,)), "image_size")):
        with pytest.raises(ValueError, match=rf"argument `{name}`"):
            data.load("digits", data_dir=digits_data_dir, **kwargs)


def test_standard_splits():
    assert data.standard_splits("digits") == ("train", "validation", "test")
    facts = {"splits": {"train": 60000, "test": 10000}}
    assert data.standard_splits("mnist", facts=facts) == ("train[:90%]", "train[90%:]", "test")
    facts = {"splits": {"train": 10, "validation": 2}}
    assert data.standard_splits("x", facts=facts) == ("train", "validation", None)
