"""Child processes of the distributed-search tests: a chief or a worker of a KerasTuner random
search over a tiny dense network on synthetic data (each trial: 1 epoch, plus an optional pause
per epoch so that a test can kill a worker in the middle of a trial).

    python tests/_tuning_child.py chief  HOST:PORT DIR OUT.json MAX_TRIALS WORKERS [TIMEOUT]
    python tests/_tuning_child.py worker HOST:PORT DIR OUT.json MAX_TRIALS TUNER_ID [PAUSE_S]
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from keras_cnn_ext.distribute import tuning  # noqa: E402

HEARTBEAT = dict(heartbeat_interval=0.5, heartbeat_timeout=6.0)


class TinyHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        units = hp.Int("units", 2, 64)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(units, "relu"),
                                  keras.layers.Dense(3, "softmax")])
        model.compile(optimizer=keras.optimizers.SGD(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
                      loss="sparse_categorical_crossentropy")
        return model


class Pause(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def make_tuner(directory, max_trials):
    def make():
        return keras_tuner.RandomSearch(
            TinyHyperModel(), objective="loss", max_trials=max_trials, seed=1,
            directory=directory, project_name="search", overwrite=False)
    return make


def main(argv):
    role, oracle, directory, out = argv[1:5]
    if role == "chief":
        max_trials, workers = int(argv[5]), argv[6]
        timeout = float(argv[7]) if len(argv) > 7 else 120.0
        cluster = tuning.TuningCluster("chief", oracle, workers=workers, worker_timeout=timeout,
                                       **HEARTBEAT)
        result = tuning.run_distributed(cluster, make_tuner(directory, max_trials))
    else:
        max_trials, tuner_id = int(argv[5]), argv[6]
        pause = float(argv[7]) if len(argv) > 7 else 0.0
        cluster = tuning.TuningCluster("worker", oracle, tuner_id=tuner_id, connect_timeout=90,
                                       rpc_timeout=60, **HEARTBEAT)
        rng = np.random.default_rng(0)
        x = rng.random((64, 8), dtype=np.float32)
        y = rng.integers(0, 3, 64)
        result = tuning.run_distributed(cluster, make_tuner(directory, max_trials), x, y, epochs=1,
                                        batch_size=16, verbose=0, callbacks=[Pause(pause)])
    tuning.write_json(out, result)


if __name__ == "__main__":
    main(sys.argv)
