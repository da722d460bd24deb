"""What a switch costs in accuracy: a model's outputs against a strict float32 reference, from the same weights.

A ``Reference`` holds a model's weights, a seeded input and the outputs computed from them in full
float32 (in inference), or the loss after a few SGD steps on seeded data (in training). ``deviation``
runs another configuration of the same model from the same weights on the same input, through the
same call path that was timed, and says how far it lands: per sample, the relative L2 error
||y - y_ref|| / ||y_ref|| (its maximum and median over the samples) and, for a classifier (outputs of
shape (samples, classes)), how often the top-1 class agrees; in training, the relative difference of
the loss. A reference travels between processes (and backends: Keras weights are arrays) as one .npz file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES = 32  # the seeded input: enough for a median and a top-1 rate, small next to a timed run
TRAIN_STEPS = 5  # training mode: SGD steps from the shared weights on the seeded batch
SEED = 0


@dataclass(frozen=True)
class Reference:
    """The weights, the seeded input and the reference outputs (inference) or loss (training)."""

    weights: tuple  # numpy arrays, in model.get_weights() order
    x: Any  # (samples, ...) float32
    outputs: Any = None  # (samples, n) float64: every output of a sample, flattened
    loss: float | None = None  # training: after TRAIN_STEPS steps of SGD
    labels: Any = None  # training: the seeded targets
    about: dict | None = None  # how it was computed: backend, device, precision, math, mode

    def save(self, path: str | Path) -> None:
        import numpy as np

        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays["x"] = self.x
        if self.outputs is not None:
            arrays["outputs"] = self.outputs
        if self.labels is not None:
            arrays["labels"] = self.labels
        about = {**(self.about or {}), "loss": self.loss, "weights": len(self.weights)}
        with open(path, "wb") as handle:  # a file object: numpy would otherwise add ".npz" to the name
            np.savez(handle, about=np.array(json.dumps(about)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            about = json.loads(str(data["about"]))
            weights = tuple(data[f"w{i}"] for i in range(about.pop("weights")))
            loss = about.pop("loss")
            return cls(
                weights,
                data["x"],
                data["outputs"] if "outputs" in data else None,
                loss,
                data["labels"] if "labels" in data else None,
                about,
            )


def seeded_input(model, samples: int = SAMPLES):
    """``samples`` inputs drawn uniformly in [0, 1), as the benchmark's synthetic input, from a fixed seed."""
    import numpy as np

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(SEED).random((samples, *shape), dtype=np.float32)


def flat_outputs(y) -> Any:
    """Any model output (a tensor, a list or a dict of them) as (samples, n) float64 on the host."""
    import keras
    import numpy as np

    parts = [np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64) for t in keras.tree.flatten(y)]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def outputs_at(forward: Callable[[Any], Any], x, batch: int) -> Any:
    """The outputs of ``forward`` over ``x`` fed in batches of ``batch`` (the last one padded, and a batch
    larger than ``x`` filled by repeating it), so that exactly the timed call path and shape compute them."""
    import keras
    import numpy as np

    samples, chunks = len(x), []
    for start in range(0, samples, batch):
        part = x[start : start + batch]
        if len(part) < batch:
            part = np.resize(part, (batch, *x.shape[1:]))
        chunks.append(flat_outputs(forward(keras.ops.convert_to_tensor(part)))[: min(batch, samples - start)])
    return np.concatenate(chunks, axis=0)


def reference(
    model, mode: str = "inference", samples: int = SAMPLES, about: dict | None = None, loss: Any = None
) -> Reference:
    """The reference of ``model`` under the settings in force (the caller makes them strict float32)."""
    x = seeded_input(model, samples)
    weights = tuple(model.get_weights())
    outs = getattr(model, "outputs", None) or []
    about = {**(about or {}), "classifier": len(outs) == 1 and len(outs[0].shape) == 2 and outs[0].shape[-1] > 1}
    if mode == "training":
        labels, loss_name = _labels(model, samples)
        loss = loss or (getattr(model, "loss", None) if getattr(model, "compiled", False) else None) or loss_name
        value = train_loss(model, weights, x, labels, loss)
        return Reference(weights, x, None, value, labels, {**about, "mode": mode, "samples": samples})
    outputs = outputs_at(lambda t: model(t, training=False), x, samples)
    return Reference(weights, x, outputs, None, None, {**about, "mode": mode, "samples": samples})


def _labels(model, samples: int):
    import numpy as np

    classes = int(model.outputs[0].shape[-1])
    rng = np.random.default_rng(SEED + 1)
    if classes > 1:
        return rng.integers(0, classes, size=(samples,)), "sparse_categorical_crossentropy"
    return rng.normal(size=(samples, 1)).astype("float32"), "mse"


def load_weights(model, ref: Reference) -> None:
    """Give ``model`` the reference's weights; a ValueError naming the difference when they do not fit."""
    own = model.get_weights()
    if len(own) != len(ref.weights) or any(a.shape != b.shape for a, b in zip(own, ref.weights, strict=True)):
        shapes = [tuple(w.shape) for w in own][:3]
        raise ValueError(
            f"the model's weights ({len(own)} arrays, first {shapes}) do not match the reference's "
            f"({len(ref.weights)} arrays): does the factory build the same model every time?"
        )
    model.set_weights(list(ref.weights))


def train_loss(model, weights: Sequence, x, labels, loss, clone: bool = False) -> float:
    """The loss after TRAIN_STEPS steps of plain SGD from ``weights`` on (x, labels), one batch per step;
    ``clone``: on a clone of ``model`` built under the policy in force, leaving the model itself as it was."""
    import keras

    if clone:
        import warnings

        with warnings.catch_warnings():  # "compile() was not called": it is, just below
            warnings.simplefilter("ignore", UserWarning)
            model = keras.models.clone_model(model)
    model.set_weights(list(weights))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss=loss)
    value = float("nan")
    for _ in range(TRAIN_STEPS):
        value = model.train_on_batch(x, labels)
        value = float(value[0] if isinstance(value, (list, tuple)) else value)
    return value


def deviation(ref: Reference, outputs) -> dict:
    """How far ``outputs`` (samples, n) land from the reference's: plain data for a record."""
    import numpy as np

    y, r = np.asarray(outputs, dtype=np.float64), ref.outputs
    finite = np.isfinite(y).all(axis=1)
    norms = np.linalg.norm(r, axis=1)
    errors = np.linalg.norm(y - r, axis=1) / np.where(norms > 0, norms, 1.0)
    result = {
        "status": "ok",
        "samples": int(len(y)),
        "nonfinite_samples": int((~finite).sum()),
        "max_rel_error": float(errors.max()) if finite.all() else math.inf,
        "median_rel_error": float(np.median(np.where(finite, errors, np.inf))),
        "top1_agreement": None,
        "reference": dict(ref.about or {}),
        "method": "per sample ||y - y_ref|| / ||y_ref|| over all outputs; max and median over the samples",
    }
    # argmax of a row holding NaN is index 0, which agrees with a reference whose class 0 wins: a column of
    # NaN read "100%". With any output not finite, agreement is not a figure at all (shown as n/a).
    if (ref.about or {}).get("classifier") and y.shape == r.shape and finite.all():
        result["top1_agreement"] = float((y.argmax(axis=1) == r.argmax(axis=1)).mean())
    return result


def loss_deviation(ref: Reference, value: float) -> dict:
    """Training: the loss after the same SGD steps, against the reference's."""
    rel = abs(value - ref.loss) / abs(ref.loss) if ref.loss and math.isfinite(value) else math.inf
    return {
        "status": "ok",
        "samples": int(len(ref.x)),
        "loss": value,
        "reference_loss": ref.loss,
        "loss_rel_diff": rel,
        "max_rel_error": rel,
        "reference": dict(ref.about or {}),
        "method": f"loss after {TRAIN_STEPS} SGD steps (lr 0.01) from the shared weights on the seeded batch, "
        "|loss - loss_ref| / |loss_ref|",
    }


def unavailable(reason: str) -> dict:
    return {"status": f"unavailable: {reason}"}
