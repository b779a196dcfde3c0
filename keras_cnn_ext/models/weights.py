"""Bringing trained weights in: reading a source and every layout rule, in one module.

A *source* is a PyTorch ``state_dict`` file (``.pth`` / ``.pt``, or a checkpoint dict holding
one under ``state_dict`` / ``model``), a ``.safetensors`` file, or a mapping of names to
arrays. `read_source` turns any of them into ``{name: numpy array}``; a *plan* (one per model
family, e.g. `resnet_torchvision_plan`) says which source name fills which Keras variable and
through which layout rule; `load_weights` checks the whole plan before assigning anything.

The layout rules (PyTorch -> Keras):

* convolution weight ``(C_out, C_in / groups, kH, kW)`` -> kernel ``(kH, kW, C_in / groups,
  C_out)`` (`conv_kernel`); the same for every ``data_format``;
* Linear weight ``(out, in)`` -> Dense kernel ``(in, out)`` (`dense_kernel`); after a flatten,
  PyTorch's rows are in (C, H, W) order and ours in (H, W, C) order (the builders flatten in
  channels_last order whatever the layout), so the rows are permuted (``flatten_from=``);
* batch norm ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance``; ``num_batches_tracked`` is bookkeeping and is consumed without a target.
  The epsilon belongs to the architecture (1e-5 in torchvision, `TORCHVISION_BN_EPSILON`):
  the builders' ``variant="torchvision"`` sets it, and the plan checks it; PyTorch's momentum
  m is Keras' ``1 - m`` (`keras_momentum`).

keras.applications weight files (``.h5`` of Keras 2, ``.weights.h5`` / ``.keras`` of Keras 3)
are read into ``{"<layer>/<variable>": array}`` (e.g. ``conv1_bn/moving_mean``) and loaded
by the ``keras_resnet`` / ``keras_vgg`` plans (the section "keras.applications" at the end).

>>> import numpy as np
>>> conv_kernel(np.zeros((8, 3, 5, 7))).shape
(5, 7, 3, 8)
>>> dense_kernel(np.zeros((10, 4 * 2 * 2)), flatten_from=(4, 2, 2)).shape
(16, 10)
"""

import collections
import collections.abc
import importlib
import os
import warnings

import numpy as np

TORCHVISION_BN_EPSILON = 1e-5
TORCHVISION_BN_MOMENTUM = 0.1  # PyTorch's convention: the weight of the new batch statistic
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")  # .weights.h5 ends in .h5
_BN_TARGETS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))


def keras_momentum(torch_momentum=TORCHVISION_BN_MOMENTUM):
    """Keras' batch-norm momentum for PyTorch's: Keras keeps ``m`` of the old statistic,
    PyTorch gives ``m`` to the new one.

    >>> round(keras_momentum(0.1), 6)
    0.9
    """
    return 1.0 - float(torch_momentum)


# ---------------------------------------------------------------- the layout rules


def conv_kernel(weight):
    """PyTorch OIHW (``(C_out, C_in / groups, kH, kW)``) -> Keras HWIO."""
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"Expected a 4-D convolution weight (OIHW). Received shape "
                         f"{weight.shape}")
    return np.transpose(weight, (2, 3, 1, 0))


def dense_kernel(weight, flatten_from=None):
    """PyTorch Linear ``(out, in)`` -> Keras Dense ``(in, out)``.

    Args:
        weight: the Linear weight.
        flatten_from: for the first fully connected layer after a flatten, the (C, H, W) of
            the flattened map: PyTorch's input index is ``c * H * W + h * W + w``, ours
            ``(h * W + w) * C + c``, so the rows are reordered to match.
    """
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"Expected a 2-D Linear weight (out, in). Received shape "
                         f"{weight.shape}")
    if flatten_from is not None:
        c, h, w = flatten_from
        if c * h * w != weight.shape[1]:
            raise ValueError(f"A flatten of (C, H, W) = {tuple(flatten_from)} has {c * h * w} "
                             f"features, the Linear weight {weight.shape[1]}")
        weight = weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight.T


def _identity(array):
    return np.asarray(array)


# ---------------------------------------------------------------- reading a source


def _import(module, purpose, install):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the `{module}` package, which keras_cnn_ext does not install: "
            f"`{install}`."
        ) from error


def _to_numpy(value, name):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as error:  # noqa: BLE001  (any unconvertible object)
        raise TypeError(f"Invalid value for argument `weights`. Expected arrays as values; "
                        f"the value of {name!r} is a {type(value).__name__}") from error


def _unwrap(obj):
    """A checkpoint dict -> the state dict inside it; strips DataParallel's "module."."""
    if isinstance(obj, collections.abc.Mapping):
        for key in CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, collections.abc.Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, collections.abc.Mapping):
        raise TypeError(f"Invalid value for argument `weights`. Expected a state dict (a "
                        f"mapping of names to arrays). Received: a {type(obj).__name__}")
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def read_source(source):
    """Reads a weight source into ``{name: numpy array}``.

    Args:
        source: a path to a ``.pth`` / ``.pt`` / ``.bin`` file (read with
            ``torch.load(..., map_location="cpu", weights_only=True)``, so no arbitrary object
            is unpickled; needs torch), a path to a ``.safetensors`` file (needs only the
            `safetensors` package), or a mapping of names to arrays (NumPy arrays, torch
            tensors, anything `numpy.asarray` takes). A checkpoint dict holding the state dict
            under ``state_dict`` / ``model`` is unwrapped. A Keras weight file (``.h5``,
            ``.weights.h5``, ``.keras``; needs h5py) is read by `read_keras_file`.

    >>> import numpy as np
    >>> sorted(read_source({"state_dict": {"fc.bias": np.zeros(3)}, "epoch": 7}))
    ['fc.bias']
    """
    if isinstance(source, collections.abc.Mapping):
        state = _unwrap(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        lower = path.lower()
        suffixes = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES + KERAS_SUFFIXES
        if not lower.endswith(suffixes):
            raise ValueError(
                "Invalid value for argument `weights`. Expected a path ending in "
                f"{', '.join(suffixes)}, or a mapping of names "
                f"to arrays. Received: weights={source!r}")
        if not os.path.isfile(path):
            raise ValueError(f"Invalid value for argument `weights`. Expected an existing "
                             f"file. Received: weights={source!r}")
        if lower.endswith(KERAS_SUFFIXES):
            state = read_keras_file(path)
        elif lower.endswith(SAFETENSORS_SUFFIXES):
            st = _import("safetensors.numpy", "Reading a .safetensors file",
                         "pip install safetensors")
            state = st.load_file(path)
        else:
            torch = _import("torch", "Reading a PyTorch checkpoint (.pth / .pt)",
                            "pip install torch (or save the state dict as .safetensors, "
                            "which needs only `pip install safetensors`)")
            state = _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    else:
        raise TypeError(
            "Invalid value for argument `weights`. Expected None, a path (.pth, .pt, "
            f".safetensors, .h5, .keras) or a mapping of names to arrays. Received: "
            f"weights={source!r}")
    return {str(k): _to_numpy(v, k) for k, v in state.items()}


# ---------------------------------------------------------------- plans and loading

# One source tensor -> one Keras variable. `optional`: may be absent from the source (and is
# then left alone); `target` None: consumed, nothing to set (num_batches_tracked). `inputs`:
# more source keys the transform takes (``transform(value, *inputs)``; each has an entry of
# its own, which reports it when missing), e.g. a convolution bias folded into a batch norm.
Entry = collections.namedtuple("Entry", "key target transform head optional inputs",
                               defaults=(_identity, False, False, ()))

LoadReport = collections.namedtuple("LoadReport", "missing unexpected skipped")
LoadReport.__doc__ = """What `load_weights` did not load.

* missing: source names the model needs that the source lacks, and model variables that no
  source name fills (by their Keras path);
* unexpected: source names nothing in the model uses;
* skipped: the classifier's source names, left out because the model has no classifier or
  one of another shape (``num_classes``).
"""


def _kernel_layer(chain):
    """The layer with a kernel in a factory chain (``[ZeroPadding2D, Conv2D]`` or one layer)."""
    chain = chain if isinstance(chain, (list, tuple)) else [chain]
    found = [layer for layer in chain if hasattr(layer, "kernel")]
    if len(found) != 1:
        raise ValueError(f"Expected one convolution in {[layer.name for layer in chain]}")
    return found[0]


def conv_entries(prefix, chain):
    """``prefix.weight`` (OIHW) and, if the layer has one, ``prefix.bias``."""
    layer = _kernel_layer(chain)
    out = [Entry(prefix + ".weight", layer.kernel, conv_kernel)]
    if getattr(layer, "bias", None) is not None:
        out.append(Entry(prefix + ".bias", layer.bias))
    return out


def bn_entries(prefix, layer, epsilon=TORCHVISION_BN_EPSILON):
    """A PyTorch BatchNorm2d -> a Keras BatchNormalization with the same epsilon."""
    if not np.isclose(layer.epsilon, epsilon, rtol=1e-6, atol=0.0):
        raise ValueError(f"Layer '{layer.name}' has batch-norm epsilon {layer.epsilon}; the "
                         f"source's is {epsilon} (build the model with the source's variant)")
    out = [Entry(f"{prefix}.{src}", getattr(layer, dst)) for src, dst in _BN_TARGETS]
    return out + [Entry(prefix + ".num_batches_tracked", None, optional=True)]


def dense_entries(prefix, layer, flatten_from=None, head=False):
    """A PyTorch Linear -> a Keras Dense (see `dense_kernel` for `flatten_from`)."""
    out = [Entry(prefix + ".weight", layer.kernel,
                 lambda w: dense_kernel(w, flatten_from), head)]
    if layer.bias is not None:
        out.append(Entry(prefix + ".bias", layer.bias, head=head))
    return out


def resnet_torchvision_plan(model):
    """The plan of torchvision's ResNet / ResNeXt / Wide ResNet state dicts.

    torchvision's names: ``conv1``, ``bn1``, ``layer{s}.{b}.conv{j}`` / ``bn{j}``,
    ``layer{s}.{b}.downsample.0`` (1x1 conv) / ``.1`` (BN), ``fc``; ours: ``conv1``,
    ``conv1_bn``, blocks ``conv{s + 1}_{b + 1}`` with sub-layers ``convs[j]`` / ``norms[j]`` /
    ``shortcut_layers``, ``fc``.

    Returns:
        (entries, head_keys): the head keys are those of the classifier (``fc.weight``,
        ``fc.bias``), skipped when the model has none or one of another shape.
    """
    from keras_cnn_ext.layers.residual import _ResidualBase

    names = {layer.name: layer for layer in model.layers}
    entries = conv_entries("conv1", names["conv1"]) + bn_entries("bn1", names["conv1_bn"])
    for layer in model.layers:
        if not isinstance(layer, _ResidualBase):
            continue
        if layer.preactivation:
            raise ValueError("torchvision's ResNets are not pre-activation ResNets "
                             f"(block '{layer.name}' has preactivation=True)")
        stage, block = (int(part) for part in layer.name[len("conv"):].split("_"))
        prefix = f"layer{stage - 1}.{block - 1}"
        for j, (conv, norm) in enumerate(zip(layer.convs, layer.norms), start=1):
            entries += conv_entries(f"{prefix}.conv{j}", conv)
            entries += bn_entries(f"{prefix}.bn{j}", norm)
        if layer.shortcut_layers:
            *conv, norm = layer.shortcut_layers
            entries += conv_entries(f"{prefix}.downsample.0", conv)
            entries += bn_entries(f"{prefix}.downsample.1", norm)
        elif layer._shortcut_mode != "identity":
            raise ValueError(f"torchvision's ResNets have projection shortcuts (block "
                             f"'{layer.name}' has {layer._shortcut_mode!r})")
    if "fc" in names:
        entries += dense_entries("fc", names["fc"], head=True)
    return entries, ("fc.weight", "fc.bias")


# ---------------------------------------------------------------- torchvision's VGG, AlexNet,
# GoogLeNet

TORCHVISION_GOOGLENET_BN_EPSILON = 1e-3  # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)


def _layers_by_name(model):
    return {layer.name: layer for layer in model.layers}


def _flattened_chw(layer):
    """(C, H, W) of the map a layer outputs (the input of the flatten after it)."""
    from keras_cnn_ext.ops import geometry

    shape = tuple(layer.output.shape)
    data_format = getattr(layer, "data_format", "channels_last")
    h, w = geometry.spatial_dims(shape, data_format)
    return shape[geometry.channel_axis(data_format)], h, w


def _classifier_entries(names, rows, flatten_from):
    """``classifier.{i}`` Linear layers of a torchvision classifier: rows are (index, our
    Dense name); the first follows the flatten, the last is the head."""
    entries = []
    for n, (index, name) in enumerate(rows):
        if name in names:
            entries += dense_entries(f"classifier.{index}", names[name],
                                     flatten_from=flatten_from if n == 0 else None,
                                     head=n == len(rows) - 1)
    keys = tuple(f"classifier.{index}.{p}" for index, _ in rows for p in ("weight", "bias"))
    return entries, keys


def vgg_torchvision_plan(model):
    """The plan of torchvision's ``vgg11`` .. ``vgg19`` and ``vgg11_bn`` .. ``vgg19_bn``.

    torchvision numbers the modules of ``features`` in order: per convolution ``conv``
    (+ ``BatchNorm2d`` in the _bn networks) + ``ReLU``, per stage a ``MaxPool2d``; the
    classifier is ``classifier.0`` (after the flatten of the 512x7x7 adaptive pooling),
    ``classifier.3``, ``classifier.6`` (the head). Ours: ``conv{s}_{j}`` (+ ``conv{s}_{j}_bn``),
    ``avgpool``, ``fc6``, ``fc7``, ``fc8``.

    Returns:
        (entries, head_keys): the head keys are the classifier's, skipped when the model has
        none (``include_top=False``); fc8's when it has another number of classes.
    """
    names = _layers_by_name(model)
    convs = sorted((tuple(int(v) for v in name[len("conv"):].split("_")), name)
                   for name in names if _is_vgg_conv(name))
    entries, index, stage = [], 0, 1
    for (s, _), name in convs:
        if s != stage:  # the max pooling closing each earlier stage
            index, stage = index + (s - stage), s
        entries += conv_entries(f"features.{index}", names[name])
        index += 1
        if name + "_bn" in names:
            entries += bn_entries(f"features.{index}", names[name + "_bn"])
            index += 1
        index += 1  # ReLU
    flatten_from = _flattened_chw(names["avgpool"]) if "avgpool" in names else None
    if "fc6" in names and flatten_from is None:
        raise ValueError(f"'{model.name}' has no adaptive average pooling: torchvision's VGG "
                         "weights need the model built with variant='torchvision'")
    head, head_keys = _classifier_entries(names, ((0, "fc6"), (3, "fc7"), (6, "fc8")),
                                          flatten_from)
    return entries + head, head_keys


def _is_vgg_conv(name):
    parts = name[len("conv"):].split("_") if name.startswith("conv") else []
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def alexnet_torchvision_plan(model):
    """The plan of torchvision's ``alexnet``: ``features.{0, 3, 6, 8, 10}`` (conv1..conv5),
    ``classifier.1`` (fc6, after the flatten of the 256x6x6 adaptive pooling), ``classifier.4``
    (fc7), ``classifier.6`` (fc8, the head).
    """
    names = _layers_by_name(model)
    entries = []
    for index, name in zip((0, 3, 6, 8, 10), ("conv1", "conv2", "conv3", "conv4", "conv5")):
        entries += conv_entries(f"features.{index}", names[name])
    if "fc6" in names and "avgpool" not in names:
        raise ValueError(f"'{model.name}' has no adaptive average pooling: torchvision's "
                         "AlexNet weights need the model built with variant='torchvision'")
    flatten_from = _flattened_chw(names["avgpool"]) if "avgpool" in names else None
    head, head_keys = _classifier_entries(names, ((1, "fc6"), (4, "fc7"), (6, "fc8")),
                                          flatten_from)
    return entries + head, head_keys


# torchvision's InceptionAux: conv (BasicConv2d) -> fc1 -> fc2, after a 4x4 adaptive pooling
_AUX_KEYS = tuple(f"aux{i}.{key}" for i in (1, 2) for key in (
    "conv.conv.weight", "conv.bn.weight", "conv.bn.bias", "conv.bn.running_mean",
    "conv.bn.running_var", "conv.bn.num_batches_tracked", "fc1.weight", "fc1.bias",
    "fc2.weight", "fc2.bias"))


def _basic_conv_entries(prefix, names, name, epsilon=TORCHVISION_GOOGLENET_BN_EPSILON):
    """torchvision's BasicConv2d (``prefix.conv`` + ``prefix.bn``) -> our ``name`` +
    ``name_bn``."""
    return (conv_entries(prefix + ".conv", names[name])
            + bn_entries(prefix + ".bn", names[name + "_bn"], epsilon))


def googlenet_torchvision_plan(model):
    """The plan of torchvision's ``googlenet`` (every BasicConv2d's batch norm has epsilon
    1e-3).

    torchvision's names: ``conv1``, ``conv2`` (1x1), ``conv3`` (3x3), ``inception{3a..5b}``
    with ``branch1``, ``branch2.{0,1}``, ``branch3.{0,1}``, ``branch4.1`` (each ``.conv`` +
    ``.bn``), ``aux1`` / ``aux2``, ``fc``; ours: ``conv1``, ``conv2_reduce``, ``conv2``,
    ``inception_{3a..5b}``, ``aux1_*`` / ``aux2_*``, ``fc``.

    The auxiliary classifiers ``aux1.*`` / ``aux2.*`` are training-only heads (torchvision's
    eval mode never runs them; its ``weights=None`` model has them, its trained weights
    don't): a model built without them (``aux_classifiers=False``) reports their keys as
    skipped, with the warning of a skipped classifier; one built with them loads them.
    """
    names = _layers_by_name(model)
    entries = (_basic_conv_entries("conv1", names, "conv1")
               + _basic_conv_entries("conv2", names, "conv2_reduce")
               + _basic_conv_entries("conv3", names, "conv2"))
    for name, layer in names.items():
        if not name.startswith("inception_"):
            continue
        if not layer.use_batch_norm or layer.kernel_size_5x5 != 3:
            raise ValueError(f"torchvision's GoogLeNet has batch norm and a 3x3 in the '5x5' "
                             f"branch (module '{name}' does not: build the model with "
                             "variant='torchvision')")
        prefix = "inception" + name[len("inception_"):]
        branches = (("branch1",), ("branch2.0", "branch2.1"), ("branch3.0", "branch3.1"),
                    (None, "branch4.1"))
        for keys, steps in zip(branches, layer.branches):
            for key, (chain, norm, is_conv) in zip(keys, steps):
                if is_conv:
                    entries += conv_entries(f"{prefix}.{key}.conv", chain)
                    entries += bn_entries(f"{prefix}.{key}.bn", norm,
                                          TORCHVISION_GOOGLENET_BN_EPSILON)
    for i in (1, 2):
        if f"aux{i}_conv" in names:
            entries += _basic_conv_entries(f"aux{i}.conv", names, f"aux{i}_conv")
            entries += dense_entries(f"aux{i}.fc1", names[f"aux{i}_fc1"],
                                     flatten_from=_flattened_chw(names[f"aux{i}_conv_relu"]))
            entries += dense_entries(f"aux{i}.fc2", names[f"aux{i}_fc2"], head=True)
    if "fc" in names:
        entries += dense_entries("fc", names["fc"], head=True)
    return entries, ("fc.weight", "fc.bias") + _AUX_KEYS


PLANS = {"resnet": resnet_torchvision_plan, "vgg": vgg_torchvision_plan,
         "alexnet": alexnet_torchvision_plan, "googlenet": googlenet_torchvision_plan}


def _family(model):
    name = model.name.lower()
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return "resnet"
    for family in ("vgg", "alexnet", "googlenet"):
        if name.startswith(family):
            return family
    raise ValueError(f"Invalid value for argument `family`. Expected one of "
                     f"{', '.join(map(repr, PLANS))} (the model '{model.name}' does not say). "
                     f"Received: family=None")


def _format_report(missing, unexpected):
    parts = []
    if missing:
        parts.append(f"Missing key(s) ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        parts.append(f"Unexpected key(s) ({len(unexpected)}): {', '.join(unexpected)}")
    return "; ".join(parts)


def load_weights(model, source, *, family=None, strict=True):
    """Loads a source into a model built with the source's variant (``"torchvision"``,
    ``"keras"``).

    Every source tensor is used exactly once and every model variable is set, else (with
    ``strict=True``) a `ValueError` names the missing and the unexpected keys and nothing is
    assigned; shapes are checked for every tensor. The classifier (``fc``) is the exception:
    when the model has none (``include_top=False``) or one of another shape (another
    ``num_classes``), its tensors are skipped with a warning that says so, and the rest loads.

    Args:
        model: the Keras model.
        source: see `read_source`.
        family: the naming scheme ("resnet": torchvision's ResNet, ResNeXt and Wide ResNet;
            "vgg": its VGG, with or without batch norm; "alexnet"; "googlenet";
            "keras_resnet", "keras_vgg": keras.applications' ResNet and VGG); by default read
            from the source's names (Keras' ``layer/variable`` or PyTorch's ``a.b.weight``)
            and the model's name.
        strict: False loads what matches and reports the rest instead of raising.

    Returns:
        A `LoadReport` (missing, unexpected, skipped).
    """
    if family is not None and family not in PLANS:
        raise ValueError(f"Invalid value for argument `family`. Expected one of "
                         f"{', '.join(map(repr, PLANS))}. Received: family={family!r}")
    if not isinstance(strict, bool):
        raise ValueError(f"Invalid value for argument `strict`. Expected True or False. "
                         f"Received: strict={strict!r}")
    state = read_source(source)
    if family is None:  # a Keras source's names say it is one; else the model's name
        family = _keras_family(model, state) or _family(model)
    entries, head_keys = PLANS[family](model)
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys)), "a plan names a source key twice"

    assignments, missing, skipped, mismatched = [], [], [], []
    for entry in entries:
        if entry.key not in state:
            if not entry.optional:
                missing.append(entry.key)
            continue
        if entry.target is None or any(k not in state for k in entry.inputs):
            continue
        value = entry.transform(state[entry.key], *(state[k] for k in entry.inputs))
        want = tuple(entry.target.shape)
        if value.shape != want:
            if entry.head:
                skipped.append(entry.key)
                continue
            mismatched.append(f"{entry.key}: source {tuple(value.shape)} after the layout "
                              f"rule, model {want}")
            continue
        assignments.append((entry.target, value))
    if skipped:  # a classifier of another shape: leave all of it, not half
        head = {e.key for e in entries if e.head}
        assignments = [(v, a) for v, a in assignments
                       if not any(v is e.target for e in entries if e.key in head)]
        skipped = [e.key for e in entries if e.key in head and e.key in state]
    planned = set(keys)
    unexpected = [k for k in state if k not in planned]
    no_head = [k for k in unexpected if k in head_keys]  # include_top=False
    skipped += no_head
    unexpected = [k for k in unexpected if k not in head_keys]
    covered = {id(e.target) for e in entries if e.target is not None}
    missing += [v.path for v in model.weights if id(v) not in covered]
    if mismatched:
        raise ValueError("Shape mismatch loading the weights into "
                         f"'{model.name}': " + "; ".join(mismatched))
    if strict and (missing or unexpected):
        raise ValueError(f"Error(s) loading the weights into '{model.name}': "
                         + _format_report(missing, unexpected))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    if skipped:
        heads = sorted({key.split(".")[0].split("/")[0] for key in skipped})
        left = ", ".join(skipped) if len(skipped) <= 6 else f"{len(skipped)} tensors"
        warnings.warn(f"Loaded all the weights of '{model.name}' but those of the head(s) "
                      f"{', '.join(heads)} ({left} left out: the model has no "
                      "such head, e.g. include_top=False or no auxiliary classifiers, or one "
                      "of another number of classes, which keeps its initial weights); "
                      "LoadReport.skipped lists them.", stacklevel=2)
    return LoadReport(missing, unexpected, skipped)


# ---------------------------------------------------------------- keras.applications
#
# The files, as Keras' own loaders read them (keras/src/legacy/saving/legacy_h5_format.py,
# keras/src/saving/saving_lib.py):
#
# * legacy HDF5, Keras 2's ``save_weights("x.h5")`` (the files keras.applications publishes):
#   the root (for ``model.save("x.h5")``: its group ``model_weights``) has the attribute
#   ``layer_names`` (split into ``layer_names0``, ``layer_names1``, ... when it outgrows an
#   HDF5 object header); the group of each layer has the attribute ``weight_names``, e.g.
#   ``["conv1_conv/kernel:0", "conv1_conv/bias:0"]``, each the path of its dataset inside the
#   group (``conv1_conv/conv1_conv/kernel:0``). Keras loads them by order: the layers with
#   weights in order, each layer's weights in the order of its variables; the names are
#   informative only (the oldest files name them ``block1_conv1_W_1:0``, ...).
# * Keras 3's ``.weights.h5``: ``layers/<key>/vars/<i>``, ``<key>`` the layer's class in snake
#   case made unique (``conv2d``, ``conv2d_1``, ``batch_normalization``, ...), the layer's
#   name in the attribute ``name`` of ``vars``, ``<i>`` the index in the layer's variable
#   order; a sub-model's layers nest the same way (``layers/<key>/layers/...``). A ``.keras``
#   archive holds that file as ``model.weights.h5``.
#
# Both are read into ``{"<layer name>/<variable name>": array}``, the variables named by the
# file's names when they are Keras' own, else by the variable order of the layer's type.

KERAS_BN_EPSILON = 1.001e-5  # keras.applications' ResNets
KERAS_BN_MOMENTUM = 0.99  # Keras' convention: the weight of the old statistic
KERAS_VARIABLE_ORDERS = {
    "conv": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}
_KERAS_VARIABLE_NAMES = frozenset(n for order in KERAS_VARIABLE_ORDERS.values() for n in order)


def _variable_names(arrays, kind=None, names=()):
    """Names of one layer's variables: the file's own (last part, ``:0`` dropped) when all are
    Keras variable names, else by the variable order of `kind` (a class key such as
    ``conv2d_3``, or guessed from the shapes), else their indices."""
    short = [str(n).rsplit("/", 1)[-1].split(":", 1)[0] for n in names]
    if short and all(n in _KERAS_VARIABLE_NAMES for n in short) and len(set(short)) == len(
            short):
        return short
    n = len(arrays)
    if kind is None:
        if n and arrays[0].ndim >= 2:
            kind = "conv"
        elif n == 4 and all(a.ndim == 1 for a in arrays):
            kind = "batch_normalization"
    kind = "conv" if kind and kind.startswith("conv") else kind
    order = KERAS_VARIABLE_ORDERS.get(kind, ())
    if kind == "batch_normalization" and n != len(order):  # center / scale off: ambiguous
        order = ()
    return list(order[:n]) if n <= len(order) else [str(i) for i in range(n)]


def _h5_strings(group, name):
    """An attribute holding a list of strings, also when split into ``name0``, ``name1``..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _put(state, layer, names, arrays, where):
    for var, array in zip(names, arrays):
        key = f"{layer}/{var}"
        if key in state:
            raise ValueError(f"Invalid value for argument `weights`. Expected one variable per "
                             f"name; {key!r} occurs twice in {where}")
        state[key] = array


def _read_legacy_h5(group, where):
    state = {}
    for layer in _h5_strings(group, "layer_names"):
        layer_group = group[layer]
        weight_names = _h5_strings(layer_group, "weight_names")
        arrays = [np.asarray(layer_group[w]) for w in weight_names]
        _put(state, layer, _variable_names(arrays, names=weight_names), arrays, where)
    return state


def _read_keras3_h5(root, where):
    import re

    import h5py

    state = {}

    def walk(group):
        for key, item in group.items():
            if not isinstance(item, h5py.Group):
                continue
            variables = item.get("vars")
            if isinstance(variables, h5py.Group) and len(variables):
                arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
                layer = variables.attrs.get("name", key)
                layer = layer.decode("utf8") if isinstance(layer, bytes) else str(layer)
                kind = re.sub(r"_\d+$", "", key)  # conv2d_3 -> conv2d
                _put(state, layer, _variable_names(arrays, kind), arrays, where)
            walk(item)

    walk(root["layers"])
    return state


def read_keras_file(path):
    """Reads a Keras weight file into ``{"<layer>/<variable>": array}``.

    Args:
        path: a legacy HDF5 file (Keras 2's ``save_weights("x.h5")`` or ``model.save("x.h5")``:
            the keras.applications files), a Keras 3 ``.weights.h5`` file, or a ``.keras``
            archive. Needs h5py (a Keras dependency).

    Both HDF5 layouts give the same names, e.g. ``conv1_conv/kernel``, ``conv1_bn/gamma``,
    ``conv1_bn/moving_variance``, ``predictions/bias``.
    """
    h5py = _import("h5py", "Reading a Keras weight file (.h5, .keras)", "pip install h5py")
    path = os.fspath(path)
    where = repr(path)
    handle = path
    if path.lower().endswith(".keras"):
        import io
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                handle = io.BytesIO(archive.read("model.weights.h5"))
        except (zipfile.BadZipFile, KeyError) as error:
            raise ValueError(f"Invalid value for argument `weights`. Expected a .keras archive "
                             f"holding model.weights.h5. Received: weights={path!r}") from error
    try:
        root = h5py.File(handle, "r")
    except OSError as error:
        raise ValueError(f"Invalid value for argument `weights`. Expected an HDF5 file. "
                         f"Received: weights={path!r} ({error})") from error
    with root:
        if _h5_strings(root, "layer_names"):
            return _read_legacy_h5(root, where)
        if "model_weights" in root and _h5_strings(root["model_weights"], "layer_names"):
            return _read_legacy_h5(root["model_weights"], where)
        if isinstance(root.get("layers"), h5py.Group):
            return _read_keras3_h5(root, where)
    raise ValueError("Invalid value for argument `weights`. Expected a Keras weight file "
                     "(an HDF5 file with `layer_names` or Keras 3's `layers/`). Received: "
                     f"weights={path!r}")


def is_keras_source(state):
    """Whether a read source has Keras' names (``layer/variable``), not PyTorch's."""
    return bool(state) and all("/" in key for key in state)


def source_variant(source):
    """The builder variant a source is laid out for: "keras" (a Keras file, or names such as
    ``conv1_conv/kernel``), "torchvision" (a PyTorch / safetensors file or ``a.b.weight``
    names), or None when the source does not say (then `read_source` judges it).

    >>> source_variant("resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    'keras'
    >>> source_variant({"fc.bias": [0.0]})
    'torchvision'
    """
    if isinstance(source, (str, os.PathLike)):
        lower = os.fspath(source).lower()
        if lower.endswith(KERAS_SUFFIXES):
            return "keras"
        return "torchvision" if lower.endswith(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES) else None
    if isinstance(source, collections.abc.Mapping):
        try:
            keys = list(_unwrap(source))
        except TypeError:
            return None
        return "keras" if keys and all("/" in str(k) for k in keys) else "torchvision"
    return None


def fold_conv_bias(moving_mean, bias):
    """The moving mean of a batch norm that absorbs the bias of the convolution before it.

    ``BN(conv(x) + b)`` with mean ``mu`` is ``BN(conv(x))`` with mean ``mu - b``, exactly, in
    inference; in training the batch mean absorbs any per-channel constant, so ``b`` has no
    effect (and no gradient) either way.

    >>> fold_conv_bias(np.array([1.0, 2.0]), np.array([0.5, -1.0])).tolist()
    [0.5, 3.0]
    """
    moving_mean = np.asarray(moving_mean, np.float64)
    bias = np.asarray(bias, np.float64)
    if moving_mean.shape != bias.shape:
        raise ValueError(f"A convolution bias of shape {bias.shape} cannot fold into a moving "
                         f"mean of shape {moving_mean.shape}")
    return moving_mean - bias


def _check_bn_epsilon(layer, epsilon, variant):
    if not np.isclose(layer.epsilon, epsilon, rtol=1e-6, atol=0.0):
        raise ValueError(f"Layer '{layer.name}' has batch-norm epsilon {layer.epsilon}; the "
                         f"source's is {epsilon} (build the model with variant={variant!r})")


def keras_conv_bn_entries(conv_name, bn_name, chain, norm, epsilon=KERAS_BN_EPSILON):
    """A Keras Conv2D with bias + BatchNormalization -> our bias-free convolution + batch norm:
    the bias folds into the moving mean (`fold_conv_bias`); a convolution with a bias of its
    own takes it as it is."""
    _check_bn_epsilon(norm, epsilon, "keras")
    layer = _kernel_layer(chain)
    bias = f"{conv_name}/bias"
    out = [Entry(f"{conv_name}/kernel", layer.kernel)]
    own_bias = getattr(layer, "bias", None) is not None
    out.append(Entry(bias, layer.bias if own_bias else None))
    mean = (Entry(f"{bn_name}/moving_mean", norm.moving_mean) if own_bias else
            Entry(f"{bn_name}/moving_mean", norm.moving_mean, fold_conv_bias, inputs=(bias,)))
    return out + [Entry(f"{bn_name}/gamma", norm.gamma), Entry(f"{bn_name}/beta", norm.beta),
                  mean, Entry(f"{bn_name}/moving_variance", norm.moving_variance)]


def keras_dense_entries(name, layer, head=False):
    """A Keras Dense -> a Dense (the layouts agree)."""
    out = [Entry(f"{name}/kernel", layer.kernel, head=head)]
    if layer.bias is not None:
        out.append(Entry(f"{name}/bias", layer.bias, head=head))
    return out


def keras_resnet_plan(model):
    """The plan of keras.applications' ResNet50 / ResNet101 / ResNet152 weight files.

    keras.applications' names: ``conv1_conv`` / ``conv1_bn``, ``conv{s}_block{b}_{j}_conv`` /
    ``_bn`` (j = 1, 2, 3 the main path, 0 the projection shortcut), ``predictions``; ours:
    ``conv1`` / ``conv1_bn``, blocks ``conv{s}_{b}`` with ``convs[j - 1]`` / ``norms[j - 1]`` /
    ``shortcut_layers``, ``fc``. The convolutions' biases fold into the batch norms' moving
    means (`fold_conv_bias`): our convolutions before a batch norm have none.

    Returns:
        (entries, head_keys): the head keys (``predictions/kernel``, ``predictions/bias``) are
        skipped when the model has no classifier or one of another shape.
    """
    from keras_cnn_ext.layers.residual import BottleneckBlock, _ResidualBase

    names = {layer.name: layer for layer in model.layers}
    entries = keras_conv_bn_entries("conv1_conv", "conv1_bn", names["conv1"], names["conv1_bn"])
    for layer in model.layers:
        if not isinstance(layer, _ResidualBase):
            continue
        if (not isinstance(layer, BottleneckBlock) or layer.preactivation
                or layer.stride_on != "1x1" or layer.groups != 1
                or layer.inner_width != layer.filters):
            raise ValueError(
                "keras.applications' ResNets are v1 bottleneck networks (stride on the first "
                "1x1, no groups, no pre-activation); block "
                f"'{layer.name}' is not (build the model with variant='keras')")
        stage, block = (int(part) for part in layer.name[len("conv"):].split("_"))
        prefix = f"conv{stage}_block{block}"
        for j, (conv, norm) in enumerate(zip(layer.convs, layer.norms), start=1):
            entries += keras_conv_bn_entries(f"{prefix}_{j}_conv", f"{prefix}_{j}_bn", conv,
                                             norm)
        if layer.shortcut_layers:
            *conv, norm = layer.shortcut_layers
            entries += keras_conv_bn_entries(f"{prefix}_0_conv", f"{prefix}_0_bn", conv, norm)
        elif layer._shortcut_mode != "identity":
            raise ValueError(f"keras.applications' ResNets have projection shortcuts (block "
                             f"'{layer.name}' has {layer._shortcut_mode!r})")
    if "fc" in names:
        entries += keras_dense_entries("predictions", names["fc"], head=True)
    return entries, ("predictions/kernel", "predictions/bias")


_KERAS_VGG_HEAD = ("fc1", "fc2", "predictions")


def keras_vgg_plan(model):
    """The plan of keras.applications' VGG16 / VGG19 weight files (our configurations D / E).

    keras.applications' names: ``block{i}_conv{j}``, ``fc1``, ``fc2``, ``predictions``; ours:
    ``conv{i}_{j}``, ``fc6``, ``fc7``, ``fc8``. Both flatten in (H, W, C) order (channels_last
    files), so the dense kernels load as they are.

    Returns:
        (entries, head_keys): all the dense layers' keys, skipped when the model has no top
        (keras.applications' ``include_top=False`` drops them all); of another
        ``num_classes``, only ``predictions`` is skipped.
    """
    import re

    entries, dense = [], []
    for layer in model.layers:
        conv = re.fullmatch(r"conv(\d+)_(\d+)", layer.name)
        if conv and hasattr(layer, "kernel"):
            key = f"block{conv[1]}_conv{conv[2]}"
            entries.append(Entry(key + "/kernel", layer.kernel))
            if layer.bias is not None:
                entries.append(Entry(key + "/bias", layer.bias))
        elif re.fullmatch(r"fc\d+", layer.name):
            dense.append(layer)
    dense.sort(key=lambda layer: int(layer.name[2:]))
    if len(dense) not in (0, len(_KERAS_VGG_HEAD)):
        raise ValueError(f"keras.applications' VGGs have the dense layers fc1, fc2, "
                         f"predictions; '{model.name}' has {[d.name for d in dense]}")
    for name, layer in zip(_KERAS_VGG_HEAD, dense):
        entries += keras_dense_entries(name, layer, head=name == "predictions")
    return entries, tuple(f"{name}/{var}" for name in _KERAS_VGG_HEAD
                          for var in ("kernel", "bias"))


PLANS.update(keras_resnet=keras_resnet_plan, keras_vgg=keras_vgg_plan)


def _keras_family(model, state):
    """"keras_resnet" / "keras_vgg" for a source with Keras names; None for another source."""
    if not is_keras_source(state):
        return None
    name = model.name.lower()
    if name.startswith("resnet"):
        return "keras_resnet"
    if name.startswith("vgg"):
        return "keras_vgg"
    raise ValueError(f"Invalid value for argument `family`. Expected 'keras_resnet' or "
                     f"'keras_vgg' for a Keras source (keras.applications' ResNet and VGG; "
                     f"the model '{model.name}' is neither). Received: family=None")
