"""`tf.custom_gradient` whose graph-mode gradients live as long as their graph, not forever.

In graph mode (every `tf.function` trace: `fit`'s train and test steps, and the scratch graph in
which Keras builds a functional model), `tf.custom_gradient` registers the gradient closure under
a fresh name ("CustomGradient-<uid>") in TensorFlow's process-wide gradient registry, and
nothing ever removes it. The closure holds the traced tensors, so every graph our composite ops
were ever traced in stays alive with all its operations: measured in an architecture search, about
10 MB per trial (HyperLeNet on digits; docs/tuning-soak.md), never returned.

`custom_gradient` below calls `tf.custom_gradient` unchanged, then moves the strong reference to
the gradient closure onto the graph that holds the op and leaves the registry a stub that holds
it weakly. While the graph lives (its functions, a SavedModel being written, a backward pass
built later) the stub answers exactly like the original; when the graph is collected, the
closure goes with it and a weakref callback deletes the registry entry.

It uses two private details of TensorFlow (the registry's dict, the op's "_gradient_op_type"
attribute); if either is not there (a TensorFlow release that changed them) the entry is left
as TensorFlow made it: correct, only not released.
"""

import functools
import weakref

import tensorflow as tf

# The graph attribute that holds the gradient closures of the ops traced in it.
_KEEP = "_keras_cnn_ext_custom_gradients"


def _registry():
    try:
        from tensorflow.python.framework import ops

        table = ops._gradient_registry._registry  # noqa: SLF001
    except (ImportError, AttributeError):  # pragma: no cover - a future TensorFlow
        return None
    return table if isinstance(table, dict) else None


def _gradient_name(tensor):
    op = getattr(tensor, "op", None)
    if op is None or op.type != "IdentityN":
        return None
    try:
        name = op.get_attr("_gradient_op_type")
    except ValueError:
        return None
    return name.decode() if isinstance(name, bytes) else name


def _tie(table, name, entry, graph):
    """Replaces the registry entry `name` by a stub that holds its gradient weakly; the strong
    reference goes onto `graph`, whose tensors the gradient closure holds anyway."""
    gradient = entry["type"]
    kept = getattr(graph, _KEEP, None)
    if kept is None:
        kept = []
        setattr(graph, _KEEP, kept)
    kept.append(gradient)  # graph -> closure -> graph: one cycle, collected together

    def _forget(_, name=name):
        # the stub alone would be a small leak of its own (a few hundred bytes per trace)
        current = table.get(name)
        if current is not None and current.get("type") is stub:
            del table[name]

    ref = weakref.ref(gradient, _forget)

    def stub(op, *grads):  # the signature of TensorFlow's own (tf.function traces it)
        live = ref()
        if live is None:  # only reachable through a stale name of a collected graph
            raise LookupError(f"gradient registry has no entry for: {name} (its graph was "
                              "released)")
        return live(op, *grads)

    stub.keras_cnn_ext_weak = True
    table[name] = dict(entry, type=stub)


def _tie_to_graph(result):
    """Makes the registry entry of `result`'s custom gradient weak (see module docstring)."""
    table = _registry()
    first = next(iter(tf.nest.flatten(result)), None)
    name = _gradient_name(first) if table is not None else None
    entry = table.get(name) if name is not None else None
    if isinstance(entry, dict) and "type" in entry:
        _tie(table, name, entry, first.graph)


def _graph_in_closure(fn, depth=4):
    """The graph of the first symbolic tensor reachable from `fn`'s closure (through nested
    closures, lists, tuples and dicts), or None."""
    from tensorflow.python.framework import ops

    todo, seen = [(fn, 0)], set()
    while todo:
        obj, level = todo.pop()
        if id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, tf.Tensor) and not isinstance(obj, ops.EagerTensor):
            return obj.graph
        if callable(obj) and getattr(obj, "__closure__", None):
            todo += [(c.cell_contents, level + 1) for c in obj.__closure__
                     if c.cell_contents is not None]
        elif isinstance(obj, (list, tuple)):
            todo += [(o, level + 1) for o in obj]
        elif isinstance(obj, dict):
            todo += [(o, level + 1) for o in obj.values()]
    return None


def release_custom_gradients():
    """Ties every `tf.custom_gradient` registration still held by the registry to its graph.

    `custom_gradient` does this for the package's ops as they are traced; TensorFlow's and
    Keras' own custom gradients (e.g. the all-reduce in every optimizer step,
    `ReplicaContext.all_reduce`) register the same way and stay forever. Called between
    trials of a search (`keras_cnn_ext.tuning`), it lets the previous trial's graphs go. The
    graph is found through the gradient's closure (TensorFlow's `_graph_mode_decorator`
    keeps the forward tensors there); an entry whose graph cannot be found is left alone.

    Returns:
        The number of registrations tied (0 where there were none or the registry's layout
        is not the one this was written for).
    """
    table = _registry()
    if table is None:
        return 0
    tied = 0
    for name, entry in list(table.items()):
        if not name.startswith("CustomGradient-") or not isinstance(entry, dict):
            continue
        gradient = entry.get("type")
        if gradient is None or getattr(gradient, "keras_cnn_ext_weak", False):
            continue
        graph = _graph_in_closure(gradient)
        if graph is not None:
            _tie(table, name, entry, graph)
            tied += 1
    return tied


def custom_gradient(f):
    """`tf.custom_gradient(f)`, without the process-wide leak of every graph it is traced in.

    Eagerly it is `tf.custom_gradient` itself (eager gradients live on the tape, nothing is
    registered).

    Example:

    >>> @custom_gradient
    ... def square(x):
    ...     return x * x, lambda g: 2.0 * x * g
    >>> x = tf.constant(3.0)
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = tf.function(square)(x)
    >>> float(tape.gradient(y, x))
    6.0
    """
    decorated = tf.custom_gradient(f)

    @functools.wraps(f)
    def call(*args, **kwargs):
        result = decorated(*args, **kwargs)
        if not tf.executing_eagerly():
            _tie_to_graph(result)
        return result

    return call
