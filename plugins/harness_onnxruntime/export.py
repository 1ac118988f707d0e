"""The Keras-to-ONNX export, cached beside the trained model and reused when present.

The export traces the model through a ``tf.function`` whose input signature has a ``None``
batch dimension, so the ONNX graph takes any batch size. Every weight is an initializer in the
layout its node reads (no Transpose or Reshape left on a weight), so ONNX Runtime's quantization
tools take the file as is. The cache is written atomically (temporary file, then
``os.replace``), so a killed export never leaves a torn ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.api import HarnessError, TrainedModel

ONNX_NAME = "model.onnx"
EXPORT_RECORD_NAME = "model.onnx.json"
EXPORT_FORMAT = 2
"""Bump when the exported graph changes, so cached exports become misses (2: weights folded)."""
DEFAULT_OPSET = 17
INPUT_NAME = "images"
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
"""Operators that only rearrange their input's values."""


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

    from harness.api import load_model

    keras_model = load_model(model.keras_path)  # in the runner: the model it holds already
    started = time.perf_counter()
    proto = _convert(keras_model, opset)
    export_seconds = time.perf_counter() - started

    model.artifact_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)  # the record vouches for the .onnx: drop it first
    write_atomically(onnx_path, proto.SerializeToString())
    export = OnnxExport(
        path=onnx_path,
        opset=opset,
        export_seconds=export_seconds,
        onnx_bytes=onnx_path.stat().st_size,
        tf2onnx_version=tf2onnx.__version__,
        cached=False,
    )
    record = {**asdict(export), "path": ONNX_NAME, "cache_key": model.cache_key}
    record["format"] = EXPORT_FORMAT
    del record["cached"]
    write_atomically(record_path, json.dumps(record, indent=1).encode())
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
    remain (a Transpose per conv kernel to OIHW, a Reshape/Squeeze per conv bias);
    :func:`_fold_weight_nodes` folds them into the initializers.
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
    _fold_weight_nodes(proto)
    return proto


def _fold_weight_nodes(proto: Any) -> None:
    """Replace the nodes that read only initializers by their results, stored as initializers.

    ONNX Runtime folds such nodes when it opens a session, but its quantization tools do not:
    ``quantize_dynamic`` wants a Conv's weight to be an initializer, not a Transpose of one.
    The nodes are evaluated with onnx's reference evaluator (exact for these layout changes),
    and a weight that only changed layout keeps its Keras name when the original had no other
    reader (a folded batch norm's scale and offset keep tf2onnx's names: they are new values).
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    constants = {tensor.name for tensor in graph.initializer}
    folded_at: set[int] = set()
    for index, node in enumerate(graph.node):  # ONNX stores nodes in topological order
        if _deterministic(node) and all(name in constants for name in node.input if name):
            folded_at.add(index)
            constants.update(node.output)
    if not folded_at:
        return
    folded = [node for index, node in enumerate(graph.node) if index in folded_at]
    kept = [node for index, node in enumerate(graph.node) if index not in folded_at]
    outputs = {graph_output.name for graph_output in graph.output}
    read = {name for node in kept for name in _node_reads(node)} | outputs
    wanted = [name for node in folded for name in node.output if name in read]

    origin: dict[str, str | None] = {tensor.name: tensor.name for tensor in graph.initializer}
    for node in folded:  # a layout change holds its first input's values; arithmetic does not
        for name in node.output:
            layout = node.op_type in LAYOUT_OPS and node.input
            origin[name] = origin.get(node.input[0]) if layout else None
    sources = [origin[name] for name in wanted]
    renames = {
        name: source
        for name, source in zip(wanted, sources, strict=True)
        if source and source not in read and sources.count(source) == 1 and name not in outputs
    }

    needed = {name for node in folded for name in node.input if name}
    weights = onnx.helper.make_graph(
        folded,
        "weights",
        [],
        [onnx.helper.make_empty_tensor_value_info(name) for name in wanted],
        [tensor for tensor in graph.initializer if tensor.name in needed],
    )
    values = ReferenceEvaluator(
        onnx.helper.make_model(weights, opset_imports=proto.opset_import)
    ).run(None, {})

    # Deleted by index: removing a message by value would compare whole tensors.
    _delete_where(graph.node, lambda index, _: index in folded_at)
    _delete_where(graph.initializer, lambda _, tensor: tensor.name not in read)
    _delete_where(graph.value_info, lambda _, info: info.name in constants)
    for name, value in zip(wanted, values, strict=True):
        graph.initializer.append(onnx.numpy_helper.from_array(value, renames.get(name, name)))
    for node in graph.node:
        _rename_reads(node, renames)


def _delete_where(repeated: Any, doomed: Callable[[int, Any], bool]) -> None:
    """Delete the entries of a repeated protobuf field for which ``doomed(index, entry)``."""
    for index in reversed(range(len(repeated))):
        if doomed(index, repeated[index]):
            del repeated[index]


def _subgraphs(node: Any) -> list[Any]:
    import onnx

    graphs: list[Any] = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            graphs.append(attribute.g)
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attribute.graphs)
    return graphs


def _deterministic(node: Any) -> bool:
    """A node whose result depends only on its inputs: neither random nor holding subgraphs."""
    return not node.op_type.startswith("Random") and not _subgraphs(node)


def _node_reads(node: Any) -> set[str]:
    """The tensor names ``node`` reads, those its subgraphs read included."""
    reads = {name for name in node.input if name}
    for subgraph in _subgraphs(node):
        reads |= _consumed_names(subgraph)
    return reads


def _consumed_names(graph: Any) -> set[str]:
    """Every tensor name a node reads, in ``graph`` and in the subgraphs of its nodes."""
    return {name for node in graph.node for name in _node_reads(node)}


def _rename_reads(node: Any, renames: dict[str, str]) -> None:
    """Point ``node``'s inputs, and those of its subgraphs' nodes, at the renamed tensors."""
    for index, name in enumerate(node.input):
        if name in renames:
            node.input[index] = renames[name]
    for subgraph in _subgraphs(node):
        for inner in subgraph.node:
            _rename_reads(inner, renames)


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
    if record.get("format") != EXPORT_FORMAT:
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


def write_atomically(path: Path, data: bytes) -> None:
    # A unique temporary name: two workers exporting at once each finish a whole file.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
