"""``harness ab``'s serving figures: each side's median over visits and the change, shown
report-only (with no test behind them), and a visit that found no rate within the bound."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from harness.ab import serving_changes
from harness.commands.ab import ab_document
from harness.report.markdown import render_markdown

KEY = ["mnist", "book_cnn", "pool", "onnxruntime", "cpu"]


def side(max_qps: float | None, images_per_s: float, capped: bool = False) -> dict[str, Any]:
    server = {
        "p99_bound_ms": 20.0,
        "max_qps": max_qps,
        "capped": capped,
        "schedule_error_p99_ms": 0.5,
    }
    return {"serving": {"server": server, "offline": {"images_per_s": images_per_s}}}


def cell(*visits: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return {"key": KEY, "visits": [{"base": base, "new": new} for base, new in visits]}


def test_the_change_is_the_median_of_the_visits_ratios_with_their_range() -> None:
    serving = [cell((side(400, 1000), side(300, 1100)), (side(500, 1000), side(450, 900)))]
    qps, images = serving_changes(serving)
    assert qps["metric"] == "serving_max_qps"
    assert qps["base"]["median"] == 450 and qps["new"]["median"] == 375
    assert qps["changes"] == pytest.approx([-0.25, -0.1])
    assert qps["change"] == pytest.approx(-0.175)
    assert qps["p99_bound_ms"] == 20.0 and qps["schedule_error_p99_ms"] == 0.5
    assert images["metric"] == "offline_images_per_s"
    assert images["changes"] == pytest.approx([0.1, -0.1])
    assert images["change"] == pytest.approx(0.0)
    assert "p99_bound_ms" not in images


def test_a_visit_without_a_rate_within_the_bound_is_counted_not_averaged() -> None:
    serving = [cell((side(400, 1000), side(None, 900)), (side(500, 1000, True), side(450, 900)))]
    qps, _ = serving_changes(serving)
    assert qps["new"] == {"values": [None, 450], "median": 450, "none": 1, "capped": False}
    assert qps["base"]["capped"] is True
    assert qps["changes"] == pytest.approx([-0.1])


def test_the_document_shows_serving_as_not_judged_and_says_how_many_visits_a_test_needs():
    serving = [cell((side(400, 1000), side(300, 1100)), (side(500, 1000, True), side(None, 900)))]
    record = {
        "sides": [{"name": n, "python": "py", "backend_options": {}} for n in ("base", "new")],
        "rule": "r",
        "seconds": {"prepare": 1, "trials": 2, "serving": 30},
        "machine_load": {"foreign_cpu": 0.125, "steal": 0.01, "seconds": 32.0},
        "rows": [],
        "serving_changes": serving_changes(serving),
    }
    args = argparse.Namespace(percentile=50, alpha=0.01)
    text = render_markdown(ab_document(record, {}, args))
    assert "Serving scenarios (report-only: not judged)" in text
    assert "serving visits took 30 s" in text
    assert (
        "Machine load while measuring: trial phase 12.5% of the CPUs to other processes, 1.0% "
        "stolen by the hypervisor."
    ) in text
    assert "at least 8 visits a cell" in text  # 2 / 2**8 <= 0.01
    rows = [
        [part.strip() for part in line.split("|")[6:-1]]
        for line in text.splitlines()
        if line.startswith("| mnist")
    ]
    assert rows == [
        ["serving_max_qps", "20", "2", "≥450", "300 (none in 1 of 2)", "-25.0%", "0.5"],
        ["offline_images_per_s", "\\-", "2", "1,000", "1,000", "+0.0% \\[-10.0, +10.0\\]", "\\-"],
    ]
