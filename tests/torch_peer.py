"""PyTorch and torchvision as the tests' peer, through the package's own on-request import
(`keras_cnn_ext.models._torch`: the torchvision::nms schema fix for a CPU-only torch), with
torch single-threaded so it shares the CPU fairly with TensorFlow."""

import functools

from keras_cnn_ext.models import _torch


@functools.lru_cache(maxsize=None)
def torch():
    module = _torch.torch("The tests' PyTorch peer")
    module.set_num_threads(1)
    return module


def torchvision():
    torch()
    return _torch.torchvision("The tests' PyTorch peer")
