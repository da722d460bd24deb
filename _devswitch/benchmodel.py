"""What ``devswitch.benchmark`` and the batch finder need to know of a model: which model a name or a
factory means, its input shape, labels that fit its output, its FLOPs per sample in a mode, and a compile for
training where the user gave none."""

from __future__ import annotations

import resource
import sys

from .flops import count_flops


def host_rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def input_shape(model) -> tuple[int, ...]:
    shape = model.inputs[0].shape
    return tuple(int(d) for d in shape[1:])


def labels(model, batch: int):
    import numpy as np

    classes = int(model.outputs[0].shape[-1])
    rng = np.random.default_rng(0)
    if classes > 1:
        return rng.integers(0, classes, size=(batch,)), "sparse_categorical_crossentropy"
    return rng.normal(size=(batch, 1)).astype("float32"), "mse"


def resolve_model(model, name: str | None):
    from .models import BUNDLED

    if isinstance(model, str):
        if model not in BUNDLED:
            from .errors import UsageError

            raise UsageError(f"unknown bundled model '{model}'", hint="choose one of " + ", ".join(BUNDLED))
        return BUNDLED[model](), name or model
    if callable(model) and not hasattr(model, "layers"):
        built = model()
        return built, name or getattr(built, "name", "model")
    return model, name or model.name


def check_input_shape(model, label: str) -> None:
    if not getattr(model, "inputs", None):
        from .errors import UsageError

        raise UsageError(
            f"model '{label}' has no known input shape, so synthetic input cannot be made",
            hint="build it from keras.Input(...) (functional or Sequential), or wrap a subclassed "
            "model: keras.Sequential([keras.Input(shape), model])",
        )


def mode_flops(model, mode: str) -> tuple[float | None, str]:
    flops, note = count_flops(model)
    if mode == "training" and flops:
        return 3 * flops, "estimate: 3x the forward FLOPs (forward + two backward matmuls); " + note
    return flops, note


def compile_for_training(model, jit_compile: bool) -> dict:
    """Compile an uncompiled model with SGD and a loss fitting its output; say what will be timed."""
    if not model.compiled:
        _, loss = labels(model, 1)
        model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
    loss = getattr(model, "loss", None)
    return {
        "loss": getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss),
        "optimizer": type(model.optimizer).__name__,
        "step": "model.train_on_batch",
    }
