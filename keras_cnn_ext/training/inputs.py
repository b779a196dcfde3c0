"""The input side of a training run: a split's examples, the per-epoch shuffled batches and
the stateless augmentation.

Every random choice is keyed by (seed, epoch, example), so a run resumed after epoch e feeds
exactly the batches an uninterrupted run would have fed from epoch e on
(`keras_cnn_ext.training.fit`, "Resume").
"""

import tensorflow as tf

__all__ = ["examples", "count", "augmenter", "epoch_batches", "batched"]


def examples(config, split, model_shape, max_examples):
    """The unbatched, preprocessed, cached examples of a split, resized to the model's input."""
    from keras_cnn_ext import data

    return data.load(config["dataset"], split=split, batch_size=None,
                     image_size=model_shape[:2], channels=model_shape[2],
                     data_dir=config["data_dir"], shuffle=False,
                     download=bool(config.get("download")), max_examples=max_examples)


def count(ds):
    """The number of examples of `ds` (counted once where its cardinality is unknown)."""
    n = int(ds.cardinality())
    if n < 0:  # unknown (a filtered or mocked source): count once
        n = int(ds.reduce(0, lambda c, _: c + 1))
    return n


def augmenter(kind, shape, seed):
    """A map function (index, (image, label)) -> (image, label) of the run's augmentation.

    "crop": zero-pad by 1/8 of the size and crop back at a random offset (shifts up to
    1/8 of the image, the CIFAR ResNets' augmentation); "crop_flip" adds horizontal flips.
    The randomness is stateless, keyed by (seed, epoch, example): resumed runs repeat it.
    """
    if kind == "none":
        return None
    h, w, _ = shape
    ph, pw = max(1, h // 8), max(1, w // 8)

    def augment(epoch, index, image, label):
        key = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, index])
        padded = tf.pad(image, [[ph, ph], [pw, pw], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=key)
        if kind == "crop_flip":
            image = tf.image.stateless_random_flip_left_right(image, seed=key + 1)
        return image, label

    return augment


def epoch_batches(examples, n, batch_size, seed, first_epoch, epochs, augment=None):
    """Batches of epochs first_epoch..epochs-1, each epoch shuffled with its own seed.

    The seeds are Python integers, one shuffle per epoch, joined in a balanced tree of
    `concatenate` (depth log2(epochs)); a seed tensor inside `flat_map` would trip
    TensorFlow's seed check when the global seed is 0.
    """
    def one_epoch(epoch):
        ds = examples.shuffle(n, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        if augment is not None:
            ds = ds.enumerate().map(
                lambda i, xy: augment(tf.constant(epoch, tf.int64), i, *xy),
                num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size)

    parts = [one_epoch(epoch) for epoch in range(first_epoch, epochs)]
    while len(parts) > 1:
        parts = [a.concatenate(b) for a, b in zip(parts[::2], parts[1::2])] + (
            [parts[-1]] if len(parts) % 2 else [])
    return parts[0].prefetch(tf.data.AUTOTUNE)


def batched(ds, batch_size):
    """Evaluation batches: in order, prefetched."""
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
