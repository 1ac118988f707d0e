"""Paired A/B: time BASE and NEW in one job, interleaved, and judge each row's latency change.

Both sides run the same suite's cells, on this machine, in the same minutes: every side keeps
``--workers`` processes per backend alive, and short trials of BASE and NEW alternate in random
order. A side is another interpreter (``--new-python`` of a virtualenv or tox env holding a
dependency bump or a plugin's new version) and/or other backend options (``--new-option
onnxruntime.intra_op_threads=1``). Each row gets the median change of its pairs with a
confidence interval, the noise floor, and a verdict with the family-wise error rate held at
``--alpha`` (Holm). With ``--serving-rounds``, the cells the suite's ``[serving]`` selects also
run the Server and Offline scenarios on both sides, visit by visit; those figures are shown with
their change, report-only. Exit 0: no regression (or ``--report-only``); 1: a regression; 2: bad
input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tomllib
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands import check_flags
from harness.commands.run import add_plan_arguments, suite_from_arguments
from harness.errors import EXIT_OK, EXIT_REGRESSION, HarnessError
from harness.planner import plan_cells
from harness.verdict import VERDICTS, minimum_pairs

if TYPE_CHECKING:
    from harness.suite import Suite

DEFAULT_OUT = "reports/ab"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", help="built-in suite or a .toml path (default: quick)")
    parser.add_argument("--data-dir", help="dataset folder (default: $HARNESS_DATA_DIR, or cache)")
    parser.add_argument("--out", help=f"folder for A/B folders (default: {DEFAULT_OUT})")
    add_plan_arguments(parser)
    for side in ("base", "new"):
        parser.add_argument(
            f"--{side}-python",
            default=sys.executable,
            metavar="PYTHON",
            help=f"interpreter of the {side.upper()} side's workers (default: this one); its "
            "environment must have the harness and the cells' plugins installed",
        )
        parser.add_argument(
            f"--{side}-option",
            action="append",
            default=[],
            metavar="BACKEND.KEY=VALUE",
            help=f"a backend option for the {side.upper()} side only (repeatable; VALUE is "
            "read as TOML: 2, 1.5, true, '\"parallel\"' or a bare word as a string)",
        )
    parser.add_argument("--workers", type=int, default=3, help="processes per side and backend (3)")
    parser.add_argument("--pairs", type=int, default=48, help="pairs of trials per row (48)")
    parser.add_argument(
        "--trial-seconds", type=float, default=0.03, help="timed seconds per trial (0.03)"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.07,
        help="untimed seconds before each trial, for the process to settle (0.07)",
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=1,
        help="times a pair alternates the sides within its trial seconds (1)",
    )
    parser.add_argument(
        "--serving-rounds",
        type=int,
        default=0,
        metavar="N",
        help="after the trials, run the Server and Offline scenarios N times on each side for "
        "every cell the suite's [serving] selects, report-only (0: none; a visit costs two rate "
        "searches, tens of seconds each)",
    )
    parser.add_argument(
        "--percentile", type=int, default=50, choices=(10, 50, 90, 99), help="trial statistic (50)"
    )
    parser.add_argument(
        "--alpha", type=float, default=0.01, help="family-wise error rate over all rows (0.01)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="a row whose interval reaches beyond this is inconclusive, not same (5)",
    )
    parser.add_argument(
        "--min-change",
        type=float,
        default=1.0,
        metavar="PERCENT",
        help="a significant change smaller than this is not a verdict (1)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="print the verdicts, always exit 0"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown (CI summaries)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trial order (0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_option(text: str, flag: str) -> tuple[str, str, Any]:
    """``onnxruntime.intra_op_threads=1`` -> ("onnxruntime", "intra_op_threads", 1)."""
    name, sep, raw = text.partition("=")
    backend, dot, key = name.partition(".")
    if not sep or not dot or not backend or not key:
        raise HarnessError(f"{flag} {text!r}: expected BACKEND.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return backend, key, value


def _options(items: list[str], flag: str) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        backend, key, value = parse_option(item, flag)
        options.setdefault(backend, {})[key] = value
    return options


def _check_ranges(args: argparse.Namespace) -> None:
    checks = (
        ("--workers", args.workers, args.workers >= 1, "at least 1"),
        ("--slices", args.slices, args.slices >= 1, "at least 1"),
        ("--pairs", args.pairs, args.pairs >= 6, "at least 6"),
        ("--trial-seconds", args.trial_seconds, 0 < args.trial_seconds <= 60, "in (0, 60]"),
        ("--warmup-seconds", args.warmup_seconds, 0 <= args.warmup_seconds <= 60, "in [0, 60]"),
        ("--alpha", args.alpha, 0 < args.alpha < 1, "in (0, 1)"),
        ("--threshold", args.threshold, args.threshold > 0, "above 0"),
        ("--min-change", args.min_change, args.min_change >= 0, "0 or more"),
        ("--serving-rounds", args.serving_rounds, args.serving_rounds >= 0, "0 or more"),
    )
    check_flags(checks)
    for side in ("base", "new"):
        python = getattr(args, f"{side}_python")
        if not os.access(python, os.X_OK):
            raise HarnessError(f"--{side}-python {python}: not an executable file")


def run(args: argparse.Namespace) -> int:
    from harness.ab import SIDES, judge_ab, serving_changes
    from harness.commands.run import TENSORFLOW_LOG_LEVEL
    from harness.environment import capture_environment
    from harness.paths import model_cache_dir, resolve_data_dir
    from harness.plugins import get_host
    from harness.report.markdown import render_markdown, render_text
    from harness.runner import Runner
    from harness.trials import Side, TrialConfig, run_trials

    _check_ranges(args)
    base, new = SIDES
    sides = [
        Side(base, args.base_python, _options(args.base_option, "--base-option")),
        Side(new, args.new_python, _options(args.new_option, "--new-option")),
    ]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TENSORFLOW_LOG_LEVEL)
    host = get_host()
    suite = suite_from_arguments(args)
    registry = host.registry()
    plans = plan_cells(suite, registry)  # a bad plan fails before anything is made
    rows = sum(len(plan.cells) for plan in plans) * len(suite.batch_sizes)
    needed = minimum_pairs(args.alpha / rows)
    if args.pairs < needed:
        raise HarnessError(
            f"--pairs {args.pairs} cannot show any change for {rows} rows at --alpha "
            f"{args.alpha:g}: the sign test needs at least {needed} pairs a row"
        )
    if args.serving_rounds and not _serves_any(suite, plans):
        raise HarnessError(
            f"--serving-rounds {args.serving_rounds}: the suite's [serving] selects none of "
            f"these cells (enabled = {str(suite.serving.enabled).lower()}); turn it on in the "
            "suite for the cells to serve"
        )
    for side in sides:
        for backend in side.backend_options:
            if backend not in suite.backends:
                raise HarnessError(
                    f"--{side.name}-option names backend {backend!r}, which this comparison "
                    f"does not run ({', '.join(suite.backends)})"
                )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out or DEFAULT_OUT) / f"{stamp}-ab-{suite.name}"
    out_dir.mkdir(parents=True, exist_ok=False)
    print(f"A/B folder: {out_dir}", file=sys.stderr)
    runner = Runner(
        suite,
        registry,
        resolve_data_dir(args.data_dir),
        out_dir,
        model_cache_dir(),
        progress=not args.no_progress,
    )
    prepared = runner.prepare_models()
    cells = [
        runner.cell_spec(cell, trained, eval_path)
        for plan, trained, eval_path in prepared
        for cell in plan.cells
    ]
    config = TrialConfig(
        workers=args.workers,
        rounds=args.pairs,
        trial_seconds=args.trial_seconds,
        warmup_seconds=args.warmup_seconds,
        slices=args.slices,
        seed=args.seed,
        timeout_s=suite.worker_timeout_s,
        memory_limit_mb=suite.worker_memory_limit_mb,
        serving_rounds=args.serving_rounds,
    )
    try:
        result = run_trials(cells, sides, config, out_dir / "work", not args.no_progress)
    finally:
        for _, _, eval_path in prepared:
            eval_path.unlink(missing_ok=True)
    verdicts = judge_ab(
        result, args.percentile, args.alpha, args.threshold / 100, args.min_change / 100
    )
    record = {
        "sides": [
            {"name": s.name, "python": s.python, "backend_options": s.backend_options}
            for s in sides
        ],
        "config": asdict(config),
        "rule": _rule(args),
        "environment": capture_environment(),
        "verdicts": [{"key": list(key), **v.to_dict()} for key, v in verdicts.items()],
        **result.to_dict(),
    }
    record["serving_changes"] = serving_changes(record["serving"])
    (out_dir / "ab.json").write_text(json.dumps(record, indent=1))
    blocks = ab_document(record, verdicts, args)
    (out_dir / "ab.md").write_text(render_markdown(blocks))
    print(render_markdown(blocks) if args.markdown else render_text(blocks), end="")
    regressions = [v for v in verdicts.values() if v.verdict == "regression"]
    return EXIT_REGRESSION if regressions and not args.report_only else EXIT_OK


def _serves_any(suite: Suite, plans: list) -> bool:
    return any(suite.serving.measures(plan.key.dataset, plan.key.variant) for plan in plans)


def _rule(args: argparse.Namespace) -> str:
    return (
        f"p{args.percentile} of each trial; per row the median change of NEW / BASE over "
        f"{args.pairs} pairs, exact sign test and its interval, Holm over all "
        f"rows at family-wise alpha {args.alpha:g} (each interval at the level Holm judged "
        f"its row at); same: interval within ±{args.threshold:g}%; a verdict needs a change of at "
        f"least {args.min_change:g}%"
    )


def ab_document(record: dict[str, Any], verdicts: dict, args: argparse.Namespace) -> list[Any]:
    from harness.report.document import Bullets, Heading, Paragraph, Table, machine_load_line

    counts = Counter(v.verdict for v in verdicts.values())
    sides = [
        f"{side['name'].upper()}: {side['python']}"
        + (f", options {json.dumps(side['backend_options'])}" if side["backend_options"] else "")
        for side in record["sides"]
    ]
    seconds = record["seconds"]
    rows = tuple(
        (
            *(str(part) for part in key),
            f"{_median_ms(record, key, 'base', args.percentile):.4g}",
            f"{_median_ms(record, key, 'new', args.percentile):.4g}",
            verdict.describe(),
            f"±{100 * verdict.noise_floor:.1f}%",
            f"{verdict.p_adjusted:.2g}",
            verdict.verdict.upper() if verdict.verdict == "regression" else verdict.verdict,
        )
        for key, verdict in verdicts.items()
    )
    headers = ("dataset", "model", "variant", "backend", "device", "batch")
    headers += (f"base p{args.percentile} ms", f"new p{args.percentile} ms", "change [CI]")
    headers += ("noise floor", "p (Holm)", "verdict")
    summary = ", ".join(f"{name} {counts[name]}" for name in VERDICTS if counts[name])
    serving = f"; serving visits took {seconds['serving']:.0f} s" if "serving" in seconds else ""
    blocks = [
        Heading(2, "harness ab"),
        Bullets(tuple(sides)),
        Paragraph(f"Rule: {record['rule']}."),
        Table(headers, rows),
        Paragraph(
            f"{len(verdicts)} rows: {summary}. Workers started and prepared in "
            f"{seconds.get('prepare', 0):.0f} s; trials took {seconds.get('trials', 0):.0f} s"
            f"{serving}."
        ),
        Paragraph(_sentence(machine_load_line({"trials": record.get("machine_load")}))),
    ]
    if record["serving_changes"]:
        blocks += serving_blocks(record["serving_changes"], args.alpha)
    return blocks


def serving_blocks(changes: list[dict[str, Any]], alpha: float) -> list[Any]:
    """The serving table and why it is not judged."""
    from harness.report.document import Heading, Paragraph, Table

    headers = ("dataset", "model", "variant", "backend", "device", "metric", "p99 bound ms")
    headers += ("visits", "base", "new", "change [range of visits]", "sched. error p99 ms")
    rows = tuple(
        (
            *(str(part) for part in entry["key"]),
            entry["metric"],
            f"{entry['p99_bound_ms']:g}" if "p99_bound_ms" in entry else "-",
            str(entry["visits"]),
            _serving_figure(entry["base"]),
            _serving_figure(entry["new"]),
            _serving_change(entry["changes"], entry["change"]),
            f"{entry['schedule_error_p99_ms']:.3g}" if "schedule_error_p99_ms" in entry else "-",
        )
        for entry in changes
    )
    cells = len({tuple(entry["key"]) for entry in changes})
    needed = minimum_pairs(alpha / cells)
    return [
        Heading(3, "Serving scenarios (report-only: not judged)"),
        Table(headers, rows),
        Paragraph(
            "Serving figures are report-only: each visit runs one rate search and one Offline "
            "pass per side, BASE and NEW in coin order with one arrival schedule; a paired sign "
            f"test at family-wise alpha {alpha:g} over {cells} cell{'s' * (cells != 1)} would "
            f"need at least {needed} visits a cell, and max QPS moves in steps of the rates the "
            "search measured. The change is the median of the visits' NEW / BASE - 1, in "
            "brackets their range: no interval, no error rate, no effect on the exit code. ≥: a "
            "search never reached the bound (a floor); sched. error: the load generators' worst "
            "lateness p99 at their highest rate, which must stay well under the bound."
        ),
    ]


def _serving_figure(side: dict[str, Any]) -> str:
    if side["median"] is None:
        return "none within bound"
    text = ("≥" if side["capped"] else "") + f"{side['median']:,.4g}"
    return text + (f" (none in {side['none']} of {len(side['values'])})" if side["none"] else "")


def _serving_change(changes: list[float], median: float | None) -> str:
    if median is None:
        return "-"
    if len(changes) == 1:
        return f"{100 * median:+.1f}%"
    return f"{100 * median:+.1f}% [{100 * min(changes):+.1f}, {100 * max(changes):+.1f}]"


def _median_ms(record: dict[str, Any], key: tuple, side: str, percentile: int) -> float:
    for row in record["rows"]:
        if tuple(row["key"]) == tuple(key):
            values = [visit[side][f"p{percentile}_ns"] for visit in row["visits"]]
            return statistics.median(values) / 1e6
    return math.nan


def _sentence(line: str) -> str:
    return line[0].upper() + line[1:] + "."
