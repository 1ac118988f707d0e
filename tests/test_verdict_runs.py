"""Stored-run verdicts relative to the run: the level a whole run lands in cancels, a change of
some rows does not, and a change of most rows is not mistaken for the others improving."""

from __future__ import annotations

import math

import numpy as np

from harness.verdict import consensus, judge_runs, judge_unpaired

ROWS = 6
RUN_NOISE, ROW_NOISE, TRIAL_NOISE, TRIALS = 0.11, 0.04, 0.08, 10


def stored_run(
    rng: np.random.Generator, changes: dict[int, float] | None = None
) -> dict[int, np.ndarray]:
    """Each row's trial log-latencies in one run, drawn from the model compare assumes: a level
    the whole run lands in (shared by its rows), what each row adds to it, and trial noise."""
    level = rng.normal(0.0, math.sqrt(RUN_NOISE**2 - ROW_NOISE**2))
    return {
        row: math.log(1.0 + row)
        + math.log1p((changes or {}).get(row, 0.0))
        + level
        + rng.normal(0.0, ROW_NOISE)
        + rng.normal(0.0, TRIAL_NOISE, TRIALS)
        for row in range(ROWS)
    }


def judge(base: dict, new: dict, **options: object):
    return judge_runs(base, new, run_noise=RUN_NOISE, row_noise=ROW_NOISE, **options)


def test_the_consensus_keeps_rows_that_changed_alike_and_drops_the_others() -> None:
    changes = np.array([0.01, -0.02, 0.0, 0.03, 0.5, 0.52])
    inside = consensus(changes, np.full(6, 0.05**2), alpha=0.01)
    assert inside.tolist() == [True, True, True, True, False, False]
    spread = consensus(np.array([0.0, 0.3, 0.6, 0.9]), np.full(4, 0.05**2), alpha=0.01)
    assert spread.sum() <= 2


def test_a_level_shared_by_every_row_cancels_in_the_rows_and_shows_on_its_own_line() -> None:
    rng = np.random.default_rng(0)
    base = stored_run(rng)
    new = {row: logs + math.log(1.4) for row, logs in stored_run(rng).items()}
    judgement = judge(base, new)
    assert judgement.relative and judgement.note == ""
    assert all(abs(v.change) < 0.25 for v in judgement.rows.values())
    assert all(v.verdict in ("same", "inconclusive") for v in judgement.rows.values())
    assert judgement.run_level is not None
    assert judgement.run_level.low < 0.4 < judgement.run_level.high
    absolute = judge_unpaired(base, new, run_noise=RUN_NOISE)
    assert min(v.noise_floor for v in absolute.values()) > max(
        v.noise_floor for v in judgement.rows.values()
    )


def test_error_rates_under_the_model_a_and_a() -> None:
    """A/A: family-wise false verdicts (rows and the all-rows line) at most alpha, measured
    over 400 simulated pairs of runs."""
    rng = np.random.default_rng(1)
    false = 0
    for _ in range(400):
        judgement = judge(stored_run(rng), stored_run(rng), alpha=0.05)
        verdicts = [*judgement.rows.values(), judgement.run_level]
        false += any(v is not None and v.verdict in ("regression", "improvement") for v in verdicts)
    assert false / 400 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_a_change_of_two_rows_out_of_six_is_caught_and_the_others_stay_unjudged() -> None:
    rng = np.random.default_rng(2)
    caught = flagged_others = 0
    for _ in range(100):
        judgement = judge(stored_run(rng), stored_run(rng, {4: 0.6, 5: 0.6}))
        assert judgement.relative
        caught += sum(judgement.rows[row].verdict == "regression" for row in (4, 5))
        flagged_others += sum(
            judgement.rows[row].verdict in ("regression", "improvement") for row in range(4)
        )
    assert caught >= 190
    assert flagged_others <= 4
    absolute_caught = sum(
        v.verdict == "regression"
        for _ in range(50)
        for key, v in judge_unpaired(
            stored_run(rng), stored_run(rng, {4: 0.6, 5: 0.6}), run_noise=RUN_NOISE
        ).items()
        if key in (4, 5)
    )
    assert absolute_caught < 90  # of 100: what the rows judged on their own would have said


def test_when_half_the_rows_move_every_row_is_judged_on_its_own() -> None:
    rng = np.random.default_rng(3)
    base, new = stored_run(rng), stored_run(rng, {3: 1.0, 4: 1.0, 5: 1.0})
    judgement = judge(base, new)
    assert not judgement.relative and judgement.run_level is None
    assert "rows changed alike" in judgement.note
    expected = judge_unpaired(base, new, run_noise=RUN_NOISE)
    assert {k: v.verdict for k, v in judgement.rows.items()} == {
        k: v.verdict for k, v in expected.items()
    }
    assert all(judgement.rows[row].verdict != "improvement" for row in range(3))


def test_fewer_than_three_rows_or_no_row_noise_judge_each_row_on_its_own() -> None:
    rng = np.random.default_rng(4)
    base, new = stored_run(rng), stored_run(rng)
    two = judge({0: base[0], 1: base[1]}, {0: new[0], 1: new[1]})
    assert not two.relative and "fewer than 3 rows" in two.note
    plain = judge_runs(base, new, run_noise=RUN_NOISE, row_noise=None)
    assert not plain.relative and plain.note == "" and plain.run_level is None


def test_a_relative_verdict_and_its_interval_always_agree() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        judgement = judge(stored_run(rng), stored_run(rng, {5: rng.choice([0.0, 0.3])}))
        for verdict in [*judgement.rows.values(), judgement.run_level]:
            if verdict is None:
                continue
            significant = verdict.p_adjusted < 0.01
            assert significant == (verdict.low > 0 or verdict.high < 0)
