"""Which configuration of each backend is fastest here: the numbers behind the defaults.

MNIST pool shape (random weights: latency does not depend on them), batch 1 and 32. Every
configuration goes through the backend's own Predictor and the harness's latency engine, in
alternating rounds so a noisy neighbour hits all alike; a configuration's figure is the median
of its rounds' p50s. The figures land in ``benchmark.extra_info`` and are printed as a table.
The one assertion: ONNX Runtime's default graph optimization (ALL) is not slower than BASIC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from harness.api import Backend, TrainedModel
from harness.latency import LatencyStats, measure
from harness.suite import LatencyConfig
from harness_keras.backend import KerasBackend
from harness_onnxruntime.backend import OnnxRuntimeBackend

ROUNDS = 5
BATCH_SIZES = (1, 32)
CONFIG = LatencyConfig(
    warmup_iterations=5,
    warmup_seconds=0.05,
    min_iterations=30,
    min_seconds=0.3,
    max_iterations=5000,
    max_seconds=3.0,
)

CONFIGURATIONS: dict[str, tuple[Backend, Mapping[str, Any]]] = {
    "onnxruntime default (threads = physical cores, sequential)": (OnnxRuntimeBackend(), {}),
    "onnxruntime 1 intra-op thread": (OnnxRuntimeBackend(), {"intra_op_threads": 1}),
    "onnxruntime parallel execution mode": (
        OnnxRuntimeBackend(),
        {"execution_mode": "parallel"},
    ),
    "keras tf.function (default)": (KerasBackend(), {}),
    "keras tf.function + XLA (jit_compile)": (KerasBackend(), {"jit_compile": True}),
}


@pytest.fixture(scope="module")
def mnist_pool(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    import keras

    from harness_book_cnn import BookCnn

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("mnist_pool")
    BookCnn().build("pool", (28, 28, 1), 10).save(root / "model.keras")
    return TrainedModel("mnist", "book_cnn", "pool", root / "model.keras", root / "art", "paths")


def _p50_ms(predict: Any, batch: np.ndarray) -> float:
    samples = measure(lambda: predict(batch), CONFIG)
    return LatencyStats.from_samples(samples, len(batch)).p50_ms


def test_backend_configurations(benchmark, mnist_pool):
    rng = np.random.default_rng(0)
    batches = {b: rng.integers(0, 256, size=(b, 28, 28, 1), dtype=np.uint8) for b in BATCH_SIZES}
    predictors = {
        name: backend.prepare(mnist_pool, "cpu", options)
        for name, (backend, options) in CONFIGURATIONS.items()
    }
    rounds: dict[tuple[str, int], list[float]] = {
        (name, b): [] for name in predictors for b in BATCH_SIZES
    }

    def one_round() -> None:
        for (name, b), values in rounds.items():
            values.append(_p50_ms(predictors[name].predict, batches[b]))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    for predictor in predictors.values():
        predictor.close()
    figures = {f"{name} | batch {b}": float(np.median(v)) for (name, b), v in rounds.items()}
    benchmark.extra_info["p50_ms"] = figures
    print()
    for label, p50 in figures.items():
        print(f"{label:<75} p50 {p50:8.3f} ms")


def test_onnxruntime_graph_optimization_all_is_not_slower_than_basic(mnist_pool):
    import onnxruntime as ort

    from harness_onnxruntime.export import export_onnx

    path = str(export_onnx(mnist_pool).path)
    batch = np.random.default_rng(0).integers(0, 256, size=(32, 28, 28, 1), dtype=np.uint8)
    sessions = {}
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"):
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        sessions[level] = lambda s=session, n=name: s.run(None, {n: batch})
    medians = {level: [] for level in sessions}
    for _ in range(ROUNDS):
        for level, run in sessions.items():
            medians[level].append(_p50_ms(lambda _batch, run=run: run(), batch))
    basic, full = (float(np.median(medians[k])) for k in ("ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"))
    print(f"\nONNX Runtime batch 32 p50: BASIC {basic:.3f} ms, ALL {full:.3f} ms")
    assert full <= 1.05 * basic
