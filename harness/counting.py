"""Parameter and multiply-accumulate counts of a Keras model, layer by layer.

MACs are analytic (from shapes), not profiled, so they are the same on every machine and backend:
they explain latency differences without being one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

WEIGHT_BYTES_FP32 = 4


@dataclass(frozen=True)
class LayerCount:
    """One row of the per-layer table."""

    name: str
    type: str
    output_shape: tuple[int | None, ...]
    """Without the batch dimension."""
    params: int
    macs: int
    """Multiply-accumulates for one image; 0 for layers that do no multiplications by weights."""


@dataclass(frozen=True)
class ModelCounts:
    """Totals and the per-layer table of one model."""

    params_total: int
    params_trainable: int
    params_conv: int
    params_dense: int
    macs_per_image: int
    weight_bytes: int
    """Bytes of all weights stored as float32."""
    layers: tuple[LayerCount, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (tuples become lists)."""
        out = asdict(self)
        out["layers"] = [
            {**layer, "output_shape": list(layer["output_shape"])} for layer in out["layers"]
        ]
        return out


def count_model(model: Any) -> ModelCounts:
    """Count a built ``keras.Model``; layers of unknown types get their parameters and 0 MACs."""
    import keras

    rows: list[LayerCount] = []
    params_conv = params_dense = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        output_shape = tuple(layer.output.shape[1:])
        params = layer.count_params()
        macs = _macs_per_image(layer, output_shape)
        if _is_conv(layer):
            params_conv += params
        elif isinstance(layer, keras.layers.Dense):
            params_dense += params
        rows.append(LayerCount(layer.name, type(layer).__name__, output_shape, params, macs))
    return ModelCounts(
        params_total=model.count_params(),
        params_trainable=sum(_size(w) for w in model.trainable_weights),
        params_conv=params_conv,
        params_dense=params_dense,
        macs_per_image=sum(row.macs for row in rows),
        weight_bytes=sum(_size(w) for w in model.weights) * WEIGHT_BYTES_FP32,
        layers=tuple(rows),
    )


def _is_conv(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D)


def _macs_per_image(layer: Any, output_shape: tuple[int | None, ...]) -> int:
    import keras

    if _is_conv(layer):
        # kernel: (*window, C_in / groups, C_out); each output value costs window * C_in / groups.
        per_output = math.prod(layer.kernel.shape[:-1])
        return math.prod(output_shape) * per_output
    if isinstance(layer, keras.layers.Dense):
        # A Dense on rank > 2 input applies the same matrix at every leading position.
        inputs, outputs = layer.kernel.shape
        return math.prod(output_shape[:-1]) * inputs * outputs
    return 0


def _size(weight: Any) -> int:
    return math.prod(weight.shape)
