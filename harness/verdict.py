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
of their log medians; the interval of the difference is Welch's t interval, widened by the
spread between whole runs that trials cannot see. Most of that spread is a level the whole run
lands in, shared by its rows (:func:`judge_runs`): a row is then judged by its change relative
to the mean change of the run's other rows that changed alike, and the change common to them
on a line of its own, against the whole run-to-run noise.

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
DEFAULT_RUN_NOISE = 0.16
"""Standard deviation of a row's log latency between whole runs beyond what its trials show,
pooled over the quick suite's MNIST pool rows: 11% (4 rows) and 15% (6 rows) on two
calibrations by ``benchmarks/verdict_validity.py`` on this project's development machine on
2026-12-02 (README); the larger, rounded up."""
DEFAULT_ROW_NOISE = 0.03
"""The same once the level the whole run landed in (its other rows) is taken out: 2.6% and
1.3% on the same two calibrations; the larger, rounded up."""


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
    estimates = {}
    for key in (key for key in base if key in new):
        left, right = np.asarray(base[key], np.float64), np.asarray(new[key], np.float64)
        centre, parts, dofs = _welch(left, right, key)
        variance = float(parts.sum()) + 2.0 * run_noise**2
        estimates[key] = _Estimate(
            centre, variance, _satterthwaite(variance, [(parts, dofs)]), _trials(left, right)
        )
    return _judge_t(estimates, alpha, threshold)


@dataclass(frozen=True)
class _Estimate:
    """A log-scale change with its variance and degrees of freedom, before Holm."""

    centre: float
    variance: float
    dof: float
    trials: int

    def p_value(self) -> float:
        from scipy.stats import t as student_t

        se = math.sqrt(self.variance)
        return 1.0 if se == 0 else float(2 * student_t.sf(abs(self.centre) / se, self.dof))


def _judge_t(
    estimates: Mapping[Any, _Estimate], alpha: float, threshold: float
) -> dict[Any, LatencyVerdict]:
    """Student's t per estimate, Holm over all of them, intervals at Holm's level per row."""
    from scipy.stats import t as student_t

    keys = list(estimates)
    p_values = [estimates[key].p_value() for key in keys]
    adjusted = holm(p_values)
    levels = holm_levels(p_values, alpha)
    verdicts = {}
    for key, p_value, p_adj, level in zip(keys, p_values, adjusted, levels, strict=True):
        e = estimates[key]
        half = float(student_t.ppf(1.0 - level / 2.0, e.dof)) * math.sqrt(e.variance)
        bounds = (e.centre - half, e.centre + half)
        verdicts[key] = _judged(
            e.centre, bounds, p_value, p_adj, e.trials, p_adj < alpha, threshold, threshold
        )
    return verdicts


@dataclass(frozen=True)
class RunsJudgement:
    """Two stored runs' latency verdicts: per row, and for the level common to all rows."""

    rows: dict[Any, LatencyVerdict]
    run_level: LatencyVerdict | None
    """The run level's change, judged against the whole run-to-run noise; None when the rows
    were judged on their own."""
    note: str
    """Why the rows were judged on their own, when they were."""

    @property
    def relative(self) -> bool:
        """Whether each row was judged relative to the run's level (its other rows)."""
        return self.run_level is not None


def _welch(left: np.ndarray, right: np.ndarray, key: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """The difference of the mean logs, and its two Welch variance parts with their dof."""
    if left.size < 2 or right.size < 2:
        raise ValueError(f"row {key}: at least 2 trials a side are needed")
    parts = np.array([left.var(ddof=1) / left.size, right.var(ddof=1) / right.size])
    return float(right.mean() - left.mean()), parts, np.array([left.size - 1, right.size - 1])


def judge_runs(
    base: Mapping[Any, np.ndarray],
    new: Mapping[Any, np.ndarray],
    alpha: float = 0.01,
    threshold: float = 0.10,
    run_noise: float = DEFAULT_RUN_NOISE,
    row_noise: float | None = DEFAULT_ROW_NOISE,
) -> RunsJudgement:
    """Judge two stored runs' rows relative to each other, and their common level apart.

    A run lands in a level shared by its rows (their run-to-run changes correlate 0.67-0.93 on
    this project's machine), so most of the run-to-run noise cancels in a row's change minus
    the run's level: the mean change of the rows that agree with each other (the consensus,
    :func:`consensus`), leaving the row itself out. That relative change's variance is the
    row's Welch variance plus ``2 * row_noise**2`` (what the level leaves), plus the variance
    of the level's mean. The level's change is judged on its own line with the whole
    ``run_noise``. Holm runs over the rows and that line together.

    The consensus stands for "no change" only while it holds most rows. When it holds half the
    rows or fewer, the data refute that premise and every row is judged on its own by
    :func:`judge_unpaired`, as it is with fewer than 3 rows or ``row_noise=None``.
    """

    def each_on_its_own(note: str) -> RunsJudgement:
        return RunsJudgement(judge_unpaired(base, new, alpha, threshold, run_noise), None, note)

    keys = [key for key in base if key in new]
    if row_noise is None:
        return each_on_its_own("")
    if len(keys) < 3:
        return each_on_its_own("fewer than 3 rows: no other rows to judge against")
    welch = [
        _welch(np.asarray(base[key], np.float64), np.asarray(new[key], np.float64), key)
        for key in keys
    ]
    changes = np.array([change for change, _, _ in welch])
    trial_variances = np.array([parts.sum() for _, parts, _ in welch])
    spreads = trial_variances + 2.0 * row_noise**2
    inside = consensus(changes, spreads, alpha)
    if 2 * inside.sum() <= len(keys):
        return each_on_its_own(
            f"only {inside.sum()} of {len(keys)} rows changed alike, so no majority of rows "
            "stands for the run's level: each row judged on its own"
        )
    estimates: dict[Any, _Estimate] = {}
    for index, key in enumerate(keys):
        level = inside.copy()
        level[index] = False
        share = 1.0 / level.sum()
        variance = float(spreads[index] + share**2 * spreads[level].sum())
        parts = [welch[index][1:]] + [
            (share**2 * welch[j][1], welch[j][2]) for j in level.nonzero()[0]
        ]
        estimates[key] = _Estimate(
            float(changes[index] - changes[level].mean()),
            variance,
            _satterthwaite(variance, parts),
            _trials(base[key], new[key]),
        )
    level_key = object()
    estimates[level_key] = _Estimate(
        float(changes[inside].mean()),
        2.0 * run_noise**2 + float(trial_variances[inside].sum()) / inside.sum() ** 2,
        math.inf,
        min(estimate.trials for estimate in estimates.values()),
    )
    verdicts = _judge_t(estimates, alpha, threshold)
    run_level = verdicts.pop(level_key)
    return RunsJudgement(verdicts, run_level, note="")


def consensus(changes: np.ndarray, variances: np.ndarray, alpha: float) -> np.ndarray:
    """Which rows changed alike: starting from all, keep the rows within the two-sided normal
    bound of the kept rows' median change at ``alpha`` shared by the rows (Bonferroni), until
    the set holds still. A row that really changed falls out; under no change, any row falls
    out with chance about ``alpha`` in all."""
    from scipy.stats import norm

    bound = float(norm.isf(alpha / 2.0 / changes.size))
    inside = np.ones(changes.size, dtype=bool)
    for _ in range(changes.size):
        if not inside.any():
            break
        centre = np.median(changes[inside])
        spread = np.sqrt(variances + variances[inside].mean() / inside.sum())
        kept = np.abs(changes - centre) <= bound * spread
        if (kept == inside).all():
            break
        inside = kept
    return inside


def _trials(left: np.ndarray, right: np.ndarray) -> int:
    return int(min(np.size(left), np.size(right)))


def _satterthwaite(variance: float, parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Welch-Satterthwaite degrees of freedom, the known (run noise) terms counting as known."""
    denominator = sum(float((part**2 / dof).sum()) for part, dof in parts)
    return variance**2 / denominator if denominator > 0 else math.inf
