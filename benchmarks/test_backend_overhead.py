"""The harness's own overhead: each backend's Predictor timed by the latency engine, against a
raw loop over the runtime's own call timed by hand, in the same process and the same run.

MNIST pool shape at batch 1, random weights (latency does not depend on them). Many short rounds
alternate harness and raw, so that a noisy neighbour hits both alike; the ratio is the median of
the rounds' p50 ratios. Target: harness p50 / raw p50 <= 1.05 for both backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.api import TrainedModel
from harness.latency import LatencyStats, measure
from harness.suite import LatencyConfig

MAX_OVERHEAD_RATIO = 1.05
ROUNDS = 15
CONFIG = LatencyConfig(
    warmup_iterations=10,
    warmup_seconds=0.05,
    min_iterations=100,
    min_seconds=0.2,
    max_iterations=5000,
    max_seconds=5.0,
)


@pytest.fixture(scope="module")
def mnist_pool(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    import keras

    from harness_book_cnn import BookCnn

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("mnist_pool")
    BookCnn().build("pool", (28, 28, 1), 10).save(root / "model.keras")
    return TrainedModel("mnist", "book_cnn", "pool", root / "model.keras", root / "art", "bench")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(1, 28, 28, 1), dtype=np.uint8)


def raw_p50_ms(call: Callable[[], object], iterations: int) -> float:
    """A plain perf_counter_ns loop: the engine's warm-up count, then ``iterations`` calls."""
    for _ in range(CONFIG.warmup_iterations):
        call()
    samples = np.empty(iterations, dtype=np.int64)
    for i in range(iterations):
        before = time.perf_counter_ns()
        call()
        samples[i] = time.perf_counter_ns() - before
    return float(np.median(samples)) / 1e6


def overhead_ratio(harness_call: Callable[[], object], raw_call: Callable[[], object]) -> dict:
    harness_p50s, raw_p50s = [], []
    for _ in range(ROUNDS):
        samples = measure(harness_call, CONFIG)
        harness_p50s.append(LatencyStats.from_samples(samples, 1).p50_ms)
        raw_p50s.append(raw_p50_ms(raw_call, len(samples)))
    ratios = np.array(harness_p50s) / np.array(raw_p50s)
    return {
        "harness_p50_ms": float(np.median(harness_p50s)),
        "raw_p50_ms": float(np.median(raw_p50s)),
        "ratio": float(np.median(ratios)),
    }


def report(benchmark, name: str, result: dict) -> None:
    benchmark.extra_info.update(result)
    print(
        f"\n{name}: harness p50 {result['harness_p50_ms']:.3f} ms, raw p50 "
        f"{result['raw_p50_ms']:.3f} ms, ratio {result['ratio']:.3f}"
    )


def test_onnxruntime_backend_adds_at_most_5_percent(benchmark, mnist_pool, batch) -> None:
    import onnxruntime as ort

    from harness_onnxruntime.backend import OnnxRuntimeBackend

    # One intra-op thread on both sides: the comparison is of the call path, and a thread pool
    # spinning on a busy shared machine would drown a few microseconds in its noise.
    predictor = OnnxRuntimeBackend().prepare(mnist_pool, "cpu", {"intra_op_threads": 1})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(Path(mnist_pool.artifact_dir) / "model.onnx"), options, ["CPUExecutionProvider"]
    )
    feeds = {session.get_inputs()[0].name: batch}

    result = overhead_ratio(lambda: predictor.predict(batch), lambda: session.run(None, feeds))
    report(benchmark, "onnxruntime", result)
    benchmark.pedantic(predictor.predict, args=(batch,), rounds=200, warmup_rounds=20)
    assert result["ratio"] <= MAX_OVERHEAD_RATIO


def test_keras_backend_adds_at_most_5_percent(benchmark, mnist_pool, batch) -> None:
    import keras
    import tensorflow as tf

    from harness_keras.backend import KerasBackend

    predictor = KerasBackend().prepare(mnist_pool, "cpu", {})
    model = keras.models.load_model(mnist_pool.keras_path, compile=False)
    raw = tf.function(
        lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8)],
    )

    result = overhead_ratio(lambda: predictor.predict(batch), lambda: raw(batch).numpy())
    report(benchmark, "keras", result)
    benchmark.pedantic(predictor.predict, args=(batch,), rounds=200, warmup_rounds=20)
    assert result["ratio"] <= MAX_OVERHEAD_RATIO
