"""Synthetic journal records in the runner's exact layout (built through :mod:`harness.records`),
for tests and benchmarks.

They let the report, compare and merge code be exercised without TensorFlow. The numbers are
made up (latency samples are drawn from a normal distribution) and say nothing about models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import ParityTolerance
from harness.journal import JOURNAL_NAME
from harness.latency import LatencyStats
from harness.records import BatchRecord, CellRecord, ModelRecord, TrainingRecord
from harness.suite import Suite
from harness.trials import journal_record

_BOOK_COUNTS = {
    # The book's CNN on 28x28x1 input: conv 5x5x32, conv 5x5x64, dense 1024, logits 10.
    "pool": {"params_conv": 832 + 51264, "params_dense": 3136 * 1024 + 1024 + 10250},
    "nopool": {"params_conv": 832 + 51264, "params_dense": 50176 * 1024 + 1024 + 10250},
}


def environment(cpu_model: str = "Synthetic CPU", tensorflow: str = "2.21.0") -> dict[str, Any]:
    return {
        "cpu_model": cpu_model,
        "physical_cores": 2,
        "logical_cores": 2,
        "ram_bytes": 8 * 2**30,
        "gpus": [],
        "os": "Linux",
        "python": "3.11.7",
        "libraries": {"tensorflow": tensorflow, "keras": "3.15.0", "onnxruntime": "1.32.0"},
        "threads": {"OMP_NUM_THREADS": None},
        "git_sha": "0123456789abcdef",
        "harness_version": "0.1.0",
    }


def run_record(
    run_id: str = "run-a",
    suite: Suite | None = None,
    env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    suite = suite or Suite(name="synthetic", batch_sizes=(1, 8))
    return {
        "type": "run",
        "run_id": run_id,
        "started": "2025-01-01T00:00:00+00:00",
        "harness_version": "0.1.0",
        "suite": suite.to_dict(),
        "environment": env or environment(),
        "gemm_peak": {"gflops": 100.0, "engine": "synthetic", "size": 1024, "threads": 2},
    }


def model_record(
    dataset: str = "mnist", variant: str = "pool", model: str = "book_cnn", num_classes: int = 10
) -> dict[str, Any]:
    counts = dict(_BOOK_COUNTS.get(variant, _BOOK_COUNTS["pool"]))
    counts["params_total"] = counts["params_conv"] + counts["params_dense"]
    counts["params_trainable"] = counts["params_total"]
    counts["macs_per_image"] = 10 * counts["params_total"]
    counts["weight_bytes"] = 4 * counts["params_total"]
    counts["layers"] = []
    confusion = np.diag(np.full(num_classes, 90))
    confusion[5, 3] = 13
    confusion[7, 9] = 4
    return ModelRecord(
        dataset=dataset,
        model=model,
        variant=variant,
        cache_key=f"{dataset}-{model}-{variant}",
        cache_hit=False,
        counts=counts,
        training=TrainingRecord(
            steps=10,
            batch_size=50,
            learning_rate=1e-4,
            seed=0,
            train_images=500,
            train_seconds=1.5,
            images_per_s=333.0,
            history={"loss": [2.3, 2.1], "accuracy": [0.1, 0.2]},
            test_accuracy=0.9,
        ),
        keras_bytes=counts["weight_bytes"] + 20_000,
        test_accuracy=0.9,
        num_eval=int(confusion.sum()),
        class_names=[str(i) for i in range(num_classes)],
        confusion=confusion.tolist(),
    ).to_dict()


def cell_record(
    dataset: str = "mnist",
    variant: str = "pool",
    backend: str = "onnxruntime",
    device: str = "cpu",
    model: str = "book_cnn",
    batch_sizes: tuple[int, ...] = (1, 8),
    latency_ms: float = 1.0,
    samples: int = 100,
    seed: int = 0,
    status: str = "ok",
    error: str | None = None,
    accuracy: float = 0.9,
) -> dict[str, Any]:
    """One cell; per batch size, ``samples`` latencies around ``latency_ms`` x batch size."""
    rng = np.random.default_rng(seed)
    batches = []
    if status == "ok":
        for batch_size in batch_sizes:
            center = latency_ms * batch_size * 1e6
            ns = np.maximum(rng.normal(center, 0.03 * center, samples), 1).astype(np.int64)
            ms = ns / 1e6
            mean = float(ms.mean())
            std = float(ms.std(ddof=1)) if samples > 1 else 0.0
            batches.append(
                BatchRecord(
                    batch_size=batch_size,
                    stats=LatencyStats(
                        iterations=samples,
                        total_seconds=float(ms.sum() / 1e3),
                        mean_ms=mean,
                        std_ms=std,
                        cv=std / mean,
                        min_ms=float(ms.min()),
                        p50_ms=float(np.percentile(ms, 50)),
                        p90_ms=float(np.percentile(ms, 90)),
                        p95_ms=float(np.percentile(ms, 95)),
                        p99_ms=float(np.percentile(ms, 99)),
                        max_ms=float(ms.max()),
                        throughput_ips=batch_size / mean * 1e3,
                        unstable=bool(std / mean >= 0.1),
                    ),
                    samples_ns=ns.tolist(),
                )
            )
    ok = status == "ok"
    return CellRecord(
        dataset=dataset,
        model=model,
        variant=variant,
        backend=backend,
        device=device,
        status=status,
        error=error,
        prepare_s=0.5 if ok else None,
        first_inference_ms=3.0 if ok else None,
        accuracy=accuracy if ok else None,
        num_eval=100,
        parity_top1_agreement=1.0 if ok else None,
        parity_max_abs_diff=1e-5 if ok else None,
        parity_ok=True if ok else None,
        parity_tolerance=ParityTolerance() if ok else None,
        peak_rss_bytes=500_000_000,
        peak_gpu_memory_bytes=700_000_000 if device != "cpu" and ok else None,
        describe={
            "inference_path": "InferenceSession.run" if backend == "onnxruntime" else "tf.function",
            "threads": {"intra_op": 2},
            "providers": ["CPUExecutionProvider"] if backend == "onnxruntime" else None,
            "onnx_bytes": 3_000_000 if backend == "onnxruntime" else None,
            "opset": 17 if backend == "onnxruntime" else None,
        },
        phases={"prepare": 0.5, "accuracy": 0.2, "latency": 1.0},
        worker_seconds=4.0,
        batches=batches,
    ).to_dict()


def serving_entry(
    max_qps: float | None = 800.0,
    capped: bool = False,
    images_per_s: float = 5123.4,
    bound_ms: float = 10.0,
    schedule_error_p99_ms: float = 0.4,
) -> dict[str, Any]:
    """A cell record's ``serving`` entry as the worker writes it: a Server search over three
    rates and an Offline best of two configurations. ``max_qps`` None: no rate was within the
    bound; ``capped``: every rate was."""
    from harness.serving import OfflineResult, RatePoint, ServerResult

    curve = tuple(
        RatePoint(rate, 662, 2.0, rate, p99 / 3, p99 / 2, p99, p99 * 1.5, 0.1, 0.4, 1.0)
        for rate, p99 in ((400.0, 2.0), (800.0, 9.0), (1600.0, 250.0))
    )
    server = ServerResult(
        p99_bound_ms=bound_ms,
        concurrency=1,
        capacity_qps=1600.0,
        max_qps=max_qps,
        p50_ms=3.0 if max_qps else None,
        p99_ms=9.0 if max_qps else None,
        capped=capped,
        first_beyond_qps=None if capped else 1600.0,
        schedule_error_p99_ms=schedule_error_p99_ms,
        curve=curve,
    )
    offline = OfflineResult(images_per_s, 32, 2, ((1, 1, 900.0), (32, 2, images_per_s)))
    return {"server": server.to_dict(), "offline": offline.to_dict()}


def trials_record(
    batch_size: int = 1,
    latency_ms: float = 1.0,
    trials: int = 10,
    noise: float = 0.02,
    seed: int = 0,
    dataset: str = "mnist",
    variant: str = "pool",
    backend: str = "onnxruntime",
    device: str = "cpu",
    model: str = "book_cnn",
) -> dict[str, Any]:
    """One row's trial phase: ``trials`` trials whose medians scatter around ``latency_ms``
    with a log-normal ``noise`` (relative standard deviation)."""
    rng = np.random.default_rng(seed)
    medians = latency_ms * 1e6 * np.exp(rng.normal(0.0, noise, trials))
    return journal_record(
        (dataset, model, variant, backend, device, batch_size),
        [
            {
                "round": index,
                "worker": index % 2,
                "iterations": 100,
                "mean_ns": float(median * 1.02),
                "p50_ns": float(median),
                "p90_ns": float(median * 1.1),
                "p99_ns": float(median * 1.3),
                "p10_ns": float(median * 0.95),
            }
            for index, median in enumerate(medians)
        ],
    )


def machine_load(
    latency: float | None = 0.02, trials: float | None = 0.01, steal: float | None = 0.0
) -> dict[str, Any]:
    """The ``end`` record's ``machine_load``: the share of the CPUs others took in each phase
    (None: no /proc/stat to read)."""
    return {
        "latency": {"foreign_cpu": latency, "steal": steal, "seconds": 30.0},
        "trials": {"foreign_cpu": trials, "steal": steal, "seconds": 12.0},
    }


def end_record(load: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's last record; ``load`` is its ``machine_load`` (default :func:`machine_load`)."""
    return {
        "type": "end",
        "finished": "2025-01-01T00:01:00+00:00",
        "wall_seconds": 60.0,
        "phases": {"train": 10.0, "export": 5.0, "accuracy": 2.0, "latency": 30.0},
        "machine_load": machine_load() if load is None else load,
    }


def journal_records(
    run_id: str = "run-a",
    datasets: tuple[str, ...] = ("mnist", "cifar10"),
    variants: tuple[str, ...] = ("pool", "nopool"),
    backends: tuple[str, ...] = ("keras", "onnxruntime"),
    batch_sizes: tuple[int, ...] = (1, 8),
    latency_ms: float = 1.0,
    samples: int = 100,
    env: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A whole finished run: every dataset x variant trained, every backend measured on CPU."""
    suite = Suite(
        name="synthetic",
        datasets=datasets,
        variants=variants,
        backends=backends,
        batch_sizes=batch_sizes,
    )
    records = [run_record(run_id, suite, env)]
    for index, (dataset, variant) in enumerate((d, v) for d in datasets for v in variants):
        records.append(model_record(dataset, variant))
        for offset, backend in enumerate(backends):
            records.append(
                cell_record(
                    dataset,
                    variant,
                    backend,
                    batch_sizes=batch_sizes,
                    latency_ms=latency_ms,
                    samples=samples,
                    seed=seed * 1000 + index * 10 + offset,
                )
            )
    records.append(end_record())
    return records


def write_journal(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as the run folder's journal, creating the folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOURNAL_NAME
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path
