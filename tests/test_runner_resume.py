"""A resumed run has what an uninterrupted one has: its trial phase times every ok cell whose
rows have no trials yet, those an earlier invocation measured before it was stopped too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dry_runner import DryRunner

from harness.journal import Journal
from harness.planner import CellKey
from harness.plugins import get_registry
from harness.report.synthetic import run_record
from harness.suite import load_suite, override
from harness.trials import journal_record, row_key


class FakeRunner(DryRunner):
    """Stopped (as by Ctrl-C) when it starts measuring cell number ``stop_at``; its trial
    phase journals one trials record per row of the cells it is given."""

    def __init__(self, *args: Any, stop_at: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_at = stop_at
        self.started = 0
        self.timed: list[str] = []

    def _measure(self, cell: CellKey, trained, eval_path) -> dict[str, Any]:
        self.started += 1
        if self.started == self.stop_at:
            raise KeyboardInterrupt
        return super()._measure(cell, trained, eval_path)

    def _trial_phase(self, cells) -> None:
        for spec in cells:
            self.timed.append(spec.backend)
            for batch_size in spec.batch_sizes:
                self.journal.append(journal_record(row_key(spec, batch_size), []))


def test_a_resumed_run_times_the_cells_measured_before_it_was_stopped(tmp_path: Path) -> None:
    quick = load_suite("quick")
    suite = override(
        quick, datasets=("mnist",), variants=("pool",), backends=("keras", "onnxruntime")
    )
    suite = replace(suite, latency=replace(suite.latency, trial_rounds=2))

    def runner(**kwargs: Any) -> FakeRunner:
        return FakeRunner(
            suite, get_registry(), tmp_path, tmp_path, tmp_path, log=lambda line: None, **kwargs
        )

    first = runner(stop_at=2)
    first.start_journal(run_record()["environment"], run_record()["gemm_peak"], {})
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert first.timed == []

    resumed = runner()
    resumed.run()

    assert sorted(resumed.timed) == ["keras", "onnxruntime"]
    records = Journal(tmp_path / "journal.jsonl").records()
    rows = sorted((r["backend"], r["batch_size"]) for r in records if r["type"] == "trials")
    assert rows == [("keras", 1), ("keras", 32), ("onnxruntime", 1), ("onnxruntime", 32)]
    assert [r["backend"] for r in records if r["type"] == "cell"] == ["keras", "onnxruntime"]
    (end,) = [r for r in records if r["type"] == "end"]
    load = end["machine_load"]  # of the phases this invocation ran: one cell, no trial phase
    assert set(load) == {"latency", "trials"} and load["latency"]["seconds"] > 0
    assert load["trials"] == {"foreign_cpu": None, "steal": None, "seconds": 0.0}

    again = runner()  # a finished run resumed: nothing measured or timed twice
    again.run()
    assert again.timed == [] and again.started == 0


def test_a_run_stopped_while_writing_its_reports_keeps_its_end_when_resumed(
    tmp_path: Path,
) -> None:
    """Its ``end`` is journaled before the reports are written: the resume that writes them
    again journals no second ``end``, which would replace the run's wall time and phases with
    those of an invocation that did nothing."""
    suite = override(load_suite("quick"), datasets=("mnist",), variants=("pool",))
    peaks = iter([{"gflops": 1.0}, {"gflops": 2.0}])

    def runner() -> FakeRunner:
        return FakeRunner(
            suite,
            get_registry(),
            tmp_path,
            tmp_path,
            tmp_path,
            log=lambda line: None,
            measure_peak=lambda: next(peaks),
        )

    first = runner()
    first.start_journal(run_record()["environment"], run_record()["gemm_peak"], {})
    counted = first.run().cells
    (end,) = [r for r in Journal(tmp_path / "journal.jsonl").records() if r["type"] == "end"]

    resumed = runner()
    outcome = resumed.run()

    records = Journal(tmp_path / "journal.jsonl").records()
    assert [r for r in records if r["type"] == "end"] == [end]
    assert resumed.started == 0 and resumed.timed == []
    assert outcome.cells == counted  # the exit status still counts every cell
