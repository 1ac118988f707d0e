"""Paired A/B: BASE and NEW timed in the same visits, judged by the ratio within each visit.

Both sides run as two sides of :func:`harness.trials.run_trials`: every visit of a row times one
trial of each, back to back in random order, so the machine's phases fall on both alike and
their ratio cancels them. :mod:`harness.verdict` judges the ratios.

Serving figures (:mod:`harness.serving`), measured on both sides in the same visits, are only
summarized: each visit is one rate search per side, far fewer than a paired test needs.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from harness.trials import RowKey, RowTrials, TrialsResult
from harness.verdict import LatencyVerdict, judge_paired

SIDES = ("base", "new")
SERVING_METRICS = {
    "serving_max_qps": ("server", "max_qps"),
    "offline_images_per_s": ("offline", "images_per_s"),
}
"""Summary column name -> (scenario, field) of a serving record (:func:`measure_serving`)."""


def log_ratios(row: RowTrials, percentile: int = 50) -> np.ndarray:
    """``log(NEW / BASE)`` of the chosen trial percentile, one per visit."""
    column = f"p{percentile}_ns"
    return np.array([math.log(v["new"][column] / v["base"][column]) for v in row.visits])


def judge_ab(
    result: TrialsResult, percentile: int, alpha: float, threshold: float, min_change: float
) -> dict[RowKey, LatencyVerdict]:
    ratios = {row.key: log_ratios(row, percentile) for row in result.rows}
    return judge_paired(ratios, alpha=alpha, threshold=threshold, min_change=min_change)


def serving_changes(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per serving cell (``ab.json``'s ``serving``) and metric: each side's figure per visit and
    median, and NEW / BASE - 1 per visit with its median and range. No test: report-only.

    A visit whose search found no rate within the bound has no max QPS (None): it is left out
    of that side's median and of the changes, and counted in ``none``.
    """
    changes = []
    for cell in cells:
        visits = cell["visits"]
        server = {side: [v[side]["serving"]["server"] for v in visits] for side in SIDES}
        for metric, (scenario, field) in SERVING_METRICS.items():
            values = {side: [v[side]["serving"][scenario][field] for v in visits] for side in SIDES}
            ratios = [
                new / base - 1
                for base, new in zip(values["base"], values["new"], strict=True)
                if base and new is not None
            ]
            entry: dict[str, Any] = {"key": cell["key"], "metric": metric, "visits": len(visits)}
            for side in SIDES:
                present = [value for value in values[side] if value is not None]
                entry[side] = {
                    "values": values[side],
                    "median": statistics.median(present) if present else None,
                    "none": len(values[side]) - len(present),
                    "capped": scenario == "server" and any(s["capped"] for s in server[side]),
                }
            entry["changes"] = ratios
            entry["change"] = statistics.median(ratios) if ratios else None
            if scenario == "server":
                entry["p99_bound_ms"] = server["base"][0]["p99_bound_ms"]
                entry["schedule_error_p99_ms"] = max(
                    s["schedule_error_p99_ms"] for side in SIDES for s in server[side]
                )
            changes.append(entry)
    return changes
