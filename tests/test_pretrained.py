"""Trained weights end to end: preprocessing, `convert` checked against torchvision, atomic and
kill-safe writes, and fine-tuning with `train --weights` on the embedded digits.

torchvision's ResNet-18 is built with ``weights=None`` and its batch-norm statistics randomised
(nothing downloads); its "trained" weights are random, so the fine-tuning test asserts what a
random backbone plus training must reach (well above chance) and that a frozen backbone stays
exactly as converted.
"""

import json
import os
import signal
import time

import keras
import numpy as np
import pytest

import proc_helper
import torch_peer
import torchvision_weights as tw
from keras_cnn_ext import cli
from keras_cnn_ext import models as kce_models
from keras_cnn_ext.models import pretrained, preprocessing
from keras_cnn_ext.models import weights as kw

HW = 32


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    torch = torch_peer.torch()
    torch.manual_seed(0)
    tv = tw.randomise_bn(torch_peer.torchvision().models.resnet18(weights=None, num_classes=10))
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return path, tv


@pytest.fixture(scope="module")
def converted(resnet18_pth, tmp_path_factory):
    path = tmp_path_factory.mktemp("converted") / "resnet18.keras"
    _, report = pretrained.convert("resnet18", resnet18_pth[0], path, input_shape=(HW, HW, 3))
    return path, report


# ---------------------------------------------------------------- preprocessing


def test_preprocess_input_modes_follow_their_definitions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocessing.preprocess_input(x, "torch", "channels_last"),
                               (x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(preprocessing.preprocess_input(x, "caffe", "channels_last"),
                               x[..., ::-1] - np.array([103.939, 116.779, 123.68]), atol=1e-4)
    np.testing.assert_allclose(preprocessing.preprocess_input(x, "tf", "channels_last"),
                               x / 127.5 - 1.0, atol=1e-6)
    # channels_first and tensors give the same numbers
    for mode in preprocessing.MODES:
        last = preprocessing.preprocess_input(x, mode, "channels_last")
        first = preprocessing.preprocess_input(np.transpose(x, (0, 3, 1, 2)), mode,
                                               "channels_first")
        np.testing.assert_allclose(np.transpose(first, (0, 2, 3, 1)), last, atol=1e-5)
        tensor = preprocessing.preprocess_input(keras.ops.convert_to_tensor(x), mode,
                                                "channels_last")
        np.testing.assert_allclose(np.asarray(tensor), last, atol=1e-5)


def test_preprocess_input_bad_input():
    with pytest.raises(ValueError, match=r"argument `mode`.*Received: mode='imagenet'"):
        preprocessing.preprocess_input(np.zeros((1, 2, 2, 3)), "imagenet")
    with pytest.raises(ValueError, match=r"argument `x`.*3 channels.*\(1, 2, 2, 1\)"):
        preprocessing.preprocess_input(np.zeros((1, 2, 2, 1)), "torch", "channels_last")
    with pytest.raises(ValueError, match=r"argument `input_scale`.*Received: input_scale=0"):
        preprocessing.InputNormalization("torch", input_scale=0)
    with pytest.raises(ValueError, match=r"argument `variant`.*Received: variant='paper'"):
        preprocessing.preprocessing_for("paper")


def test_input_normalization_layer_saves_and_scales(tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 3, 3)).astype(np.float32)
    inputs = keras.Input((3, 3, 3))
    model = keras.Model(inputs, preprocessing.InputNormalization(
        "caffe", input_scale=1.0, data_format="channels_last")(inputs))
    expected = preprocessing.preprocess_input(x * 255.0, "caffe", "channels_last")
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-4)
    model.save(tmp_path / "norm.keras")
    again = keras.models.load_model(tmp_path / "norm.keras")
    assert again.layers[1].get_config()["mode"] == "caffe"
    np.testing.assert_allclose(np.asarray(again(x)), expected, atol=1e-4)


# ---------------------------------------------------------------- convert


def test_convert_matches_torchvision_with_its_preprocessing(resnet18_pth, converted):
    path, report = converted
    assert report["checked_against"] == "torchvision.models.resnet18"
    assert report["max_abs_diff"] <= 1e-4 * report["logits_scale"]
    assert report["top1_agreement"] == report["probe_batch"] == 4
    assert report["num_classes"] == 10 and report["preprocessing"] == "torch"
    # the written file, independently of convert's own check: raw pixels in, probabilities out
    model = keras.models.load_model(path)
    raw = np.random.default_rng(5).uniform(0, 255, (3, HW, HW, 3)).astype(np.float32)
    torch = torch_peer.torch()
    normalised = (raw / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        logits = resnet18_pth[1](torch.from_numpy(
            np.transpose(normalised, (0, 3, 1, 2)).astype(np.float32))).numpy()
    theirs = np.exp(logits - logits.max(-1, keepdims=True))
    theirs /= theirs.sum(-1, keepdims=True)
    ours = np.asarray(model(raw, training=False))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


def test_convert_from_safetensors_and_the_number_of_classes(resnet18_pth, tmp_path):
    from safetensors.numpy import save_file

    state = kw.read_source(resnet18_pth[0])
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
              str(tmp_path / "r18.safetensors"))
    model, report = pretrained.convert("resnet18", tmp_path / "r18.safetensors",
                                       input_shape=(HW, HW, 3), preprocess=False, logits=True)
    assert report["output"] is None and report["num_classes"] == 10
    assert report["max_abs_diff"] <= 1e-4 * report["logits_scale"]
    assert not any(isinstance(layer, preprocessing.InputNormalization)
                   for layer in model.layers)


def test_convert_keras_applications_weights_checked_against_keras_applications(tmp_path):
    rng = np.random.default_rng(3)
    source = keras.applications.ResNet50(weights=None, input_shape=(HW, HW, 3), classes=5,
                                         classifier_activation=None)
    for layer in source.layers:  # at their initial zeros and ones a wrong mapping still passes
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    source.save_weights(tmp_path / "r50.weights.h5")
    model, report = pretrained.convert("resnet50", tmp_path / "r50.weights.h5", variant="keras",
                                       input_shape=(HW, HW, 3), output=tmp_path / "r50.keras")
    assert report["checked_against"] == "keras.applications.ResNet50"
    assert report["preprocessing"] == "caffe" and report["num_classes"] == 5
    assert report["max_abs_diff"] <= 1e-4 * report["logits_scale"]
    assert report["top1_agreement"] == 4
    # raw pixels in: the caffe normalisation is inside; the same probabilities as the source's
    raw = rng.uniform(0, 255, (2, HW, HW, 3)).astype(np.float32)
    logits = np.asarray(source(keras.applications.resnet.preprocess_input(raw.copy())))
    theirs = np.exp(logits - logits.max(-1, keepdims=True))
    theirs /= theirs.sum(-1, keepdims=True)
    ours = np.asarray(keras.models.load_model(tmp_path / "r50.keras")(raw))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_mismatch_writes_nothing(resnet18_pth, tmp_path, monkeypatch):
    real = pretrained._torchvision_logits

    def off_by_a_little(*args):
        logits = real(*args)
        logits[0, 0] += 0.01 * np.abs(logits).max()  # 1e-2 of the scale: beyond 1e-4
        return logits

    monkeypatch.setattr(pretrained, "_torchvision_logits", off_by_a_little)
    out = tmp_path / "bad.keras"
    with pytest.raises(pretrained.ConversionMismatchError, match="nothing was written"):
        pretrained.convert("resnet18", resnet18_pth[0], out, input_shape=(HW, HW, 3))
    assert os.listdir(tmp_path) == []


def test_convert_bad_arguments(resnet18_pth, tmp_path):
    with pytest.raises(ValueError, match=r"argument `variant`.*Received: variant='timm'"):
        pretrained.convert("resnet18", resnet18_pth[0], variant="timm")
    with pytest.raises(ValueError, match=r"argument `output`.*\.keras"):
        pretrained.convert("resnet18", resnet18_pth[0], tmp_path / "r18.h5")
    (tmp_path / "there.keras").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="Refusing to overwrite"):
        pretrained.convert("resnet18", resnet18_pth[0], tmp_path / "there.keras")
    assert (tmp_path / "there.keras").read_bytes() == b"x"
    with pytest.raises(ValueError, match=r"argument `model`.*Received: model='resnet19'"):
        pretrained.convert("resnet19", resnet18_pth[0])


def test_cli_convert(resnet18_pth, tmp_path, capsys):
    out = tmp_path / "r18.keras"
    argv = ["convert", "resnet18", str(resnet18_pth[0]), "-o", str(out), "--input-shape",
            f"{HW},{HW},3", "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1_agreement"] == 4 and out.is_file()
    for bad, message in [
        (argv, "it exists; pass --overwrite"),
        (["convert", "resnet18", str(tmp_path / "none.pth"), "-o", str(tmp_path / "n.keras")],
         "no such file"),
        (["convert", "resnet19", str(resnet18_pth[0]), "-o", str(tmp_path / "n.keras")],
         "resnet19"),
        (["convert", "resnet18", str(resnet18_pth[0]), "-o", str(tmp_path / "n.h5")],
         "expected a file ending in .keras"),
        (["convert", "resnet18", str(resnet18_pth[0]), "-o", str(tmp_path / "n.keras"),
          "--variant", "timm"], "invalid choice: 'timm'"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(bad)
        assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "n.keras").exists()


def test_a_killed_convert_leaves_nothing_and_the_next_one_cleans_up(tmp_path):
    """SIGKILL while the .keras file is being written (its temporary is seen on disk): the
    target never appears half-written, and the next convert removes the dead temporary."""
    torch = torch_peer.torch()
    torch.manual_seed(0)
    tv = torch_peer.torchvision().models.resnet50(weights=None, num_classes=10)
    source = tmp_path / "r50.pth"
    torch.save(tv.state_dict(), source)
    out = tmp_path / "r50.keras"
    args = ["-m", "keras_cnn_ext", "convert", "resnet50", str(source), "-o", str(out),
            "--input-shape", f"{HW},{HW},3", "--no-check"]
    caught = False
    for attempt in range(3):  # the write lasts about a second; catch it in the act
        proc = proc_helper.start(args, str(tmp_path / f"kill{attempt}.log"))
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if any(".tmp-" in name for name in os.listdir(tmp_path)):
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
            time.sleep(0.005)
        proc_helper.finish([proc], timeout=30)
        if caught:
            break
        out.unlink(missing_ok=True)
    assert caught, "the write was never seen in progress"
    assert not out.exists()
    assert any(".tmp-" in name for name in os.listdir(tmp_path))  # the dead writer's file
    proc = proc_helper.start(args, str(tmp_path / "again.log"))
    assert proc_helper.finish([proc], timeout=300) == [0], proc_helper.tail(proc)
    assert out.is_file() and not any(".tmp-" in name for name in os.listdir(tmp_path))
    assert keras.models.load_model(out).output_shape == (None, 10)


# ---------------------------------------------------------------- fine-tuning


def _train(tmp_path, digits_data_dir, *extra):
    out = tmp_path / "run"
    argv = ["train", "resnet18", "--dataset", "digits", "--data-dir", digits_data_dir,
            "-o", str(out), "--verbose", "0", "--no-tensorboard", *extra]
    assert cli.main(argv) == 0
    with open(out / "metrics.json", encoding="utf-8") as f:
        return out, json.load(f)


def test_train_fine_tunes_a_converted_network(converted, tmp_path, digits_data_dir):
    out, metrics = _train(tmp_path, digits_data_dir, "--weights", str(converted[0]),
                          "--epochs", "2", "--max-examples", "640")
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1
    args = json.loads((out / "args.json").read_text())["arguments"]
    assert args["weights"] == str(converted[0]) and args["freeze_backbone"] is False


def test_freeze_backbone_trains_the_head_only(converted, resnet18_pth, tmp_path,
                                              digits_data_dir):
    out, _ = _train(tmp_path, digits_data_dir, "--weights", str(converted[0]),
                    "--freeze-backbone", "--epochs", "1", "--max-examples", "96")
    trained = keras.models.load_model(out / "model.keras", compile=False)
    before = keras.models.load_model(converted[0])
    net_after = trained.get_layer("resnet18")
    net_before = before.get_layer("resnet18")
    for layer in net_before.layers:
        if layer.name == "fc" or not layer.weights:
            continue
        for a, b in zip(layer.weights, net_after.get_layer(layer.name).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=layer.name)
    fc = net_after.get_layer("fc")
    assert fc.kernel.shape == (512, 10) and fc.trainable
    # the converted conv1 is torchvision's, in Keras' layout
    state = kw.read_source(resnet18_pth[0])
    np.testing.assert_array_equal(np.asarray(net_after.get_layer("conv1").kernel),
                                  kw.conv_kernel(state["conv1.weight"]))


def test_train_from_a_weight_file_directly(resnet18_pth, tmp_path, digits_data_dir):
    out, metrics = _train(tmp_path, digits_data_dir, "--weights", str(resnet18_pth[0]),
                          "--input-shape", f"{HW},{HW},3", "--epochs", "1",
                          "--max-examples", "64", "--freeze-backbone")
    assert metrics["epochs"] == 1
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert isinstance(model.layers[1], preprocessing.InputNormalization)
    assert model.layers[1].input_scale == 1.0  # the pipelines feed 0..1


def test_train_weights_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "resnet18", "--weights", str(tmp_path / "none.keras"),
                  "-o", str(tmp_path / "run")])
    assert info.value.code == 2 and "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "lenet5", "--freeze-backbone", "-o", str(tmp_path / "run2")])
    assert info.value.code == 2 and "freeze_backbone" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_builders_without_a_published_layout_take_keras_weight_files(name, tmp_path):
    trained = kce_models.get_model(name, layers="keras")
    rng = np.random.default_rng(2)
    for variable in trained.weights:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype(variable.dtype))
    trained.save_weights(tmp_path / "w.weights.h5")
    trained.save(tmp_path / "w.keras")
    x = rng.uniform(0, 1, (2, *trained.input_shape[1:])).astype(np.float32)
    for path in ("w.weights.h5", "w.keras"):
        again = kce_models.get_model(name, layers="keras", weights=tmp_path / path)
        np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(trained(x)))
    with pytest.raises(ValueError, match=r"argument `weights`.*Received: weights='w.pth'"):
        kce_models.get_model(name, weights="w.pth")
    with pytest.raises(ValueError, match="an existing file"):
        kce_models.get_model(name, weights=tmp_path / "none.weights.h5")
