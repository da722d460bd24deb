"""Forward FLOPs of a Keras model, counted analytically from its symbolic layer shapes (Conv2D and Dense)."""

from __future__ import annotations


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def count_flops(model) -> tuple[float | None, str]:
    """Forward FLOPs per sample of Conv2D and Dense layers (2 per multiply-add), from symbolic shapes."""
    import keras

    total, counted, skipped = 0, 0, []
    for layer in model._flatten_layers(include_self=False):
        try:
            if isinstance(layer, keras.layers.Dense):
                in_shape, out_shape = layer.input.shape, layer.output.shape
                total += 2 * _prod(in_shape[1:]) * int(out_shape[-1])
                counted += 1
            elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw = layer.kernel_size
                out_shape = layer.output.shape
                cin = int(layer.input.shape[-1 if layer.data_format == "channels_last" else 1])
                spatial = out_shape[1:3] if layer.data_format == "channels_last" else out_shape[2:4]
                total += 2 * kh * kw * (cin // layer.groups) * layer.filters * _prod(spatial)
                counted += 1
            elif layer.weights and not isinstance(
                layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
            ):
                skipped.append(layer.name)
        except (AttributeError, ValueError, TypeError):  # subclassed models have no symbolic shapes
            return None, "not counted: the model has no symbolic layer shapes (subclassed model)"
    if not counted:
        return None, "not counted: no Conv2D or Dense layer"
    note = "Conv2D and Dense layers, 2 FLOP per multiply-add, forward pass"
    if skipped:
        note += "; not counted: " + ", ".join(skipped)
    return float(total), note
