"""A custom training loop in JAX: jax.value_and_grad over model.stateless_call, the optimizer's
stateless_apply, the whole step under jax.jit, the state written back to the model at the end."""

BACKENDS = ("jax",)

import json

import jax
import keras
import numpy as np

keras.utils.set_random_seed(13)
rng = np.random.default_rng(13)
x = rng.normal(size=(256, 16)).astype("float32")
y = (x[:, :4].sum(axis=1) > 0).astype("int32")

model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="gelu"),
                          keras.layers.Dropout(0.1), keras.layers.Dense(2)])
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
optimizer = keras.optimizers.Adam(2e-3)
optimizer.build(model.trainable_variables)


def compute_loss(trainable, non_trainable, xb, yb):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
    return loss_fn(yb, logits), non_trainable


grad_fn = jax.value_and_grad(compute_loss, has_aux=True)


@jax.jit
def train_step(state, xb, yb):
    trainable, non_trainable, opt_vars = state
    (loss, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb)
    trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
    return loss, (trainable, non_trainable, opt_vars)


state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
         [v.value for v in optimizer.variables])
losses = []
for epoch in range(3):
    for start in range(0, len(x), 32):
        loss, state = train_step(state, x[start:start + 32], y[start:start + 32])
        losses.append(float(loss))

trainable, non_trainable, _ = state
for variable, value in zip(model.trainable_variables, trainable):
    variable.assign(value)
for variable, value in zip(model.non_trainable_variables, non_trainable):
    variable.assign(value)
accuracy = float((np.argmax(model.predict(x, verbose=0), axis=1) == y).mean())
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "steps": len(losses),
    "loss": losses[-1],
    "accuracy": accuracy,
}))
