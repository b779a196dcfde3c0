"""The portable tier (`keras_cnn_ext.ops.portable`) on every Keras 3 backend.

Each backend runs in its own child interpreter (`KERAS_BACKEND` is read once, at the first
Keras import): tests/_backends_child.py checks forward and gradients, through the backend's
own autodiff, against the NumPy reference in float64, and directional numerical derivatives.
Off TensorFlow the child blocks TensorFlow's import: the tier must not need it.
tests/_backends_models_child.py runs the layer-test helper on every layer and block, the
gradients of models made of them and the logits of the registered builders, per backend, and
the tests below compare them with TensorFlow's.
"""

import importlib.util
import inspect
import json
import os

import numpy as np
import pytest

import proc_helper
from keras_cnn_ext.ops import portable, reference

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_backends_child.py")
BACKENDS = ("tensorflow", "jax", "torch")
TOL = 1e-10


def _installed(backend):
    return importlib.util.find_spec(backend) is not None


@pytest.mark.parametrize("op", ("corr2d", "max_pool2d", "mean_pool2d"))
def test_portable_has_the_signature_of_every_tier(op):
    assert inspect.signature(getattr(portable, op)) == inspect.signature(getattr(reference, op))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_portable_equals_reference(backend, tmp_path):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed (requirements-test.txt installs it)")
    proc = proc_helper.start([CHILD], str(tmp_path / "child.log"), KERAS_BACKEND=backend,
                             JAX_ENABLE_X64=1 if backend == "jax" else None,
                             KCE_PACKAGE_ROOT=proc_helper.PACKAGE_ROOT)
    codes = proc_helper.finish([proc], timeout=240)
    log = proc_helper.tail(proc, 6000)
    assert codes == [0], log
    results = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
    assert results["backend"] == backend
    for op, cases in (("corr2d", 13), ("max_pool2d", 18), ("mean_pool2d", 18)):
        assert results[op]["cases"] == cases
        assert max(v for k, v in results[op].items() if k != "cases") < TOL, results[op]
    assert results["numerical"]["max_rel_diff"] < 1e-6
    if backend == "jax":
        assert max(results["jit"].values()) < TOL
    if backend != "tensorflow":
        assert results["tensorflow_imported"] is False


MODELS_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "_backends_models_child.py")
OTHERS = ("jax", "torch")
# Max |diff| / max(1, max |TensorFlow|) per array. A model of our layers and stock Dense
# (LeNet-5) is float64-exact on JAX (3e-16). Two stock layers are not, measured here in float64:
# Keras 3.15.1's torch backend computes Dense below float64 precision (~1e-7 relative; ours
# ~1e-16), and models with stock BatchNormalization differ from TensorFlow's by up to 3e-6
# (training-mode gradients) and 3e-8 (inference outputs) on JAX and torch alike, so the
# TensorFlow side is the likely one (not pinned yet); TensorFlow's LRN kernel computes float64
# in float32. Those compare at 1e-5, as tight as that allows.
EXACT = {"jax": 1e-12}
TOLERANCE = 1e-5


def _tolerance(backend, name):
    return EXACT.get(backend, TOLERANCE) if name == "lenet5" else TOLERANCE


BUILDER_TOLERANCE = 1e-4  # float32 logits of up to 50 blocks
FIT_TOLERANCE = {"jax": dict(rtol=1e-9, atol=1e-12), "torch": dict(rtol=1e-5, atol=1e-6)}


def _scaled_diff(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got - want), initial=0.0) / max(1.0, np.max(np.abs(want),
                                                                            initial=0.0)))


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory):
    """tests/_backends_models_child.py once per backend: TensorFlow first (its `.keras` files
    and numbers are what the others load and match), then JAX and torch side by side."""
    folder = str(tmp_path_factory.mktemp("backend_models"))
    runs = {}

    def run(backends, *args):
        procs = [proc_helper.start([MODELS_CHILD, folder, *args],
                                   os.path.join(folder, f"{b}.log"), KERAS_BACKEND=b,
                                   JAX_ENABLE_X64=1 if b == "jax" else None)
                 for b in backends]
        codes = proc_helper.finish(procs, timeout=600)
        for backend, proc, code in zip(backends, procs, codes):
            log = proc_helper.tail(proc, 6000)
            assert code == 0, log
            results = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
            with np.load(os.path.join(folder, f"{backend}.npz")) as data:
                runs[backend] = (results, {key: data[key] for key in data.files})

    run(["tensorflow"])
    run([b for b in OTHERS if _installed(b)], folder)
    return folder, runs


def _run(model_runs, backend):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed (requirements-test.txt installs it)")
    return model_runs[1][backend]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_layer_helper_passes_on_every_layer_and_block(backend, model_runs):
    """tests/layer_test_helper.py (config round trips, values, .keras, fit, mixed precision,
    Keras' own harness) on every public layer and block, off TensorFlow."""
    import keras_cnn_ext as kce

    results, _ = _run(model_runs, backend)
    public = {getattr(kce.layers, name).__name__ for name in kce.layers.__all__}
    assert set(results["layer_checks"]) == public | {"InputNormalization"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_local_response_normalization_matches_the_formula(backend, model_runs):
    results, _ = _run(model_runs, backend)
    # TensorFlow's kernel computes in float32; the portable one in the input's float64
    tolerance = 1e-6 if backend == "tensorflow" else 1e-13
    assert max(results["lrn"].values()) < tolerance, results["lrn"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_gradients_match_tensorflow(backend, model_runs):
    """Outputs and gradients (weights and input) of LeNet-5, ResNet-20, a VGG with LRN, a
    ResNeXt-style grouped stack and every other block, float64, training mode."""
    (tf_results, want), (results, got) = model_runs[1]["tensorflow"], _run(model_runs,
                                                                            backend)
    assert list(results["grad_models"]) == list(tf_results["grad_models"])
    worst = {}
    for name in results["grad_models"]:
        keys = [k for k in want if k.startswith(f"grad/{name}/") and k != f"grad/{name}/names"]
        assert list(got[f"grad/{name}/names"]) == list(want[f"grad/{name}/names"])
        assert len(keys) == len(want[f"grad/{name}/names"]) + 2  # + output, input gradient
        worst[name] = max(_scaled_diff(got[k], want[k]) for k in keys)
    print(f"{backend} gradients, max scaled |diff| per model: {worst}")
    for name, diff in worst.items():
        assert diff < _tolerance(backend, name), (name, diff)


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_lenet5_fit_step_matches_the_reference(backend, model_runs):
    """One plain-SGD fit step of LeNet-5 in float64 against TensorFlow on the NumPy formulas."""
    (_, want), (_, got) = model_runs[1]["tensorflow"], _run(model_runs, backend)
    tolerance = FIT_TOLERANCE[backend]
    assert np.isfinite(got["fit/loss"])
    np.testing.assert_allclose(got["fit/loss"], want["fit/loss"], **tolerance)
    fit_keys = [k for k in want if k.startswith("fit/") and k != "fit/loss"]
    assert len(fit_keys) == 10
    for key in fit_keys:
        np.testing.assert_allclose(got[key], want[key], **tolerance, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_builders_match_tensorflow(backend, model_runs):
    """The logits of the registered builders (one per family; all of them with
    KCE_BACKENDS_ALL_BUILDERS=1) for the same seeded weights, float32, inference mode."""
    (tf_results, want), (results, got) = model_runs[1]["tensorflow"], _run(model_runs,
                                                                            backend)
    assert list(results["builders"]) == list(tf_results["builders"])
    worst = {name: _scaled_diff(got[f"builder/{name}"], want[f"builder/{name}"])
             for name in results["builders"]}
    print(f"{backend} builders, max scaled |diff|: {worst}")
    assert all(np.isfinite(got[f"builder/{name}"]).all() for name in worst)
    assert max(worst.values()) < BUILDER_TOLERANCE, worst


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_keras_files_move_between_backends(backend, model_runs):
    """ResNet-20 (BN, our correlation) and a VGG with LRN: TensorFlow's `.keras` file loaded
    under `backend`, and `backend`'s file loaded here under TensorFlow, give the writer's
    outputs."""
    import keras

    folder, runs = model_runs
    (_, want), (results, got) = runs["tensorflow"], _run(model_runs, backend)
    assert results["loaded"] == ["resnet20", "vgg11_lrn"]
    for name in results["loaded"]:
        tolerance = _tolerance(backend, name)
        assert _scaled_diff(got[f"loaded/{name}"], want[f"moved/{name}/output"]) < tolerance
        model = keras.models.load_model(os.path.join(folder, f"{backend}_{name}.keras"))
        x = got[f"moved/{name}/x"]
        assert model.inputs[0].dtype == "float64"
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert _scaled_diff(y, got[f"moved/{name}/output"]) < tolerance, name


def test_implementation_other_than_auto_is_an_error_off_tensorflow(tmp_path):
    """Under torch, 'native' (and the other TF-only choices) name the argument, in the layers
    and in `kce.ops.corr2d` & co., which otherwise run the portable tier (with its gradient)."""
    if not _installed("torch"):
        pytest.skip("torch is not installed (requirements-test.txt installs it)")
    backend = "torch"
    script = tmp_path / "native.py"
    script.write_text(
        "import keras_cnn_ext as kce\n"
        "for make in (lambda: kce.layers.CrossCorrelation2D(2, 3, implementation='native'),\n"
        "             lambda: kce.layers.MaxPooling2D(2, implementation='composite'),\n"
        "             lambda: kce.layers.MeanPooling2D(2, implementation='reference')):\n"
        "    try:\n"
        "        make()\n"
        "    except ValueError as error:\n"
        "        assert 'argument `implementation`' in str(error), error\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "kce.layers.CrossCorrelation2D(2, 3)\n"
        # the functional ops: the same error, else the portable tier with its gradient
        "import numpy as np, torch\n"
        "from keras_cnn_ext.ops import reference\n"
        "x, w = np.random.default_rng(0).normal(size=(2, 5, 6, 2)), np.ones((3, 3, 2, 2))\n"
        "for op, args in ((kce.ops.corr2d, (w,)), (kce.ops.max_pool2d, (2,)),\n"
        "                 (kce.ops.mean_pool2d, (2,))):\n"
        "    try:\n"
        "        op(x, *args, implementation='native')\n"
        "    except ValueError as error:\n"
        "        assert 'argument `implementation`' in str(error), error\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "xt = torch.tensor(x, requires_grad=True)\n"
        "y = kce.ops.corr2d(xt, w, padding=1, data_format='channels_last')\n"
        "assert isinstance(y, torch.Tensor), type(y)\n"
        "y.sum().backward()\n"
        "want = reference.corr2d_grad(x, w, np.ones(y.shape), padding=1)[0]\n"
        "assert np.abs(xt.grad.numpy() - want).max() < 1e-12\n"
        "print('ok')\n")
    proc = proc_helper.start([str(script)], str(tmp_path / "native.log"), KERAS_BACKEND=backend)
    assert proc_helper.finish([proc], timeout=120) == [0], proc_helper.tail(proc)
