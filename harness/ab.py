"""Paired A/B: BASE and NEW timed in the same visits, judged by the ratio within each visit.

Both sides run as two sides of :func:`harness.trials.run_trials`: every visit of a row times one
trial of each, back to back in random order, so the machine's phases fall on both alike and
their ratio cancels them. :mod:`harness.verdict` judges the ratios.
"""

from __future__ import annotations

import math

import numpy as np

from harness.trials import RowKey, RowTrials, TrialsResult
from harness.verdict import LatencyVerdict, judge_paired

SIDES = ("base", "new")


def log_ratios(row: RowTrials, percentile: int = 50) -> np.ndarray:
    """``log(NEW / BASE)`` of the chosen trial percentile, one per visit."""
    column = f"p{percentile}_ns"
    return np.array([math.log(v["new"][column] / v["base"][column]) for v in row.visits])


def judge_ab(
    result: TrialsResult, percentile: int, alpha: float, threshold: float, min_change: float
) -> dict[RowKey, LatencyVerdict]:
    ratios = {row.key: log_ratios(row, percentile) for row in result.rows}
    return judge_paired(ratios, alpha=alpha, threshold=threshold, min_change=min_change)
