"""Interleaved trials and paired A/B, on test backends whose calls sleep a known time.

Sleeping leaves the two cores free, so the known effect (the NEW side sleeps longer) is the
only difference between the sides, whatever else the machine does.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.ab import judge_ab, log_ratios, serving_changes
from harness.api import TrainedModel
from harness.suite import LatencyConfig, ServingConfig
from harness.trial_worker import TrialWorkerError, summarize_trial
from harness.trials import Side, TrialConfig, run_trials
from harness.worker import CellSpec

SLEEPING_BACKENDS = """
import os
import time

import numpy as np

from harness import hookimpl
from harness.api import Backend, Predictor


class SleepingPredictor(Predictor):
    def __init__(self, seconds):
        self.seconds = seconds

    def predict(self, batch):
        time.sleep(self.seconds * len(batch))
        return np.zeros((len(batch), 10), dtype=np.float32)

    def describe(self):
        return {"inference_path": "time.sleep", "sleep_ms": self.seconds * 1000}


class SleepingBackend(Backend):
    name = "sleeper"

    def prepare(self, model, device, options):
        return SleepingPredictor(options.get("sleep_ms", 1.0) / 1000)


class ExitingPredictor(SleepingPredictor):
    def predict(self, batch):
        os._exit(3)


class ExitingBackend(Backend):
    name = "exiter"

    def prepare(self, model, device, options):
        return ExitingPredictor(0.001)


class BrokenBackend(Backend):
    name = "broken"

    def prepare(self, model, device, options):
        raise RuntimeError("cannot open the model")


class HangingBackend(Backend):
    name = "hanger"

    def prepare(self, model, device, options):
        time.sleep(600)


class HoggingBackend(SleepingBackend):
    # Grows to 600 MiB in steps of 20 MiB, then sleeps as sleeper does.
    name = "hogger"

    def prepare(self, model, device, options):
        self.held = []
        for _ in range(30):
            self.held.append(np.ones(20 * 2**20, dtype=np.uint8))
            time.sleep(0.02)
        return super().prepare(model, device, options)


@hookimpl
def register_backends(register):
    backends = (SleepingBackend, ExitingBackend, BrokenBackend, HangingBackend, HoggingBackend)
    for backend in backends:
        register(backend())
"""


@pytest.fixture
def sleeping_backends(
    make_distribution: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test backends, visible to worker processes through their entry points."""
    site = make_distribution("harness-sleepers", "harness_sleepers", SLEEPING_BACKENDS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_sleepers")


def cell(tmp_path: Path, backend: str, **options: Any) -> CellSpec:
    eval_path = tmp_path / "eval.npz"
    if not eval_path.exists():
        images = np.zeros((8, 4, 4, 1), dtype=np.uint8)
        np.savez(eval_path, images=images, labels=np.zeros(8, np.int64))
    trained = TrainedModel(
        dataset="tiny",
        model="none",
        variant="plain",
        keras_path=tmp_path / "absent.keras",
        artifact_dir=tmp_path / "artifacts",
        cache_key="k",
    )
    return CellSpec(
        dataset="tiny",
        model="none",
        variant="plain",
        backend=backend,
        device="cpu",
        trained=trained,
        eval_path=eval_path,
        batch_sizes=(1, 2),
        latency=LatencyConfig(),
        backend_options=options,
    )


FAST = TrialConfig(workers=2, rounds=12, trial_seconds=0.02, warmup_seconds=0.0, timeout_s=60)


def test_summarize_trial_gives_size_mean_and_percentiles() -> None:
    summary = summarize_trial(np.arange(1, 101, dtype=np.int64))
    assert summary["iterations"] == 100
    assert summary["mean_ns"] == 50.5
    assert summary["p50_ns"] == 50.5
    assert summary["p99_ns"] == pytest.approx(99.01)


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_every_row_is_visited_every_round_by_rotating_workers(tmp_path: Path) -> None:
    result = run_trials(
        [cell(tmp_path, "sleeper", sleep_ms=1.0)], [Side("run")], FAST, tmp_path / "work", False
    )
    assert [row.key[-1] for row in result.rows] == [1, 2]
    for row in result.rows:
        assert [visit["round"] for visit in row.visits] == list(range(FAST.rounds))
        assert [visit["worker"] for visit in row.visits] == [r % 2 for r in range(FAST.rounds)]
        p50_ms = np.median([visit["run"]["p50_ns"] for visit in row.visits]) / 1e6
        assert p50_ms >= row.key[-1] * 1.0  # sleeps 1 ms per image
    assert result.describe["run"]["tiny-none-plain-sleeper-cpu"]["sleep_ms"] == 1.0
    assert set(result.seconds) == {"prepare", "trials"}
    assert set(result.machine_load) == {"foreign_cpu", "steal", "seconds"}
    trials_window = result.to_dict()["machine_load"]["seconds"]
    assert trials_window == pytest.approx(result.seconds["trials"], abs=0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_a_paired_ab_catches_a_known_slowdown_and_clears_identical_sides(
    tmp_path: Path,
) -> None:
    sides = [Side("base"), Side("new", backend_options={"sleeper": {"sleep_ms": 2.6}})]
    result = run_trials(
        [cell(tmp_path, "sleeper", sleep_ms=2.0)], sides, FAST, tmp_path / "work", False
    )
    for row in result.rows:
        assert {tuple(visit["order"]) for visit in row.visits} <= {
            ("base", "new"),
            ("new", "base"),
        }
        assert np.median(log_ratios(row)) == pytest.approx(math.log(1.3), abs=0.08)
    verdicts = judge_ab(result, 50, alpha=0.01, threshold=0.05, min_change=0.01)
    assert {v.verdict for v in verdicts.values()} == {"regression"}
    for verdict in verdicts.values():
        assert verdict.low < 0.3 < verdict.high or abs(verdict.change - 0.3) < 0.08

    same = run_trials(
        [cell(tmp_path, "sleeper", sleep_ms=2.0)],
        [Side("base"), Side("new")],
        FAST,
        tmp_path / "work-aa",
        False,
    )
    verdicts = judge_ab(same, 50, alpha=0.01, threshold=0.05, min_change=0.01)
    assert {v.verdict for v in verdicts.values()} <= {"same", "inconclusive"}


QUICK_SERVING = ServingConfig(
    enabled=True,
    p99_bound_ms={"default": 30.0},
    min_queries=40,
    min_seconds=0.1,
    search_steps=2,
    offline_batch_sizes=(1, 4),
    offline_concurrency=(1,),
    offline_seconds=0.1,
)
"""Scenarios of about a second on a predictor sleeping milliseconds per image."""


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_serving_visits_run_both_sides_scenarios_and_their_change_comes_from_them(
    tmp_path: Path,
) -> None:
    served = replace(cell(tmp_path, "sleeper", sleep_ms=2.0), serving=QUICK_SERVING)
    skipped = replace(cell(tmp_path, "sleeper", sleep_ms=2.0), variant="other")
    sides = [Side("base"), Side("new", backend_options={"sleeper": {"sleep_ms": 4.0}})]
    config = replace(FAST, rounds=6, serving_rounds=2)
    result = run_trials([served, skipped], sides, config, tmp_path / "work", False)

    assert [cell.key for cell in result.serving] == [("tiny", "none", "plain", "sleeper", "cpu")]
    (visits,) = [cell.visits for cell in result.serving]
    assert [(v["round"], v["worker"], v["seed"]) for v in visits] == [(0, 0, 0), (1, 1, 1)]
    assert "serving" in result.seconds
    offline = {
        side: [v[side]["serving"]["offline"]["images_per_s"] for v in visits]
        for side in ("base", "new")
    }
    qps = {
        side: [v[side]["serving"]["server"]["max_qps"] for v in visits] for side in ("base", "new")
    }
    for visit in visits:
        assert sorted(visit["order"]) == ["base", "new"]
    # One thread sleeping 2 ms (BASE) or 4 ms (NEW) an image: about 500 and 250 images/s.
    assert all(350 < rate <= 500 for rate in offline["base"])
    assert all(180 < rate <= 250 for rate in offline["new"])
    assert all(new < base for base, new in zip(qps["base"], qps["new"], strict=True))

    by_metric = {e["metric"]: e for e in serving_changes(result.to_dict()["serving"])}
    images = by_metric["offline_images_per_s"]
    assert images["base"]["values"] == offline["base"]
    assert images["changes"] == [
        n / b - 1 for b, n in zip(offline["base"], offline["new"], strict=True)
    ]
    assert images["change"] == pytest.approx(np.median(images["changes"]))
    assert images["change"] == pytest.approx(-0.5, abs=0.08)
    server = by_metric["serving_max_qps"]
    assert server["new"]["median"] == pytest.approx(np.median(qps["new"]))
    assert server["change"] == pytest.approx(
        np.median([n / b - 1 for b, n in zip(qps["base"], qps["new"], strict=True)])
    )
    assert server["p99_bound_ms"] == 30.0


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_a_worker_that_dies_in_a_trial_is_an_error_naming_its_log(tmp_path: Path) -> None:
    with pytest.raises(TrialWorkerError, match=r"died \(exit code 3\).*log"):
        run_trials([cell(tmp_path, "exiter")], [Side("run")], FAST, tmp_path / "work", False)


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_a_backend_that_cannot_prepare_is_an_error_with_its_message(tmp_path: Path) -> None:
    with pytest.raises(TrialWorkerError, match="cannot open the model"):
        run_trials([cell(tmp_path, "broken")], [Side("run")], FAST, tmp_path / "work", False)


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_a_trial_worker_over_its_memory_limit_is_killed_by_the_harness_naming_it(
    tmp_path: Path,
) -> None:
    """The limit a cell worker has (harness.memory): without it, a trial worker grows until the
    machine's out-of-memory killer picks a victim."""
    config = replace(FAST, memory_limit_mb=300)
    with pytest.raises(TrialWorkerError) as caught:
        run_trials([cell(tmp_path, "hogger")], [Side("run")], config, tmp_path / "work", False)
    assert "worker killed at its memory limit of 300 MiB: it held " in str(caught.value)
    assert "worker_memory_limit_mb" in str(caught.value)


def test_a_missing_interpreter_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TrialWorkerError, match="/no/such/python"):
        run_trials(
            [cell(tmp_path, "sleeper")],
            [Side("run", python="/no/such/python")],
            FAST,
            tmp_path / "work",
            False,
        )


COORDINATOR = """
import json, sys, threading, time
from pathlib import Path
from harness.trial_worker import TrialWorker
from harness.worker import CellSpec
spec = CellSpec.from_json(json.loads(sys.argv[2]))
worker = TrialWorker(sys.executable, Path(sys.argv[1]), 600)
threading.Thread(target=worker.prepare, args=([spec],), daemon=True).start()
print(worker._process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.usefixtures("sleeping_backends")
def test_a_busy_trial_worker_dies_with_a_coordinator_killed_by_sigkill(tmp_path: Path) -> None:
    import psutil

    spec = json.dumps(cell(tmp_path, "hanger").to_json())
    coordinator = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, str(tmp_path / "worker.log"), spec],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = psutil.Process(int(coordinator.stdout.readline()))
    time.sleep(3.0)  # the worker is inside the backend's prepare, which hangs
    coordinator.kill()
    coordinator.wait()
    deadline = time.monotonic() + 20
    while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the trial worker outlived its coordinator"
        time.sleep(0.1)
