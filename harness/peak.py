"""This machine's fp32 matrix-multiply peak: the yardstick for every cell's achieved GFLOP/s.

Square GEMMs through ONNX Runtime (MLAS, the kernels the onnxruntime backend runs), on as many
threads as the backend uses by default; numpy's BLAS when ONNX Runtime is missing. The best
repetition over a few sizes is the peak: interference only ever slows a GEMM down, and on a
shared 2-core virtual machine one size's best over a second still varied from 80 to 145
GFLOP/s, so the peak takes the best of two sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GEMM_SIZES = (512, 1024)
MIN_SECONDS = 0.5
"""Per size; a run measures at its start and its end, so four half-second bests in all."""


@dataclass(frozen=True)
class GemmPeak:
    gflops: float
    engine: str
    size: int
    threads: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_gflops(matmul: Callable[[], object], size: int, min_seconds: float) -> float:
    matmul()  # warm-up: thread pools, page faults
    flops = 2.0 * size**3
    best = float("inf")
    deadline = time.perf_counter() + min_seconds
    repetitions = 0
    while repetitions < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - start)
        repetitions += 1
    return flops / best / 1e9


def _onnxruntime_matmul(a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    size = a.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm_peak",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {"a": a, "b": b}
    return lambda: session.run(None, feeds)


def measure_gemm_peak(
    sizes: tuple[int, ...] = GEMM_SIZES,
    min_seconds: float = MIN_SECONDS,
    threads: int | None = None,
) -> GemmPeak:
    """The best GFLOP/s of square fp32 GEMMs of each size in ``sizes``."""
    import psutil

    if not sizes:
        raise ValueError("measure_gemm_peak needs at least one matrix size")
    threads = threads or psutil.cpu_count(logical=False) or 1
    rng = np.random.default_rng(0)
    best = None
    for size in sizes:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        try:
            matmul = _onnxruntime_matmul(a, b, threads)
            engine, used_threads = "onnxruntime MatMul", threads
        except ImportError:
            matmul = lambda a=a, b=b: a @ b  # noqa: E731 - the fallback is one expression
            engine, used_threads = "numpy matmul", None
        peak = GemmPeak(_best_gflops(matmul, size, min_seconds), engine, size, used_threads)
        if best is None or peak.gflops > best.gflops:
            best = peak
    return best
