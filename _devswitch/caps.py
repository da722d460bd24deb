"""Caps on every ``fit`` a script calls (``devswitch compare --script --max-epochs N --max-steps N``).

``Caps.clip`` takes fit's bound arguments and returns them clipped, with the label every record carries:
the caps, what the script asked for and what ran. The script itself is not edited: the ``History`` it gets
back is that of the capped fit. Pure: no framework is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIT_DEFAULT_EPOCHS = 1  # Keras' Model.fit(epochs=1)


@dataclass(frozen=True)
class Caps:
    max_epochs: int | None = None  # epochs per fit (counted from initial_epoch)
    max_steps: int | None = None  # steps (batches) per epoch

    def __bool__(self) -> bool:
        return self.max_epochs is not None or self.max_steps is not None

    def to_dict(self) -> dict:
        return {"max_epochs": self.max_epochs, "max_steps": self.max_steps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Caps:
        data = data or {}
        return cls(data.get("max_epochs"), data.get("max_steps"))

    def clip(self, arguments: Mapping[str, Any], batches: int | None) -> tuple[dict, dict]:
        """fit's arguments with ``epochs`` and ``steps_per_epoch`` clipped, and the label of the record.

        ``batches``: the batches one epoch of the input holds, where it can be known (arrays, a dataset of
        known length); None when it cannot (a generator): then ``steps_per_epoch`` is set to the cap.
        """
        out = dict(arguments)
        initial = int(out.get("initial_epoch") or 0)
        epochs = int(out.get("epochs", FIT_DEFAULT_EPOCHS))
        steps = out.get("steps_per_epoch")
        label = {**self.to_dict(), "epochs_asked": epochs - initial, "steps_asked": steps, "batches_per_epoch": batches}
        if self.max_epochs is not None and epochs - initial > self.max_epochs:
            out["epochs"] = initial + self.max_epochs
        if self.max_steps is not None:
            asked = steps if steps is not None else batches
            if asked is None or asked > self.max_steps:
                out["steps_per_epoch"] = self.max_steps
        label["epochs_run"] = int(out.get("epochs", FIT_DEFAULT_EPOCHS)) - initial
        label["steps_run"] = out.get("steps_per_epoch", steps if steps is not None else batches)
        label["applied"] = label["epochs_run"] != label["epochs_asked"] or label["steps_run"] != (
            steps if steps is not None else batches
        )
        return out, label


def batches_per_epoch(x: Any, batch_size: Any, validation_split: float = 0.0) -> int | None:
    """How many batches one epoch over ``x`` takes: arrays (their first dimension, less the validation split,
    in batches of ``batch_size``, Keras' default 32) or anything with a finite ``len`` (a PyDataset, a
    tf.data.Dataset of known cardinality); None when it cannot be known."""
    leaf = x
    if isinstance(leaf, Mapping):
        leaf = next(iter(leaf.values()), None)
    while isinstance(leaf, (list, tuple)) and leaf:
        leaf = leaf[0]
    shape = getattr(leaf, "shape", None)
    if shape is not None and len(shape) and shape[0] is not None and not hasattr(x, "element_spec"):
        n = int(shape[0])
        if validation_split:
            n = int(math.ceil(n * (1.0 - validation_split)))
        return max(1, math.ceil(n / int(batch_size or 32)))
    cardinality = getattr(x, "cardinality", None)
    if callable(cardinality):  # tf.data: -1 infinite, -2 unknown
        try:
            count = int(cardinality())
        except Exception:  # noqa: BLE001 - a dataset that cannot say
            return None
        return count if count >= 0 else None
    try:
        return int(len(x))
    except Exception:  # noqa: BLE001 - a generator: no length
        return None
