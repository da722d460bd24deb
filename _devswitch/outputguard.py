"""The float16-output guard: which layers produce a model's float16 outputs (the softmax/loss NaN trap), said once.

A functional model says which layer produces each output (``model.outputs``' ``_keras_history``). A
subclassed model does not: once it is built it is traced symbolically here, on KerasTensors shaped like the
call's ``x``, and each output's ``_keras_history`` names its layer; what the trace appends to the model's
layers is cut back, so the model is left exactly as it was. Whatever cannot be traced gets no warning and no
guess (never ``model.layers[-1]``).
"""

from __future__ import annotations

import inspect
import logging
import sys
import warnings
from typing import Any

from . import state

log = logging.getLogger("devswitch")


def policy_name(model) -> str:
    """The name of the dtype policy the model runs under (the global one when it has none)."""
    policy = getattr(model, "dtype_policy", None)
    import keras

    return getattr(policy, "name", None) or keras.config.dtype_policy().name


def float16_outputs(model, x: Any = None) -> list[str] | None:
    """Names of the layers whose float16 output is an output of the model (the softmax/loss NaN trap), in the
    order of the outputs; None when it cannot be told which layer produces an output: then no layer is named,
    rather than a guess such as the model's last. A subclassed model (no ``outputs``) is traced symbolically
    on inputs shaped like ``x`` once it is built (``traced_outputs``)."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        outputs = traced_outputs(model, x) if x is not None and getattr(model, "built", False) else None
    if not outputs:
        return None
    names = []
    for tensor in outputs:
        if "float16" == str(getattr(tensor, "dtype", "")):
            history = getattr(tensor, "_keras_history", None)
            name = getattr(history[0], "name", None) if history else None
            if name and name not in names:
                names.append(name)
    return names


def _symbolic(x: Any) -> Any:
    """KerasTensors shaped like a call's ``x`` (batch dimension None): arrays and tensors, tuples, lists and
    dicts of them, a tf.data.Dataset's inputs from its element_spec; a TypeError for anything else."""
    import keras

    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) and 1 <= len(spec) <= 3 else spec  # Keras' (x, y, weights)
        return _symbolic_spec(spec, tf)
    if isinstance(x, dict):
        return {key: _symbolic(value) for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_symbolic(value) for value in x)
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is None or dtype is None or not len(shape):
        raise TypeError(f"not an array: {type(x).__name__}")
    return keras.KerasTensor((None, *tuple(shape)[1:]), keras.backend.standardize_dtype(dtype))


def _symbolic_spec(spec: Any, tf: Any) -> Any:
    import keras

    if isinstance(spec, dict):
        return {key: _symbolic_spec(value, tf) for key, value in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_symbolic_spec(value, tf) for value in spec)
    if type(spec) is not tf.TensorSpec or spec.shape.rank is None or not spec.shape.rank:
        raise TypeError(f"not a simple TensorSpec: {spec!r}")  # ragged, sparse, unknown rank
    return keras.KerasTensor((None, *spec.shape.as_list()[1:]), spec.dtype.name)


_TRACED_STATE = ("_inbound_nodes", "_outbound_nodes", "_losses")  # lists a symbolic call appends to


def traced_outputs(model, x: Any) -> list[Any] | None:
    """The outputs of ``model.call`` on KerasTensors shaped like ``x``, each with its ``_keras_history``
    (the layer that produced it), or None when the call cannot be traced (raw framework ops, an input that is
    not an array, a layer not built yet) or an output comes from a bare op, not a layer. The model is left
    exactly as it was: what the symbolic calls append to each layer is cut back and ``_called`` restored
    (``layer.output`` still raises for a layer never called symbolically)."""
    import keras

    layers = list(model._flatten_layers())
    if not all(layer.built for layer in layers):
        return None  # a symbolic call would build it: create weights in the user's model
    saved = [(layer, {name: len(getattr(layer, name)) for name in _TRACED_STATE}, layer._called) for layer in layers]
    try:
        inputs = _symbolic(x)
        kwargs = {"training": False} if "training" in inspect.signature(model.call).parameters else {}
        with warnings.catch_warnings():  # what Keras warns about is the user's call's to say, not the trace's
            warnings.simplefilter("ignore")
            outputs = keras.tree.flatten(model.call(inputs, **kwargs))
    except Exception:  # noqa: BLE001 - a model that cannot be traced gets no guess and no error
        return None
    finally:
        for layer, lengths, called in saved:
            for name, length in lengths.items():
                appended = getattr(layer, name)
                while len(appended) > length:
                    appended.pop()  # one at a time: a tracked list untracks each value it drops
            layer._called = called
    producers = [getattr(getattr(tensor, "_keras_history", None), "operation", None) for tensor in outputs]
    if not all(isinstance(producer, keras.layers.Layer) for producer in producers):
        return None  # a bare op (ops.multiply, ``* 2.0``) is not a layer that can be given a dtype
    return outputs


def warn_float16_output(model, x: Any = None) -> None:
    """Warn once per model under a float16 policy when layers produce float16 model outputs. "Once per model"
    is by its name and those layers: the same model loaded back (load_model) is not warned about again. A
    subclassed model is traced once (before the call if it is built, else after its first successful call)."""
    if "float16" not in policy_name(model) or "bfloat16" in policy_name(model):
        return
    session = state.current()  # what was warned about and traced: forgotten by reset(), like the rest
    subclassed = not _has_outputs(model)
    if subclassed:
        if model in session.traced_models or x is None or not getattr(model, "built", False):
            return
        session.traced_models.add(model)
    names = float16_outputs(model, x if subclassed else None)
    if not names:
        return
    key = (getattr(model, "name", "?"), tuple(names))
    if key in session.warned_outputs:
        return
    session.warned_outputs.add(key)
    layers = ", ".join(f"'{name}'" for name in names)
    log.warning(
        f"model '{model.name}' outputs float16 from layer{'s' if len(names) > 1 else ''} {layers} under "
        f"{policy_name(model)}: a float16 softmax or loss can overflow to NaN. Fix: give "
        f'{"each of those layers" if len(names) > 1 else "that layer"} dtype="float32" '
        "(e.g. keras.layers.Activation('softmax', dtype='float32'))."
    )


def _has_outputs(model) -> bool:
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False
