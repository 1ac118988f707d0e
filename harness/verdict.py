"""Latency verdicts from trials: the change, its interval, the noise floor and the error control.

The unit of evidence is a *trial* (a short, separately scheduled burst of timed calls,
summarized by its median), never a raw sample: samples of one burst share the machine's state of
that moment and are not independent draws of what another moment would give.

Paired (``harness ab``): each pair is one trial of A and one of B, back to back in random order.
Its log ratio ``d = log(B / A)`` carries the change. The change is the median of the ``d`` and
its interval is the sign test's (binomial order statistics of the ``d``). Under "no change" (A
and B identical), the coin that orders each pair makes ``d > 0`` and ``d < 0`` equally likely
whatever the machine does, so the sign test is exact: its error rate is the nominal one with no
assumption about the noise, not even symmetry. It was chosen over the Wilcoxon signed-rank test
with the Hodges-Lehmann interval by measurement: on this project's shared machine a process
can flip between a fast and a slow state within a pair, and the few pairs that straddle a flip
widened the Walsh-average interval about twice as much as the median's (README).

Unpaired (stored runs, ``harness compare``): each run's trials of a row are summarized by the mean
of their log medians; the interval of the difference is Welch's t interval.

Many rows: every row's p-value is adjusted by Holm's step-down method, which keeps the chance of
even one false verdict in the whole comparison (the family-wise error rate) at most ``alpha``.
Each row's interval is at the level Holm judged it at (``alpha / m`` for the smallest p, up to
``alpha`` for the largest while all before it were significant), so that a verdict and its
interval never disagree.

Noise floor: the half-width of the row's interval, in percent: a true change of that size is
called with about even odds, a smaller one is lost in the noise. A row that shows no significant
change is ``same`` when its interval lies within the threshold, and ``inconclusive`` when it does
not (the data could not have shown a change of the size that matters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VERDICTS = ("regression", "improvement", "same", "inconclusive")
MIN_TRIALS = 3
"""Trials a side needs before a row's latency is judged."""
DEFAULT_RUN_NOISE = 0.12
"""Standard deviation of a row's log latency between whole runs beyond what its trials show:
11% pooled over MNIST pool's rows (7-14% per row), measured by ``benchmarks/verdict_validity.py``
on this project's development machine on 2026-12-02 (README), rounded up."""


@dataclass(frozen=True)
class LatencyVerdict:
    """One row's judgement; changes are relative (``0.05`` is 5% slower)."""

    change: float
    low: float
    high: float
    """The interval of the change, at the level Holm judged the row at (see the module doc)."""
    noise_floor: float
    p_value: float
    p_adjusted: float
    """Holm-adjusted over the rows judged together."""
    trials: int
    """Pairs (paired) or the smaller side's trials (unpaired)."""
    verdict: str

    def describe(self) -> str:
        """``+12.3% [+8.1, +16.7]``: the change and its interval, in percent."""
        return f"{100 * self.change:+.1f}% [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "low": self.low,
            "high": self.high,
            "noise_floor": self.noise_floor,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "trials": self.trials,
            "verdict": self.verdict,
        }


def sign_test_p(differences: np.ndarray) -> float:
    """Two-sided exact sign test of "the median of ``differences`` is 0" (zeros dropped)."""
    from scipy.stats import binom

    d = differences[differences != 0]
    if d.size == 0:
        return 1.0
    fewer = int(min((d > 0).sum(), (d < 0).sum()))
    return min(1.0, 2.0 * float(binom.cdf(fewer, d.size, 0.5)))


def median_interval(differences: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """The median of ``differences`` and the interval that inverts the sign test at
    ``confidence``: order statistics ``k`` and ``n + 1 - k`` of the sorted differences."""
    from scipy.stats import binom

    d = np.sort(np.asarray(differences, dtype=np.float64))
    n = d.size
    estimate = float(np.median(d))
    # k: the largest k with P(B <= k - 1) <= alpha / 2, B ~ Binomial(n, 1/2).
    k = int(np.searchsorted(binom.cdf(np.arange(n + 1), n, 0.5), (1 - confidence) / 2, "right"))
    if k == 0:  # too few pairs for this confidence: the interval is unbounded
        return estimate, -math.inf, math.inf
    return estimate, float(d[k - 1]), float(d[n - k])


def minimum_pairs(alpha: float) -> int:
    """The fewest pairs whose sign test can reach two-sided ``alpha`` at all: with every sign
    alike, p is 2 / 2**n."""
    return max(1, math.ceil(math.log2(2.0 / alpha)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda k: p_values[k])
    adjusted = [0.0] * m
    running = 0.0
    for step, k in enumerate(order):
        running = max(running, min(1.0, (m - step) * p_values[k]))
        adjusted[k] = running
    return adjusted


def holm_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The significance level Holm's procedure judged each row at: ``alpha / (m - k)`` for the
    row of rank k (from 0, smallest p first) while all before it were rejected, and the level
    of the first row kept for every row after it. An interval at ``1 - level`` then excludes
    "no change" exactly when Holm calls the row significant."""
    m = len(p_values)
    levels = [0.0] * m
    rejecting = True
    level = alpha / max(m, 1)
    for rank, k in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        if rejecting:
            level = alpha / (m - rank)
            rejecting = p_values[k] < level
        levels[k] = level
    return levels


def _verdict(
    low: float, high: float, significant: bool, change: float, threshold: float, min_change: float
) -> str:
    if significant and abs(change) >= min_change:
        return "regression" if change > 0 else "improvement"
    if -threshold <= low and high <= threshold:
        return "same"
    return "inconclusive"


def _judged(
    centre: float,
    bounds: tuple[float, float],
    p_value: float,
    p_adjusted: float,
    trials: int,
    significant: bool,
    threshold: float,
    min_change: float,
) -> LatencyVerdict:
    """A row's verdict from its log-scale estimate and interval bounds."""
    change, low, high = (_relative(value) for value in (centre, *bounds))
    return LatencyVerdict(
        change=change,
        low=low,
        high=high,
        noise_floor=(high - low) / 2.0,
        p_value=p_value,
        p_adjusted=p_adjusted,
        trials=trials,
        verdict=_verdict(low, high, significant, change, threshold, min_change),
    )


def _relative(log_value: float) -> float:
    return math.expm1(log_value) if math.isfinite(log_value) else log_value


def judge_paired(
    log_ratios: Mapping[Any, np.ndarray],
    alpha: float = 0.01,
    threshold: float = 0.05,
    min_change: float = 0.01,
) -> dict[Any, LatencyVerdict]:
    """Judge every row from its pairs' ``log(B / A)``; Holm over all rows at ``alpha``."""
    keys = list(log_ratios)
    p_values = [sign_test_p(np.asarray(log_ratios[k], dtype=np.float64)) for k in keys]
    adjusted = holm(p_values)
    levels = holm_levels(p_values, alpha)
    verdicts = {}
    for key, p_value, p_adj, level in zip(keys, p_values, adjusted, levels, strict=True):
        d = np.asarray(log_ratios[key], dtype=np.float64)
        centre, low, high = median_interval(d, 1.0 - level)
        verdicts[key] = _judged(
            centre, (low, high), p_value, p_adj, int(d.size), p_adj < alpha, threshold, min_change
        )
    return verdicts


def judge_unpaired(
    base: Mapping[Any, np.ndarray],
    new: Mapping[Any, np.ndarray],
    alpha: float = 0.01,
    threshold: float = 0.10,
    run_noise: float = 0.0,
) -> dict[Any, LatencyVerdict]:
    """Judge every row from two runs' trial log-latencies; Holm over all rows at ``alpha``.

    The change is the difference of the mean log trial latency (a ratio of geometric means).
    Its variance is the trials' (Welch) plus ``2 * run_noise**2``: the spread between whole
    runs that trials inside one run cannot see (the machine's state of the day, of the
    process), measured by repeated runs. The degrees of freedom are Welch-Satterthwaite's,
    the run-noise term counting as known. A change needs significance AND a size of at least
    ``threshold`` to be a verdict.
    """
    from scipy.stats import t as student_t

    keys = [key for key in base if key in new]
    estimates, p_values = {}, []
    for key in keys:
        left, right = np.asarray(base[key], np.float64), np.asarray(new[key], np.float64)
        if left.size < 2 or right.size < 2:
            raise ValueError(f"row {key}: at least 2 trials a side are needed")
        parts = np.array([left.var(ddof=1) / left.size, right.var(ddof=1) / right.size])
        dofs = np.array([left.size - 1, right.size - 1])
        variance = float(parts.sum()) + 2.0 * run_noise**2
        denominator = float((parts**2 / dofs).sum())
        dof = variance**2 / denominator if denominator > 0 else math.inf
        centre = float(right.mean() - left.mean())
        se = math.sqrt(variance)
        p_values.append(1.0 if se == 0 else float(2 * student_t.sf(abs(centre) / se, dof)))
        estimates[key] = (centre, se, dof, int(min(left.size, right.size)))
    adjusted = holm(p_values)
    levels = holm_levels(p_values, alpha)
    verdicts = {}
    for key, p_value, p_adj, level in zip(keys, p_values, adjusted, levels, strict=True):
        centre, se, dof, trials = estimates[key]
        half = float(student_t.ppf(1.0 - level / 2.0, dof)) * se
        bounds = (centre - half, centre + half)
        verdicts[key] = _judged(
            centre, bounds, p_value, p_adj, trials, p_adj < alpha, threshold, threshold
        )
    return verdicts
