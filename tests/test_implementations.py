"""The three implementations of each op have one signature and are called the same way.

`reference` (NumPy; `reference_tf` runs it as TF ops), `composite` and `native` take the
normalised arguments of `geometry.normalize_corr_args` / `normalize_pool_args`, and
`keras_cnn_ext.ops.nn` hands every one of them exactly the same call.
"""

import inspect
import types

import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import composite, geometry, native, nn, reference, reference_tf

OPS = ("corr2d", "max_pool2d", "mean_pool2d")
MODULES = (reference, reference_tf, composite, native)


@pytest.mark.parametrize("op", OPS)
def test_one_signature_per_op(op):
    signatures = {module.__name__: inspect.signature(getattr(module, op)) for module in MODULES}
    first = signatures["keras_cnn_ext.ops.reference"]
    for name, signature in signatures.items():
        assert signature == first, f"{name}.{op}{signature} != reference.{op}{first}"


def test_the_table_holds_every_implementation():
    assert set(nn.IMPLEMENTATIONS) == set(geometry.IMPLEMENTATIONS) - {"auto"}
    assert nn.IMPLEMENTATIONS["native"] is native
    assert nn.IMPLEMENTATIONS["composite"] is composite


def _recorder(calls):
    def record(op):
        def fn(*args, **kwargs):
            calls.append((op, tuple(a for a in args if not tf.is_tensor(a)), kwargs))
            return "result"
        return fn
    return types.SimpleNamespace(**{op: record(op) for op in OPS})


@pytest.mark.parametrize("implementation", ["reference", "composite", "native"])
def test_nn_normalises_once_and_calls_every_implementation_alike(implementation,
                                                                 monkeypatch):
    calls = []
    monkeypatch.setitem(nn.IMPLEMENTATIONS, implementation, _recorder(calls))
    monkeypatch.setattr(native, "available", lambda: True)
    x = np.zeros((1, 3, 6, 6), "float32")
    kernel = np.zeros((3, 2, 3, 4), "float32")
    assert kce.ops.corr2d(x, kernel, [2, 1], "same", padding_mode="Reflect",
                          mode="CONVOLUTION", data_format="channels_first",
                          implementation=implementation) == "result"
    assert kce.ops.max_pool2d(x, 3, padding=1, padding_mode="IGNORE",
                              data_format="channels_first",
                              implementation=implementation) == "result"
    assert kce.ops.mean_pool2d(x, (2, 3), (1, 2), ((1, 0), (0, 2)),
                               data_format="channels_first",
                               implementation=implementation) == "result"
    assert calls == [
        ("corr2d", ((2, 1), ((1, 1), (0, 1)), "reflect", "convolution", "channels_first"), {}),
        ("max_pool2d", ((3, 3), (3, 3), ((1, 1), (1, 1)), "ignore", "channels_first", False),
         {}),
        ("mean_pool2d", ((2, 3), (1, 2), ((1, 0), (0, 2)), "zeros", "channels_first", False),
         {}),
    ]
