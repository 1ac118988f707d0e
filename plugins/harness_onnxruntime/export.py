"""The Keras-to-ONNX export, cached beside the trained model and reused when present.

The export traces the model through a ``tf.function`` whose input signature has a ``None``
batch dimension, so the ONNX graph takes any batch size. The cache is written atomically
(temporary file, then ``os.replace``), so a killed export never leaves a torn ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.api import TrainedModel

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

    import tensorflow as tf
    import tf2onnx
    from keras.models import load_model

    keras_model = load_model(model.keras_path, compile=False)
    signature = [tf.TensorSpec([None, *keras_model.inputs[0].shape[1:]], tf.uint8, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def infer(images: tf.Tensor) -> tf.Tensor:
        return keras_model(images, training=False)

    started = time.perf_counter()
    proto = _convert(infer, signature, opset)
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


def _convert(function: Any, signature: list[Any], opset: int) -> Any:
    """tf2onnx in its large-model mode, then the weights put back inside the model.

    The large-model mode keeps big constants out of the protobufs tf2onnx copies again and
    again while it optimizes: for the 51M-weight nopool model this cuts the export from about
    80 s and 10 GB of memory to about 30 s and 7 GB. The result still fits one protobuf (< 2 GB),
    so the weights are inlined again and ``model.onnx`` stays a single self-contained file.
    """
    import numpy as np
    import onnx
    import tf2onnx

    if not hasattr(np, "product"):  # tf2onnx 1.17's large-model path still calls np.product
        np.product = np.prod
    proto, storage = tf2onnx.convert.from_function(
        function, input_signature=signature, opset=opset, large_model=True
    )
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}["location"]
        tensor.raw_data = storage.name_to_tensor_data[location]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return proto


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
