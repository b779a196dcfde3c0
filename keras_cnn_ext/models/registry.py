"""Model registry: one name per builder; drives the command line and the test matrix.

Builders register themselves where they are defined, the way timm's do::

    @register_model(aliases=("vgg_d",))
    def vgg16(**kwargs):
        \"\"\"VGG configuration D ...\"\"\"
        return vgg("D", **kwargs)

so adding a model is one edit in its family's module. `keras_cnn_ext.models` imports every
family module, which fills the registry.

>>> get_model("lenet5", layers="keras").count_params()
61706
"""

_REGISTRY = {}
_ALIASES = {}  # other spellings accepted by `get_model` but not listed (e.g. the papers')


def _key(name):
    return name.lower().replace("-", "_")


def register_model(fn=None, *, name=None, aliases=()):
    """Registers a builder under `name` (default: the function's name) and `aliases`.

    Usable as ``@register_model``, ``@register_model(aliases=(...))`` or
    ``register_model(fn, name="...")``; returns the builder unchanged.

    Raises:
        ValueError: the name or an alias is already registered.
    """
    def register(builder):
        key = _key(name or builder.__name__)
        for taken in (key,) + tuple(_key(a) for a in aliases):
            if taken in _REGISTRY or taken in _ALIASES:
                raise ValueError(
                    f"Invalid value for argument `name`. Expected a model name that is not "
                    f"registered yet. Received: name={taken!r}"
                )
        _REGISTRY[key] = builder
        _ALIASES.update({_key(a): key for a in aliases})
        return builder

    return register if fn is None else register(fn)


def list_models():
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model(name, **kwargs):
    """Builds the registered model `name` (or an alias) with the builder's keyword arguments.

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    key = _ALIASES.get(_key(name), _key(name)) if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(
            f"Invalid value for argument `name`. Expected one of {', '.join(list_models())}. "
            f"Received: name={name!r}"
        )
    return _REGISTRY[key](**kwargs)
