"""Tests of `keras_cnn_ext.distribute`: strategies by name, TF_CONFIG, sharding, and training
under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 localhost workers).

Distributed configurations need a fresh interpreter each (devices and collectives are fixed at
TensorFlow's start-up): they run `tests/_distribute_child.py` in subprocesses on free
127.0.0.1 ports, bounded in time and killed by pid.
"""

import json
import os
import time

import keras
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext import training
from keras_cnn_ext.ops import native

from proc_helper import finish, free_ports, start, tail

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_distribute_child.py")


def _tf_config(ports, index, task_type="worker"):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": task_type, "index": index}})


# ----------------------------------------------------------------------------- in-process


def test_worker_info_without_tf_config_is_a_single_chief():
    info = kce.distribute.worker_info({})
    assert (info.task_type, info.task_index, info.num_workers, info.is_chief) == (
        "worker", 0, 1, True)


@pytest.mark.parametrize("cluster, task, chief, workers", [
    ({"worker": ["a:1", "b:2", "c:3"]}, {"type": "worker", "index": 0}, True, 3),
    ({"worker": ["a:1", "b:2", "c:3"]}, {"type": "worker", "index": 2}, False, 3),
    ({"chief": ["a:1"], "worker": ["b:2"]}, {"type": "chief", "index": 0}, True, 2),
    ({"chief": ["a:1"], "worker": ["b:2"]}, {"type": "worker", "index": 0}, False, 2),
])
def test_worker_info_follows_tensorflows_chief_rule(cluster, task, chief, workers):
    env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
    info = kce.distribute.worker_info(env)
    assert info.is_chief is chief
    assert info.num_workers == workers
    assert info.name == f"{task['type']}-{task['index']}"


@pytest.mark.parametrize("raw, detail", [
    ("{not json", "not JSON"),
    ('["a"]', "not a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', '"cluster"'),
    ('{"cluster": {"worker": ["a:1"]}}', '"task"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "not in the cluster"),
])
def test_bad_tf_config_names_the_variable_and_the_problem(raw, detail):
    with pytest.raises(ValueError, match="TF_CONFIG") as err:
        kce.distribute.worker_info({"TF_CONFIG": raw})
    assert detail in str(err.value)
    assert "Received: TF_CONFIG=" in str(err.value)


def test_worker_output_dir_keeps_non_chief_workers_apart(tmp_path):
    out = str(tmp_path / "run")
    chief = kce.distribute.WorkerInfo("worker", 0, 2, True)
    other = kce.distribute.WorkerInfo("worker", 1, 2, False)
    assert kce.distribute.worker_output_dir(out, chief) == out
    assert kce.distribute.worker_output_dir(out, other) == os.path.join(
        out, "workers", "worker-1")


def test_create_strategy_by_name_and_bad_values():
    strategy = kce.distribute.create_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert kce.distribute.create_strategy(strategy) is strategy
    assert kce.distribute.global_batch_size(32, strategy) == 32
    with pytest.raises(ValueError, match=r"argument `strategy`.*Received: strategy='mirored'"):
        kce.distribute.create_strategy("mirored")
    with pytest.raises(ValueError, match=r"Received: cpu_replicas=0"):
        kce.distribute.create_strategy("mirrored", cpu_replicas=0)
    with pytest.raises(ValueError, match=r"strategy='default'.*Received: cpu_replicas=2"):
        kce.distribute.create_strategy("default", cpu_replicas=2)
    with pytest.raises(ValueError, match=r"strategy='multi_worker'.*cpu_replicas=2"):
        kce.distribute.create_strategy("multi_worker", cpu_replicas=2)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the environment variable `TF_CONFIG`"):
        kce.distribute.create_strategy("multi_worker")


def test_cpu_replicas_after_tensorflow_started_is_a_clear_error():
    tf.constant(1.0)  # TensorFlow is initialised in this process (with one CPU device)
    kce.distribute.configure_cpu_replicas(1)  # what it already has: fine
    with pytest.raises(RuntimeError, match="cpu_replicas=3 cannot be applied.*before any"):
        kce.distribute.configure_cpu_replicas(3)


def test_mirrored_strategy_on_one_cpu_device():
    strategy = kce.distribute.create_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 1
    assert kce.distribute.global_batch_size(16, strategy) == 16


def test_synchronize_batch_norm_reaches_layers_inside_residual_blocks():
    model = kce.models.resnet20(input_shape=(8, 8, 3))
    bns = [layer for layer in model._flatten_layers(include_self=False)
           if isinstance(layer, keras.layers.BatchNormalization)]
    # 1 stem BN + 9 basic blocks x 2 (zero-pad shortcuts carry none)
    assert kce.distribute.synchronize_batch_norm(model) == len(bns) == 19
    assert all(layer.synchronized for layer in bns)
    assert kce.distribute.synchronize_batch_norm(model, False) == 19
    assert not any(layer.synchronized for layer in bns)


def test_shard_by_data_sets_the_data_policy():
    ds = kce.distribute.shard_by_data(tf.data.Dataset.range(4))
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    assert list(ds.as_numpy_iterator()) == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- subprocesses


@pytest.mark.slow
def test_mirrored_two_cpus_one_sgd_step_equals_one_device(tmp_path):
    """LeNet-5 and a small ResNet (with synchronized BatchNorm), composite and native: one SGD
    step on 2 logical CPU replicas gives the weights of one device on the global batch."""
    implementations = ["composite"] + (["native"] if native.available() else [])
    out = str(tmp_path / "result.json")
    proc = start([CHILD, "mirrored-step", out, ",".join(implementations)],
                 str(tmp_path / "log.txt"))
    assert finish([proc], timeout=300) == [0], tail(proc)
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    assert result["replicas"] == 2
    assert [d.split("device:")[-1] for d in result["devices"]] == ["CPU:0", "CPU:1"]
    assert sorted(result["runs"]) == sorted(implementations)
    for implementation, models in result["runs"].items():
        for name, model in models.items():
            where = (implementation, name)
            assert model["step_size"] > 1e-2, where  # the step really moved the weights
            # float32: the replicas' gradient sum is added in another order than one device's
            assert model["max_weight_diff"] < 1e-5, (where, model)
            devices = {device for _, device in model["native_ops"]}
            if implementation == "native":
                # the compiled forward and backward ops run on each replica's own device
                assert devices == {"CPU:0", "CPU:1"}, (where, model["native_ops"])
                assert {"KerasCnnExt>Corr2D", "KerasCnnExt>Corr2DBackpropFilter",
                        "KerasCnnExt>Corr2DBackpropInput"} <= {
                    t for t, _ in model["native_ops"]}
            else:
                assert model["native_ops"] == [], where
        assert models["small_resnet"]["synchronized_batch_norms"] == 6
    if "native" not in implementations:
        pytest.skip(f"composite checked; native ops unavailable: {native.status()}")


def _cli(*args, data_dir):
    return ["-m", "keras_cnn_ext", "train", "lenet5", "--dataset", "digits", "--data-dir", data_dir, "--epochs",
            "2", "--max-examples", "128", "--no-tensorboard", "--verbose", "2", *args]


def _reference(data_dir, tmp_path, batch_size):
    """The same run on one device with the global batch (in this process)."""
    return training.train("lenet5", "digits", data_dir=data_dir, epochs=2, max_examples=128,
                          batch_size=batch_size, tensorboard=False, verbose=0,
                          output=str(tmp_path / "reference"))


def _same_history(a, b):
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


def test_train_rejects_bad_strategy_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"argument `strategy`.*Received: strategy='ring'"):
        training.train(strategy="ring", output=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"argument `cpu_replicas`.*Received: cpu_replicas=2"):
        training.train(cpu_replicas=2, output=str(tmp_path / "b"))
    with pytest.raises(ValueError, match=r"argument `output`.*multi_worker.*output=None"):
        training.train(strategy="multi_worker")


@pytest.mark.slow
def test_cli_train_mirrored_equals_one_device_on_the_global_batch(digits_data_dir, tmp_path):
    out = tmp_path / "mirrored"
    proc = start(_cli("--strategy", "mirrored", "--cpu-replicas", "2", "--batch-size", "8",
                      "--output", str(out), data_dir=digits_data_dir), str(tmp_path / "log"))
    reference = _reference(digits_data_dir, tmp_path, batch_size=16)
    assert finish([proc], timeout=240) == [0], tail(proc)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"], metrics["global_batch_size"],
            metrics["batch_size"]) == ("mirrored", 2, 16, 8)
    assert (out / "model.keras").exists() and (out / "checkpoints" / "state.json").exists()
    _same_history(json.loads((out / "history.json").read_text()),
                  json.loads((tmp_path / "reference" / "history.json").read_text()))
    assert metrics["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)


@pytest.mark.slow
def test_cli_train_multi_worker_on_two_localhost_processes(digits_data_dir, tmp_path):
    """2 workers with TF_CONFIG: same losses on both, equal to one process with the global
    batch; the chief writes the run folder, worker 1 only its own folder."""
    ports = free_ports(2)
    out = tmp_path / "run"
    procs = [start(_cli("--strategy", "multi_worker", "--batch-size", "8", "--output", str(out),
                        data_dir=digits_data_dir), str(tmp_path / f"w{i}.log"),
                   TF_CONFIG=_tf_config(ports, i)) for i in range(2)]
    began = time.monotonic()
    reference = _reference(digits_data_dir, tmp_path, batch_size=16)
    codes = finish(procs, timeout=300)
    assert codes == [0, 0], "\n-----\n".join(tail(p) for p in procs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["workers"], metrics["replicas"],
            metrics["global_batch_size"], metrics["worker"]) == (
        "multi_worker", 2, 2, 16, "worker-0")
    other = out / "workers" / "worker-1"
    assert (other / "checkpoints" / "state.json").exists() and (other / "history.json").exists()
    assert not (other / "metrics.json").exists() and not (other / "model.keras").exists()
    assert not (out / "workers" / "worker-0").exists()
    chief_history = json.loads((out / "history.json").read_text())
    worker_history = json.loads((other / "history.json").read_text())
    for key in ("loss", "val_loss", "accuracy"):
        assert chief_history[key] == worker_history[key], key  # the same global numbers
    _same_history(chief_history, json.loads(
        (tmp_path / "reference" / "history.json").read_text()))
    assert metrics["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)
    print(f"multi-worker run: {time.monotonic() - began:.1f} s wall for both workers; final "
          f"loss worker-0 {chief_history['loss'][-1]:.6f}, worker-1 "
          f"{worker_history['loss'][-1]:.6f}, one process {reference['train_loss']:.6f}")
