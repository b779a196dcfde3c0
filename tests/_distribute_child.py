"""Child processes of tests/test_distribute.py (TensorFlow's devices and collectives are fixed
per process, so every distributed configuration runs in a fresh interpreter).

    python tests/_distribute_child.py mirrored-step OUT.json composite,native
        MirroredStrategy over 2 logical CPU devices vs one device: one SGD step of LeNet-5 and
        of a small ResNet of our residual blocks from the same initial weights on the same global
        batch; writes the largest weight difference, how far the step moved the weights, and
        the (op type, device) pairs of the package's compiled ops in the replicated step.
        Once per implementation named (KERAS_CNN_EXT_IMPLEMENTATION set for each).

(Multi-worker training is tested through the command line: tests/test_distribute.py.)
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _write(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def _max_abs_diff(a, b):
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _compile(model):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5),
                  loss="sparse_categorical_crossentropy")


def _small_resnet():
    """A stem and two residual stages (identity and projection shortcut) of our layers."""
    import keras

    import keras_cnn_ext as kce

    inputs = keras.Input((8, 8, 3))
    x = kce.layers.CrossCorrelation2D(8, 3, padding=1, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = kce.layers.ResidualBlock(8)(x)
    x = kce.layers.ResidualBlock(16, strides=2)(x)
    x = kce.layers.MeanPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def mirrored_step(out, implementations):
    import keras_cnn_ext as kce

    strategy = kce.distribute.create_strategy("mirrored", cpu_replicas=2)
    from keras_cnn_ext.ops import dispatch

    result = {"replicas": strategy.num_replicas_in_sync,
              "devices": list(strategy.extended.worker_devices), "runs": {}}
    for implementation in implementations:
        # the layers read the override when they are traced: one process serves both
        os.environ[dispatch.ENV_VAR] = implementation
        result["runs"][implementation] = _compare(strategy)
    _write(out, result)


def _compare(strategy):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_cnn_ext as kce

    builders = {
        "lenet5": lambda: kce.models.lenet5(),
        "small_resnet": _small_resnet,
    }
    results = {}
    for name, build in builders.items():
        keras.utils.set_random_seed(0)
        with strategy.scope():
            distributed = build()
            synced = kce.distribute.synchronize_batch_norm(distributed)
            _compile(distributed)
        single = build()
        single.set_weights(distributed.get_weights())
        _compile(single)
        initial = [np.array(w) for w in single.get_weights()]

        rng = np.random.default_rng(1)
        shape = (8,) + tuple(single.input_shape[1:])
        x = rng.random(shape, dtype=np.float32)
        y = rng.integers(0, 10, 8)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        single.fit(data, epochs=1, shuffle=False, verbose=0)
        distributed.fit(data, epochs=1, shuffle=False, verbose=0)

        # The compiled ops (and their gradient ops) placed on each replica's device.
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = keras.losses.sparse_categorical_crossentropy(
                    yb, distributed(xb, training=True))
            return tape.gradient(loss, distributed.trainable_variables)

        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        graph = tf.function(lambda b: strategy.run(step, args=b)).get_concrete_function(
            batch).graph
        native_ops = sorted({(op.type, op.device.split("device:")[-1])
                             for op in graph.get_operations()
                             if op.type.startswith("KerasCnnExt")})
        results[name] = {
            "max_weight_diff": _max_abs_diff(single.get_weights(), distributed.get_weights()),
            "step_size": _max_abs_diff(single.get_weights(), initial),
            "synchronized_batch_norms": synced,
            "native_ops": native_ops,
        }
    return results


def main(argv):
    mode, out = argv[1], argv[2]
    if mode == "mirrored-step":
        mirrored_step(out, argv[3].split(","))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
