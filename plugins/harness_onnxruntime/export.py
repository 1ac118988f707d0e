"""The Keras-to-ONNX export, cached beside the trained model and reused when present.

The export traces the model through a ``tf.function`` whose input signature has a ``None``
batch dimension, so the ONNX graph takes any batch size. The cache is written atomically
(temporary file, then ``os.replace``), so a killed export never leaves a torn ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.api import TrainedModel
from harness.errors import HarnessError

ONNX_NAME = "model.onnx"
EXPORT_RECORD_NAME = "model.onnx.json"
DEFAULT_OPSET = 17
INPUT_NAME = "images"


@dataclass(frozen=True)
class OnnxExport:
    """A cached export and how it was made."""

    path: Path
    opset: int
    export_seconds: float
    """How long the export took when it was made (not now, if ``cached``)."""
    onnx_bytes: int
    tf2onnx_version: str
    cached: bool


def export_onnx(model: TrainedModel, opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Return ``model``'s ONNX export at ``opset``, exporting only when no valid cache exists."""
    onnx_path = model.artifact_dir / ONNX_NAME
    record_path = model.artifact_dir / EXPORT_RECORD_NAME
    cached = _read_cache(onnx_path, record_path, model.cache_key, opset)
    if cached is not None:
        return cached

    import tf2onnx

    from harness.model_cache import load_model

    keras_model = load_model(model.keras_path)  # in the runner: the model it holds already
    started = time.perf_counter()
    proto = _convert(keras_model, opset)
    export_seconds = time.perf_counter() - started

    model.artifact_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)  # the record vouches for the .onnx: drop it first
    _write_atomically(onnx_path, proto.SerializeToString())
    export = OnnxExport(
        path=onnx_path,
        opset=opset,
        export_seconds=export_seconds,
        onnx_bytes=onnx_path.stat().st_size,
        tf2onnx_version=tf2onnx.__version__,
        cached=False,
    )
    record = {**asdict(export), "path": ONNX_NAME, "cache_key": model.cache_key}
    del record["cached"]
    _write_atomically(record_path, json.dumps(record, indent=1).encode())
    return export


def _convert(keras_model: Any, opset: int) -> Any:
    """tf2onnx on a function of the images AND the weights, then the weights made initializers.

    Traced with its variables captured, the model reaches tf2onnx as a frozen GraphDef whose
    constants hold every weight, and tf2onnx copies and re-optimizes those protobufs again and
    again: for the 51M-weight nopool model, 32-40 s and a 7-9 GB peak. Traced through
    ``stateless_call`` with the weights as inputs, tf2onnx sees no big constant (2-3 s,
    2.2-2.6 GB peak, most of it TensorFlow and the loaded model); the weight values are then
    attached as initializers, so ``model.onnx`` is self-contained, with one ``images`` input.

    tf2onnx cannot fold its layout changes into an input, so a few small weight-only nodes
    remain (a Transpose per conv kernel to OIHW, a Reshape/Squeeze per conv bias). They are
    left to ONNX Runtime, whose constant folding (on from ORT_ENABLE_BASIC; the backend uses
    ORT_ENABLE_ALL) removes them at session creation: the optimized graph is the one the
    constant-captured export gave, op for op, and its logits are bit-identical. Folding them
    here would add code and gain nothing.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    trainable = list(keras_model.trainable_variables)
    weights = trainable + list(keras_model.non_trainable_variables)
    names = _weight_input_names(weights)
    image_shape = [None, *keras_model.inputs[0].shape[1:]]
    signature = [tf.TensorSpec(image_shape, tf.uint8, name=INPUT_NAME)]
    signature += [
        tf.TensorSpec(w.shape, w.dtype, name=name) for w, name in zip(weights, names, strict=True)
    ]

    @tf.function(input_signature=signature)
    def infer(images: tf.Tensor, *values: tf.Tensor) -> tf.Tensor:
        logits, _ = keras_model.stateless_call(
            list(values[: len(trainable)]), list(values[len(trainable) :]), images, training=False
        )
        return logits

    proto, _ = tf2onnx.convert.from_function(infer, input_signature=signature, opset=opset)
    graph = proto.graph
    values = dict(zip(names, weights, strict=True))
    consumed = _consumed_names(graph)
    weight_inputs = [graph_input for graph_input in graph.input if graph_input.name in values]
    for graph_input in weight_inputs:
        graph.input.remove(graph_input)
        if graph_input.name in consumed:  # an unused weight (a dropout's seed) is dropped
            value = values[graph_input.name].numpy()
            graph.initializer.append(onnx.numpy_helper.from_array(value, graph_input.name))
    leftover = [graph_input.name for graph_input in graph.input if graph_input.name != INPUT_NAME]
    if leftover:
        raise HarnessError(
            f"the ONNX export of {keras_model.name} has inputs besides {INPUT_NAME!r}: "
            f"{', '.join(leftover)}; only the images and the model's weights were expected"
        )
    return proto


def _weight_input_names(weights: list[Any]) -> list[str]:
    """A unique graph name per weight, from its Keras path ("conv1/kernel" -> "conv1.kernel")."""
    names: list[str] = []
    for weight in weights:
        name = re.sub(r"[^A-Za-z0-9_.]", "_", weight.path.replace("/", "."))
        if not name[:1].isalnum():  # TensorFlow op names start with a letter or digit
            name = f"w{name}"
        while name in names or name == INPUT_NAME:
            name = f"{name}_"
        names.append(name)
    return names


def _consumed_names(graph: Any) -> set[str]:
    """Every tensor name a node reads, in ``graph`` and in the subgraphs of its nodes."""
    import onnx

    consumed: set[str] = set()
    for node in graph.node:
        consumed.update(node.input)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                consumed |= _consumed_names(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    consumed |= _consumed_names(subgraph)
    return consumed


def _read_cache(
    onnx_path: Path, record_path: Path, cache_key: str, opset: int
) -> OnnxExport | None:
    if not (onnx_path.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("cache_key") != cache_key or record.get("opset") != opset:
        return None
    if record.get("onnx_bytes") != onnx_path.stat().st_size:
        return None
    return OnnxExport(
        path=onnx_path,
        opset=opset,
        export_seconds=record["export_seconds"],
        onnx_bytes=record["onnx_bytes"],
        tf2onnx_version=record["tf2onnx_version"],
        cached=True,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    # A unique temporary name: two workers exporting at once each finish a whole file.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
