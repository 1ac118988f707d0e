"""The report tables' columns: name, dtype and meaning, in one place, with a schema version.

Readers check ``SCHEMA_VERSION`` so that a report written by another version of the harness is an
error that names the file rather than a wrong comparison. Bump it when a column is renamed,
removed or changes meaning; adding a column at the end does not need a bump.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    """A pandas dtype name; nullable dtypes, since any measurement may be missing."""
    meaning: str


IDENTITY = ("dataset", "model", "variant", "backend", "device", "batch_size")
"""What names one summary row; ``harness compare`` matches rows on these."""

CELL_IDENTITY = IDENTITY[:-1]
"""What names one cell (one backend x device on one trained model)."""

MODEL_IDENTITY = IDENTITY[:3]
"""What names one trained model."""

SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("dataset", "string", "dataset name, e.g. mnist"),
    Column("model", "string", "model name, e.g. book_cnn"),
    Column("variant", "string", "model variant, e.g. pool or nopool"),
    Column("backend", "string", "inference backend, e.g. keras or onnxruntime"),
    Column("device", "string", "device the backend ran on, e.g. cpu or gpu"),
    Column("batch_size", "Int64", "images per inference call"),
    Column("status", "string", "ok, failed, timeout, oom, crashed or unavailable"),
    Column("error", "string", "why the cell is not ok; empty when ok"),
    Column("params_total", "Int64", "all parameters of the model"),
    Column("params_trainable", "Int64", "trainable parameters"),
    Column("params_conv", "Int64", "parameters in convolution layers"),
    Column("params_dense", "Int64", "parameters in dense (fully connected) layers"),
    Column("macs_per_image", "Int64", "multiply-accumulates for one image"),
    Column("weight_bytes", "Int64", "bytes of the weights in memory"),
    Column("keras_bytes", "Int64", "size of the saved .keras file"),
    Column("onnx_bytes", "Int64", "size of the .onnx file the backend ran (ONNX backends only)"),
    Column("train_steps", "Int64", "training steps taken"),
    Column(
        "train_seconds",
        "Float64",
        "wall time of the training that made the model (cached figure on a hit)",
    ),
    Column("train_images_per_s", "Float64", "training throughput"),
    Column("model_cache_hit", "boolean", "the trained model came from the cache"),
    Column("test_accuracy", "Float64", "this backend's top-1 accuracy on the eval set (0..1)"),
    Column("reference_accuracy", "Float64", "the Keras reference's accuracy on the same set"),
    Column("num_eval", "Int64", "images in the eval set"),
    Column("parity_top1_agreement", "Float64", "share of images where top-1 matches Keras"),
    Column("parity_max_abs_diff", "Float64", "largest |logit difference| from Keras"),
    Column("parity_ok", "boolean", "parity within the backend's tolerance"),
    Column("iterations", "Int64", "timed inference calls"),
    Column("total_seconds", "Float64", "time spent in timed calls"),
    Column("mean_ms", "Float64", "mean latency of one call"),
    Column("std_ms", "Float64", "standard deviation of latency"),
    Column("cv", "Float64", "coefficient of variation (std / mean)"),
    Column("min_ms", "Float64", "fastest call"),
    Column("p50_ms", "Float64", "median latency"),
    Column("p90_ms", "Float64", "90th percentile latency"),
    Column("p95_ms", "Float64", "95th percentile latency"),
    Column("p99_ms", "Float64", "99th percentile latency"),
    Column("max_ms", "Float64", "slowest call"),
    Column("throughput_ips", "Float64", "images per second (batch_size / mean latency)"),
    Column("unstable", "boolean", "CV of at least 10%: treat the latency with care"),
    Column(
        "prepare_s",
        "Float64",
        "cold start: the worker building its predictor (loading the model or export)",
    ),
    Column("first_inference_ms", "Float64", "cold start: the first call after prepare"),
    Column("peak_rss_bytes", "Int64", "peak resident memory of the worker process"),
    Column("worker_seconds", "Float64", "wall time of the worker process"),
    Column("inference_path", "string", "what exactly was called, e.g. tf.function"),
    Column("threads", "string", "thread settings the backend used"),
    Column("providers", "string", "execution providers actually in use (ONNX Runtime)"),
    Column("opset", "string", "ONNX opset of the exported model"),
    Column("run_id", "string", "the run this row comes from (merged reports hold several)"),
    Column("timestamp", "string", "when the run started (ISO 8601)"),
    Column("git_sha", "string", "commit of the harness that made the run"),
    Column("achieved_gflops", "Float64", "2 x MACs per image x batch size / p50 latency"),
    Column("peak_gflops", "Float64", "this machine's fp32 GEMM peak: best of run start and end"),
    Column("peak_fraction", "Float64", "achieved_gflops / peak_gflops"),
    Column(
        "peak_gpu_memory_bytes",
        "Int64",
        "GPU memory the worker held after its runs, CUDA context included (NVML; empty on CPU)",
    ),
    Column(
        "serving_p99_bound_ms",
        "Float64",
        "Server scenario (per cell, on each of its rows): the p99 bound of the rate search; "
        "empty when the suite's [serving] did not measure the cell",
    ),
    Column(
        "serving_max_qps",
        "Float64",
        "Server scenario: the highest Poisson arrival rate (queries of one image per second) "
        "measured with its p99 within the bound, below every rate measured beyond it; empty "
        "when even the lowest rate tried was beyond it",
    ),
    Column(
        "serving_p99_ms",
        "Float64",
        "Server scenario: p99 latency at serving_max_qps, from each query's scheduled arrival "
        "(queueing included)",
    ),
    Column(
        "serving_capped",
        "boolean",
        "Server scenario: every rate tried was within the bound, so serving_max_qps is a floor",
    ),
    Column(
        "serving_concurrency",
        "Int64",
        "Server scenario: queries in flight at once (threads calling predict)",
    ),
    Column(
        "serving_schedule_error_p99_ms",
        "Float64",
        "Server scenario: p99 of the load generator's lateness (send time minus scheduled "
        "time) at the highest rate tried",
    ),
    Column(
        "offline_images_per_s",
        "Float64",
        "Offline scenario (per cell): the most images per second over the batch sizes and "
        "thread counts tried",
    ),
    Column("offline_batch_size", "Int64", "Offline scenario: the batch size that reached it"),
    Column("offline_concurrency", "Int64", "Offline scenario: the threads that reached it"),
)

SAMPLE_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "category", "the run the sample comes from"),
    *(Column(name, "category", f"row identity: {name}") for name in IDENTITY[:-1]),
    Column("batch_size", "int64", "images per inference call"),
    Column("sample_index", "int64", "position of the sample in timing order"),
    Column("latency_ns", "int64", "wall time of one timed call, in nanoseconds"),
)

TRIAL_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "category", "the run the trial comes from"),
    *(Column(name, "category", f"row identity: {name}") for name in IDENTITY[:-1]),
    Column("batch_size", "int64", "images per inference call"),
    Column("round", "int64", "the trial phase's round: every row is visited once per round"),
    Column("worker", "int64", "which of the trial phase's worker processes timed it"),
    Column("iterations", "int64", "timed calls in the trial"),
    Column("mean_ns", "float64", "mean wall time of the trial's calls, in nanoseconds"),
    Column("p50_ns", "float64", "median of the trial's calls, in nanoseconds"),
    Column("p90_ns", "float64", "90th percentile of the trial's calls, in nanoseconds"),
    Column("p99_ns", "float64", "99th percentile of the trial's calls, in nanoseconds"),
    Column("p10_ns", "float64", "10th percentile of the trial's calls, in nanoseconds"),
)
"""One row per trial of the trial phase (``latency.trial_rounds``): what ``harness compare``
judges latency by."""

DESCRIBE_PREFIX = "describe."
"""Every key a backend's ``Predictor.describe()`` returns beyond the core columns becomes the
string column ``describe.<key>``, after the schema's columns and sorted by name, so a plugin's
own facts (an opset, a quantization mode) reach the reports without a change to this schema."""

CORE_DESCRIBE_KEYS = ("inference_path", "threads", "providers", "opset", "onnx_bytes")
"""``describe()`` keys that fill the schema's own columns of the same names."""


def describe_column_names(names: Iterable[str]) -> list[str]:
    """The ``describe.<key>`` columns among ``names``, in the order a summary holds them."""
    return sorted(name for name in set(names) if name.startswith(DESCRIBE_PREFIX))


def describe_column_meaning(name: str) -> str:
    return f"what the backend's describe() said under {name.removeprefix(DESCRIBE_PREFIX)!r}"


LATENCY_PERCENTILES = (50, 90, 95, 99)
"""Percentiles the summary holds as ``p<N>_ms`` columns."""


def dtypes(columns: tuple[Column, ...]) -> dict[str, str]:
    return {column.name: column.dtype for column in columns}


def column_names(columns: tuple[Column, ...]) -> list[str]:
    return [column.name for column in columns]
