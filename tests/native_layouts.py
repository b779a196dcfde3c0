"""What the tests of the compiled ops share: both CPU algorithms as a fixture, and the two
4-D layouts of the op arguments."""

import numpy as np
import pytest

# "direct": the CPU kernels run the per-element functors the CUDA kernels run
ALGO_ENV = "KERAS_CNN_EXT_NATIVE_CPU_ALGO"


@pytest.fixture(params=["fast", "direct"])
def algo(request, monkeypatch):
    if request.param == "direct":
        monkeypatch.setenv(ALGO_ENV, "direct")
    else:
        monkeypatch.delenv(ALGO_ENV, raising=False)
    return request.param


def to_format(a, data_format):
    """NHWC -> the layout of `data_format`."""
    return a if data_format == "channels_last" else np.transpose(a, (0, 3, 1, 2))


def from_format(a, data_format):
    """The layout of `data_format` -> NHWC."""
    a = np.asarray(a)
    return a if data_format == "channels_last" else np.transpose(a, (0, 2, 3, 1))
