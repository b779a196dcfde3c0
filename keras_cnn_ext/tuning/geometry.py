"""Feature-map geometry of a search space, computed before anything is built.

The builders describe their architectures as layer tables, rows of
``(name, kind, filters, kernel, stride, padding)`` (`keras_cnn_ext.models.lenet.lenet_config`,
`...vgg.vgg_config`, `...resnet.resnet_config`). This module walks such a table with the
package's one output-size formula (`keras_cnn_ext.ops.output_size`), so a hypermodel knows every
feature-map size of a configuration without building it, and it computes *exactly* which
fraction of a search space fits a given input: the distribution of map sizes is propagated
stage by stage (a configuration's stages are sampled independently, as KerasTuner's random
search does), which is cheap enough to reshape a space at construction time.
"""

import functools
import itertools

from keras_cnn_ext.ops.geometry import output_size


class VanishingFeatureMap(ValueError):
    """A configuration whose feature map vanishes; `trace` holds the sizes before it."""

    def __init__(self, model, input_hw, trace, row, reason):
        self.model = model
        self.input_hw = tuple(input_hw)
        self.trace = list(trace)
        self.row = row
        name, kind, _, kernel, stride, padding = row
        path = " -> ".join([f"input {_hw(input_hw)}"] + [f"{n} {_hw(s)}" for n, s in trace])
        super().__init__(
            f"{model}: the feature map vanishes at layer '{name}' ({kind} {kernel}x{kernel}, "
            f"stride {stride}, padding {padding!r}): {path} -> {name}: {reason}"
        )


def _hw(size):
    return f"{size[0]}x{size[1]}"


def walk(rows, input_hw, model="model"):
    """The (h, w) size after every row of a layer table.

    Args:
        rows: layer-table rows ``(name, kind, filters, kernel, stride, padding)``; ``kind`` is
            "conv", "pool" or "block" (a residual block: its stride with 'same' padding).
        input_hw: the input's (height, width).
        model: the name used in the error message.

    Returns:
        ``[(name, (h, w)), ...]``.

    Raises:
        VanishingFeatureMap: a window does not fit into its (padded) input.
    """
    trace, hw = [], tuple(input_hw)
    for row in rows:
        _, _, _, kernel, stride, padding = row
        try:
            hw = output_size(hw, kernel, stride, padding)
        except ValueError as exc:
            raise VanishingFeatureMap(model, input_hw, trace, row, exc) from None
        trace.append((row[0], hw))
    return trace


def format_trace(input_hw, trace):
    """``"28x28 -> c1 28x28 -> s2 14x14 -> ..."``."""
    return " -> ".join([_hw(input_hw)] + [f"{n} {_hw(s)}" for n, s in trace])


class Space:
    """The geometry-relevant part of a staged search space, as plain data.

    Attributes:
        depths: the depths offered (stage i exists when depth >= i).
        options: ``{name: [values]}`` of every geometry hyperparameter.
        active: ``{name: [depths]}``: the depths at which the hyperparameter is searched;
            at the other depths it takes its neutral value (stride 1: "strides limited by
            the remaining size").
        neutral: ``{name: value}`` for the hyperparameters that can be switched off.
        defaults: ``{name: value}``, "depth" included.
    """

    def __init__(self, depths, options, active, neutral, defaults):
        self.depths = list(depths)
        self.options = {n: list(v) for n, v in options.items()}
        self.active = {n: list(v) for n, v in active.items()}
        self.neutral = dict(neutral)
        self.defaults = dict(defaults)

    def copy(self):
        return Space(self.depths, self.options, self.active, self.neutral, self.defaults)

    def at_depth(self, name, depth):
        """The values `name` takes at `depth` (its options, or its neutral value)."""
        return self.options[name] if depth in self.active[name] else [self.neutral[name]]


class SpaceGeometry:
    """Exact fit probability of a staged search space under uniform sampling.

    Args:
        input_hw: the input's (height, width).
        stage_rows: ``stage_rows(stage, values)`` -> the table rows of stage `stage` (0 is
            the stem, 1.. the stages) for the geometry values of that stage.
        names: ``{stage: [hyperparameter names that change the geometry of the stage]}``.
    """

    def __init__(self, input_hw, stage_rows, names):
        self.input_hw = tuple(input_hw)
        self._stage_rows = stage_rows
        self.names = {stage: list(n) for stage, n in names.items()}
        self._out = functools.lru_cache(maxsize=None)(self._stage_out)

    def stages(self, depth):
        return ([0] if 0 in self.names else []) + list(range(1, depth + 1))

    def stage_of(self, name):
        return next(stage for stage, names in self.names.items() if name in names)

    def _stage_out(self, stage, hw, combo):
        values = dict(zip(self.names[stage], combo))
        try:
            trace = walk(self._stage_rows(stage, values), hw)
        except VanishingFeatureMap:
            return None
        return trace[-1][1] if trace else hw

    def depth_probability(self, depth, space):
        """P(fit | depth) with every searched value of the active stages uniform."""
        dist = {self.input_hw: 1.0}
        for stage in self.stages(depth):
            combos = list(itertools.product(
                *(space.at_depth(n, depth) for n in self.names[stage])))
            out = {}
            for hw, p in dist.items():
                for combo in combos:
                    size = self._out(stage, hw, combo)
                    if size is not None:
                        out[size] = out.get(size, 0.0) + p / len(combos)
            dist = out
        return sum(dist.values())

    def fit_probability(self, space, depths=None):
        """P(a configuration drawn like KerasTuner's random search draws it fits): depth
        uniform over `depths` (default ``space.depths``), every active value uniform."""
        depths = space.depths if depths is None else depths
        return sum(self.depth_probability(d, space) for d in depths) / len(depths)

    def fits(self, depth, values):
        """Whether one configuration (geometry values of stages 0..depth) fits."""
        hw = self.input_hw
        for stage in self.stages(depth):
            hw = self._out(stage, hw, tuple(values[n] for n in self.names[stage]))
            if hw is None:
                return False
        return True

    def largest_output(self, stage, hw, space, depth, values):
        """The geometry values of `stage` that leave the largest map (ties: the most values
        equal to `values`), or None if no combination fits."""
        best, best_key = None, None
        names = self.names[stage]
        for combo in itertools.product(*(space.at_depth(n, depth) for n in names)):
            size = self._out(stage, hw, combo)
            if size is None:
                continue
            key = (size[0] * size[1], sum(v == values[n] for n, v in zip(names, combo)))
            if best_key is None or key > best_key:
                best, best_key = dict(zip(names, combo)), key
        return best


def shape_space(geometry, space, target):
    """Sizes a staged space to the input: defaults that fit, then the fewest options removed.

    1. The defaults must fit at every depth offered (KerasTuner builds each conditional
       branch at its defaults when a tuner is created): a stage whose defaults make the map
       vanish takes the values that keep the largest map; a depth that still cannot fit is
       dropped.
    2. While the exact fit probability is below `target`, the option whose configurations
       fail most often, relative to all the configurations it competes with, is removed:
       a stride searched at a depth (the stride is then 1 there), or a value of a geometry
       hyperparameter (never a default). A depth goes only when nothing else helps.

    Returns:
        (the shaped `Space`, its fit probability).

    Raises:
        ValueError: not even the most conservative configuration fits.
    """
    space = space.copy()
    while space.depths:
        fitted = _fit_defaults(geometry, space, max(space.depths))
        if fitted is not None:
            space.defaults = fitted
            break
        space.depths.remove(max(space.depths))
    if not space.depths:
        raise ValueError("no configuration of the space fits the input")
    if space.defaults["depth"] not in space.depths:
        space.defaults["depth"] = max(space.depths)
    for name in space.active:
        space.active[name] = [d for d in space.active[name] if d in space.depths]
    prob = geometry.fit_probability(space)
    while prob < target:
        worst = _culprit(geometry, space)
        if worst is None:
            break
        kind, name, value = worst
        if kind == "depth":
            space.depths.remove(value)
            for n in space.active:
                space.active[n] = [d for d in space.active[n] if d != value]
        elif kind == "active":
            space.active[name].remove(value)
        else:
            space.options[name].remove(value)
        prob = geometry.fit_probability(space)
    return space, prob


def _culprit(geometry, space):
    """(kind, name, value) of the removal with the largest excess failure rate, or None."""
    worst = None

    def consider(excess, key):
        nonlocal worst
        if excess > 1e-12 and (worst is None or excess > worst[0] + 1e-12):
            worst = (excess, key)

    for stage in sorted(geometry.names, reverse=True):  # late stages first on ties
        for name in geometry.names[stage]:
            depths = space.active[name]
            if not depths:
                continue
            base = geometry.fit_probability(space, depths)
            values = space.options[name]
            for value in sorted(values, key=_order_key, reverse=True):
                if value == space.defaults[name] or len(values) < 2:
                    continue
                trial = space.copy()
                trial.options[name] = [value]
                consider(base - geometry.fit_probability(trial, depths),
                         ("value", name, value))
            if name in space.neutral:
                for depth in sorted(depths, reverse=True):
                    trial = space.copy()
                    trial.options[name] = [v for v in values if v != space.neutral[name]]
                    if not trial.options[name]:
                        continue
                    consider(geometry.depth_probability(depth, space)
                             - geometry.depth_probability(depth, trial),
                             ("active", name, depth))
    if worst is None and len(space.depths) > 1:
        base = geometry.fit_probability(space)
        for depth in sorted(space.depths, reverse=True):
            if depth != space.defaults["depth"]:
                consider(base - geometry.depth_probability(depth, space), ("depth", None, depth))
    return None if worst is None else worst[1]


def _order_key(value):
    # numbers by size; the word 'valid' (which shrinks) after 'same'
    if isinstance(value, str):
        return {"same": 0, "valid": 1, "full": -1}.get(value, 0)
    return value


def _fit_defaults(geometry, space, depth):
    """Defaults that fit at `depth`, changing as few stages as possible; None if impossible.

    First only the stages whose defaults fail are changed; if a later stage still cannot
    fit, every stage takes its largest-map values.
    """
    for conservative in (False, True):
        fitted, hw = dict(space.defaults), geometry.input_hw
        for stage in geometry.stages(depth):
            names = geometry.names[stage]
            size = geometry._out(stage, hw, tuple(fitted[n] for n in names))
            if size is None or conservative:
                fix = geometry.largest_output(stage, hw, space, depth, fitted)
                if fix is None:
                    break
                fitted.update(fix)
                size = geometry._out(stage, hw, tuple(fitted[n] for n in names))
            hw = size
        else:
            return fitted
    return None
