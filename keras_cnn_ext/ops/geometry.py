"""Geometry of sliding windows: argument normalisation and the output-size formula.

Every op and layer of the package funnels its `kernel_size` / `pool_size`, `strides` and
`padding` arguments through this module, so the textbook formula

    K = floor((I + P_top + P_bottom - M) / S) + 1

and the meaning of each padding spelling live in exactly one place.
"""

import math
import numbers

import keras
import numpy as np

# Paddings beyond this can never be meaningful (the padded size would not fit TensorFlow's
# 32-bit kernel indexing) and are rejected up front instead of overflowing later.
MAX_PADDING = 2**31 - 1
NO_PADDING = ((0, 0), (0, 0))

PADDING_WORDS = ("valid", "same", "full")
CORR_PADDING_MODES = ("zeros", "replicate", "reflect")
POOL_PADDING_MODES = ("zeros", "ignore")
CORR_MODES = ("cross_correlation", "convolution")
IMPLEMENTATIONS = ("auto", "reference", "composite", "native")
DATA_FORMATS = ("channels_last", "channels_first")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _invalid(name, expected, value):
    """The one error of every argument check: a `ValueError` (as Keras raises for a bad layer
    argument, a float size included) saying what was expected and what was received."""
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                      f"Received: {name}={value!r}")


def normalize_int(value, name, minimum=1):
    """Returns `value` as a Python int >= `minimum` (filters, units, expansion, ...).

    The one integer check of the package: a non-integer (a float such as 2.5 or 2.0, a string,
    None, a bool) and an integer below `minimum` are the same `ValueError`.

    >>> normalize_int(3, "filters")
    3
    >>> normalize_int(2.5, "filters")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `filters`. Expected an integer >= 1. Received: filters=2.5
    """
    if not _is_int(value) or value < minimum:
        raise _invalid(name, f"an integer >= {minimum}", value)
    return int(value)


def normalize_tuple(value, name, n=2, allow_zero=False):
    """Returns `value` as a tuple of `n` Python ints, each >= 1 (or >= 0).

    Args:
        value: an int or a sequence of `n` ints.
        name: the argument name used in error messages.
        n: the tuple length.
        allow_zero: whether 0 is a valid entry.

    Raises:
        ValueError: not an integer or a sequence of `n` integers (floats and strings
            included), or an entry below the minimum.
    """
    expected = (
        f"an integer or a tuple of {n} integers, each "
        f"{'non-negative' if allow_zero else 'positive'}"
    )
    if _is_int(value):
        values = (int(value),) * n
    elif (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n
          or not all(_is_int(v) for v in value)):
        raise _invalid(name, expected, value)
    else:
        values = tuple(int(v) for v in value)
    if any(v < (0 if allow_zero else 1) for v in values):
        raise _invalid(name, expected, value)
    return values


def normalize_bool(value, name):
    """Returns `value` as a Python bool; anything but a bool (NumPy's included) raises.

    An int 0/1 or a string "True" is rejected rather than guessed at, as Keras rejects a
    non-bool flag.

    >>> normalize_bool(True, "ceil_mode")
    True
    >>> normalize_bool(1, "ceil_mode")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `ceil_mode`. Expected a bool. Received: ceil_mode=1
    """
    if not isinstance(value, (bool, np.bool_)):
        raise _invalid(name, "a bool", value)
    return bool(value)


def normalize_choice(value, name, choices):
    """Returns `value` lower-cased if it is one of `choices`, else raises `ValueError`."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise _invalid(name, f"one of {', '.join(repr(c) for c in choices)}", value)
    return value.lower()


def normalize_data_format(data_format):
    """`None` means the Keras default (`keras.config.image_data_format()`)."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    return normalize_choice(data_format, "data_format", DATA_FORMATS)


_PADDING_EXPECTED = (
    "a non-negative integer P, a pair (P, Q), a pair of pairs ((top, bottom), (left, right)), "
    "or one of 'valid', 'same', 'full'"
)


def validate_padding(padding, name="padding"):
    """Checks the *spelling* of a padding argument, without a kernel size.

    Layers call this in `__init__` so that a bad padding fails at construction; the per-side
    numbers are resolved by `resolve_padding` once the window size is known.

    Returns:
        A lower-cased word, or a pair of (before, after) pairs of ints.

    >>> validate_padding((1, 2))
    ((1, 1), (2, 2))
    """
    value = padding
    if isinstance(value, str):
        if value.lower() not in PADDING_WORDS:
            raise _invalid(name, _PADDING_EXPECTED, padding)
        return value.lower()
    if _is_int(value):
        sides = ((value, value), (value, value))
    elif isinstance(value, bytes) or not hasattr(value, "__len__") or len(value) != 2:
        raise _invalid(name, _PADDING_EXPECTED, padding)
    elif all(_is_int(v) for v in value):
        sides = ((value[0], value[0]), (value[1], value[1]))
    elif all(hasattr(v, "__len__") and not isinstance(v, (str, bytes)) and len(v) == 2
             and all(_is_int(p) for p in v) for v in value):
        sides = tuple(tuple(v) for v in value)
    else:
        raise _invalid(name, _PADDING_EXPECTED, padding)
    sides = tuple(tuple(int(p) for p in pair) for pair in sides)
    if any(p < 0 or p > MAX_PADDING for pair in sides for p in pair):
        raise _invalid(name, f"{_PADDING_EXPECTED}, each side between 0 and {MAX_PADDING}",
                       padding)
    return sides


def same_pads(window):
    """The textbook / PyTorch 'same': (M - 1) // 2 before, the rest after, per axis."""
    return tuple(((m - 1) // 2, (m - 1) - (m - 1) // 2) for m in window)


def resolve_padding(padding, window, name="padding"):
    """Turns any padding spelling into per-side numbers for a given window.

    Args:
        padding: see `validate_padding`.
        window: (M, N), the kernel or pooling window.

    Returns:
        ((top, bottom), (left, right)).

    `'same'` is the textbook / PyTorch convention: (M - 1) // 2 before and the rest after, so a
    stride-1 output has the input's size and a stride-S output has ceil(I / S) rows.
    """
    padding = validate_padding(padding, name)
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "full":
        return tuple((m - 1, m - 1) for m in window)
    if padding == "same":
        return same_pads(window)
    return padding


def check_pool_padding(pads, window, name="padding", received=None):
    """Pooling windows must keep at least one real cell: each side < the window.

    `received` is the padding as the caller spelled it (for the error message); `pads` is its
    per-side resolution.
    """
    for (before, after), m in zip(pads, window):
        if before >= m or after >= m:
            spelled = pads if received is None else received
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected each side of the pooling "
                f"padding to be smaller than the pooling window {tuple(window)}. "
                f"Received: {name}={spelled!r} (per side {pads!r})"
            )


def output_size(input_size, kernel_size, strides=1, padding=0, dilation_rate=1,
                ceil_mode=False):
    """The textbook output size `floor((I + P_before + P_after - M) / S) + 1`.

    With `dilation_rate` D (PyTorch's `dilation`) the kernel spans `D * (M - 1) + 1` cells:
    `floor((I + P_before + P_after - D * (M - 1) - 1) / S) + 1`. With `ceil_mode=True`
    (pooling, PyTorch's rule) it is `ceil((I + P_before + P_after - M) / S) + 1`, less one
    where the last window would start in the after-padding.

    Args:
        input_size: I, an int, or a tuple of ints (one per spatial axis).
        kernel_size: M, an int or a tuple like `input_size`.
        strides: S, an int or a tuple.
        ceil_mode: PyTorch's pooling rounding (see `padded_output_size`).
        padding: for an int size: P (both sides), (before, after) or a padding word; for a
            (height, width) size: any 2-D spelling (see `validate_padding`).

    Returns:
        An int for an int `input_size`, else a tuple of ints.

    Raises:
        ValueError: the window does not fit into the padded input.

    Example (the book's example 24.4: 7x7 input, 3x3 kernel, stride 2):

    >>> output_size(7, 3, strides=2)
    3
    >>> output_size((4, 4), 3, padding=1)
    (4, 4)
    >>> output_size(7, 3, dilation_rate=2)
    3
    >>> output_size(6, 3, strides=2, ceil_mode=True)
    3
    """
    scalar = _is_int(input_size)
    sizes = (input_size,) if scalar else input_size
    if (isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__")
            or len(sizes) not in (1, 2) or not all(_is_int(s) and s >= 0 for s in sizes)):
        raise ValueError(
            "Invalid value for argument `input_size`. Expected a non-negative integer or a "
            f"(height, width) pair of them. Received: input_size={input_size!r}"
        )
    n = len(sizes)
    ceil_mode = normalize_bool(ceil_mode, "ceil_mode")
    window = normalize_tuple(kernel_size, "kernel_size", n)
    stride = normalize_tuple(strides, "strides", n)
    if dilation_rate != 1:
        window = effective_window(window, normalize_tuple(dilation_rate, "dilation_rate", n))
    if n == 2:
        pads = resolve_padding(padding, window)
    elif isinstance(padding, str):
        pads = resolve_padding(padding, window * 2)[:1]
    else:
        pads = (_axis_padding(padding),)
    out = tuple(
        window_output_size(int(i), m, s, p, padding_repr=padding, ceil_mode=ceil_mode)
        for i, m, s, p in zip(sizes, window, stride, pads)
    )
    return out[0] if scalar else out


def _axis_padding(padding):
    """One axis: P means (P, P); a pair is (before, after)."""
    sides = (padding, padding) if _is_int(padding) else padding
    if (isinstance(sides, (str, bytes)) or not hasattr(sides, "__len__") or len(sides) != 2
            or not all(_is_int(p) and 0 <= p <= MAX_PADDING for p in sides)):
        raise _invalid("padding", "a non-negative integer, a (before, after) pair or one of "
                       f"'valid', 'same', 'full', each side at most {MAX_PADDING}", padding)
    return (int(sides[0]), int(sides[1]))


def padded_output_size(size, window, stride, pads, ceil_mode=False):
    """`(I + P_before + P_after - M) // S + 1` without checks: also for size tensors.

    `ceil_mode` (pooling) is PyTorch's rule: `ceil((I + P_before + P_after - M) / S) + 1`, and
    a last window that would start in the after-padding (at or past I + P_before) is dropped,
    so every window starts on an input or before-padding cell.
    """
    if not ceil_mode:
        return (size + pads[0] + pads[1] - window) // stride + 1
    out = (size + pads[0] + pads[1] - window + stride - 1) // stride + 1
    starts_in_padding = (out - 1) * stride >= size + pads[0]
    if isinstance(starts_in_padding, (bool, np.bool_)):
        return out - int(starts_in_padding)
    return keras.ops.where(starts_in_padding, out - 1, out)  # a size tensor


def ceil_overhang(size, window, stride, pads, ceil_mode=False):
    """How many cells ceil_mode's last window reaches past the padded input (0 without it).

    Those cells take no part: they never win a max and a mean does not count them (PyTorch's
    `avg_pool2d` with either `count_include_pad`). Int sizes only.

    >>> ceil_overhang(6, 3, 2, (0, 0), ceil_mode=True)  # windows at 0, 2, 4: the last needs row 6
    1
    """
    if not ceil_mode or size is None:
        return 0
    out = padded_output_size(size, window, stride, pads, ceil_mode=True)
    return max(0, (out - 1) * stride + window - (size + pads[0] + pads[1]))


def window_output_size(size, window, stride, pads, padding_repr=None, ceil_mode=False):
    """One axis of the formula; `None` (unknown size) stays `None`."""
    if size is None:
        return None
    padded = size + pads[0] + pads[1]
    if padded < window:
        raise ValueError(
            f"The window does not fit into the padded input: input size {size}, "
            f"kernel size {window}, stride {stride}, padding "
            f"{padding_repr if padding_repr is not None else pads} "
            f"(padded size {padded} < kernel size {window})."
        )
    return padded_output_size(size, window, stride, pads, ceil_mode)


def spatial_output_shape(spatial, window, strides, pads, ceil_mode=False):
    """Output (H, W) for input (H, W); entries may be None (unknown)."""
    return tuple(
        window_output_size(i, m, s, p, padding_repr=pads, ceil_mode=ceil_mode)
        for i, m, s, p in zip(spatial, window, strides, pads)
    )


def tf_same_pads(size, window, stride):
    """The per-side padding TensorFlow's 'SAME' applies (extra cell after), or None."""
    if size is None:
        return None
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return (total // 2, total - total // 2)


def is_tf_same(spatial, window, strides, pads):
    """Whether TensorFlow's 'SAME' pads exactly `pads` (only known for known sizes)."""
    return all(
        size is not None and tf_same_pads(size, m, s) == tuple(p)
        for size, m, s, p in zip(spatial, window, strides, pads)
    )


def no_padding(pads):
    return all(p == 0 for pair in pads for p in pair)


def pad_source_index(size, pads, padding_mode):
    """For each cell of a padded axis, the input cell it copies (replicate / reflect).

    Replicate repeats the edge cell (复制填充); reflect mirrors without repeating it (-1 -> 1,
    size -> size - 2). A NumPy int array of length `size + before + after`.

    >>> pad_source_index(3, (2, 1), "replicate").tolist()
    [0, 0, 0, 1, 2, 2]
    >>> pad_source_index(3, (2, 1), "reflect").tolist()
    [2, 1, 0, 1, 2, 1]
    """
    index = np.arange(-pads[0], size + pads[1])
    if padding_mode == "replicate":
        return np.clip(index, 0, size - 1)
    return (size - 1) - np.abs((size - 1) - np.abs(index))


def flat_pads(pads):
    """((top, bottom), (left, right)) -> [top, bottom, left, right] (the native ops' attr)."""
    return [int(p) for pair in pads for p in pair]


# ------------------------------------------------------------------ op argument normalisation
def normalize_corr_args(kernel_size, strides, padding, padding_mode, mode, data_format,
                        implementation, dilation_rate=1, groups=1):
    """The one place where a correlation's arguments are checked and normalised.

    `'same'` and `'full'` are resolved on the effective (dilated) kernel
    `D * (M - 1) + 1` (see `effective_window`), as PyTorch's `Conv2d` does.

    Returns:
        (window, strides, pads, padding_mode, mode, data_format, implementation, dilations,
        groups): int pairs, ((top, bottom), (left, right)), lower-case words, an int pair and
        an int, as every implementation (`reference`, `composite`, `native`) takes them.
    """
    window = normalize_tuple(kernel_size, "kernel_size")
    dilations = normalize_tuple(dilation_rate, "dilation_rate")
    return (
        window,
        normalize_tuple(strides, "strides"),
        resolve_padding(padding, effective_window(window, dilations)),
        normalize_choice(padding_mode, "padding_mode", CORR_PADDING_MODES),
        normalize_choice(mode, "mode", CORR_MODES),
        normalize_data_format(data_format),
        normalize_choice(implementation, "implementation", IMPLEMENTATIONS),
        dilations,
        normalize_int(groups, "groups"),
    )


def effective_window(window, dilations=(1, 1)):
    """The span `D * (M - 1) + 1` of a kernel whose taps are `D` cells apart, per axis.

    >>> effective_window((3, 3), (2, 1))
    (5, 3)
    """
    return tuple(d * (m - 1) + 1 for m, d in zip(window, dilations))


def check_groups(groups, channels=None, filters=None, kernel_channels=None):
    """`groups` must divide the input channels and the filters (PyTorch's `Conv2d` rule); a
    kernel then has `channels / groups` input channels. Unknown counts (None) are skipped.

    The one wording of this error for every op, layer and builder.

    >>> check_groups(2, channels=4, filters=6)
    >>> check_groups(3, channels=4, filters=6)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `groups`. Expected a divisor of the input channels (4) and of the filters (6). Received: groups=3
    """
    bad = (channels is not None and channels % groups) or (filters is not None
                                                            and filters % groups)
    if bad:
        known = " and ".join(f"of the {what} ({n})" for what, n in
                             (("input channels", channels), ("filters", filters))
                             if n is not None)
        raise _invalid("groups", f"a divisor {known}", groups)
    if (kernel_channels is not None and channels is not None
            and kernel_channels * groups != channels):
        raise ValueError(
            f"Invalid value for argument `x`. Expected {kernel_channels * groups} input "
            f"channels (the kernel's {kernel_channels} per group times groups={groups}). "
            f"Received: x with {channels} channels"
        )


def check_dilated_fits(spatial, window, dilations, strides, pads):
    """A dilated kernel must fit the padded input: `D * (M - 1) + 1 <= I + P_top + P_bottom`.

    Raises the error on `dilation_rate` (the argument that made the kernel too large) where
    the undilated kernel would fit; otherwise the usual window error. Unknown sizes skip.
    """
    span = effective_window(window, dilations)
    for size, m, e, (before, after) in zip(spatial, window, span, pads):
        if size is None or e == m:
            continue
        padded = size + before + after
        if padded < e and padded >= m:
            raise _invalid(
                "dilation_rate",
                f"an effective kernel D*(M-1)+1 = {e} (kernel {tuple(window)}) no larger than "
                f"the padded input {padded} (input {size}, padding {(before, after)})",
                tuple(dilations))
    return spatial_output_shape(spatial, span, strides, pads)


def normalize_pool_args(pool_size, strides, padding, padding_mode, data_format,
                        implementation, ceil_mode=False):
    """The one place where a pooling's arguments are checked and normalised (strides default
    to the window; each padding side must be smaller than the window; `ceil_mode` a bool).

    Returns:
        (window, strides, pads, padding_mode, data_format, implementation, ceil_mode).
    """
    window = normalize_tuple(pool_size, "pool_size")
    strides = pool_strides(window, None if strides is None else normalize_tuple(strides,
                                                                                "strides"))
    pads = resolve_padding(padding, window)
    check_pool_padding(pads, window, received=padding)
    return (
        window,
        strides,
        pads,
        normalize_choice(padding_mode, "padding_mode", POOL_PADDING_MODES),
        normalize_data_format(data_format),
        normalize_choice(implementation, "implementation", IMPLEMENTATIONS),
        normalize_bool(ceil_mode, "ceil_mode"),
    )


def pool_strides(window, strides):
    """A pooling's strides: `None` means the window (non-overlapping pooling, the book's)."""
    return tuple(window) if strides is None else strides


# ------------------------------------------------------------------------- 4-D layouts
# The only place that knows where channels and spatial axes sit.
TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)


def channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def spatial_axes(data_format):
    """The (height, width) axes of a 4-D tensor."""
    return (1, 2) if data_format == "channels_last" else (2, 3)


def spatial_dims(shape, data_format):
    """(H, W) of a 4-D shape."""
    return tuple(shape[a] for a in spatial_axes(data_format))


def with_spatial(shape, hw, channels, data_format):
    """The 4-D shape with the batch of `shape`, spatial size `hw` and `channels`."""
    if data_format == "channels_last":
        return (shape[0], hw[0], hw[1], channels)
    return (shape[0], channels, hw[0], hw[1])


def image_shape(hw, channels, data_format):
    """A 3-D (batch-less) image shape, e.g. a model's `input_shape`."""
    return with_spatial((None,), hw, channels, data_format)[1:]


def tf_data_format(data_format):
    """'NHWC' / 'NCHW', TensorFlow's spelling of a Keras data format."""
    return "NHWC" if data_format == "channels_last" else "NCHW"
