"""Shared pytest fixtures of the keras_cnn_ext test suite (kept minimal on purpose)."""

import os
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's node id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _keras_globals():
    """Every test starts with Keras' defaults and cannot leak a changed global setting."""
    policy = keras.config.dtype_policy()
    data_format = keras.config.image_data_format()
    yield
    keras.config.set_dtype_policy(policy)
    keras.config.set_image_data_format(data_format)
