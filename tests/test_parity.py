"""A backend's declared parity tolerance is the rule: in the worker's record, the runner's
console line and the conformance kit alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import hookimpl, testing
from harness.api import Backend, ParityTolerance, Predictor, TrainedModel
from harness.planner import CellKey, ModelKey
from harness.plugins import get_registry
from harness.records import CellRecord
from harness.runner import Runner
from harness.suite import LatencyConfig, load_suite
from harness.testing import ConformanceError
from harness.worker import CellSpec, run_cell

LOOSE = ParityTolerance(min_top1_agreement=0.9, max_abs_logit_diff=0.05)


def pixel_logits(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)[:, :5].astype(np.float32)


class PixelPredictor(Predictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return pixel_logits(batch)


class ExactBackend(Backend):
    name = "exact_pixels"

    def prepare(self, model: TrainedModel, device: str, options: Any) -> Predictor:
        return PixelPredictor()


class LooseBackend(ExactBackend):
    """Declares what an int8 backend would: a looser tolerance than fp32's."""

    name = "loose_pixels"
    parity = LOOSE


class PixelPlugin:
    @hookimpl
    def register_backends(self, register):
        register(ExactBackend())
        register(LooseBackend())


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)


def reference_off_by(images: np.ndarray, diff: float) -> np.ndarray:
    """The backend's logits, one of them moved by ``diff``: within or outside a tolerance."""
    reference = pixel_logits(images).astype(np.float64)
    reference[0, 0] += diff
    return reference


def test_the_default_tolerance_is_the_fp32_rule() -> None:
    assert Backend.parity == ParityTolerance(0.999, 1e-3)
    assert Backend.parity.holds(0.999, 1e-3)
    assert not Backend.parity.holds(0.998, 0.0)
    assert not Backend.parity.holds(1.0, 0.0011)


# --- the worker --------------------------------------------------------------------------------


def measure(backend: str, images: np.ndarray, reference: np.ndarray, tmp_path: Path) -> dict:
    eval_path = tmp_path / "eval.npz"
    labels = np.zeros(len(images), np.int64)
    np.savez(eval_path, images=images, labels=labels, reference_logits=reference)
    trained = TrainedModel("tiny", "none", "plain", tmp_path / "m.keras", tmp_path, "k")
    latency = LatencyConfig(
        warmup_iterations=1,
        warmup_seconds=0.0,
        min_iterations=2,
        min_seconds=0.0,
        max_iterations=5,
        max_seconds=1.0,
    )
    spec = CellSpec("tiny", "none", "plain", backend, "cpu", trained, eval_path, (1,), latency)
    record = run_cell(spec)
    assert record["status"] == "ok", record["error"]
    return record


@pytest.mark.parametrize(
    ("backend", "diff", "ok"),
    [
        ("loose_pixels", 0.01, True),
        ("loose_pixels", 0.1, False),
        ("exact_pixels", 0.01, False),
    ],
    ids=["loose-within", "loose-outside", "exact-outside"],
)
def test_the_worker_judges_parity_by_the_backends_tolerance(
    register_plugin, images, tmp_path, backend: str, diff: float, ok: bool
) -> None:
    register_plugin(PixelPlugin(), "pixels")
    record = measure(backend, images, reference_off_by(images, diff), tmp_path)
    assert record["parity_max_abs_diff"] == pytest.approx(diff, rel=1e-3)
    assert record["parity_ok"] is ok
    declared = get_registry().backend(backend).parity
    assert record["parity_tolerance"] == {
        "min_top1_agreement": declared.min_top1_agreement,
        "max_abs_logit_diff": declared.max_abs_logit_diff,
    }


# --- the runner's console line -----------------------------------------------------------------


def console_line(record: dict[str, Any], tmp_path: Path, monkeypatch) -> str:
    lines: list[str] = []
    runner = Runner(
        load_suite("smoke"), get_registry(), tmp_path, tmp_path, tmp_path, log=lines.append
    )
    monkeypatch.setattr("harness.worker.run_cell_subprocess", lambda *args: record)
    trained = TrainedModel("mnist", "book_cnn", "pool", tmp_path / "m.keras", tmp_path, "k")
    cell = CellKey(ModelKey("mnist", "book_cnn", "pool"), "loose_pixels", "cpu")
    runner._measure(cell, trained, tmp_path / "eval.npz")
    return lines[-1]


def cell_record(agreement: float, max_diff: float, ok: bool) -> dict[str, Any]:
    return CellRecord(
        dataset="mnist",
        model="book_cnn",
        variant="pool",
        backend="loose_pixels",
        device="cpu",
        status="ok",
        parity_top1_agreement=agreement,
        parity_max_abs_diff=max_diff,
        parity_ok=ok,
        parity_tolerance=ParityTolerance(min_top1_agreement=0.9, max_abs_logit_diff=0.05),
    ).to_dict()


def test_a_cell_outside_its_tolerance_says_so_on_the_console(tmp_path, monkeypatch) -> None:
    line = console_line(cell_record(0.85, 0.2, False), tmp_path, monkeypatch)
    assert line == (
        "mnist-book_cnn-pool on loose_pixels/cpu: ok, parity FAILED (agreement 85.00%, "
        "max diff 0.2, tolerance agreement >= 90.00%, max diff <= 0.05)"
    )


def test_a_cell_within_its_tolerance_is_just_ok_on_the_console(tmp_path, monkeypatch) -> None:
    line = console_line(cell_record(0.95, 0.02, True), tmp_path, monkeypatch)
    assert line == "mnist-book_cnn-pool on loose_pixels/cpu: ok"


# --- the conformance kit -----------------------------------------------------------------------


def kit(backend: Backend, images: np.ndarray, reference: np.ndarray, tmp_path: Path) -> None:
    trained = TrainedModel("d", "pixels", "v", tmp_path / "model.keras", tmp_path, "key")
    testing.check_backend(backend, trained, images, reference.astype(np.float32))


def test_the_kit_passes_a_loose_backend_within_its_tolerance(images, tmp_path) -> None:
    kit(LooseBackend(), images, reference_off_by(images, 0.01), tmp_path)


@pytest.mark.parametrize("backend", [LooseBackend(), ExactBackend()], ids=lambda b: b.name)
def test_the_kit_fails_a_logit_outside_the_tolerance(backend, images, tmp_path) -> None:
    diff = 0.1 if backend.parity == LOOSE else 0.01
    with pytest.raises(ConformanceError) as failure:
        kit(backend, images, reference_off_by(images, diff), tmp_path)
    message = str(failure.value)
    assert "outside the backend's tolerance" in message
    assert f"max diff <= {backend.parity.max_abs_logit_diff:g}" in message
    assert "agrees on 100.00% of 40 images, max |logit difference| " in message
    assert message.endswith("(image 0, class 0)")
