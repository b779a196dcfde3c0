"""Trained weights into Keras models: conversion checked against the source, and fine-tuning.

`convert(model, weights, output)` builds a registered model with a weight source (a
torchvision / timm state dict, a keras.applications weight file: see
`keras_cnn_ext.models.weights`), runs the *source* model beside it on a probe batch when the
source's library is importable (torchvision for ``variant="torchvision"``, keras.applications
for ``variant="keras"``), refuses to write on a mismatch, and writes a ``.keras`` file
atomically (temporary name, then a rename: a kill leaves nothing half-written). By default the
written model starts with the `InputNormalization` its weights expect
(`keras_cnn_ext.models.preprocessing`), so it takes RGB images with pixel values 0..255.

`finetune_model(model, weights, num_classes)` is what ``keras-cnn-ext train MODEL --weights
FILE`` builds: the converted network (from a ``.keras`` file written by `convert`, or straight
from a weight source) with a new classifier for the data set's classes and the input
normalisation for pixel values 0..1 (this package's data pipelines); ``freeze_backbone=True``
leaves only the classifier trainable (timm's ``--pretrained --num-classes``, Keras' transfer
learning guide).
"""

import os

import keras
import numpy as np

from keras_cnn_ext.models import preprocessing, weights as kweights
from keras_cnn_ext._process import pid_alive

KERAS_SUFFIX = ".keras"
SOURCE_VARIANTS = ("torchvision", "keras")
# the classifier's weight in each layout, and the axis holding the classes
_HEAD_KEYS = (("fc.weight", 0), ("classifier.6.weight", 0), ("predictions/kernel", -1))
# keras.applications' class for each of our builders that has one
_KERAS_APPLICATIONS = {"resnet50": "ResNet50", "resnet101": "ResNet101",
                       "resnet152": "ResNet152", "vgg16": "VGG16", "vgg19": "VGG19"}


class ConversionMismatchError(ValueError):
    """The converted model does not compute what the source model computes (nothing written)."""


def _invalid(name, expected, value):
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                      f"Received: {name}={value!r}")


def head_classes(state):
    """The number of classes of a state's classifier, or None if it has none we know.

    >>> head_classes({"fc.weight": np.zeros((7, 512)), "fc.bias": np.zeros(7)})
    7
    """
    for key, axis in _HEAD_KEYS:
        if key in state and np.ndim(state[key]) == 2:
            return int(np.shape(state[key])[axis])
    return None


def _check_variant(variant):
    if variant not in SOURCE_VARIANTS:
        raise _invalid("variant", f"one of {', '.join(map(repr, SOURCE_VARIANTS))} (the layout "
                       "of the weights: torchvision/timm state dicts or keras.applications "
                       "files)", variant)
    return variant


def builder_variant(model, layout):
    """The builder's `variant` for weights in `layout`: the layout's own name, except for
    keras.applications' VGG16/19, which are the paper's configurations D/E ("paper").

    >>> builder_variant("vgg16", "keras"), builder_variant("resnet50", "keras")
    ('paper', 'keras')
    """
    from keras_cnn_ext.models.vgg import KERAS_VGGS

    return "paper" if layout == "keras" and model in KERAS_VGGS else layout


def _with_normalization(net, mode, input_scale):
    """`net` behind an `InputNormalization` layer (a functional model of the two)."""
    inputs = keras.Input(net.input_shape[1:], name="image")
    norm = preprocessing.InputNormalization(mode, input_scale=input_scale,
                                            name="input_normalization")
    return keras.Model(inputs, net(norm(inputs)), name=net.name)


# ---------------------------------------------------------------- the source models


def _torchvision_logits(name, state, num_classes, images):
    """torchvision's model `name` with `state` loaded strictly, in eval mode, on `images`
    (NHWC, already normalised): its logits."""
    from keras_cnn_ext.models import _torch

    torch = _torch.torch("Checking a conversion against torchvision")
    tv = _torch.torchvision("Checking a conversion against torchvision")
    factory = getattr(tv.models, name, None)
    if factory is None:
        return None
    kwargs = {"weights": None, "num_classes": num_classes}
    if name == "googlenet":
        kwargs.update(aux_logits=any(k.startswith("aux1.") for k in state),
                      transform_input=False, init_weights=False)
    peer = factory(**kwargs)
    peer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                         strict=True)
    peer.eval()
    with torch.no_grad():
        out = peer(torch.from_numpy(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)))))
    return np.asarray(out.numpy(), np.float64)


def _keras_applications_logits(name, path, num_classes, images):
    """keras.applications' model for `name` with the weight file `path`, on `images`."""
    cls = getattr(keras.applications, _KERAS_APPLICATIONS[name])
    peer = cls(weights=None, classes=num_classes, input_shape=images.shape[1:],
               classifier_activation=None)
    peer.load_weights(path)
    return np.asarray(peer(images, training=False), np.float64)


def _source_check(name, variant, source, state, num_classes, ours, preprocess, seed=0,
                  batch=4):
    """Runs the source model beside ours on a probe batch: None when its library is missing,
    else (description, max |diff|, the logits' scale, top-1 agreement, batch)."""
    shape = ours.input_shape[1:]
    if len(shape) != 3 or shape[-1] != 3 or None in shape:
        return None
    raw = np.random.default_rng(seed).uniform(0, 255, (batch, *shape)).astype(np.float32)
    mode = preprocessing.preprocessing_for(variant)
    normalised = preprocessing.preprocess_input(raw, mode, "channels_last")
    if variant == "torchvision":
        from keras_cnn_ext.models import _torch

        if not _torch.available():
            return None
        theirs = _torchvision_logits(name, state, num_classes, normalised)
        described = f"torchvision.models.{name}"
    else:
        if name not in _KERAS_APPLICATIONS or not isinstance(source, (str, os.PathLike)):
            return None
        theirs = _keras_applications_logits(
            name, source, num_classes, preprocessing.preprocess_input(raw, "caffe",
                                                                      "channels_last"))
        described = f"keras.applications.{_KERAS_APPLICATIONS[name]}"
    if theirs is None:
        return None
    mine = np.asarray(ours(raw if preprocess else normalised, training=False), np.float64)
    scale = float(np.max(np.abs(theirs)))
    diff = float(np.max(np.abs(mine - theirs)))
    agree = int(np.sum(np.argmax(mine, -1) == np.argmax(theirs, -1)))
    return described, diff, scale, agree, batch


# ---------------------------------------------------------------- writing atomically


def _temporary(path):
    folder, name = os.path.split(path)
    return os.path.join(folder or ".", f".{name}.tmp-{os.getpid()}-{name}")


def _remove_stale_temporaries(path):
    """Temporaries of `path` left by killed writers (their pid gone on this host)."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}.tmp-"
    if not os.path.isdir(folder):
        return
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith(f"-{name}")):
            continue
        pid = entry[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass


def _check_output(output, overwrite):
    path = os.fspath(output)
    if not path.endswith(KERAS_SUFFIX):
        raise _invalid("output", "a file name ending in .keras", output)
    if os.path.isdir(path):
        raise _invalid("output", "a file name, not a folder", output)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"Refusing to overwrite '{path}' (nothing was written); pass "
                              "overwrite=True (--overwrite) to replace it")
    return os.path.abspath(path)


# ---------------------------------------------------------------- convert


def convert(model, weights, output=None, *, variant="torchvision", input_shape=None,
            num_classes=None, preprocess=True, logits=False, check="auto", tolerance=1e-4,
            overwrite=False):
    """Builds `model` with `weights`, checks it against the source model, writes a .keras file.

    Args:
        model: a registered model name with a weight layout (e.g. "resnet50",
            "resnext50_32x4d"; `keras_cnn_ext.models.list_models()`).
        weights: a weight source (a ``.pth`` / ``.safetensors`` state dict or a
            keras.applications ``.h5`` / ``.weights.h5`` file, or a mapping of names to arrays).
        output: the ``.keras`` file to write (None: build and check only).
        variant: the layout of the weights: "torchvision" (torchvision / timm state dicts) or
            "keras" (keras.applications files).
        input_shape: the model's input (default the builder's, e.g. 224x224x3).
        num_classes: default the number of classes of the weights' classifier.
        preprocess: start the model with the `InputNormalization` its weights expect (it then
            takes pixel values 0..255); False writes the bare network.
        logits: end with the classifier's logits instead of the softmax.
        check: run the source model beside ours on a probe batch and raise
            `ConversionMismatchError` (nothing written) beyond `tolerance`: "auto" where its
            library is importable, True (required), False.
        tolerance: the largest max |diff| allowed, relative to the logits' largest magnitude.
        overwrite: replace an existing `output`.

    Returns:
        (keras model, report dict): model, variant, num_classes, preprocessing, params,
        checked_against, max_abs_diff, logits_scale, top1_agreement, probe_batch, output.
    """
    from keras_cnn_ext.models import get_model
    from keras_cnn_ext.training.config import check_model_name

    name = check_model_name(model)
    variant = _check_variant(variant)
    if check not in ("auto", True, False):
        raise _invalid("check", "'auto', True or False", check)
    for flag, value in (("preprocess", preprocess), ("logits", logits),
                        ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise _invalid(flag, "True or False", value)
    path = _check_output(output, overwrite) if output is not None else None
    state = kweights.read_source(weights)
    classes = num_classes if num_classes is not None else head_classes(state)
    kwargs = {"weights": state, "variant": builder_variant(name, variant),
              "classifier_activation": None}
    if classes is not None:
        kwargs["num_classes"] = classes
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    net = get_model(name, **kwargs)
    mode = preprocessing.preprocessing_for(variant)
    ours = _with_normalization(net, mode, 255.0) if preprocess else net
    report = {"model": name, "variant": variant, "num_classes": int(net.output_shape[-1]),
              "input_shape": list(net.input_shape[1:]), "preprocessing": mode,
              "includes_preprocessing": preprocess, "params": int(net.count_params()),
              "tensors": len(state), "checked_against": None, "max_abs_diff": None,
              "logits_scale": None, "top1_agreement": None, "probe_batch": None,
              "output": path}
    if check:
        found = _source_check(name, variant, weights, state, report["num_classes"], ours,
                              preprocess)
        if found is None and check is True:
            raise RuntimeError(f"Cannot check the conversion of '{name}': the source model's "
                               "library is not importable here (torch and torchvision for "
                               "variant='torchvision')")
        if found is not None:
            described, diff, scale, agree, batch = found
            report.update(checked_against=described, max_abs_diff=diff, logits_scale=scale,
                          top1_agreement=agree, probe_batch=batch)
            if not diff <= tolerance * scale or agree != batch:
                raise ConversionMismatchError(
                    f"The converted '{name}' differs from {described}: max |diff| {diff:.3g} "
                    f"(tolerance {tolerance:g} x the logits' scale {scale:.3g}), top-1 "
                    f"agreement {agree}/{batch}; nothing was written")
    if not logits:
        ours = _with_softmax(ours)
    if path is not None:
        _remove_stale_temporaries(path)
        tmp = _temporary(path)
        try:
            ours.save(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return ours, report


def _with_softmax(model):
    outputs = keras.layers.Softmax(name="probabilities")(model.output)
    return keras.Model(model.inputs, outputs, name=model.name)


# ---------------------------------------------------------------- fine-tuning


def _replace_head(model, num_classes, activation):
    """`model` with its last Dense layer (the classifier) replaced by a new one of
    `num_classes`; returns (new model, the classifier's name). A model whose layers hold no
    Dense is taken as a chain around one nested network (what `convert` writes: input
    normalisation, the network, the softmax), and the head is replaced inside it; the layers
    after the network are dropped (the new classifier has its own activation)."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if dense:
        head = dense[-1]
        new_head = keras.layers.Dense(num_classes, activation=activation, name=head.name)
        return keras.Model(model.inputs, new_head(head.input), name=model.name), head.name
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            inner, head_name = _replace_head(layer, num_classes, activation)
            return keras.Model(inputs, inner(x), name=model.name), head_name
        x = layer(x)
    raise ValueError(f"Model '{model.name}' has no Dense classifier to replace")


def _find_normalization(model):
    for layer in model.layers:
        if isinstance(layer, preprocessing.InputNormalization):
            return layer
        if isinstance(layer, keras.Model):
            found = _find_normalization(layer)
            if found is not None:
                return found
    return None


def finetune_model(model, weights, num_classes, *, variant="torchvision", input_shape=None,
                   freeze_backbone=False, classifier_activation="softmax", seed=None):
    """The network of `weights` with a new `num_classes` classifier, for fine-tuning.

    Args:
        model: the registered model name.
        weights: a ``.keras`` file written by `convert` (its input shape is kept), or a
            weight source (``.pth``, ``.safetensors``, ``.h5``; built with `variant`).
        num_classes: the classes of the new classifier (initialised afresh).
        variant: the layout of a weight source ("torchvision" or "keras"); for a ``.keras``
            file without input normalisation, the layout its weights came in.
        input_shape: the input shape for a weight source; for a ``.keras`` file it must equal
            the file's (or be None).
        freeze_backbone: train the classifier only (every other layer non-trainable; batch
            normalisation then keeps its statistics, as in Keras' transfer-learning guide).
        classifier_activation: the new classifier's activation.
        seed: the new classifier's initialisation.

    Returns:
        An uncompiled `keras.Model` taking images with pixel values 0..1 (the input
        normalisation of the weights comes first).
    """
    import warnings

    from keras_cnn_ext.models import get_model

    if not isinstance(freeze_backbone, bool):
        raise _invalid("freeze_backbone", "True or False", freeze_backbone)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise _invalid("num_classes", "a positive integer", num_classes)
    variant = _check_variant(variant)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else None
    if path is not None and path.endswith(KERAS_SUFFIX):
        if not os.path.isfile(path):
            raise _invalid("weights", "an existing file", weights)
        source = keras.models.load_model(path, compile=False)
        if input_shape is not None and tuple(input_shape) != tuple(source.input_shape[1:]):
            raise _invalid("input_shape", f"None or the converted model's input "
                           f"{tuple(source.input_shape[1:])} (convert again with "
                           "--input-shape to change it)", tuple(input_shape))
        net, head_name = _replace_head(source, num_classes, classifier_activation)
        norm = _find_normalization(net)
        if norm is not None:
            # the data pipelines feed pixel values 0..1; the converted file expects 0..255
            norm.input_scale = 1.0
        else:
            net = _with_normalization(net, preprocessing.preprocessing_for(variant), 1.0)
    else:
        kwargs = {"weights": weights, "variant": builder_variant(model, variant),
                  "num_classes": num_classes, "classifier_activation": classifier_activation}
        if input_shape is not None:
            kwargs["input_shape"] = tuple(input_shape)
        with warnings.catch_warnings():
            # the loader says that the classifier is left out: here that is the point
            warnings.filterwarnings("ignore", message="Loaded all the weights of")
            built = get_model(model, **kwargs)
        head_name = [layer for layer in built.layers
                     if isinstance(layer, keras.layers.Dense)][-1].name
        net = _with_normalization(built, preprocessing.preprocessing_for(variant), 1.0)
    if freeze_backbone:
        _freeze_all_but(net, head_name)
    return net


def _freeze_all_but(model, head_name):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _freeze_all_but(layer, head_name)
        elif layer.name != head_name:
            layer.trainable = False
