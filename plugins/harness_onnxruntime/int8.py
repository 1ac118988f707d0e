"""ONNX Runtime on the ONNX export quantized to 8-bit integers, a backend of its own:
``onnxruntime_int8``.

Dynamic quantization (``onnxruntime.quantization.quantize_dynamic``) stores every Conv's and
MatMul's weights as 8-bit integers and quantizes the activations at run time, batch by batch
(ConvInteger, MatMulInteger): no calibration data, a file about a quarter of the fp32 export's.
It changes the arithmetic on purpose, so the backend declares its own parity tolerance and its
rows sit beside fp32's under their own label. The quantized file is made once per model from
the ONNX export, asked for through the public API (:meth:`harness.api.TrainedModel.artifact`),
and cached beside it.

Static quantization (activation ranges calibrated on 500 training images, ``quantize_static``)
is not offered: on the quick suite's MNIST pool model it agreed less with fp32 (99.84% top-1,
logits up to 1.44 apart, against 99.99% and 0.039 dynamic), was faster than dynamic at batch 32
but still slower than fp32 (p50 36, 55 and 20 ms, on a busy machine), and would need
calibration data inside a backend.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import DeviceUnavailable, Option, ParityTolerance, TrainedModel
from harness_onnxruntime.backend import (
    OnnxRuntimeBackend,
    OnnxRuntimePredictor,
    describe_session,
    open_session,
)
from harness_onnxruntime.export import write_atomically

INT8_NAME = "model.int8.onnx"
INT8_RECORD_NAME = "model.int8.onnx.json"
WEIGHT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
"""``weight_type`` option -> ``onnxruntime.quantization.QuantType`` member."""


@dataclass(frozen=True)
class Int8Model:
    """A cached quantized model and how it was made."""

    path: Path
    int8_bytes: int
    fp32_bytes: int
    """The size of the ONNX export it was quantized from."""
    quantize_seconds: float
    """How long quantization took when it was made (not now, if ``cached``)."""
    cached: bool


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """The ``onnxruntime`` backend's sessions and options on the int8 model, on the CPU.

    Its parity against Keras, measured by the harness for the quick suite's four models (seed 0,
    default options, whole test sets): top-1 agreement 99.98% (MNIST pool), 99.97% (MNIST
    nopool), 99.29% (CIFAR-10 pool), 99.09% (CIFAR-10 nopool); largest logit difference
    0.036-0.070; accuracy within 0.05 points of Keras. The tolerance leaves about a point of
    agreement and 7x the difference as margin: a less confident model flips more classes.
    """

    name = "onnxruntime_int8"
    description = "ONNX Runtime on the export with dynamic int8 quantization (Conv and MatMul)"
    devices = ("cpu",)
    parity = ParityTolerance(min_top1_agreement=0.98, max_abs_logit_diff=0.5)
    options = {
        **OnnxRuntimeBackend.options,
        "weight_type": Option(
            "uint8",
            "8-bit type of the weights (uint8: ConvInteger ran 3x faster at batch 32 here)",
            tuple(WEIGHT_TYPES),
        ),
        "per_channel": Option(False, "one weight scale per output channel, not per tensor"),
    }

    def probe_devices(self) -> dict[str, str | None]:
        return {"cpu": super().probe_devices()["cpu"]}

    def convert(self, model: TrainedModel, options: Mapping[str, Any]) -> None:
        """Export and quantize in the runner, so that workers only open the int8 file."""
        quantize(model, self.check_options(options))

    def artifact(self, model: TrainedModel, options: Mapping[str, Any]) -> Path:
        return quantize(model, self.check_options(options)).path

    def prepare(
        self, model: TrainedModel, device: str, options: Mapping[str, Any]
    ) -> OnnxRuntimePredictor:
        if device not in self.devices:
            raise DeviceUnavailable(
                f"the {self.name} backend has no device {device!r}; it knows cpu"
            )
        settings = self.check_options(options)
        int8 = quantize(model, settings)
        session = open_session(int8.path, device, settings)
        details = describe_session(session, device, settings) | {
            "opset": settings["opset"],
            "onnx_bytes": int8.int8_bytes,
            "fp32_onnx_bytes": int8.fp32_bytes,
            "quantization": f"dynamic: {settings['weight_type']} weights "
            f"{'per channel' if settings['per_channel'] else 'per tensor'}, uint8 activations",
            "quantize_seconds": int8.quantize_seconds,
            "quantize_cached": int8.cached,
        }
        return OnnxRuntimePredictor(session, details)


def quantize(model: TrainedModel, settings: Mapping[str, Any]) -> Int8Model:
    """``model``'s ONNX export quantized with ``settings``, made only when no valid cache exists.

    The export comes from the ``onnxruntime`` backend through the public API; it is a clean
    graph (weights as initializers in their final layout), so it needs no pre-processing.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = model.artifact("onnxruntime", {"opset": settings["opset"]})
    path = model.artifact_dir / INT8_NAME
    record_path = model.artifact_dir / INT8_RECORD_NAME
    made_from = {
        "cache_key": model.cache_key,
        "opset": settings["opset"],
        "weight_type": settings["weight_type"],
        "per_channel": settings["per_channel"],
        "fp32_bytes": fp32.stat().st_size,
        "onnxruntime": ort.__version__,
    }
    cached = _read_cache(path, record_path, made_from)
    if cached is not None:
        return cached

    record_path.unlink(missing_ok=True)  # the record vouches for the file: drop it first
    fd, temporary = tempfile.mkstemp(dir=model.artifact_dir, prefix=f".{INT8_NAME}.")
    os.close(fd)
    started = time.perf_counter()
    try:
        with _without_preprocessing_advice():
            quantize_dynamic(
                fp32,
                temporary,
                per_channel=settings["per_channel"],
                weight_type=getattr(QuantType, WEIGHT_TYPES[settings["weight_type"]]),
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    int8 = Int8Model(
        path=path,
        int8_bytes=path.stat().st_size,
        fp32_bytes=made_from["fp32_bytes"],
        quantize_seconds=time.perf_counter() - started,
        cached=False,
    )
    record = made_from | {"int8_bytes": int8.int8_bytes, "quantize_seconds": int8.quantize_seconds}
    write_atomically(record_path, json.dumps(record, indent=1).encode())
    return int8


def _read_cache(path: Path, record_path: Path, made_from: Mapping[str, Any]) -> Int8Model | None:
    if not (path.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    if any(record.get(key) != value for key, value in made_from.items()):
        return None
    if record.get("int8_bytes") != path.stat().st_size:
        return None
    return Int8Model(
        path=path,
        int8_bytes=record["int8_bytes"],
        fp32_bytes=record["fp32_bytes"],
        quantize_seconds=record["quantize_seconds"],
        cached=True,
    )


class _PreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """``quantize_dynamic`` logs advice to pre-process every model it has not pre-processed
    itself; the export needs none (that is what its folding is for), so the advice is noise
    on the runner's console."""
    advice = _PreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)
