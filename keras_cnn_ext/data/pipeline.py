"""Input pipelines: tensorflow-datasets names and the embedded "digits" set, the tfds way.

`load` = ``tfds.load -> map(normalise, resize) -> cache -> shuffle -> batch -> prefetch``.
tensorflow_datasets is imported on first use only, so `import keras_cnn_ext` stays cheap.

Offline behaviour: nothing is downloaded unless ``download=True`` is asked for. Google Cloud
Storage probes are switched off (``try_gcs=False``, ``try_download_gcs=False``, the module
switch of `tfds.core.utils.gcs_utils`, and names are checked without the community index, which
`tfds.list_builders()` reads from gs://): offline each probe can stall for a minute
(tensorflow/datasets #3164, #4115). A tfds set that is not prepared under the data folder raises
`DatasetNotAvailableError` at once, with a message saying how to provide it.
"""

import os

import tensorflow as tf

EMBEDDED = ("digits",)
# The image-classification sets of tensorflow-datasets the pipeline is known to fit
# (supervised (image, label) pairs). Any other tfds name with an image and a class label works
# too; this list is what error messages and `list_datasets` offer.
KNOWN_TFDS = ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100",
              "svhn_cropped", "stl10", "caltech101", "oxford_flowers102", "imagenette")


class DatasetNotAvailableError(FileNotFoundError):
    """A tensorflow-datasets set that is not prepared locally (and downloading was not asked)."""


def list_datasets():
    """Names offered by the command line: the embedded set first, then known tfds sets."""
    return list(EMBEDDED + KNOWN_TFDS)


def _tfds():
    import tensorflow_datasets as tfds

    # Older tensorflow-datasets releases probe gs://tfds-data by default; a blocked network
    # then stalls every probe. Nothing here ever reads from GCS.
    try:
        tfds.core.utils.gcs_utils._is_gcs_disabled = True  # noqa: SLF001
    except AttributeError:  # pragma: no cover - layout of a future tfds release
        pass
    return tfds


def _base_name(name):
    """'mnist:3.0.1' or 'emnist/letters' -> 'mnist' / 'emnist' (tfds's spelling rules)."""
    return name.split(":")[0].split("/")[0]


def resolve_name(name):
    """Validates a data set name; returns it normalised (lower case).

    Raises:
        ValueError: not a string, or neither "digits" nor a tensorflow-datasets name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            "Invalid value for argument `name`. Expected a data set name such as "
            f"{', '.join(list_datasets())}. Received: name={name!r}"
        )
    key = name.strip().lower()
    if key in EMBEDDED:
        return key
    if _base_name(key) not in _tfds().list_builders(with_community_datasets=False):
        raise ValueError(
            "Invalid value for argument `name`. Expected 'digits' (embedded) or a "
            f"tensorflow-datasets image classification name ({', '.join(KNOWN_TFDS)}, ...). "
            f"Received: name={name!r}"
        )
    return key


def default_data_dir(data_dir=None):
    """The folder tfds reads: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    if data_dir:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"),
                                                           "tensorflow_datasets")


def _not_available(name, data_dir):
    folder = default_data_dir(data_dir)
    return DatasetNotAvailableError(
        f"Data set {name!r} is not prepared in {folder} and nothing is downloaded "
        "implicitly. Provide it in one of these ways: pass the folder that holds the prepared "
        f"set (it contains {_base_name(name)}/<version>/) as data_dir= / --data-dir DIR or "
        "set TFDS_DATA_DIR=DIR; or prepare it on a machine with network access "
        f"(`tfds build {_base_name(name)} --data_dir DIR`, or load(..., download=True) / "
        "--download) and copy DIR here; sets that need a manual download say so in their "
        "tensorflow-datasets catalog page (put the files in DIR/downloads/manual)."
    )


def _download_config(tfds):
    return tfds.download.DownloadConfig(try_download_gcs=False)


def _prepare_digits(tfds, data_dir):
    """Prepares the embedded set once per data folder (a few seconds, no network)."""
    from keras_cnn_ext.data import digits

    data_dir = default_data_dir(data_dir)
    builder = digits.KceDigits(data_dir=data_dir)
    if not builder.is_prepared():
        print(f"Preparing the embedded data set 'digits' in {data_dir} "
              "(once, no network needed)")
        tfds.disable_progress_bar()  # 1,797 tiny images: tfds's bars would be noise
        try:
            builder.download_and_prepare(download_config=_download_config(tfds))
        except OSError:
            # Another process prepared the same folder at the same time: tfds writes into a
            # temporary folder and renames it, so the loser's rename fails; use the winner's.
            builder = digits.KceDigits(data_dir=data_dir)
            if not builder.is_prepared():
                raise
        finally:
            tfds.enable_progress_bar()
    return builder


def _tfds_load(name, split, data_dir, shuffle_files, seed, download):
    """tfds.load with GCS off; (dataset of (uint8 image, label), tfds info)."""
    tfds = _tfds()
    # resolved here, not by tfds: tfds reads $TFDS_DATA_DIR once, when it is imported
    data_dir = default_data_dir(data_dir)
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    if name in EMBEDDED:
        _prepare_digits(tfds, data_dir)
        tfds_name, download = "kce_digits", False
    else:
        tfds_name = name
    try:
        return tfds.load(tfds_name, split=split, data_dir=data_dir, as_supervised=True,
                         with_info=True, shuffle_files=shuffle_files, read_config=read_config,
                         download=download, try_gcs=False,
                         download_and_prepare_kwargs={
                             "download_config": _download_config(tfds)})
    except AssertionError as exc:  # tfds's "could not find data in ..." for unprepared sets
        if "could not find data" in str(exc):
            raise _not_available(name, data_dir) from None
        raise


def _normalize_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in image_size)):
        raise ValueError(
            "Invalid value for argument `image_size`. Expected a positive integer or a pair "
            f"(height, width) of positive integers. Received: image_size={image_size!r}"
        )
    return tuple(image_size)


def _check_int(value, name, minimum, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected an integer >= {minimum}"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    return value


def preprocess(image, image_size=None, channels=None):
    """uint8 image -> float32 in [0, 1], resized (bilinear, antialiased) and with `channels`."""
    image = tf.cast(image, tf.float32) / 255.0
    if channels is not None and image.shape[-1] != channels:
        if image.shape[-1] == 1:
            image = tf.repeat(image, channels, axis=-1)
        elif image.shape[-1] == 3 and channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        else:
            raise ValueError(
                f"Invalid value for argument `channels`. Expected 1 or 3 for this data set "
                f"(images with {image.shape[-1]} channels). Received: channels={channels!r}"
            )
    if image_size is not None and tuple(image.shape[-3:-1]) != image_size:
        image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image


def load(name, split="train", batch_size=128, image_size=None, channels=None, data_dir=None,
         shuffle=None, seed=0, cache=True, drop_remainder=False, download=False,
         max_examples=None):
    """A `tf.data.Dataset` of ``(image, label)``: float32 images in [0, 1], int64 labels.

    The pipeline is tfds's ``load -> map(normalise, resize) -> cache -> shuffle -> batch ->
    prefetch``.

    Args:
        name: "digits" (embedded, offline) or a tensorflow-datasets name ("mnist",
            "fashion_mnist", "cifar10", ...; "name:version" and "name/config" work too).
        split: a tfds split: "train", "validation", "test", slices such as "train[:100]".
            digits has all three (see `keras_cnn_ext.data.digits`); mnist/cifar10 have
            "train" and "test".
        batch_size: examples per batch; None gives single examples.
        image_size: resize to this (height, width) (an int means square), e.g. 28 for LeNet-5;
            None keeps the data set's size.
        channels: 1 or 3 to convert grey <-> RGB; None keeps the data set's channels.
        data_dir: the tfds data folder; default $TFDS_DATA_DIR, else ~/tensorflow_datasets.
            digits is prepared there on first use (a few seconds, no network).
        shuffle: shuffle the examples (and the files); default True for training splits.
        seed: seed of the shuffle (and of the file order), for repeatable runs.
        cache: keep the preprocessed examples in memory after the first pass.
        drop_remainder: drop the last, smaller batch.
        download: allow tfds to download and prepare a missing set (needs network).
        max_examples: keep only the first this many examples (before caching; smoke runs).

    Returns:
        A prefetched `tf.data.Dataset`.

    Raises:
        ValueError: an unknown name or a bad argument value (the message names it).
        DatasetNotAvailableError: a tfds set not prepared in the data folder.

    >>> ds = load("digits", split="test", batch_size=32, image_size=28)
    >>> images, labels = next(iter(ds))
    >>> tuple(images.shape), images.dtype.name, int(labels.shape[0])
    ((32, 28, 28, 1), 'float32', 32)
    """
    name = resolve_name(name)
    image_size = _normalize_size(image_size)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"Invalid value for argument `channels`. Expected 1, 3 or None. "
                         f"Received: channels={channels!r}")
    if shuffle is None:
        shuffle = isinstance(split, str) and split.startswith("train")
    seed = _check_int(seed, "seed", 0, allow_none=False)
    max_examples = _check_int(max_examples, "max_examples", 1)
    ds, _ = _tfds_load(name, split, data_dir, bool(shuffle), seed, download)
    if max_examples is not None:
        ds = ds.take(max_examples)
    ds = ds.map(lambda x, y: (preprocess(x, image_size, channels), y),
                num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle:
        count = int(ds.cardinality())
        buffer = count if 0 < count <= 60_000 else 10_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
