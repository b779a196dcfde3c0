"""The gradient of a function through the running Keras backend's own autodiff (jax.grad,
torch's backward, tf.GradientTape), for the backend test children. Imports no backend at load
(tests/_backends_child.py runs with TensorFlow's import blocked off TensorFlow)."""

import keras
import numpy as np


def value_and_grads(fn, inputs, upstream, our_backward=False):
    """fn(*inputs) and the gradients of sum(fn(*inputs) * upstream) w.r.t. the inputs, as NumPy.

    Args:
        fn: a function of backend tensors.
        inputs: NumPy arrays.
        upstream: a NumPy array of fn's output shape (the linear loss's weights).
        our_backward: on torch, also assert that the output's gradient function is the
            portable tier's `torch.autograd.Function` (not autodiff of its forward).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        # one compiled program per call: much faster here than JAX's op-by-op dispatch
        args = [jnp.asarray(a) for a in inputs]
        y, grads = jax.jit(lambda *a: (fn(*a), jax.grad(
            lambda *b: jnp.sum(fn(*b) * upstream), argnums=tuple(range(len(a))))(*a)))(*args)
        return np.asarray(y), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        args = [torch.tensor(a, requires_grad=True) for a in inputs]
        y = fn(*args)
        if our_backward:
            assert "_Function" in type(y.grad_fn).__name__, type(y.grad_fn)
        (y * torch.tensor(upstream)).sum().backward()
        return y.detach().numpy(), [a.grad.numpy() for a in args]
    import tensorflow as tf

    args = [tf.constant(a) for a in inputs]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = fn(*args)
        loss = tf.reduce_sum(y * upstream)
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, args)]
