"""`harness run` end to end on generated data: rows, cache reuse, and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.journal import Journal

pytestmark = pytest.mark.slow

RUN_ARGS = [
    "run",
    "--suite",
    "smoke",
    "--dataset",
    "mnist",
    "--variant",
    "pool",
    "--batch-size",
    "1",
    "--batch-size",
    "4",
    "--steps",
    "3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def cache_env(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(model_cache))
    return model_cache


def only_run_dir(runs: Path) -> Path:
    (run_dir,) = runs.iterdir()
    return run_dir


def test_both_backends_give_rows_with_accuracy_parity_and_latency(cache_env, tmp_path):
    assert main([*RUN_ARGS, "--out", str(tmp_path / "runs")]) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    summary = pd.read_parquet(run_dir / "summary.parquet")
    assert sorted(zip(summary.backend, summary.batch_size, strict=True)) == [
        ("keras", 1),
        ("keras", 4),
        ("onnxruntime", 1),
        ("onnxruntime", 4),
    ]
    assert (summary.status == "ok").all()
    assert summary.test_accuracy.between(0, 1).all()
    assert (summary.params_total == 3_274_634).all()
    assert (summary.train_steps == 3).all() and (summary.train_images_per_s > 0).all()
    assert (summary.p50_ms > 0).all() and (summary.iterations >= 10).all()
    onnx = summary[summary.backend == "onnxruntime"]
    assert (onnx.parity_top1_agreement >= 0.999).all()
    assert (onnx.parity_max_abs_diff <= 1e-3).all()
    assert (onnx.providers == "CPUExecutionProvider").all()
    for name in ("report.md", "report.html", "samples.parquet", "benchmark.json", "run.json"):
        assert (run_dir / name).is_file(), name
    records = Journal(run_dir / "journal.jsonl").records()
    peaks = [records[0]["gemm_peak"]["gflops"], records[-1]["gemm_peak"]["gflops"]]
    assert records[-1]["type"] == "end" and min(peaks) > 0
    phases = records[-1]["phases"]
    assert {"train", "accuracy", "export", "prepare", "latency"} <= set(phases)
    assert all(seconds > 0 for seconds in phases.values())
    latency = records[-1]["machine_load"]["latency"]
    assert 0 <= latency["foreign_cpu"] <= 1 and 0 <= latency["steal"] <= 1
    assert latency["seconds"] > 0
    assert "machine load while measuring: latency phase " in (run_dir / "report.md").read_text()
    assert (summary.peak_gflops == max(peaks)).all()
    assert "fp32 GEMM peak: " in (run_dir / "report.md").read_text()


def test_a_second_run_reuses_the_trained_model_from_the_cache(cache_env, tmp_path):
    for attempt in ("first", "second"):
        assert main([*RUN_ARGS, "--backend", "onnxruntime", "--out", str(tmp_path / attempt)]) == 0
    hits = []
    for attempt in ("first", "second"):
        records = Journal(only_run_dir(tmp_path / attempt) / "journal.jsonl").records()
        (model,) = [r for r in records if r["type"] == "model"]
        hits.append(model["cache_hit"])
    assert hits[1] is True


def _cells(run_dir: Path) -> list[dict]:
    return [r for r in Journal(run_dir / "journal.jsonl").records() if r["type"] == "cell"]


def test_a_killed_run_resumes_without_redoing_finished_cells(cache_env, tmp_path):
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "harness", *RUN_ARGS, "--out", str(runs)]
    child = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its workers too
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if runs.is_dir() and any(runs.iterdir()):
                run_dir = only_run_dir(runs)
                if (run_dir / "journal.jsonl").is_file() and _cells(run_dir):
                    break
            assert child.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no cell finished within 240 s")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    (first,) = _cells(run_dir)
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    cells = _cells(run_dir)
    assert [(c["backend"], c["device"]) for c in cells] == [
        (first["backend"], "cpu"),
        ("onnxruntime" if first["backend"] == "keras" else "keras", "cpu"),
    ]
    assert json.dumps(cells[0], sort_keys=True) == json.dumps(first, sort_keys=True)
    summary = pd.read_parquet(run_dir / "summary.parquet")
    assert len(summary) == 4 and (summary.status == "ok").all()
