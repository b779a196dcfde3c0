"""The shared layer-test helper (docs/testing.md): every public layer and block passes it.

`run_layer_test` runs Keras' own harness, `keras/src/testing/test_case.py::run_layer_test`
(the checks Keras applies to its own layers): serialization round trip with the same attributes
(`dir()`), `build()` creating every weight a call creates, the symbolic call, the eager call, a
compiled training step (`jit_compile="auto"`, so XLA where the layer supports it) and mixed
precision with ``dtype="mixed_float16"`` (the output dtype Keras predicts, float32 variables).
and the checks Keras' harness does not make:

1. config round trip through JSON and Keras' registered-object serialization, before and after
   building;
2. symbolic call: `keras.Input -> layer` has the shape `compute_output_shape` predicts;
3. eager call: the output has the predicted shape and equals a NumPy reference (float64);
4. `.keras` save / load round trip in `tmp_path`: same class, same config, identical outputs;
5. one `model.fit` step on a tiny batch: the loss is finite and the weights change (a layer
   without weights gets a trainable Dense layer in front of it, so its backward pass is used);
6. mixed precision, both through the constructor (``dtype="mixed_float16"``) and the global
   policy: float16 outputs close to the float32 ones, variables float32, the global policy
   restored afterwards even if the check fails (`mixed_precision_policies` may add
   "mixed_bfloat16", checked the same way).

Backend-neutral (tensors are read with `keras.ops.convert_to_numpy`, dtypes compared through
`keras.backend.standardize_dtype`): tests/_backends_models_child.py runs it under JAX and torch.
"""

import json
import pathlib
import tempfile

import keras
import numpy as np
from keras.src.testing.test_case import TestCase

# Keras' own layer harness (a unittest.TestCase used for its assertion methods only).
_KERAS_HARNESS = TestCase()


def _random_inputs(input_shape, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=input_shape).astype("float32")


def _numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _dtype(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _json_round_trip(config):
    return json.loads(json.dumps(config))


def _canonical(config):
    """Configs compared as JSON (tuples and lists are the same thing after a save)."""
    return json.dumps(config, sort_keys=True)


def check_config_round_trip(layer_cls, layer):
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert type(revived) is layer_cls
    assert _canonical(revived.get_config()) == _canonical(config)

    revived_json = layer_cls.from_config(_json_round_trip(config))
    assert _canonical(revived_json.get_config()) == _canonical(config)

    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == keras.saving.get_registered_name(layer_cls)
    deserialized = keras.saving.deserialize_keras_object(_json_round_trip(serialized))
    assert type(deserialized) is layer_cls
    assert _canonical(deserialized.get_config()) == _canonical(config)


def _model(layer, input_shape):
    inputs = keras.Input(shape=tuple(input_shape[1:]))
    return keras.Model(inputs, layer(inputs))


def run_layer_test(layer_cls, init_kwargs, input_shape, reference_fn=None, *, tmp_path=None,
                   expected_output_shape=None, input_data=None, weights=None, seed=0,
                   rtol=1e-5, atol=1e-5, run_saving=True, run_fit=True,
                   run_mixed_precision=True, mixed_precision_rtol=2e-2,
                   mixed_precision_policies=("mixed_float16",), run_keras_harness=True):
    """Runs the standard checks on `layer_cls(**init_kwargs)`.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_shape: the full input shape, batch included, in the layer's data format.
        reference_fn: `reference_fn(x, weights) -> np.ndarray`, the expected output for the
            float64 input `x` and the layer's weights (a list of float64 arrays, in the order
            of `layer.get_weights()`); None skips the value check.
        tmp_path: a directory for the `.keras` file (pytest's `tmp_path`; default: a
            temporary directory removed afterwards).
        expected_output_shape: if given, the expected eager output shape.
        input_data: the eager input (default: uniform in [-1, 1], seeded by `seed`).
        weights: weights to set after building (default: the initializers' values).
        rtol, atol: tolerance of the eager call against the reference (atol is scaled by the
            reference's largest magnitude when that exceeds 1).
        mixed_precision_rtol: relative tolerance of float16 against float32 outputs.
        mixed_precision_policies: the policies checked, "mixed_float16" and / or
            "mixed_bfloat16".
        run_keras_harness: also run Keras' own `run_layer_test` (step 7).

    Returns:
        The built float32 layer.
    """
    input_shape = tuple(input_shape)
    keras.utils.set_random_seed(seed)

    # 1. config round trip, before and after building
    layer = layer_cls(**init_kwargs)
    check_config_round_trip(layer_cls, layer)

    # 2. symbolic call
    symbolic_in = keras.Input(shape=input_shape[1:])
    symbolic_out = layer(symbolic_in)
    assert tuple(symbolic_out.shape) == tuple(
        layer.compute_output_shape((None,) + input_shape[1:])), (
        f"symbolic output shape {symbolic_out.shape} != compute_output_shape "
        f"{layer.compute_output_shape((None,) + input_shape[1:])}")
    check_config_round_trip(layer_cls, layer)
    if weights is not None:
        layer.set_weights(weights)

    # 3. eager call against the reference
    x = _random_inputs(input_shape, seed) if input_data is None else np.asarray(
        input_data, "float32")
    y = layer(x)
    assert _dtype(y) == "float32"
    y = _numpy(y)
    assert y.shape == tuple(layer.compute_output_shape(input_shape))
    if expected_output_shape is not None:
        assert y.shape == tuple(expected_output_shape)
    if reference_fn is not None:
        expected = np.asarray(reference_fn(
            x.astype("float64"), [np.asarray(w, "float64") for w in layer.get_weights()]))
        assert expected.shape == y.shape
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(y, expected, rtol=rtol, atol=atol * scale)

    model = _model(layer, input_shape)
    np.testing.assert_array_equal(_numpy(model(x)), y)

    # 4. .keras save / load round trip
    if run_saving:
        if tmp_path is None:
            with tempfile.TemporaryDirectory() as directory:
                _check_saving(layer_cls, layer, model, x, y, pathlib.Path(directory))
        else:
            _check_saving(layer_cls, layer, model, x, y, pathlib.Path(tmp_path))

    # 5. one fit step
    if run_fit:
        _check_fit_step(layer_cls, init_kwargs, layer, x, input_shape, seed)

    # 6. mixed precision
    if run_mixed_precision:
        for policy in mixed_precision_policies:
            _check_mixed_precision(layer_cls, init_kwargs, layer, x, y, mixed_precision_rtol,
                                   policy)

    # 7. Keras' own checks (last: its random inputs must not shift the seeded ones above)
    if run_keras_harness:
        _KERAS_HARNESS.run_layer_test(
            layer_cls, init_kwargs, input_shape=input_shape, expected_output_shape=y.shape,
            run_training_check=run_fit, run_mixed_precision_check=run_mixed_precision)
    return layer


def _check_saving(layer_cls, layer, model, x, y, directory):
    path = str(directory / f"{layer_cls.__name__}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_layer = loaded.layers[-1]
    assert type(loaded_layer) is layer_cls
    assert _canonical(loaded_layer.get_config()) == _canonical(layer.get_config())
    for original, revived in zip(layer.weights, loaded_layer.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(revived),
                                      keras.ops.convert_to_numpy(original))
    np.testing.assert_array_equal(_numpy(loaded(x)), y)


def _check_fit_step(layer_cls, init_kwargs, layer, x, input_shape, seed):
    keras.utils.set_random_seed(seed + 1)
    fit_layer = layer_cls(**init_kwargs)
    inputs = keras.Input(shape=input_shape[1:])
    hidden = inputs
    pre = None
    if not layer.trainable_weights:
        # A trainable layer in front, so that the layer's gradient is what updates it.
        pre = keras.layers.Dense(input_shape[-1], kernel_initializer="glorot_uniform",
                                 bias_initializer="ones")
        hidden = pre(hidden)
    outputs = fit_layer(hidden)
    model = keras.Model(inputs, outputs)
    if layer.weights:
        fit_layer.set_weights(layer.get_weights())
    watched = fit_layer.trainable_weights if fit_layer.trainable_weights else (
        pre.trainable_weights)
    before = [keras.ops.convert_to_numpy(w).copy() for w in watched]
    rng = np.random.default_rng(seed + 2)
    target = rng.uniform(-1.0, 1.0, size=tuple(outputs.shape[1:])).astype("float32")
    target = np.broadcast_to(target, (x.shape[0],) + target.shape).copy()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    history = model.fit(x, target, batch_size=x.shape[0], epochs=1, verbose=0, shuffle=False)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"fit step loss is not finite: {loss}"
    after = [keras.ops.convert_to_numpy(w) for w in watched]
    for w, b, a in zip(watched, before, after):
        assert np.all(np.isfinite(a)), f"weight {w.path} is not finite after one fit step"
        assert not np.array_equal(a, b), f"weight {w.path} did not change in one fit step"


def _check_mixed_precision(layer_cls, init_kwargs, layer, x, y32, rtol, policy):
    _check_float16(layer_cls(**{**init_kwargs, "dtype": policy}), layer, x, y32, rtol)
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(policy)
        _check_float16(layer_cls(**init_kwargs), layer, x, y32, rtol)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


def _check_float16(layer16, layer, x, y32, rtol):
    """A mixed_float16 (or mixed_bfloat16) layer: float16 (bfloat16) compute and output,
    float32 variables, values close."""
    half = layer16.dtype_policy.name.split("_")[1]
    assert layer16.compute_dtype == half
    layer16(x)  # builds it
    for w in layer16.weights:
        assert w.dtype == "float32", f"variable {w.path} should stay float32"
    if layer.weights:
        layer16.set_weights(layer.get_weights())
    y16 = layer16(x)
    assert _dtype(y16) == half, f"mixed_{half} output dtype is {y16.dtype}"
    y16 = _numpy(y16).astype("float32")
    scale = max(1.0, float(np.max(np.abs(y32), initial=0.0)))
    np.testing.assert_allclose(y16, y32, rtol=rtol, atol=rtol * scale)
