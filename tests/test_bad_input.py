"""Bad input (issue 2, item 6): a ValueError (a TypeError for an input tensor that is not a
number) that names the argument and the received value, raised at construction or at build /
trace time; never a raw TensorFlow shape error and never a crash. Each case is checked on the layers and on the functional ops."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn_ext as kce
from keras_cnn_ext.ops import dispatch, geometry, reference

L = kce.layers
X = np.ones((1, 5, 5, 2), "float32")
KERNEL = np.ones((3, 3, 2, 4), "float32")


def received(name, value):
    """Regex: the message names `name` and shows the received value."""
    return rf"`{re.escape(name)}`[\s\S]*Received: {re.escape(name)}={re.escape(repr(value))}"


# ------------------------------------------------------------------------------- filters
@pytest.mark.parametrize("value, exc", [
    (0, ValueError), (-1, ValueError), (-64, ValueError),
    (2.0, ValueError), (2.5, ValueError), ("3", ValueError), (None, ValueError), (True, ValueError),
])
def test_filters(value, exc):
    with pytest.raises(exc, match=received("filters", value)):
        L.CrossCorrelation2D(value, 3)


INTEGER_ARGUMENTS = [
    ("filters", lambda v: L.CrossCorrelation2D(v, 3)),
    ("filters", lambda v: L.ResidualBlock(v)),
    ("filters", lambda v: L.BottleneckBlock(v)),
    ("expansion", lambda v: L.BottleneckBlock(4, expansion=v)),
    ("filters_5x5", lambda v: L.InceptionModule(1, 1, 1, 1, v, 1)),
    ("num_classes", lambda v: kce.models.lenet5(num_classes=v)),
]


@pytest.mark.parametrize("name, make", INTEGER_ARGUMENTS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(INTEGER_ARGUMENTS)])
@pytest.mark.parametrize("value", [2.5, 2.0, "3", None, False, 0, -2])
def test_integer_arguments_are_checked_the_same_everywhere(name, make, value):
    """One check (`geometry.normalize_int`): the same exception and message for the same bad
    value in every layer, block and builder (a ValueError, as Keras raises for a float
    `filters`)."""
    with pytest.raises(ValueError) as info:
        make(value)
    assert str(info.value) == (f"Invalid value for argument `{name}`. Expected an integer >= 1. "
                               f"Received: {name}={value!r}")


# ------------------------------------------------------- kernel_size / strides / pool_size
BAD_SIZES = [
    (0, ValueError), (-1, ValueError), ((3, 0), ValueError), ((3, -2), ValueError),
    ((3,), ValueError), ((1, 2, 3), ValueError),
    (2.0, ValueError), ((3, 2.5), ValueError), ("3", ValueError), (None, ValueError),
    ((3, "2"), ValueError),
]


@pytest.mark.parametrize("value, exc", BAD_SIZES)
def test_kernel_size(value, exc):
    with pytest.raises(exc, match=received("kernel_size", value)):
        L.CrossCorrelation2D(2, value)


@pytest.mark.parametrize("value, exc", BAD_SIZES)
def test_corr_strides(value, exc):
    with pytest.raises(exc, match=received("strides", value)):
        L.CrossCorrelation2D(2, 3, strides=value)
    with pytest.raises(exc, match=received("strides", value)):
        kce.ops.corr2d(X, KERNEL, strides=value)


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.MeanPooling2D])
@pytest.mark.parametrize("value, exc", BAD_SIZES)
def test_pool_size(value, exc, cls):
    with pytest.raises(exc, match=received("pool_size", value)):
        cls(value)


@pytest.mark.parametrize("op", [kce.ops.max_pool2d, kce.ops.mean_pool2d])
@pytest.mark.parametrize("value, exc", BAD_SIZES)
def test_pool_size_ops(value, exc, op):
    with pytest.raises(exc, match=received("pool_size", value)):
        op(X, value)


@pytest.mark.parametrize("value, exc", [v for v in BAD_SIZES if v[0] is not None])
def test_pool_strides(value, exc):
    with pytest.raises(exc, match=received("strides", value)):
        L.MaxPooling2D(2, strides=value)
    with pytest.raises(exc, match=received("strides", value)):
        kce.ops.mean_pool2d(X, 2, strides=value)


def test_reference_rejects_bad_sizes_too():
    with pytest.raises(ValueError, match=received("strides", 0)):
        reference.corr2d(np.ones((4, 4)), np.ones((2, 2)), strides=0)
    with pytest.raises(ValueError, match=received("pool_size", 1.5)):
        reference.max_pool2d(np.ones((4, 4)), 1.5)


# -------------------------------------------------------------------------------- padding
BAD_PADDINGS = [
    ("bogus", ValueError), ("causal", ValueError), ("", ValueError),
    (-1, ValueError), ((1, -1), ValueError), (((1, 2), (3, -4)), ValueError),
    (2**62, ValueError), ((0, 2**62), ValueError), (((0, 0), (2**62, 0)), ValueError),
    ((1, 2, 3), ValueError), (((1, 2, 3), (1, 1)), ValueError),
    (1.5, ValueError), ((1, 1.5), ValueError), (None, ValueError), (b"same", ValueError),
    (((1, 0.5), (1, 1)), ValueError),
]


@pytest.mark.parametrize("value, exc", BAD_PADDINGS, ids=repr)
def test_padding_layers(value, exc):
    for make in (lambda: L.CrossCorrelation2D(2, 3, padding=value),
                 lambda: L.MaxPooling2D(2, padding=value),
                 lambda: L.MeanPooling2D(2, padding=value)):
        with pytest.raises(exc, match=received("padding", value)):
            make()


@pytest.mark.parametrize("value, exc", BAD_PADDINGS, ids=repr)
def test_padding_ops(value, exc):
    with pytest.raises(exc, match=received("padding", value)):
        kce.ops.corr2d(X, KERNEL, padding=value)
    with pytest.raises(exc, match=received("padding", value)):
        kce.ops.max_pool2d(X, 2, padding=value)
    with pytest.raises(exc, match=received("padding", value)):
        reference.corr2d(np.ones((4, 4)), np.ones((2, 2)), padding=value)


def test_padding_2_pow_62_in_output_size():
    with pytest.raises(ValueError, match=received("padding", 2**62)):
        kce.ops.output_size((5, 5), 3, padding=2**62)
    with pytest.raises(ValueError, match=received("padding", -1)):
        kce.ops.output_size(5, 3, padding=-1)
    with pytest.raises(ValueError, match=received("padding", 2**62)):
        kce.ops.output_size(5, 3, padding=2**62)
    with pytest.raises(ValueError, match=re.escape("Received: padding=(0, 4611686018427387904)")):
        kce.ops.output_size(5, 3, padding=(0, 2**62))


@pytest.mark.parametrize("pool_size, value", [
    (2, 2), (2, 3), (3, (1, 3)), ((3, 2), ((0, 0), (0, 2))), (2, ((2, 0), (0, 0))),
])
@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.MeanPooling2D])
def test_pool_padding_not_smaller_than_window(cls, pool_size, value):
    with pytest.raises(ValueError, match=received("padding", value)):
        cls(pool_size, padding=value)
    op = kce.ops.max_pool2d if cls is L.MaxPooling2D else kce.ops.mean_pool2d
    with pytest.raises(ValueError, match=received("padding", value)):
        op(np.ones((1, 6, 6, 1)), pool_size, padding=value)


def test_reflect_padding_not_smaller_than_input():
    x = np.ones((1, 3, 6, 1), "float32")
    with pytest.raises(ValueError, match=r"`padding`[\s\S]*input size 3[\s\S]*Received: "
                                         r"padding=\(\(3, 3\), \(3, 3\)\)"):
        kce.ops.corr2d(x, np.ones((3, 3, 1, 1), "float32"), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"`padding`[\s\S]*input size 3"):
        L.CrossCorrelation2D(1, 3, padding=3, padding_mode="reflect")(x)
    with pytest.raises(ValueError, match=r"`padding`[\s\S]*input size 3"):
        reference.corr2d(x, np.ones((3, 3, 1, 1)), padding=3, padding_mode="reflect")


# ------------------------------------------------- padding_mode / mode / implementation / df
@pytest.mark.parametrize("value", ["circular", "ignore", "", None, 0])
def test_corr_padding_mode(value):
    with pytest.raises(ValueError, match=received("padding_mode", value)):
        L.CrossCorrelation2D(2, 3, padding_mode=value)
    with pytest.raises(ValueError, match=received("padding_mode", value)):
        kce.ops.corr2d(X, KERNEL, padding_mode=value)


@pytest.mark.parametrize("value", ["replicate", "reflect", "same", None])
def test_pool_padding_mode(value):
    with pytest.raises(ValueError, match=received("padding_mode", value)):
        L.MaxPooling2D(2, padding_mode=value)
    with pytest.raises(ValueError, match=received("padding_mode", value)):
        L.MeanPooling2D(2, padding_mode=value)
    with pytest.raises(ValueError, match=received("padding_mode", value)):
        kce.ops.mean_pool2d(X, 2, padding_mode=value)


@pytest.mark.parametrize("value", ["conv", "correlation", "", None])
def test_mode(value):
    with pytest.raises(ValueError, match=received("mode", value)):
        L.CrossCorrelation2D(2, 3, mode=value)
    with pytest.raises(ValueError, match=received("mode", value)):
        kce.ops.corr2d(X, KERNEL, mode=value)


@pytest.mark.parametrize("value", ["cuda", "numpy", "", None])
def test_implementation(value):
    with pytest.raises(ValueError, match=received("implementation", value)):
        L.CrossCorrelation2D(2, 3, implementation=value)
    with pytest.raises(ValueError, match=received("implementation", value)):
        L.MaxPooling2D(2, implementation=value)
    with pytest.raises(ValueError, match=received("implementation", value)):
        kce.ops.corr2d(X, KERNEL, implementation=value)
    with pytest.raises(ValueError, match=received("implementation", value)):
        kce.ops.mean_pool2d(X, 2, implementation=value)


def test_implementation_environment_variable(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=rf"{dispatch.ENV_VAR}[\s\S]*"
                                         rf"Received: {dispatch.ENV_VAR}='fastest'"):
        kce.ops.corr2d(X, KERNEL)


@pytest.mark.parametrize("value", ["NHWC", "channels_middle", ""])
def test_data_format(value):
    with pytest.raises(ValueError, match=received("data_format", value)):
        L.CrossCorrelation2D(2, 3, data_format=value)
    with pytest.raises(ValueError, match=received("data_format", value)):
        L.MeanPooling2D(2, data_format=value)
    with pytest.raises(ValueError, match=received("data_format", value)):
        kce.ops.corr2d(X, KERNEL, data_format=value)
    with pytest.raises(ValueError, match=received("data_format", value)):
        kce.ops.max_pool2d(X, 2, data_format=value)


# ----------------------------------------------------- window larger than the padded input
def _fit_message(size, window, stride):
    return (rf"input size {size}[\s\S]*kernel size {window}[\s\S]*stride {stride}"
            rf"[\s\S]*padding")


def test_kernel_larger_than_padded_input_ops():
    with pytest.raises(ValueError, match=_fit_message(5, 7, 2)):
        kce.ops.corr2d(X, np.ones((7, 3, 2, 1), "float32"), strides=2)
    with pytest.raises(ValueError, match=_fit_message(5, 8, 1) + r"[\s\S]*\(1, 1\)"):
        kce.ops.corr2d(X, np.ones((3, 8, 2, 1), "float32"), padding=1)
    with pytest.raises(ValueError, match=_fit_message(5, 6, 6)):
        kce.ops.max_pool2d(X, 6)
    with pytest.raises(ValueError, match=_fit_message(2, 4, 3)):
        kce.ops.mean_pool2d(np.ones((1, 2, 5, 1)), 4, strides=3, padding=((0, 1), (1, 1)))
    with pytest.raises(ValueError, match=_fit_message(4, 5, 1)):
        reference.corr2d(np.ones((4, 4)), np.ones((5, 5)))


def test_kernel_larger_than_padded_input_layers():
    layer = L.CrossCorrelation2D(2, 7, strides=2, padding=(0, 1))
    with pytest.raises(ValueError, match=_fit_message(5, 7, 2)):
        layer(X)
    with pytest.raises(ValueError, match=_fit_message(5, 7, 2)):
        L.CrossCorrelation2D(2, 7, strides=2)(keras.Input((5, 5, 2)))
    with pytest.raises(ValueError, match=_fit_message(5, 7, 2)):
        L.CrossCorrelation2D(2, 7, strides=2).compute_output_shape((None, 5, 5, 2))
    with pytest.raises(ValueError, match=_fit_message(5, 6, 6)):
        L.MaxPooling2D(6)(X)
    with pytest.raises(ValueError, match=_fit_message(2, 3, 1)):
        L.MeanPooling2D(3, strides=1, data_format="channels_first")(keras.Input((4, 2, 9)))


def test_window_fits_only_thanks_to_padding():
    assert L.CrossCorrelation2D(1, 7, padding=1)(np.ones((1, 5, 5, 1), "float32")).shape == (
        1, 1, 1, 1)


# ---------------------------------------------------------------------------------- rank
@pytest.mark.parametrize("shape", [(5, 5, 2), (1, 1, 5, 5, 2), (25,)])
def test_rank_ops(shape):
    x = np.ones(shape, "float32")
    pattern = rf"`x`[\s\S]*4-D[\s\S]*Received: x with shape {re.escape(str(shape))}"
    with pytest.raises(ValueError, match=pattern):
        kce.ops.corr2d(x, KERNEL)
    with pytest.raises(ValueError, match=pattern):
        kce.ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=pattern):
        kce.ops.mean_pool2d(x, 2)


@pytest.mark.parametrize("shape", [(3, 3, 2), (3, 3, 2, 4, 1)])
def test_rank_of_the_kernel(shape):
    with pytest.raises(ValueError, match=rf"`kernel`[\s\S]*Received: kernel with shape "
                                         rf"{re.escape(str(shape))}"):
        kce.ops.corr2d(X, np.ones(shape, "float32"))


@pytest.mark.parametrize("shape", [(5, 5, 2), (1, 1, 5, 5, 2)])
@pytest.mark.parametrize("make", [lambda: L.CrossCorrelation2D(2, 3), lambda: L.MaxPooling2D(2),
                                  lambda: L.MeanPooling2D(2)], ids=["corr", "max", "mean"])
def test_rank_layers(make, shape):
    # Keras' InputSpec message names the layer input and the received rank
    with pytest.raises(ValueError, match=rf"ndim=4[\s\S]*found ndim={len(shape)}"):
        make()(np.ones(shape, "float32"))
    with pytest.raises(ValueError, match=rf"ndim=4[\s\S]*found ndim={len(shape)}"):
        make()(keras.Input(shape[1:]))


# ------------------------------------------------------------------------------ channels
def test_channel_mismatch_between_input_and_kernel():
    kernel = np.ones((3, 3, 3, 4), "float32")
    with pytest.raises(ValueError, match=r"`x`[\s\S]*3 input channels[\s\S]*\(3, 3, 3, 4\)"
                                         r"[\s\S]*Received: x with shape \(1, 5, 5, 2\)"):
        kce.ops.corr2d(X, kernel)
    x_cf = np.ones((1, 2, 5, 5), "float32")
    with pytest.raises(ValueError, match=r"Received: x with shape \(1, 2, 5, 5\)"):
        kce.ops.corr2d(x_cf, kernel, data_format="channels_first")


def test_input_channels_changed_after_build():
    layer = L.CrossCorrelation2D(2, 3)
    layer(X)
    with pytest.raises(ValueError, match=r"axis -1 of input shape to have value 2[\s\S]*"
                                         r"\(1, 5, 5, 3\)"):
        layer(np.ones((1, 5, 5, 3), "float32"))
    layer_cf = L.CrossCorrelation2D(2, 3, data_format="channels_first")
    layer_cf(np.ones((1, 2, 5, 5), "float32"))
    with pytest.raises(ValueError, match=r"axis 1 of input shape to have value 2[\s\S]*"
                                         r"\(1, 4, 5, 5\)"):
        layer_cf(np.ones((1, 4, 5, 5), "float32"))


def test_input_channels_changed_after_build_in_a_model():
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, L.CrossCorrelation2D(2, 3)(inputs))
    with pytest.raises(ValueError, match=r"\(1, 6, 6, 4\)"):
        model(np.ones((1, 6, 6, 4), "float32"))


def test_zero_channels():
    with pytest.raises(ValueError, match=r"`x`[\s\S]*at least one channel[\s\S]*"
                                         r"Received: x with shape \(1, 5, 5, 0\)"):
        kce.ops.corr2d(np.ones((1, 5, 5, 0), "float32"), np.ones((3, 3, 0, 2), "float32"))
    for op in (kce.ops.max_pool2d, kce.ops.mean_pool2d):
        with pytest.raises(ValueError, match=r"`x`[\s\S]*at least one channel[\s\S]*"
                                             r"Received: x with shape \(1, 5, 5, 0\)"):
            op(np.ones((1, 5, 5, 0), "float32"), 2)
    for layer in (L.CrossCorrelation2D(2, 3), L.MaxPooling2D(2), L.MeanPooling2D(2)):
        with pytest.raises(ValueError, match=r"channel[\s\S]*Received: input_shape="
                                             r"\(1, 5, 5, 0\)"):
            layer(np.ones((1, 5, 5, 0), "float32"))
    with pytest.raises(ValueError, match=r"channel[\s\S]*Received: input_shape="
                                         r"\(None, 5, 5, 0\)"):
        L.CrossCorrelation2D(2, 3)(keras.Input((5, 5, 0)))


def test_unknown_channels_at_build():
    layer = L.CrossCorrelation2D(2, 3)
    with pytest.raises(ValueError, match=r"channel[\s\S]*Received: input_shape="
                                         r"\(None, 5, 5, None\)"):
        layer.build((None, 5, 5, None))


# -------------------------------------------------------------------------- string input
@pytest.mark.parametrize("value", ["abc", b"abc", np.array([[[["a"]]]]),
                                   tf.fill((1, 4, 4, 1), "a"), np.full((1, 4, 4, 1), None)],
                         ids=["str", "bytes", "numpy-str", "tf-string", "numpy-object"])
def test_string_input_ops(value):
    pattern = r"`x`[\s\S]*floating-point[\s\S]*Received: x"
    with pytest.raises(TypeError, match=pattern):
        kce.ops.max_pool2d(value, 2)
    with pytest.raises(TypeError, match=pattern):
        kce.ops.mean_pool2d(value, 2)
    with pytest.raises(TypeError, match=pattern):
        kce.ops.corr2d(value, np.ones((1, 1, 1, 1), "float32"))


def test_string_kernel():
    with pytest.raises(TypeError, match=r"`kernel`[\s\S]*Received: kernel='k'"):
        kce.ops.corr2d(X, "k")


@pytest.mark.parametrize("make", [lambda: L.CrossCorrelation2D(2, 1), lambda: L.MaxPooling2D(1),
                                  lambda: L.MeanPooling2D(1)], ids=["corr", "max", "mean"])
def test_string_input_layers(make):
    with pytest.raises(TypeError, match=r"`x`[\s\S]*floating-point[\s\S]*string"):
        make()(tf.fill((1, 4, 4, 1), "a"))
    # a bare Python string is not a tensor: Keras refuses it before the layer runs
    with pytest.raises(ValueError, match=r"abc"):
        make()("abc")


# ---------------------------------------------------------------------- native unavailable
NATIVE_PATTERN = r"implementation='native'[\s\S]*{op}[\s\S]*not available"


def _native_module():
    try:
        from keras_cnn_ext.ops import native
    except ImportError:  # pragma: no cover - the module is part of the package
        return None
    return native


def test_native_unavailable_is_a_clear_runtime_error():
    """The real state of this machine: if the library is not built / not loadable here,
    implementation='native' must say so with a RuntimeError."""
    native = _native_module()
    if native is not None and native.available():
        pytest.skip("the native library is built and loads here, so implementation='native' "
                    "cannot fail; the simulated check below still runs")
    with pytest.raises(RuntimeError, match=NATIVE_PATTERN.format(op="corr2d")):
        kce.ops.corr2d(X, KERNEL, implementation="native")


def test_native_unavailable_simulated(monkeypatch):
    """Whatever this machine has built: a library that does not load gives a RuntimeError that
    names the op and says why, in the ops and in the layers."""
    native = _native_module()
    assert native is not None, "keras_cnn_ext.ops.native must exist"
    monkeypatch.setattr(native, "available", lambda: False)
    monkeypatch.setattr(native, "status", lambda: "simulated: library not built")
    for op, call in [
        ("corr2d", lambda: kce.ops.corr2d(X, KERNEL, implementation="native")),
        ("max_pool2d", lambda: kce.ops.max_pool2d(X, 2, implementation="native")),
        ("mean_pool2d", lambda: L.MeanPooling2D(2, implementation="native")(X)),
        ("corr2d", lambda: L.CrossCorrelation2D(2, 3, implementation="native")(X)),
    ]:
        with pytest.raises(RuntimeError, match=NATIVE_PATTERN.format(op=op)
                           + r"[\s\S]*simulated: library not built"):
            call()
    # "auto" never breaks because the library is missing
    assert kce.ops.corr2d(X, KERNEL).shape == (1, 3, 3, 4)
    assert L.MaxPooling2D(2)(X).shape == (1, 2, 2, 2)


def test_geometry_errors_name_the_argument():
    with pytest.raises(ValueError, match=received("kernel_size", 0)):
        geometry.normalize_tuple(0, "kernel_size")
    with pytest.raises(ValueError, match=received("padding_mode", "wrap")):
        geometry.normalize_choice("wrap", "padding_mode", geometry.CORR_PADDING_MODES)


@pytest.mark.parametrize("value", [3.5, -1, "7", (1, 2, 3), (4, None)])
def test_output_size_input_size(value):
    with pytest.raises(ValueError, match=r"`input_size`[\s\S]*Received: input_size="
                                         + re.escape(repr(value))):
        kce.ops.output_size(value, 3)
