"""What a data set holds (`info`) and which splits training uses (`standard_splits`)."""

from keras_cnn_ext.data import pipeline


def _digits_info():
    from keras_cnn_ext.data import digits

    sizes = {k: int(len(v)) for k, v in digits.split_indices().items()}
    return {
        "name": "digits",
        "source": "embedded (scikit-learn load_digits, tfds builder 'kce_digits')",
        "num_classes": digits.NUM_CLASSES,
        "class_names": [str(i) for i in range(digits.NUM_CLASSES)],
        "image_shape": digits.IMAGE_SHAPE,
        "splits": sizes,
        "prepared": True,
        "homepage": "https://archive.ics.uci.edu/dataset/80",
    }


def info(name, data_dir=None):
    """Facts about a data set: classes, image shape, split sizes.

    Works without the data for tfds sets (their code knows classes and shapes; split sizes are
    only known once prepared: then ``prepared`` is True and ``splits`` is filled).

    Returns:
        dict with ``name``, ``source``, ``num_classes``, ``class_names``, ``image_shape``
        (height, width, channels; None for variable sizes), ``splits`` ({split: examples}),
        ``prepared`` and ``homepage``.

    >>> facts = info("digits")
    >>> facts["num_classes"], facts["image_shape"], facts["splits"]["test"]
    (10, (8, 8, 1), 359)
    """
    name = pipeline.resolve_name(name)
    if name in pipeline.EMBEDDED:
        return _digits_info()
    tfds = pipeline._tfds()  # noqa: SLF001
    builder = tfds.builder(name, data_dir=pipeline.default_data_dir(data_dir), try_gcs=False)
    meta = builder.info
    keys = meta.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(
            "Invalid value for argument `name`. Expected an image classification data set "
            f"with (image, label) pairs. Received: name={name!r} (no supervised keys)"
        )
    image, label = meta.features[keys[0]], meta.features[keys[1]]
    num_classes = getattr(label, "num_classes", None)
    shape = tuple(getattr(image, "shape", ()) or ())
    if num_classes is None or len(shape) != 3:
        raise ValueError(
            "Invalid value for argument `name`. Expected an image classification data set "
            f"(3-D images, class labels). Received: name={name!r} (features {meta.features})"
        )
    return {
        "name": name,
        "source": "tensorflow-datasets",
        "num_classes": int(num_classes),
        "class_names": list(label.names),
        "image_shape": shape,
        "splits": {k: int(v.num_examples) for k, v in meta.splits.items()},
        "prepared": bool(builder.is_prepared()),
        "homepage": meta.homepage,
    }


def standard_splits(name, data_dir=None, facts=None):
    """The (train, validation, test) split strings training uses for a data set.

    digits: its fixed "train" / "validation" / "test". A tfds set with a "validation" split
    uses it; otherwise the last 10% of "train" validates (``train[:90%]`` / ``train[90%:]``,
    tfds slicing, the same examples every time). The test split is "test" (None if absent).
    """
    facts = facts or info(name, data_dir)
    splits = facts["splits"]
    if "validation" in splits or not splits:
        # (no split sizes known: an unprepared or mocked set; assume the usual names)
        validation = "validation" if "validation" in splits else "train[90%:]"
        train = "train" if "validation" in splits else "train[:90%]"
    else:
        train, validation = "train[:90%]", "train[90%:]"
    test = "test" if ("test" in splits or not splits) else None
    return train, validation, test
