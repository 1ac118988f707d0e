"""ONNX Runtime inference sessions on the CPU or CUDA, and proof of where they really run.

ONNX Runtime falls back to the CPU silently when the CUDA provider cannot load (a missing
cuDNN, a CPU-only wheel). A "cuda" cell is therefore checked after the session exists: unless
``CUDAExecutionProvider`` is the session's first provider, the cell is unavailable, never timed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harness.api import Backend, DeviceUnavailable, Option, Predictor, TrainedModel
from harness_onnxruntime.export import DEFAULT_OPSET, OnnxExport, export_onnx

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


def default_intra_op_threads() -> int:
    """One thread per physical core: hyper-threads slow ONNX Runtime's compute-bound kernels."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class OnnxRuntimePredictor(Predictor):
    def __init__(self, session: Any, details: dict[str, Any]) -> None:
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._output_names = [session.get_outputs()[0].name]
        self._details = details

    def predict(self, batch: np.ndarray) -> np.ndarray:
        # run() returns host numpy arrays: on CUDA the copy back has waited for the GPU.
        return self._session.run(self._output_names, {self._input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self._session = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    description = "ONNX Runtime on a tf2onnx export (graph optimisation ALL)"
    devices = ("cpu", "cuda")
    options = {
        "intra_op_threads": Option(
            0, "threads within one operator (default: one per physical core; 0: ONNX Runtime's)"
        ),
        "inter_op_threads": Option(0, "operators run at once; 0: ONNX Runtime's default"),
        "execution_mode": Option(
            "sequential", "how operators are scheduled", tuple(EXECUTION_MODES)
        ),
        "opset": Option(DEFAULT_OPSET, "ONNX opset of the tf2onnx export"),
    }

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Unset, ``intra_op_threads`` is one per physical core: hyper-threads slow ONNX
        Runtime's compute-bound kernels, and its own default counts them."""
        settings = super().check_options(options)
        if "intra_op_threads" not in options:
            settings["intra_op_threads"] = default_intra_op_threads()
        return settings

    def probe_devices(self) -> dict[str, str | None]:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            reason = f"onnxruntime cannot be imported ({exc}): install the `cpu` or `gpu` extra"
            return dict.fromkeys(self.devices, reason)
        available = ort.get_available_providers()
        return {
            "cpu": None,
            "cuda": None if PROVIDERS["cuda"] in available else _no_cuda_reason(ort, available),
        }

    def convert(self, model: TrainedModel, options: Mapping[str, Any]) -> None:
        """Export in the runner, so that workers open the cached ONNX file without TensorFlow."""
        export_onnx(model, self.check_options(options)["opset"])

    def artifact(self, model: TrainedModel, options: Mapping[str, Any]) -> Path:
        """The ONNX export (at the options' ``opset``), for backends that build on it."""
        return export_onnx(model, self.check_options(options)["opset"]).path

    def prepare(
        self, model: TrainedModel, device: str, options: Mapping[str, Any]
    ) -> OnnxRuntimePredictor:
        if device not in PROVIDERS:
            raise DeviceUnavailable(
                f"the onnxruntime backend has no device {device!r}; it knows cpu and cuda"
            )
        settings = self.check_options(options)
        import onnxruntime as ort

        if device == "cuda" and PROVIDERS["cuda"] not in ort.get_available_providers():
            raise DeviceUnavailable(_no_cuda_reason(ort, ort.get_available_providers()))
        export = export_onnx(model, settings["opset"])
        session = open_session(export.path, device, settings)
        details = describe_session(session, device, settings) | describe_export(export)
        return OnnxRuntimePredictor(session, details)


def open_session(path: Path, device: str, settings: Mapping[str, Any]) -> Any:
    """An InferenceSession on ``device``; DeviceUnavailable if it fell back to another one."""
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.intra_op_num_threads = settings["intra_op_threads"]
    session_options.inter_op_num_threads = settings["inter_op_threads"]
    session_options.execution_mode = getattr(
        ort.ExecutionMode, EXECUTION_MODES[settings["execution_mode"]]
    )
    requested = [PROVIDERS[device]]
    session = ort.InferenceSession(str(path), session_options, providers=requested)
    in_use = session.get_providers()
    if not in_use or in_use[0] != PROVIDERS[device]:
        raise DeviceUnavailable(
            f"asked ONNX Runtime for {PROVIDERS[device]}, but the session runs on "
            f"{', '.join(in_use) or 'nothing'} (a silent fallback; its log says why): "
            f"such numbers would not be {device} numbers"
        )
    return session


def describe_session(session: Any, device: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What ran: providers in use, threads, graph optimisation, the runtime's version."""
    import onnxruntime as ort

    return {
        "inference_path": "InferenceSession.run",
        "device": device,
        "providers": list(session.get_providers()),
        "graph_optimization": "ORT_ENABLE_ALL",
        "threads": (
            f"intra_op {settings['intra_op_threads'] or 'default'}, "
            f"inter_op {settings['inter_op_threads'] or 'default'}"
        ),
        "intra_op_threads": settings["intra_op_threads"],
        "inter_op_threads": settings["inter_op_threads"],
        "execution_mode": settings["execution_mode"],
        "onnxruntime": ort.__version__,
    }


def describe_export(export: OnnxExport) -> dict[str, Any]:
    """The export a session ran: its opset, size and how it was made."""
    return {
        "opset": export.opset,
        "export_seconds": export.export_seconds,
        "export_cached": export.cached,
        "onnx_bytes": export.onnx_bytes,
        "tf2onnx": export.tf2onnx_version,
    }


def _no_cuda_reason(ort: Any, available: list[str]) -> str:
    return (
        f"onnxruntime {ort.__version__} offers no CUDAExecutionProvider (it has "
        f"{', '.join(available)}): install onnxruntime-gpu (the `gpu` extra) in place of "
        "onnxruntime, on a machine with an NVIDIA GPU"
    )
