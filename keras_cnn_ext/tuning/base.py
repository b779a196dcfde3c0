"""The machinery the hypermodels share: a declared space, sized to the input, checked geometry.

A hypermodel here lists its hyperparameters as `Spec` rows. At construction it sizes the space
to its input (`keras_cnn_ext.tuning.geometry.shape_space`): defaults that fit at every depth,
and options removed until at least `min_valid_fraction` of the uniformly sampled
configurations fit. `build(hp)` declares the whole space first (with defaults, the way
KerasTuner's own `applications/resnet.py` does), computes every feature-map size from the
builder's layer table, raises `keras_tuner.errors.FailedTrialError` with that geometry if a map
would vanish (a pinned or Bayesian-proposed value can still do that), and only then builds the
model through the package's builders and compiles it. `fit(hp, model, ...)` creates the
model's training variables before `model.fit` traces its train step (`build_training_state`),
so the step is traced once instead of twice.
"""

import collections
import random

import keras
import keras_tuner

from keras_cnn_ext._backend import on_tensorflow
from keras_cnn_ext.tuning import geometry as geo
from keras_cnn_ext.tuning import overhead

# kind: "choice" (values), "float" (values = (min, max), log sampling), "boolean"
# stage: 0 = always active; i >= 1 = active when depth >= i
# geometry: the value changes feature-map sizes; neutral: the value it takes where the shaped
# space does not search it (stride 1), None if it is always searched with its stage
Spec = collections.namedtuple("Spec", "name kind values default stage geometry neutral")

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def choice(name, values, default, stage=0, geometry=False, neutral=None):
    return Spec(name, "choice", tuple(values), default, stage, geometry, neutral)


def build_training_state(model, x):
    """Creates the optimizer's and the compiled metrics' variables of `model` before `fit`.

    Why: without a distribution strategy, Keras on TensorFlow creates them lazily, inside the
    first trace of the train step, and a `tf.function` whose first trace creates variables is
    traced a second time before it runs (TensorFlow's guard that later calls create none):
    every new model traced its train step twice, and its first trace made the optimizer's
    slots as lifted initializers, a few milliseconds each (HyperLeNet trials on 28x28
    digits: trace 1.78 -> 0.97 s, overhead 2.27 -> 1.56 s, docs/tuning-soak.md). Built here,
    from the data's element spec (no batch is read), the step is traced once. This is Keras' own
    build, the one `fit` runs first under a distribution strategy (`Trainer._symbolic_build`):
    the same variables, made in the same order, with the same initial values (zeros), so
    training and checkpoints are unchanged.

    Args:
        model: a compiled Keras model.
        x: the training data `fit` will get.

    Returns:
        True where it built; False where Keras builds as before: `x` is not a
        `tf.data.Dataset` (its shapes would need a batch), the backend is not TensorFlow,
        the model has a distribution strategy (`fit` then builds it first itself), the
        optimizer is built already, or this Keras has no `_symbolic_build`.
    """
    import tensorflow as tf

    build = getattr(model, "_symbolic_build", None)
    optimizer = getattr(model, "optimizer", None)
    if (build is None or optimizer is None or optimizer.built
            or not on_tensorflow()
            or getattr(model, "_distribute_strategy", None) is not None
            or not isinstance(x, tf.data.Dataset)):
        return False
    build(data_batch=x.element_spec)
    return True


def common_training_specs():
    """Learning rate and optimizer: every hypermodel searches them."""
    return [Spec("learning_rate", "float", (1e-4, 1e-1), 1e-3, 0, False, None),
            choice("optimizer", OPTIMIZERS, "adam")]


class GeometryHyperModel(keras_tuner.HyperModel):
    """Base class: a staged CNN search space whose every configuration is checked to fit.

    Subclasses define `family`, `MAX_DEPTH`, `_specs()` (without "depth"), `_stage_rows()`,
    `_rows()` and `_build_model()`.

    Args:
        input_shape: (height, width, channels) of the images, all known.
        num_classes: classes of the output layer.
        layers: "textbook" (this package's layers) or "keras" (stock Keras layers).
        min_valid_fraction: the space is shaped until at least this fraction of uniformly
            sampled configurations fits the input (computed exactly).
        name, tunable: as for `keras_tuner.HyperModel`.
    """

    family = None
    MAX_DEPTH = None
    DEFAULT_DEPTH = None

    def __init__(self, input_shape, num_classes, *, layers="textbook", min_valid_fraction=0.95,
                 name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)):
            raise ValueError(
                "Invalid value for argument `input_shape`. Expected (height, width, channels), "
                f"three positive integers. Received: input_shape={input_shape!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                "Invalid value for argument `num_classes`. Expected an integer >= 2. "
                f"Received: num_classes={num_classes!r}"
            )
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(
                "Invalid value for argument `min_valid_fraction`. Expected a number in [0, 1]. "
                f"Received: min_valid_fraction={min_valid_fraction!r}"
            )
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.layers = layers
        self.min_valid_fraction = min_valid_fraction
        self._shape_space()

    # -- the space --------------------------------------------------------------------------

    def _shape_space(self):
        specs = self._specs()
        names = collections.defaultdict(list)
        for s in specs:
            if s.geometry:
                names[s.stage].append(s.name)
        self._geometry = geo.SpaceGeometry(self.input_shape[:2], self._stage_rows, names)
        depths = list(range(1, self.MAX_DEPTH + 1))
        geometric = [s for s in specs if s.geometry]
        space = geo.Space(
            depths, {s.name: s.values for s in geometric},
            {s.name: [d for d in depths if d >= s.stage] for s in geometric},
            {s.name: s.neutral for s in geometric if s.neutral is not None},
            dict({s.name: s.default for s in specs}, depth=self.DEFAULT_DEPTH))
        try:
            space, prob = geo.shape_space(self._geometry, space, self.min_valid_fraction)
        except ValueError:
            raise ValueError(
                f"Invalid value for argument `input_shape`. {type(self).__name__} has no "
                "configuration whose feature maps fit this input (even the smallest kernels "
                f"and strides make a map vanish). Received: input_shape={self.input_shape!r}"
            ) from None
        self.space = space
        # stages deeper than the deepest depth left are not declared at all
        self.specs = [choice("depth", space.depths, space.defaults["depth"])] + [
            s._replace(values=tuple(space.options[s.name]), default=space.defaults[s.name])
            if s.geometry else s for s in specs if s.stage <= max(space.depths)]
        self.exact_valid_fraction = prob

    def _condition(self, s):
        """The depths at which `s` is searched."""
        if s.geometry:
            return self.space.active[s.name]
        return [d for d in self.space.depths if d >= s.stage]

    def _declare(self, hp):
        """Declares every hyperparameter (conditional ones in their scopes) with its default;
        returns the values of the configuration, a stride not searched at this depth at its
        neutral value (1)."""
        values = {}
        depths = self.space.depths
        for s in self.specs:
            when = depths if s.name == "depth" else self._condition(s)
            if not when:
                continue
            if when == depths:
                value = self._declare_one(hp, s)
            else:
                with hp.conditional_scope("depth", when):
                    value = self._declare_one(hp, s)
            if value is not None:
                values[s.name] = value
        depth = values["depth"]
        for s in self.specs:
            if s.name not in values and s.stage <= depth:
                # pinned by the caller (hp.Fixed) or switched off at this depth
                if s.name in hp.values:
                    values[s.name] = hp.values[s.name]
                elif s.neutral is not None:
                    values[s.name] = s.neutral
        return values

    @staticmethod
    def _declare_one(hp, s):
        if s.kind == "float":
            return hp.Float(s.name, s.values[0], s.values[1], sampling="log", default=s.default)
        if s.kind == "boolean":
            return hp.Boolean(s.name, default=s.default)
        return hp.Choice(s.name, list(s.values), default=s.default)

    def declare_hyperparameters(self, hp):
        self._declare(hp)

    def default_values(self):
        """The values of every active hyperparameter at its default."""
        return self._declare(keras_tuner.HyperParameters())

    # -- geometry ---------------------------------------------------------------------------

    def configuration(self, values):
        """The complete configuration (see `_declare`) of hyperparameter values as a trial
        holds them (active values only; missing ones take their defaults)."""
        hp = keras_tuner.HyperParameters()
        hp.values = dict(values)
        return self._declare(hp)

    def geometry(self, values):
        """``[(layer name, (h, w))]`` of every feature map of the configuration `values`
        (a dict of hyperparameter values, e.g. ``trial.hyperparameters.values``).

        Raises:
            keras_tuner.errors.FailedTrialError: a feature map vanishes; the message gives
                the sizes up to that layer.
        """
        values = self.configuration(values)
        try:
            return geo.walk(self._rows(values), self.input_shape[:2], type(self).__name__)
        except geo.VanishingFeatureMap as exc:
            raise keras_tuner.errors.FailedTrialError(str(exc)) from None

    def fits(self, values):
        """Whether the configuration `values` (a dict) fits the input; never raises."""
        try:
            self.geometry(values)
        except keras_tuner.errors.FailedTrialError:
            return False
        return True

    def sample(self, n, seed=0):
        """`n` configurations drawn the way KerasTuner's random search draws them: every
        active hyperparameter uniformly, in declaration order (conditions first)."""
        space = keras_tuner.HyperParameters()
        self.declare_hyperparameters(space)
        rng_seed = random.Random(seed).randint(1, 10**6)
        out = []
        for i in range(n):
            hps = keras_tuner.HyperParameters()
            for hp in space.space:
                hps.merge([hp])
                if hps.is_active(hp):
                    hps.values[hp.name] = hp.random_sample(rng_seed)
                    rng_seed += 1
            out.append(dict(hps.values))
        return out

    def valid_fraction(self, n=1000, seed=0):
        """The fraction of `n` random configurations (see `sample`) that fit the input."""
        samples = self.sample(n, seed)
        return sum(self.fits(v) for v in samples) / len(samples)

    # -- building ---------------------------------------------------------------------------

    def build(self, hp):
        values = self._declare(hp)  # the whole space first, with its defaults
        self.geometry(values)  # FailedTrialError before any layer exists
        model = self._build_model(values)
        with overhead.timed("compile"):  # the optimizer, loss and metrics
            self._compile(model, values)
        return model

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit(*args, **kwargs)`, its training variables made first
        (`build_training_state`: the train step is then traced once)."""
        with overhead.timed("compile"):
            build_training_state(model, args[0] if args else kwargs.get("x"))
        return model.fit(*args, **kwargs)

    def _compile(self, model, values):
        lr = values["learning_rate"]
        optimizer = {
            "adam": lambda: keras.optimizers.Adam(lr),
            "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9),
            "rmsprop": lambda: keras.optimizers.RMSprop(lr),
        }[values["optimizer"]]()
        # integer labels, as `kce.data.load` gives them
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])

    def search_space_table(self):
        """Rows (name, values, default, active when) of the shaped space, for docs/reports."""
        rows = []
        for s in self.specs:
            when = [] if s.name == "depth" else self._condition(s)
            when = ("always" if s.name == "depth" or when == self.space.depths
                    else f"depth in {when}" if when else "never (fixed)")
            values = (f"{s.values[0]:g}..{s.values[1]:g} (log)" if s.kind == "float"
                      else "True/False" if s.kind == "boolean" else list(s.values))
            rows.append((s.name, values, s.default, when))
        return rows

    # -- subclass hooks ---------------------------------------------------------------------

    def _specs(self):
        raise NotImplementedError

    def _stage_rows(self, stage, values):
        raise NotImplementedError

    def _rows(self, values):
        raise NotImplementedError

    def _build_model(self, values):
        raise NotImplementedError

    def _depth(self, values):
        return values["depth"]
