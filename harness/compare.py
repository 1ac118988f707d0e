"""Compare two runs row by row: what regressed, what improved, what changed, what is missing.

Latency is judged by the trials of each run's trial phase (``latency.trial_rounds``), never by
raw samples: samples of one run share its moment on the machine, so a test on them only asks
"were these runs made at different times", which is always yes. A run lands in a level that all
its rows share, so each row is judged by its change relative to the mean change of the other
rows that changed alike (ratios of the trials' geometric means; Welch interval widened by what
the level leaves between runs, ``row_noise``), and the level's change on a line of its own
(:data:`RUN_LEVEL`) against the whole run-to-run noise (``run_noise``); Holm's method holds the
family-wise error rate over all of them at ``alpha``. When no majority of rows changed alike, or
with fewer than 3 rows, each row is judged on its own against ``run_noise``. A row is a
regression when the change is significant and beyond the threshold, ``same`` when its interval
lies within the threshold, and ``inconclusive`` when neither: its noise floor (the interval's
half-width) is reported with it. Rows without trials on both sides are ``untested``.
:mod:`harness.verdict` has the statistics; for changes smaller than a stored run can show,
``harness ab`` measures both sides interleaved.

Rows are matched on their identity (dataset, model, variant, backend, device, batch size).
Environments must match (CPU model, vendor/family/model, thread settings, library major versions)
unless allowed: comparing latencies across machines says nothing about the code. CPUs with
different instruction sets are never compared, not even when allowed: the runtimes pick other
kernels (AVX2 or AVX-512 VNNI, say), so only ``--metrics deterministic`` reads such runs.

Serving figures (the Server scenario's max QPS at the p99 bound, Offline images/s) are shown
per cell as ``report-only``: each run measures them once, with no noise to judge a change by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import DataError, HarnessError
from harness.machine_load import trial_phase_foreign_cpu
from harness.report.frames import RunTables, trial_logs
from harness.report.schema import IDENTITY
from harness.report.store import summary_records
from harness.trial_worker import TRIAL_QUANTILES
from harness.verdict import (
    DEFAULT_ROW_NOISE,
    DEFAULT_RUN_NOISE,
    MIN_TRIALS,
    LatencyVerdict,
    RunsJudgement,
    judge_runs,
)

DETERMINISTIC_COLUMNS = (
    "params_total",
    "params_trainable",
    "params_conv",
    "params_dense",
    "macs_per_image",
)
"""Counts that do not depend on the machine: a change means the model changed."""

METRIC_SETS = ("all", "deterministic")


class EnvironmentMismatch(HarnessError):
    """The two runs come from different environments; latencies would not be comparable."""


@dataclass(frozen=True)
class CompareOptions:
    alpha: float = 0.01
    """Family-wise error rate of the latency verdicts (Holm over the rows)."""
    threshold: float = 0.10
    """Relative latency change that matters: smaller is ``same`` when the interval shows it."""
    run_noise: float = DEFAULT_RUN_NOISE
    """Spread between whole runs that one run's trials cannot see (relative, one run)."""
    row_noise: float | None = DEFAULT_ROW_NOISE
    """What is left of it once the run's level (the rows that changed alike) is taken out;
    None judges every row on its own against ``run_noise``."""
    percentile: int = 50
    accuracy_drop_pp: float = 0.5
    """Accuracy drop, in percentage points, that is a regression."""
    metrics: str = "all"
    """``all``, or ``deterministic``: only counts and status (for CI across machines)."""
    allow_env_mismatch: bool = False


@dataclass(frozen=True)
class Finding:
    identity: tuple[Any, ...]
    metric: str
    base: str
    new: str
    change: str
    verdict: str
    """``regression``, ``improvement``, ``changed``, ``same``, ``inconclusive`` (a latency whose
    noise floor is above the threshold), ``untested`` (a latency row without trials on both
    sides), or ``report-only`` (a serving figure: its change is shown, never judged)."""
    gates: bool
    """Whether this finding fails the comparison (exit 1)."""
    p_value: float | None = None
    """Holm-adjusted over the comparison's latency rows."""
    noise_floor: float | None = None
    """Half-width of the latency change's interval (relative): smaller changes are noise."""


@dataclass
class Comparison:
    findings: list[Finding]
    compared_rows: int
    """Rows present in both runs."""
    missing: list[tuple[Any, ...]]
    """Rows in BASE that NEW lacks."""
    added: list[tuple[Any, ...]]
    """Rows in NEW that BASE lacks."""
    environment_differences: list[str] = field(default_factory=list)
    latency_relative: bool = False
    """Whether latency rows were judged relative to the run's level (its other rows)."""
    latency_note: str = ""
    """Why they were judged each on its own although relative judgement was asked for."""
    load_warnings: list[str] = field(default_factory=list)
    """Runs whose trial phase shared the machine with other work (``LOADED_SHARE``)."""

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.gates]


def _major(version: Any) -> str | None:
    return None if version is None else str(version).split(".")[0]


ISA_FIELD = "cpu.isa"
_CPU_FIELDS = ("vendor", "family", "model", "isa")
"""Fields of the CPU fingerprint that must match; None where a run did not record them (runs
from before the fingerprint have no ``cpu`` at all)."""


def _comparable_environment(environment: dict[str, Any]) -> dict[str, Any]:
    """The fields that must match for latencies to be comparable."""
    fields: dict[str, Any] = {"cpu_model": environment.get("cpu_model")}
    cpu = environment.get("cpu") or {}
    for name in _CPU_FIELDS:
        fields[f"cpu.{name}"] = cpu.get(name)
    for name, value in sorted((environment.get("threads") or {}).items()):
        fields[f"threads.{name}"] = value
    for name, version in sorted((environment.get("libraries") or {}).items()):
        fields[f"libraries.{name} (major)"] = _major(version)
    return fields


def check_environments(
    base: RunTables, new: RunTables, pairs: set[tuple[str, str]], options: CompareOptions
) -> list[str]:
    """One line per differing or unrecorded field, for each pair of runs whose rows were
    matched; raises EnvironmentMismatch for a difference the options do not allow.

    An unrecorded CPU field is unknown, not different: runs from before the fingerprint still
    compare, with a line saying what could not be checked.
    """
    base_envs = {run["run_id"]: run.get("environment") or {} for run in base.runs}
    new_envs = {run["run_id"]: run.get("environment") or {} for run in new.runs}
    lines: list[str] = []
    isa_differs = other_differs = False
    for base_run, new_run in sorted(pairs):
        left = _comparable_environment(base_envs.get(base_run, {}))
        right = _comparable_environment(new_envs.get(new_run, {}))
        where = f" (runs {base_run} and {new_run})" if len(pairs) > 1 else ""
        for name in sorted(set(left) | set(right)):
            left_value, right_value = left.get(name), right.get(name)
            if name.startswith("cpu.") and (left_value is None or right_value is None):
                lines.append(f"{name}: {_not_recorded(left_value, right_value)}{where}")
            elif left_value != right_value:
                extra = _isa_change(left_value, right_value) if name == ISA_FIELD else ""
                lines.append(f"{name}: {left_value!r} vs {right_value!r}{extra}{where}")
                isa_differs |= name == ISA_FIELD
                other_differs |= name != ISA_FIELD
    if options.metrics == "deterministic":
        return lines
    if isa_differs:
        raise EnvironmentMismatch(
            "the runs come from CPUs with different instruction sets, so the runtimes ran other "
            "kernels and their latencies are not comparable:\n  "
            + "\n  ".join(lines)
            + f"\n--allow-env-mismatch does not cover {ISA_FIELD}: compare with --metrics "
            "deterministic, or measure both sides on one machine."
        )
    if other_differs and not options.allow_env_mismatch:
        raise EnvironmentMismatch(
            "the runs come from different environments, so their latencies are not comparable:\n  "
            + "\n  ".join(lines)
            + "\nPass --allow-env-mismatch to compare anyway, or --metrics deterministic."
        )
    return lines


def _not_recorded(left: Any, right: Any) -> str:
    if left is None and right is None:
        return "not recorded"
    if left is None:
        return f"not recorded in BASE, {right!r} in NEW"
    return f"{left!r} in BASE, not recorded in NEW"


def _isa_change(left: list[str], right: list[str]) -> str:
    """What each side has that the other lacks: the lists are long, the difference is short."""
    parts = [
        f"only in {side}: {', '.join(sorted(set(mine) - set(theirs)))}"
        for side, mine, theirs in (("BASE", left, right), ("NEW", right, left))
        if set(mine) - set(theirs)
    ]
    return f" ({'; '.join(parts)})" if parts else ""


LOADED_SHARE = 0.10
"""Share of the machine's CPU that other processes may take during a run's trial phase before
compare warns: the noises were measured on a quiet machine, and runs measured beside other work
gave false verdicts (README). A warning, not a calibrated bound."""


def load_warnings(base: RunTables, new: RunTables, pairs: set[tuple[str, str]]) -> list[str]:
    """One line per matched run whose trial phase others' processes took a share of."""
    lines = []
    for label, tables, run_ids in (
        ("BASE", base, {pair[0] for pair in pairs}),
        ("NEW", new, {pair[1] for pair in pairs}),
    ):
        for run in tables.runs:
            share = trial_phase_foreign_cpu(run)
            if run["run_id"] in run_ids and share is not None and share > LOADED_SHARE:
                lines.append(
                    f"{label} run {run['run_id']}: other processes took {100 * share:.0f}% of "
                    "the machine's CPU during its trial phase"
                )
    return lines


def _identity(row: tuple[Any, ...]) -> tuple[Any, ...]:
    *names, batch_size = row
    return (*names, None if batch_size is None else int(batch_size))


def _index(tables: RunTables, label: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in summary_records(tables.summary):
        key = _identity(tuple(record[k] for k in IDENTITY))
        if key in rows:
            raise DataError(
                f"{label}: two rows for {'/'.join(map(str, key))} (runs {rows[key]['run_id']} "
                f"and {record['run_id']}); a report must hold each cell once"
            )
        rows[key] = record
    return rows


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return str(value)


def _deterministic(key: tuple, base: dict, new: dict) -> list[Finding]:
    findings = []
    for name in DETERMINISTIC_COLUMNS:
        left, right = base.get(name), new.get(name)
        if left != right:
            change = f"{right - left:+,}" if left is not None and right is not None else "-"
            findings.append(Finding(key, name, _show(left), _show(right), change, "changed", True))
    left, right = base.get("status"), new.get("status")
    if left != right:
        verdict = "regression" if right != "ok" else "improvement"
        change = _show(new.get("error")) if right != "ok" else "-"
        findings.append(
            Finding(key, "status", str(left), str(right), change, verdict, verdict == "regression")
        )
    return findings


def _accuracy(key: tuple, base: dict, new: dict, options: CompareOptions) -> list[Finding]:
    findings = []
    left, right = base.get("test_accuracy"), new.get("test_accuracy")
    if left is not None and right is not None:
        drop_pp = 100 * (left - right)
        verdict = "same"
        if drop_pp > options.accuracy_drop_pp:
            verdict = "regression"
        elif -drop_pp > options.accuracy_drop_pp:
            verdict = "improvement"
        findings.append(
            Finding(
                key,
                "test_accuracy",
                f"{100 * left:.2f}%",
                f"{100 * right:.2f}%",
                f"{-drop_pp:+.2f} pp",
                verdict,
                verdict == "regression",
            )
        )
    left, right = base.get("parity_ok"), new.get("parity_ok")
    if left is True and right is False:
        findings.append(Finding(key, "parity_ok", "True", "False", "-", "regression", True))
    left, right = base.get("parity_top1_agreement"), new.get("parity_top1_agreement")
    if left != right and left is not None and right is not None:
        change = f"{100 * (right - left):+.2f} pp"
        findings.append(
            Finding(
                key, "parity_top1_agreement", _show(left), _show(right), change, "changed", False
            )
        )
    return findings


SERVING_METRICS = ("serving_max_qps", "offline_images_per_s")
"""Serving figures compare shows per cell: one search and one pass per run, no measured noise."""
_SERVING_SETUP = ("serving_p99_bound_ms", "serving_concurrency")
SCHEDULE_ERROR_SHARE = 0.05
"""A run's Server result is trusted as a state only when its load generator kept time: the
scheduling error's p99 within this share of the bound. On a starved machine the sender itself
runs late, and a rate can fail the bound for that alone (measured: MNIST pool on Keras found no
rate within 20 ms beside other jobs, scheduling error p99 5.7 ms)."""


def _kept_time(row: dict) -> bool:
    error = row.get("serving_schedule_error_p99_ms")
    return error is not None and error <= SCHEDULE_ERROR_SHARE * row["serving_p99_bound_ms"]


def _serving_value(row: dict, metric: str) -> str:
    """``≥`` marks a search that never reached the bound; ``none``, one that found no rate."""
    value = row.get(metric)
    if value is None:
        return "none" if metric == "serving_max_qps" else "-"
    floor = metric == "serving_max_qps" and bool(row.get("serving_capped"))
    return f"{'≥ ' if floor else ''}{value:,.1f}"


def _serving(cell: tuple, base: dict, new: dict) -> list[Finding]:
    """Each serving figure's change, ``report-only``: a run measures it once (one bisection,
    one Offline pass), so no noise is known and no size of change can be judged. The one
    verdict is a lost capability: BASE found a rate within the p99 bound, NEW none, not even
    the lowest rate tried (a fraction of NEW's own capacity), with NEW's load generator on
    time: a regression, and its mirror an improvement."""
    measured = [row.get("serving_p99_bound_ms") is not None for row in (base, new)]
    if not any(measured):
        return []
    if not all(measured):
        side = "NEW" if measured[0] else "BASE"
        return [
            Finding(
                cell,
                metric,
                _serving_value(base, metric) if measured[0] else "-",
                _serving_value(new, metric) if measured[1] else "-",
                f"not measured in {side}",
                "report-only",
                False,
            )
            for metric in SERVING_METRICS
        ]
    differs = [name for name in _SERVING_SETUP if base.get(name) != new.get(name)]
    findings = []
    for metric in SERVING_METRICS:
        left, right = base.get(metric), new.get(metric)
        verdict = "report-only"
        if differs:
            setup = ", ".join(
                f"{name} {_show(base.get(name))} vs {_show(new.get(name))}" for name in differs
            )
            change = f"not comparable ({setup})"
        elif left is not None and right is not None and left > 0:
            change = f"{100 * (right / left - 1):+.1f}%"
        elif metric == "serving_max_qps" and (left is None) != (right is None):
            change = "no rate within the bound" if right is None else "a rate within the bound"
            failed = new if right is None else base
            if _kept_time(failed):
                verdict = "regression" if right is None else "improvement"
            else:
                late = _show(failed.get("serving_schedule_error_p99_ms"))
                change += f" (its load generator was late, p99 {late} ms: not judged)"
        else:
            change = "-"
        findings.append(
            Finding(
                cell,
                metric,
                _serving_value(base, metric),
                _serving_value(new, metric),
                change,
                verdict,
                verdict == "regression",
            )
        )
    return findings


def _trial_latencies(tables: RunTables, percentile: int) -> dict[tuple[Any, ...], np.ndarray]:
    """Each row's trial latencies as logs, keyed by identity (a report holds each row once)."""
    return {key[1:]: logs for key, logs in trial_logs(tables.trials, percentile).items()}


RUN_LEVEL = ("all rows", "-", "-", "-", "-", None)
"""The identity of the finding that judges the change of the level the whole run landed in."""


def _latency_finding(
    key: tuple, metric: str, base: str, new: str, verdict: LatencyVerdict
) -> Finding:
    return Finding(
        key,
        metric,
        base,
        new,
        verdict.describe(),
        verdict.verdict,
        verdict.verdict == "regression",
        verdict.p_adjusted,
        verdict.noise_floor,
    )


def _latency(
    pending: list[tuple[tuple, np.ndarray, np.ndarray]], options: CompareOptions
) -> tuple[list[Finding], RunsJudgement]:
    """Judge every row with trials on both sides together, so Holm sees the whole family."""
    base = {key: left for key, left, _ in pending}
    new = {key: right for key, _, right in pending}
    judgement = judge_runs(
        base,
        new,
        alpha=options.alpha,
        threshold=options.threshold,
        run_noise=options.run_noise,
        row_noise=options.row_noise,
    )
    metric = f"p{options.percentile}_ms"
    findings = [
        _latency_finding(
            key,
            metric,
            f"{math.exp(left.mean()) / 1e6:.4g}",
            f"{math.exp(right.mean()) / 1e6:.4g}",
            judgement.rows[key],
        )
        for key, left, right in pending
    ]
    if judgement.run_level is not None:
        findings.append(
            _latency_finding(RUN_LEVEL, f"{metric} (run level)", "-", "-", judgement.run_level)
        )
    return findings, judgement


def _untested_latency(key: tuple, metric: str, left_ms: float, right_ms: float) -> Finding:
    """A row without trials on both sides: its change is shown, and judged by nothing."""
    return Finding(
        key,
        metric,
        f"{left_ms:.4g}",
        f"{right_ms:.4g}",
        f"{100 * (right_ms / left_ms - 1):+.1f}%",
        "untested",
        False,
    )


def compare_runs(base: RunTables, new: RunTables, options: CompareOptions) -> Comparison:
    """Match rows on identity and judge each metric; raises EnvironmentMismatch when not allowed."""
    if options.metrics not in METRIC_SETS:
        raise HarnessError(f"--metrics must be one of {', '.join(METRIC_SETS)}")
    if options.percentile not in TRIAL_QUANTILES:
        allowed = ", ".join(map(str, TRIAL_QUANTILES))
        raise HarnessError(f"--percentile must be one of {allowed}, got {options.percentile}")
    base_rows, new_rows = _index(base, "BASE"), _index(new, "NEW")
    matched = [key for key in base_rows if key in new_rows]
    pairs = {(base_rows[k]["run_id"], new_rows[k]["run_id"]) for k in matched}
    differences = check_environments(base, new, pairs, options)
    deterministic_only = options.metrics == "deterministic"
    findings: list[Finding] = []
    pending = []
    unjudged_latency = []
    metric = f"p{options.percentile}_ms"
    base_trials = {} if deterministic_only else _trial_latencies(base, options.percentile)
    new_trials = {} if deterministic_only else _trial_latencies(new, options.percentile)
    served = set()
    for key in matched:
        left, right = base_rows[key], new_rows[key]
        findings += _deterministic(key, left, right)
        if deterministic_only:
            continue
        findings += _accuracy(key, left, right, options)
        cell = (*key[:-1], None)  # serving is measured per cell, on every batch size's row
        if cell not in served and left.get("status") == right.get("status") == "ok":
            served.add(cell)
            findings += _serving(cell, left, right)
        left_ms, right_ms = left.get(metric), right.get(metric)
        if left_ms is None or right_ms is None or left_ms <= 0:
            continue
        left_trials, right_trials = base_trials.get(key), new_trials.get(key)
        if (
            left_trials is not None
            and right_trials is not None
            and min(left_trials.size, right_trials.size) >= MIN_TRIALS
        ):
            pending.append((key, left_trials, right_trials))
        else:
            unjudged_latency.append(_untested_latency(key, metric, left_ms, right_ms))
    latency, judgement = _latency(pending, options) if pending else ([], None)
    findings += latency + unjudged_latency
    return Comparison(
        findings=findings,
        compared_rows=len(matched),
        missing=[key for key in base_rows if key not in new_rows],
        added=[key for key in new_rows if key not in base_rows],
        environment_differences=differences,
        latency_relative=judgement is not None and judgement.relative,
        latency_note="" if judgement is None else judgement.note,
        load_warnings=[] if deterministic_only else load_warnings(base, new, pairs),
    )
