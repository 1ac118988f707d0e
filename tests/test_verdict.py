"""The statistics behind latency verdicts, checked against scipy and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.verdict import (
    holm,
    holm_levels,
    judge_paired,
    median_interval,
    minimum_pairs,
    sign_test_p,
)


@pytest.mark.parametrize("seed", range(5))
def test_sign_test_p_matches_scipy_binomtest(seed: int) -> None:
    d = np.random.default_rng(seed).normal(0.01, 0.03, size=20)
    expected = binomtest(int((d > 0).sum()), d.size, 0.5).pvalue
    assert sign_test_p(d) == pytest.approx(expected, rel=1e-9)


def test_sign_test_p_of_all_zero_differences_is_one() -> None:
    assert sign_test_p(np.zeros(10)) == 1.0


def flipping_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Bimodal and skewed, like a process flipping between two speeds: no symmetry."""
    flipped = rng.random(size) < 0.2
    return np.where(flipped, rng.normal(0.5, 0.3, size), rng.normal(0.0, 0.03, size))


def test_median_interval_covers_at_its_confidence() -> None:
    rng = np.random.default_rng(1)
    true_median = float(np.median(flipping_noise(rng, 1_000_000)))
    trials = 2000
    covered = sum(
        low <= true_median <= high
        for _, low, high in (median_interval(flipping_noise(rng, 25), 0.90) for _ in range(trials))
    )
    # Discrete, hence conservative; 2,000 draws: a standard error of about 0.007.
    assert 0.88 <= covered / trials <= 0.97


def test_median_interval_is_unbounded_with_too_few_pairs() -> None:
    # Five pairs cannot reach 99%: the smallest two-sided p is 2 / 32.
    _, low, high = median_interval(np.array([1.0, 2, 3, 4, 5]), 0.99)
    assert (low, high) == (-math.inf, math.inf)


def test_the_median_interval_ignores_pairs_that_straddle_a_state_flip() -> None:
    rng = np.random.default_rng(7)
    d = math.log(1.05) + rng.normal(0, 0.01, 24)
    d[:4] = [0.5, -0.5, 0.6, -0.4]  # four pairs whose two trials ran in different states
    verdict = judge_paired({"row": d})["row"]
    assert verdict.verdict == "regression"
    assert verdict.noise_floor < 0.03


def test_holm_adjusts_step_down_and_stays_monotone() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_identical_sides_rarely_give_a_verdict() -> None:
    """A/A: family-wise false verdicts at most alpha (here over 300 comparisons of 4 rows)."""
    rng = np.random.default_rng(2)
    false = 0
    for _ in range(300):
        rows = {row: rng.normal(0.0, 0.04, size=30) for row in range(4)}
        verdicts = judge_paired(rows, alpha=0.05, threshold=0.05)
        false += any(v.verdict in ("regression", "improvement") for v in verdicts.values())
    assert false / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_a_real_slowdown_is_a_regression_with_its_interval() -> None:
    rng = np.random.default_rng(3)
    verdict = judge_paired({"row": math.log(1.10) + rng.normal(0, 0.02, size=30)})["row"]
    assert verdict.verdict == "regression"
    assert verdict.low < 0.10 < verdict.high
    assert verdict.describe().startswith("+")


def test_noisy_rows_are_inconclusive_and_quiet_ones_same() -> None:
    rng = np.random.default_rng(4)
    verdicts = judge_paired(
        {"noisy": rng.normal(0, 0.5, size=30), "quiet": rng.normal(0, 0.005, size=30)},
        threshold=0.05,
    )
    assert verdicts["noisy"].verdict == "inconclusive"
    assert verdicts["noisy"].noise_floor > 0.05
    assert verdicts["quiet"].verdict == "same"
    assert verdicts["quiet"].noise_floor < 0.05


def test_a_significant_change_below_min_change_is_not_a_regression() -> None:
    rng = np.random.default_rng(5)
    d = math.log(1.004) + rng.normal(0, 0.0005, size=40)
    verdict = judge_paired({"row": d}, min_change=0.01)["row"]
    assert verdict.p_adjusted < 0.01
    assert verdict.verdict == "same"


def test_minimum_pairs_is_where_the_test_first_reaches_alpha() -> None:
    n = minimum_pairs(0.01 / 4)
    assert sign_test_p(np.ones(n)) <= 0.01 / 4 < sign_test_p(np.ones(n - 1))


def test_holm_levels_step_down_and_stop_at_the_first_row_kept() -> None:
    assert holm_levels([0.001, 0.2, 0.004, 0.03], 0.05) == pytest.approx(
        [0.05 / 4, 0.05 / 2, 0.05 / 3, 0.05 / 2]
    )


def test_a_verdict_and_its_interval_always_agree() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        rows = {row: rng.normal(rng.choice([0.0, 0.03]), 0.05, size=20) for row in range(4)}
        for verdict in judge_paired(rows, alpha=0.05, min_change=0.0).values():
            significant = verdict.verdict in ("regression", "improvement")
            assert significant == (verdict.low > 0 or verdict.high < 0)
