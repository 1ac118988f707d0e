"""LiteRT (formerly TensorFlow Lite) as a third inference engine, fp32 on the CPU.

The trained ``.keras`` model is converted once with ``tf.lite.TFLiteConverter`` (no
quantization, builtin ops only, so the standalone runtime can run it) and kept as
``model.tflite`` in the model's cache folder. Inference uses the interpreter of the
``ai-edge-litert`` package, not ``tf.lite.Interpreter``, which TensorFlow 2.21 deprecates; a
cached conversion runs without importing TensorFlow at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import Backend, DeviceUnavailable, Option, Predictor, TrainedModel, hookimpl

TFLITE_FILE = "model.tflite"
SIDECAR_FILE = "model.tflite.json"


class LiteRtPredictor(Predictor):
    """One interpreter; its input is resized only when the batch shape changes."""

    def __init__(self, interpreter: Any, details: dict[str, Any]) -> None:
        self._interpreter = interpreter
        self._input = interpreter.get_input_details()[0]["index"]
        self._output = interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None
        self._details = details

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._shape:
            # strict: only the batch dimension (-1 in the signature) may change.
            self._interpreter.resize_tensor_input(self._input, batch.shape, strict=True)
            self._interpreter.allocate_tensors()
            self._shape = batch.shape
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)  # a copy, on the host

    def describe(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self._interpreter = None


class LiteRtBackend(Backend):
    name = "litert"
    description = "LiteRT interpreter (ai-edge-litert), fp32, converted by tf.lite.TFLiteConverter"
    devices = ("cpu",)
    options = {
        "num_threads": Option(0, "interpreter threads; 0: LiteRT's default"),
        "xnnpack": Option(True, "false: builtin kernels only, without the XNNPACK delegate"),
    }

    def probe_devices(self) -> dict[str, str | None]:
        if util.find_spec("ai_edge_litert") is None:
            return {
                "cpu": "the ai-edge-litert package is not installed: pip install ai-edge-litert"
            }
        return {"cpu": None}

    def convert(self, model: TrainedModel, options: Mapping[str, Any]) -> None:
        """Convert in the runner, so that workers load ``model.tflite`` without TensorFlow."""
        converted_model(model)

    def prepare(
        self, model: TrainedModel, device: str, options: Mapping[str, Any]
    ) -> LiteRtPredictor:
        if device != "cpu":
            raise DeviceUnavailable(f"the litert backend runs on the cpu only, not {device!r}")
        settings = self.check_options(options)
        tflite_path, conversion = converted_model(model)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (
            OpResolverType.AUTO
            if settings["xnnpack"]
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        interpreter = Interpreter(
            model_path=str(tflite_path),
            num_threads=settings["num_threads"] or None,
            experimental_op_resolver_type=resolver,
        )
        details = {
            "inference_path": "ai_edge_litert Interpreter.invoke",
            "op_resolver": resolver.name,
            "xnnpack": settings["xnnpack"],
            "threads": settings["num_threads"] or "litert default",
            "ai_edge_litert": metadata.version("ai-edge-litert"),
            "tflite_bytes": tflite_path.stat().st_size,
            **conversion,
        }
        return LiteRtPredictor(interpreter, details)


def converted_model(model: TrainedModel) -> tuple[Path, dict[str, Any]]:
    """``model.tflite`` in the model's cache folder, converting on first use.

    The file is written under a temporary name and renamed, so an interrupted conversion never
    leaves a truncated model behind; its sidecar says which converter made it.
    """
    target = model.artifact_dir / TFLITE_FILE
    sidecar = model.artifact_dir / SIDECAR_FILE
    if target.is_file() and sidecar.is_file():
        return target, json.loads(sidecar.read_text())
    import tensorflow as tf

    from harness.api import load_model

    keras_model = load_model(model.keras_path)  # in the runner: the model it holds already
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = []  # fp32: no quantization
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    conversion = {
        "converter": "tf.lite.TFLiteConverter.from_keras_model (fp32, builtin ops)",
        "converted_with_tensorflow": tf.__version__,
    }
    _write_atomically(target, flatbuffer)
    _write_atomically(sidecar, json.dumps(conversion).encode())
    return target, conversion


def _write_atomically(path: Path, payload: bytes) -> None:
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(LiteRtBackend())
