"""Small custom training loops that Keras' fit does not scale the loss for (issue 26 item 5): ``torch`` takes
three ``torch.optim.SGD`` steps on a Keras model (KERAS_BACKEND=torch); ``jax`` takes three steps of a Keras optimizer's
``stateless_apply`` under ``jax.jit``, as corpus/loop_jax_stateless.py does (whose ``predict`` imports
TensorFlow through Keras' data adapter, which a JAX process here must not); ``optax`` imports
``optax`` and updates the weights by hand with ``jax.grad`` (KERAS_BACKEND=jax), so no optimizer step can be
seen. No fit runs. Prints RESULT with the backend, the policy in force, the steps and whether TensorFlow was
imported."""

import json
import sys

import keras
import numpy as np

MODE = sys.argv[1]


def model() -> keras.Model:
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, dtype="float32")]
    )


def torch_loop(net: keras.Model) -> int:
    import torch

    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.ones(16, 4), torch.ones(16, 1)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        optimizer.step()
    return 3


def optax_loop(net: keras.Model) -> int:
    import jax
    import optax  # noqa: F401 - imported as a loop with optax would; its updates are written by hand here

    x, y = np.ones((16, 4), "float32"), np.ones((16, 1), "float32")

    def loss(trainable):
        out, _ = net.stateless_call(trainable, [v.value for v in net.non_trainable_variables], x)
        return ((out - y) ** 2).mean()

    trainable = [v.value for v in net.trainable_variables]
    for _ in range(3):
        grads = jax.grad(loss)(trainable)
        trainable = [w - 0.01 * g for w, g in zip(trainable, grads, strict=True)]
    return 3


def jax_loop(net: keras.Model) -> int:
    import jax

    optimizer = keras.optimizers.SGD(0.01)
    optimizer.build(net.trainable_variables)
    x, y = np.ones((16, 4), "float32"), np.ones((16, 1), "float32")

    def loss(trainable, non_trainable):
        out, _ = net.stateless_call(trainable, non_trainable, x)
        return ((out - y) ** 2).mean()

    @jax.jit
    def step(trainable, non_trainable, opt_vars):
        grads = jax.grad(loss)(trainable, non_trainable)
        return optimizer.stateless_apply(opt_vars, grads, trainable)

    trainable, opt_vars = [v.value for v in net.trainable_variables], [v.value for v in optimizer.variables]
    for _ in range(3):
        trainable, opt_vars = step(trainable, [v.value for v in net.non_trainable_variables], opt_vars)
    return 3


steps = {"torch": torch_loop, "jax": jax_loop, "optax": optax_loop}[MODE](model())
print(
    "RESULT "
    + json.dumps(
        {
            "backend": keras.backend.backend(),
            "policy": keras.config.dtype_policy().name,
            "steps": steps,
            "tensorflow imported": "tensorflow" in sys.modules,
        }
    )
)
