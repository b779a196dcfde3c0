"""Child of tests/test_backends.py: the layers, blocks and model builders on one Keras backend.

One process per backend (KERAS_BACKEND, set by the parent; JAX_ENABLE_X64=1 on JAX), so that
Keras and the backend are imported once for all of it:

1. off TensorFlow, the shared layer-test helper (tests/layer_test_helper.py: config round
   trips, symbolic shapes, values against NumPy / the stock-Keras twin, `.keras` round trip,
   a fit step, mixed precision (float16 on JAX, bfloat16 on torch); Keras' own harness on the
   layers, not the blocks built of them) on every public layer and block and on
   `InputNormalization`;
2. LocalResponseNormalization and its gradient against the NumPy formula in float64;
3. in float64, training mode, fixed weights and batch: the outputs of LeNet-5, a CIFAR
   ResNet-20, a narrow VGG A-LRN, a ResNeXt-style stack of grouped bottleneck blocks and a
   model of every other block and layer (Inception with BN, preactivation, projection,
   adaptive pooling, input normalisation; channels_last and channels_first), and the
   gradients of a fixed linear loss with respect to each of their weights and inputs,
   through the backend's own autodiff; then one LeNet-5 `fit` step (SGD);
4. in float32, inference mode: the logits of one registered builder per family (every one of
   `list_models()` with KCE_BACKENDS_ALL_BUILDERS=1) at a small input, with weights drawn
   from a fixed seed;
5. `.keras` files between backends: ResNet-20 and the VGG of 3. written here
   (`<backend>_<name>.keras`) and, given the TensorFlow child's folder, TensorFlow's files
   loaded and run here.

Writes OUT/<backend>.npz (every array the parent compares) and prints one JSON line (the
checks run, seconds per part). The TensorFlow child computes the same numbers on the
TensorFlow path (LeNet-5's fit step with implementation="reference": the NumPy formulas):

    python tests/_backends_models_child.py OUT [TENSORFLOW_OUT]
"""

import contextlib
import json
import os
import sys
import time

import keras
import numpy as np
from keras.src.initializers import random_initializers

import keras_cnn_ext as kce
from keras_cnn_ext.models.preprocessing import InputNormalization, preprocess_input
from keras_cnn_ext.ops import reference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layer_test_helper  # noqa: E402
from _autodiff import value_and_grads  # noqa: E402
import test_blocks  # noqa: E402  (the stock-Keras twin of a block: its reference)
import test_models  # noqa: E402  (one builder per family)

BACKEND = keras.backend.backend()
L = kce.layers
LEARNING_RATE = 0.05
# the half-precision policy checked per backend (one each: the checks cost seconds per layer);
# both run on these CPUs, and TensorFlow's float16 is test_layers.py's
MIXED_PRECISION = {"jax": "mixed_float16", "torch": "mixed_bfloat16"}
# every registered builder at a small input (AlexNet needs 67x67, GoogLeNet 17x17, VGG 32x32)
CIFAR = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
SMALL_INPUT = {"lenet5": (28, 28, 1), "alexnet": (67, 67, 3), "googlenet": (17, 17, 3)}
POOL = np.random.default_rng(2019).standard_normal(1 << 16)


def _small_input(name):
    if name in SMALL_INPUT:
        return SMALL_INPUT[name]
    return (8, 8, 3) if name in CIFAR else (32, 32, 3) if name.startswith("vgg") else (
        16, 16, 3)


def numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def seeded_weights(model):
    """Weights from a fixed pool of normal numbers, scaled so that deep stacks stay finite:
    kernels by 1/sqrt(fan-in), biases and BN shifts / means small, BN scales and variances in
    [0.5, 1.5]. The same on every backend (the variables' order and shapes are)."""
    out = []
    for i, w in enumerate(model.weights):
        shape = tuple(w.shape)
        draw = np.resize(np.roll(POOL, 7919 * i), shape)
        name = w.path.rsplit("/", 1)[-1]
        if name in ("gamma", "moving_variance"):
            value = 1.0 + 0.5 * np.tanh(draw)
        elif name in ("beta", "moving_mean", "bias"):
            value = 0.1 * draw
        else:
            value = draw / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        out.append(value.astype(w.dtype))
    return out


# ----------------------------------------------------------------- 1. the layer helper
def _corr_reference(x, weights):
    return reference.corr2d(x, weights[0], 2, 1, padding_mode="reflect") + weights[1]


def _pool_reference(op, data_format="channels_last", **kwargs):
    def fn(x, weights):
        assert weights == []
        first = data_format == "channels_first"
        y = op(np.transpose(x, (0, 2, 3, 1)) if first else x, **kwargs)
        return np.transpose(y, (0, 3, 1, 2)) if first else y
    return fn


def _adaptive_reference(x, weights):
    assert weights == []
    rows = kce.layers.pooling.adaptive_average_matrix(x.shape[1], 3)
    cols = kce.layers.pooling.adaptive_average_matrix(x.shape[2], 2)
    return np.einsum("oh,nhwc,pw->nopc", rows, x, cols)


def lrn_reference(x, size, alpha, beta, k):
    """LRN over the last axis and its gradient for the upstream `g` (NumPy, float64)."""
    radius, channels = size // 2, x.shape[-1]
    padded = np.pad(x ** 2, [(0, 0)] * 3 + [(radius, radius)])
    scale = k + alpha * sum(padded[..., j:j + channels] for j in range(size))

    def grad(g):
        # d y_i / d x_j = [i == j] s_i^-b - 2 a b x_i x_j s_i^(-b-1) for |i - j| <= radius
        inner = np.pad(g * x * scale ** (-beta - 1), [(0, 0)] * 3 + [(radius, radius)])
        window = sum(inner[..., j:j + channels] for j in range(size))
        return g * scale ** -beta - 2 * alpha * beta * x * window

    return x / scale ** beta, grad


LAYER_CASES = [
    # (class, constructor arguments, input shape, reference(x, weights) or None)
    (L.CrossCorrelation2D, dict(filters=2, kernel_size=3, strides=2, padding=1,
                                padding_mode="reflect", bias_initializer="glorot_uniform"),
     (2, 6, 5, 3), _corr_reference),
    (L.MaxPooling2D, dict(pool_size=3, strides=2, padding=1, padding_mode="ignore",
                          ceil_mode=True), (2, 7, 6, 2),
     _pool_reference(reference.max_pool2d, pool_size=3, strides=2, padding=1,
                     padding_mode="ignore", ceil_mode=True)),
    (L.MeanPooling2D, dict(pool_size=2, padding="same", padding_mode="ignore",
                           data_format="channels_first"), (2, 2, 7, 6),
     _pool_reference(reference.mean_pool2d, data_format="channels_first", pool_size=2,
                     padding="same", padding_mode="ignore")),
    (L.AdaptiveAveragePooling2D, dict(output_size=(3, 2)), (2, 10, 5, 3), _adaptive_reference),
    (L.LocalResponseNormalization, dict(size=3, alpha=0.5, beta=0.75, k=1.0), (2, 3, 3, 6),
     lambda x, w: lrn_reference(x, 3, 0.5, 0.75, 1.0)[0]),
    (InputNormalization, dict(mode="caffe", input_scale=1.0), (2, 3, 3, 3),
     lambda x, w: preprocess_input(x * 255.0, "caffe")),
] + [(cls, kwargs, shape, "twin") for cls, kwargs, shape, _ in (
    test_blocks.BLOCK_CASES[3], test_blocks.BLOCK_CASES[4], test_blocks.BLOCK_CASES[8],
    test_blocks.BLOCK_CASES[9])]


def check_layers(results):
    """The helper on every public layer and block (and InputNormalization); off TensorFlow
    only: on TensorFlow test_layers.py and test_blocks.py run it on many more cases."""
    if BACKEND == "tensorflow":
        return
    names = []
    for cls, kwargs, shape, ref in LAYER_CASES:
        # Keras' own harness on the layers that hold backend code of ours; the blocks are
        # compositions of them and stock layers (a third of the child's time under JAX for
        # no new code path): our checks above it still run on them
        harness = ref != "twin"
        if ref == "twin":
            ref = test_blocks._keras_twin_reference(cls, kwargs, shape)
        layer_test_helper.run_layer_test(
            cls, kwargs, shape, ref, atol=1e-4, rtol=1e-4, run_keras_harness=harness,
            mixed_precision_policies=(MIXED_PRECISION[BACKEND],),
            # bfloat16 keeps 8 significant bits: ~0.4% per rounding, a few roundings deep
            mixed_precision_rtol=5e-2)
        names.append(cls.__name__)
    public = {name for name in kce.layers.__all__
              if getattr(kce.layers, name).__name__ == name}
    assert public <= set(names), public - set(names)
    results["layer_checks"] = sorted(set(names))


def check_lrn(results):
    """LRN and its gradient (the backend's autodiff) against the formula, float64."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 7))
    g = rng.normal(size=x.shape)
    want, want_grad = lrn_reference(x, 5, 0.3, 0.75, 1.5)
    layer = L.LocalResponseNormalization(size=5, alpha=0.3, beta=0.75, k=1.5,
                                         dtype="float64")
    y, (dx,) = value_and_grads(lambda t: layer(t), [x], g)
    results["lrn"] = {"forward": float(np.abs(y - want).max()),
                      "grad_x": float(np.abs(dx - want_grad(g)).max())}


def forward(model, x):
    """model(x) in inference mode; on JAX one compiled program (3x faster here than JAX's
    op-by-op dispatch of the portable tier's many small ops)."""
    if BACKEND != "jax":
        return numpy(model(x, training=False))
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return numpy(jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])(
        trainable, non_trainable, x))


# ---------------------------------------------------------------- autodiff per backend
def model_grads(model, x, upstream):
    """(output, [d loss / d trainable weight], d loss / d x) of loss = sum(model(x) * upstream)
    in training mode."""
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable, x):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return jnp.sum(out * upstream), out

        (_, out), (grads, dx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
            trainable, jnp.asarray(x))
        return numpy(out), [numpy(g) for g in grads], numpy(dx)
    if BACKEND == "torch":
        import torch

        model.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        out = model(xt, training=True)
        (out * torch.tensor(upstream)).sum().backward()
        return (numpy(out.detach()), [v.value.grad.numpy().copy()
                                      for v in model.trainable_variables], xt.grad.numpy())
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = model(xt, training=True)
        loss = tf.reduce_sum(out * upstream)
    grads = tape.gradient(loss, model.trainable_variables + [xt])
    return out.numpy(), [g.numpy() for g in grads[:-1]], grads[-1].numpy()


# ------------------------------------------------------------ 3. gradients (float64)
def _resnext_style(input_shape=(8, 8, 3)):
    inputs = keras.Input(input_shape)
    x = L.CrossCorrelation2D(8, 3, padding=1, use_bias=False, name="stem")(inputs)
    x = L.BottleneckBlock(4, groups=4, width_per_group=16, stride_on="3x3", name="block1")(x)
    x = L.BottleneckBlock(4, strides=2, groups=4, width_per_group=16, stride_on="3x3",
                          name="block2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x), name="resnext_style")


def _every_block(data_format):
    """Every block and layer the builders above do not reach, in one model."""
    first = data_format == "channels_first"
    inputs = keras.Input((3, 9, 9) if first else (9, 9, 3))
    x = InputNormalization("torch", input_scale=1.0, data_format=data_format)(inputs)
    x = L.CrossCorrelation2D(4, 3, padding=1, padding_mode="replicate",
                             data_format=data_format)(x)
    x = L.ResidualBlock(6, strides=2, preactivation=True, data_format=data_format)(x)
    x = L.ResidualBlock(6, shortcut="projection", data_format=data_format)(x)
    x = L.BottleneckBlock(2, strides=2, groups=2, data_format=data_format)(x)
    x = L.InceptionModule(2, 2, 3, 1, 2, 1, use_batch_norm=True, data_format=data_format)(x)
    x = L.MeanPooling2D(2, strides=1, padding=1, padding_mode="ignore", ceil_mode=True,
                        data_format=data_format)(x)
    x = L.AdaptiveAveragePooling2D((2, 3), data_format=data_format)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name=f"blocks_{data_format}")


GRAD_MODELS = {
    "lenet5": lambda: kce.models.lenet5(classifier_activation=None),
    "resnet20": lambda: kce.models.get_model("resnet20", input_shape=(8, 8, 3),
                                             classifier_activation=None),
    "vgg11_lrn": lambda: kce.models.get_model("vgg11_lrn", input_shape=(32, 32, 3),
                                              num_classes=4, filters=(4, 8, 8, 8, 8),
                                              dense_units=(16, 16), dropout=0.0,
                                              classifier_activation=None),
    "resnext_style": _resnext_style,
    "blocks_channels_last": lambda: _every_block("channels_last"),
    "blocks_channels_first": lambda: _every_block("channels_first"),
}
# TensorFlow's LRN kernel computes float64 in float32: this one compares at float32 precision
HAS_LRN = ("vgg11_lrn",)
MOVED = ("resnet20", "vgg11_lrn")  # .keras between backends: BN + our layers, LRN


def _batch(model, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(2,) + tuple(model.input_shape[1:]))
    return x, rng.normal(size=(2,) + tuple(model.output_shape[1:]))


def check_gradients(out, results):
    keras.config.set_floatx("float64")
    try:
        for seed, (name, build) in enumerate(GRAD_MODELS.items()):
            start = time.monotonic()
            keras.backend.clear_session()  # the same layer names on every backend
            keras.utils.set_random_seed(seed)
            model = build()
            model.set_weights(seeded_weights(model))
            x, upstream = _batch(model, seed)
            if name in MOVED:  # before the training-mode call below moves BN's statistics
                model.save(os.path.join(OUT, f"{BACKEND}_{name}.keras"))
                out[f"moved/{name}/x"] = x
                out[f"moved/{name}/output"] = forward(model, x)
            y, grads, dx = model_grads(model, x, upstream)
            out[f"grad/{name}/names"] = np.array([v.path for v in model.trainable_variables])
            out[f"grad/{name}/output"] = y
            out[f"grad/{name}/x"] = dx
            for i, g in enumerate(grads):
                out[f"grad/{name}/{i}"] = g
            results.setdefault("grad_models", {})[name] = round(time.monotonic() - start, 1)
        fit_lenet5(out)
    finally:
        keras.config.set_floatx("float32")


def fit_lenet5(out):
    """One plain-SGD `fit` step of LeNet-5 (float64); TensorFlow on the NumPy formulas."""
    model = kce.models.lenet5()
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    if BACKEND == "tensorflow":  # the reference path: the NumPy formulas as TF ops
        for layer in model.layers:
            if hasattr(layer, "implementation"):
                layer.implementation = "reference"
    x = rng.normal(size=(8, 28, 28, 1))
    y = rng.integers(0, 10, size=8)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    out["fit/loss"] = history.history["loss"][0]
    for i, v in enumerate(model.trainable_variables):
        out[f"fit/{i}"] = numpy(v)


# ---------------------------------------------- 4. every builder's logits (float32)
@contextlib.contextmanager
def zero_initializers():
    """Keras' random initializers draw zeros instead: `seeded_weights` replaces every weight
    right after the build, and the draws of the 66-125 M parameter models (ResNeXt-101, the
    Wide ResNets) are most of their build time on every backend."""
    classes = (random_initializers.VarianceScaling, random_initializers.RandomNormal,
               random_initializers.TruncatedNormal, random_initializers.RandomUniform)
    saved = [cls.__call__ for cls in classes]
    for cls in classes:
        cls.__call__ = lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype=dtype)
    try:
        yield
    finally:
        for cls, call in zip(classes, saved):
            cls.__call__ = call


def builder_names():
    """One builder per family (test_models.FAMILIES: the deeper and wider copies repeat the
    same blocks and layers), or every registered one with KCE_BACKENDS_ALL_BUILDERS=1."""
    if os.environ.get("KCE_BACKENDS_ALL_BUILDERS") == "1":
        return kce.models.list_models()
    return list(test_models.FAMILIES)


def check_builders(out, results):
    names = builder_names()
    seconds = {}
    with zero_initializers():
        for seed, name in enumerate(names):
            start = time.monotonic()
            shape = _small_input(name)
            model = kce.models.get_model(name, input_shape=shape, num_classes=3,
                                         classifier_activation=None)
            model.set_weights(seeded_weights(model))
            x = np.random.default_rng(seed).uniform(size=(2,) + shape).astype("float32")
            out[f"builder/{name}"] = forward(model, x)
            del model
            keras.backend.clear_session()  # the deep ones are 10-130 M parameters
            seconds[name] = round(time.monotonic() - start, 1)
    results["builders"] = seconds


# -------------------------------------------- 5. TensorFlow's .keras files, loaded here
def load_tensorflow_files(tf_out, out, results):
    if tf_out is None:
        return
    keras.config.set_floatx("float64")
    try:
        with np.load(os.path.join(tf_out, "tensorflow.npz")) as data:
            for name in MOVED:
                model = keras.models.load_model(
                    os.path.join(tf_out, f"tensorflow_{name}.keras"))
                out[f"loaded/{name}"] = forward(model, data[f"moved/{name}/x"])
    finally:
        keras.config.set_floatx("float32")
    results["loaded"] = list(MOVED)


def main(tf_out):
    results = {"backend": BACKEND, "seconds": {}}
    out = {}
    for part, run in (("layers", lambda: check_layers(results)),
                      ("lrn", lambda: check_lrn(results)),
                      ("gradients", lambda: check_gradients(out, results)),
                      ("builders", lambda: check_builders(out, results)),
                      ("loaded", lambda: load_tensorflow_files(tf_out, out, results))):
        start = time.monotonic()
        run()
        results["seconds"][part] = round(time.monotonic() - start, 1)
        print(f"{BACKEND}: {part} done in {results['seconds'][part]} s", flush=True)
    path = os.path.join(OUT, f"{BACKEND}.npz")
    np.savez(path + ".tmp.npz", **out)
    os.replace(path + ".tmp.npz", path)  # the parent never reads a half-written file
    print(json.dumps(results))


if __name__ == "__main__":
    OUT = sys.argv[1]
    main(sys.argv[2] if len(sys.argv) > 2 else None)
