"""The package layout of issue 18: training/ holds the training modules (old public paths still
work), the distributed-search modules import one way, and the private KerasTuner API is
admitted only in the versions it is tested with."""

import ast
import pathlib

import pytest

import keras_cnn_ext as kce
from keras_cnn_ext.distribute import _tuning_common

PACKAGE = pathlib.Path(kce.__file__).parent


def test_training_modules_live_in_the_training_subpackage():
    assert not [p.name for p in PACKAGE.glob("*.py")
                if p.name.startswith(("training", "checkpointing"))]
    assert sorted(p.stem for p in (PACKAGE / "training").glob("*.py")) == [
        "__init__", "checkpointing", "config", "fit", "inputs", "lock"]
    from keras_cnn_ext.training import checkpointing, config, fit

    assert kce.training.train is fit.train and kce.training.evaluate is fit.evaluate
    assert kce.checkpointing is checkpointing  # the documented lazy attribute
    assert config.DEFAULTS["batch_size"] == 16


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_import_circle_between_the_search_and_its_chief_and_workers():
    public = "keras_cnn_ext.distribute.tuning"
    for name in ("_tuning_chief", "_tuning_worker", "_tuning_common"):
        assert public not in _imports(PACKAGE / "distribute" / f"{name}.py"), name
    assert "keras_cnn_ext.distribute._tuning_common" in _imports(
        PACKAGE / "distribute" / "tuning.py")


@pytest.mark.parametrize("version", ["1.3.4", "1.5.0", "2.0.0rc1"])
def test_private_keras_tuner_api_outside_the_tested_versions_is_a_clear_error(version):
    with pytest.raises(ImportError, match=rf"tested with keras-tuner 1\.4\.x; installed: "
                                          rf"keras-tuner {version}\. .*keras-tuner>=1\.4,<1\.5"):
        _tuning_common.check_keras_tuner(version)


def test_the_installed_keras_tuner_is_accepted_and_so_is_its_series():
    keras_tuner = pytest.importorskip("keras_tuner")
    for version in (keras_tuner.__version__, "1.4.0", "1.4.8", "1.4.9.dev0"):
        _tuning_common.check_keras_tuner(version)
