"""Model analysis: per-layer output shapes, parameters, multiply-accumulates, receptive fields.

Conventions:

* **MACs** are multiply-accumulates per example (the batch is excluded), the unit of the ResNet
  paper's "FLOPs" column. A convolution costs ``H_out * W_out * M * N * C_in * C_out`` (the
  product of its kernel's shape per output position), a dense layer ``inputs * units``. Biases,
  activations, batch normalisation (foldable into the convolution before it), pooling, additions
  and concatenations count 0. Blocks (`ResidualBlock`, `BottleneckBlock`, `InceptionModule`)
  count their convolutions, the shortcut projection included; a nested model counts its layers.
* **Receptive field** R and **jump** j (the cumulative stride: the distance in input pixels
  between two neighbouring outputs) follow the recurrence of the course notes,
  ``R_n = R_{n-1} + (k_n - 1) * j_{n-1}``, ``j_n = j_{n-1} * s_n`` with the input at R = j = 1
  (a dilated window counts as ``d * (k - 1) + 1``). Padding does not change R. A block counts as
  its main path (the widest branch for Inception); where several tensors meet (addition,
  concatenation) the largest field is kept. Global pooling and `Flatten` act as one window over
  the whole map, so every later unit sees the full (padded) input. Both are (height, width)
  pairs.

>>> import keras
>>> inputs = keras.Input((8, 8, 1))
>>> x = keras.layers.Conv2D(1, 3, name="c1")(inputs)
>>> x = keras.layers.Conv2D(1, 3, name="c2")(x)
>>> rows = summarize(keras.Model(inputs, x))
>>> rows[-1].receptive_field, rows[-1].macs
((5, 5), 144)
"""

import dataclasses
import math

import keras

from keras_cnn_ext.ops import geometry


@dataclasses.dataclass
class LayerSummary:
    """One row of `summarize`: a layer applied once in the model."""

    name: str
    class_name: str
    output_shape: tuple
    params: int
    macs: int
    receptive_field: tuple
    jump: tuple
    dilation: tuple = None   # a convolution's dilation_rate (None: not a convolution)
    groups: int = None       # a convolution's groups

    def to_dict(self):
        return dataclasses.asdict(self)


def _spatial_axes(layer):
    return geometry.spatial_axes(getattr(layer, "data_format", "channels_last"))


def _pair(value):
    """A layer's int-or-tuple attribute (kernel_size, strides, ...) as a tuple of ints."""
    if value is None:
        return None
    n = len(value) if hasattr(value, "__len__") else 2
    return geometry.normalize_tuple(value, "value", n=n, allow_zero=True)


def _window(layer):
    """(kernel, stride) pairs of a sliding-window layer, else None."""
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):
        k = _pair(layer.kernel_size)
        d = _pair(getattr(layer, "dilation_rate", 1)) or (1, 1)
        k = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))
        return k, _pair(layer.strides)
    if hasattr(layer, "pool_size") and len(_pair(layer.pool_size) or ()) == 2:
        k = _pair(layer.pool_size)
        s = _pair(layer.strides) if getattr(layer, "strides", None) is not None else k
        return k, s
    return None


def _is_global(layer):
    return isinstance(layer, keras.layers.Flatten) or type(layer).__name__.startswith("Global")


def layer_macs(layer, input_shape, output_shape):
    """Multiply-accumulates per example of one layer call (see the module docstring)."""
    if hasattr(layer, "sublayer_shapes"):
        return sum(layer_macs(sub, i, o) for sub, i, o in layer.sublayer_shapes(input_shape))
    if isinstance(layer, keras.Model):
        return total_macs(layer)
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not hasattr(kernel, "shape"):
        return 0
    shape = tuple(kernel.shape)
    out = tuple(output_shape)
    if len(shape) == 4 and len(out) == 4:
        axes = _spatial_axes(layer)
        return math.prod(shape) * math.prod(out[a] for a in axes)
    if isinstance(layer, keras.layers.Dense):
        return math.prod(shape) * math.prod(out[1:-1])
    return 0


def _compose(rf, jump, block_rf, block_jump):
    return (tuple(r + (br - 1) * j for r, j, br in zip(rf, jump, block_rf)),
            tuple(j * bj for j, bj in zip(jump, block_jump)))


def _propagate(layer, in_states, input_shapes):
    """(receptive field, jump) of a layer's outputs from those of its inputs."""
    if not in_states or any(s is None for s in in_states):
        return None
    rf = tuple(max(s[0][i] for s in in_states) for i in range(2))
    jump = tuple(max(s[1][i] for s in in_states) for i in range(2))
    if hasattr(layer, "receptive_field") and callable(layer.receptive_field):
        return _compose(rf, jump, *layer.receptive_field())
    if isinstance(layer, keras.Model):
        rows = summarize(layer)
        if rows and rows[-1].receptive_field is not None:
            return _compose(rf, jump, rows[-1].receptive_field, rows[-1].jump)
        return rf, jump
    window = _window(layer)
    if window is not None:
        k, s = window
        return _compose(rf, jump, k, s)
    if _is_global(layer):
        shape = input_shapes[0]
        if len(shape) != 4:
            return rf, jump
        size = tuple(shape[a] for a in _spatial_axes(layer))
        if any(v is None for v in size):
            return None
        return _compose(rf, jump, size, size)
    return rf, jump


def _graph(model):
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                "Invalid value for argument `model`. Expected a built model (a Sequential "
                f"model needs an Input). Received: model={model.name!r}"
            )
        model = functional
    return model


def summarize(model):
    """Per-layer rows: name, class, output shape, parameters, MACs, receptive field, jump.

    Args:
        model: a functional (or built Sequential) `keras.Model`.

    Returns:
        A list of `LayerSummary` in topological order, input layers excluded. A layer called
        several times gives one row per call (its parameters counted on the first).
    """
    graph = _graph(model)
    states = {}
    for tensor in graph.inputs:
        states[id(tensor)] = ((1, 1), (1, 1))
    rows = []
    seen = set()
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            layer = node.operation
            if node.is_input or isinstance(layer, keras.layers.InputLayer):
                continue
            inputs = node.input_tensors
            outputs = node.output_tensors
            input_shapes = [tuple(t.shape) for t in inputs]
            output_shapes = [tuple(t.shape) for t in outputs]
            state = _propagate(layer, [states.get(id(t)) for t in inputs], input_shapes)
            for t in outputs:
                states[id(t)] = state
            params = 0 if id(layer) in seen else layer.count_params()
            seen.add(id(layer))
            macs = layer_macs(layer, input_shapes[0] if input_shapes else None,
                              output_shapes[0])
            rows.append(LayerSummary(
                name=layer.name, class_name=type(layer).__name__,
                output_shape=output_shapes[0] if len(output_shapes) == 1 else output_shapes,
                params=params, macs=int(macs),
                receptive_field=None if state is None else state[0],
                jump=None if state is None else state[1], **_conv_geometry(layer)))
    return rows


def _conv_geometry(layer):
    """dilation and groups of a convolution layer (ours or Keras'), else nothing."""
    if not (hasattr(layer, "kernel_size") and hasattr(layer, "strides")):
        return {}
    return dict(dilation=_pair(getattr(layer, "dilation_rate", 1)) or (1, 1),
                groups=int(getattr(layer, "groups", 1) or 1))


def total_macs(model):
    """Multiply-accumulates per example of the whole model (see the module docstring)."""
    return sum(row.macs for row in summarize(model))


def _fmt_pair(value):
    if value is None:
        return "-"
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def format_table(rows):
    """A plain-text table of `summarize` rows with a total line.

    >>> print(format_table([LayerSummary("c1", "Conv2D", (None, 6, 6, 1), 10, 36, (3, 3),
    ...                                  (1, 1))]))  # doctest: +NORMALIZE_WHITESPACE
    layer  type    output shape     params  MACs  RF  jump
    -----  ------  ---------------  ------  ----  --  ----
    c1     Conv2D  (None, 6, 6, 1)      10    36   3     1
    -----  ------  ---------------  ------  ----  --  ----
    total                               10    36
    """
    header = ("layer", "type", "output shape", "params", "MACs", "RF", "jump")
    body = [(r.name, r.class_name, str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
             _fmt_pair(r.receptive_field), _fmt_pair(r.jump)) for r in rows]
    total = ("total", "", "", f"{sum(r.params for r in rows):,}",
             f"{sum(r.macs for r in rows):,}", "", "")
    # dilation / groups columns only for a model that uses them (issue 16): other tables keep
    # their columns
    if any((r.dilation not in (None, (1, 1))) or (r.groups not in (None, 1)) for r in rows):
        header += ("dilation", "groups")
        body = [line + (_fmt_pair(r.dilation), "-" if r.groups is None else str(r.groups))
                for line, r in zip(body, rows)]
        total += ("", "")
    columns = len(header)
    widths = [max(len(line[i]) for line in [header, total] + body) for i in range(columns)]
    right = set(range(3, columns))

    def fmt(line):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule] + [fmt(line) for line in body] + [rule, fmt(total)])
