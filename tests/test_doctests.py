"""The docstring examples of every module of the package run as doctests.

Every public module of the core (`ops`, `layers`, `models`, `analysis`) must have at least one
example; the examples of every other module run too, wherever there are some.
"""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import keras_cnn_ext

MUST_HAVE_EXAMPLES = ("keras_cnn_ext.ops", "keras_cnn_ext.layers", "keras_cnn_ext.models",
                      "keras_cnn_ext.analysis")


def _python_modules():
    names = ["keras_cnn_ext"]
    for info in pkgutil.walk_packages(keras_cnn_ext.__path__, "keras_cnn_ext."):
        spec = importlib.util.find_spec(info.name)
        # not the compiled op library, not `python -m keras_cnn_ext` (it runs the CLI)
        if spec.origin.endswith(".py") and not info.name.endswith(".__main__"):
            names.append(info.name)
    return names


MODULES = _python_modules()


def _is_public(name):
    return not any(part.startswith("_") for part in name.split("."))


def test_the_walk_finds_the_core_modules():
    assert {"keras_cnn_ext.ops.geometry", "keras_cnn_ext.layers.factory",
            "keras_cnn_ext.models.registry", "keras_cnn_ext.analysis"} <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name, digits_data_dir, monkeypatch):
    # the data examples read the session's prepared folder, never ~/tensorflow_datasets
    monkeypatch.setenv("TFDS_DATA_DIR", digits_data_dir)
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} failing example(s) in {module_name}"
    if _is_public(module_name) and module_name.startswith(MUST_HAVE_EXAMPLES):
        assert result.attempted > 0, f"{module_name} has no runnable example"
