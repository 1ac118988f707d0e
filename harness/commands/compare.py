"""Compare two run folders (or merged folders): BASE is the reference, NEW the candidate.

A latency regression needs a significant change of the row's trials AND a change beyond
--threshold. Each row is judged relative to the mean change of the run's other rows that changed
alike (the level a whole run lands in cancels; Welch interval widened by --row-noise), and that
level's change on a line of its own against --run-noise; Holm over all of them at --alpha. A row
whose interval is too wide to tell is inconclusive, with its noise floor. An accuracy drop
beyond the threshold, a status that is no longer ok, broken parity and any change of parameter
or MAC counts also fail. Serving figures are shown, not judged, except a cell that no longer
meets its p99 bound at any rate tried, which fails. Exit 0: no regression; 1: a regression;
2: bad input or different environments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands import check_flags
from harness.errors import EXIT_OK, EXIT_REGRESSION
from harness.verdict import DEFAULT_ROW_NOISE, DEFAULT_RUN_NOISE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, help="the reference run folder")
    parser.add_argument("new", type=Path, help="the run folder to judge")
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="family-wise error rate of the latency verdicts, Holm over the rows (0.01)",
    )
    parser.add_argument(
        "--run-noise",
        type=float,
        default=100 * DEFAULT_RUN_NOISE,
        metavar="PERCENT",
        help="spread between whole runs that a run's trials cannot see, in percent "
        f"(default {100 * DEFAULT_RUN_NOISE:g}, measured on this project's machine; see README)",
    )
    parser.add_argument(
        "--row-noise",
        type=float,
        default=100 * DEFAULT_ROW_NOISE,
        metavar="PERCENT",
        help="what is left of the run-to-run noise once the run's level (its other rows) is "
        f"taken out, in percent (default {100 * DEFAULT_ROW_NOISE:g}, measured likewise)",
    )
    parser.add_argument(
        "--absolute",
        action="store_true",
        help="judge each latency row on its own against --run-noise, not relative to the "
        "run's other rows",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        metavar="PERCENT",
        help="latency change that matters, in percent of BASE (10)",
    )
    parser.add_argument(
        "--percentile",
        type=int,
        default=50,
        choices=(10, 50, 90, 99),
        help="trial percentile to judge latency by (50)",
    )
    parser.add_argument(
        "--accuracy-drop-pp",
        type=float,
        default=0.5,
        metavar="PP",
        help="accuracy drop that is a regression, in percentage points (0.5)",
    )
    parser.add_argument(
        "--metrics",
        choices=("all", "deterministic"),
        default="all",
        help="deterministic: only parameter counts, MACs and status (CI across machines; "
        "implies --allow-env-mismatch)",
    )
    parser.add_argument(
        "--allow-env-mismatch",
        action="store_true",
        help="compare runs from different CPUs, thread settings or library major versions",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="pass although rows of BASE are missing from NEW (a dropped backend fails by default)",
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown (CI summaries)")
    parser.add_argument("--all", action="store_true", help="list unchanged metrics too")


_VERDICT_ORDER = {
    "regression": 0,
    "changed": 1,
    "inconclusive": 2,
    "untested": 3,
    "improvement": 4,
    "report-only": 5,
    "same": 6,
}
SERVING_NOTE = (
    "Serving figures are report-only: one run measures each once (one bisection over arrival "
    "rates, one pass over the Offline configurations), so their noise is not measured and no "
    "change is called significant or not. Only a cell whose Server search found a rate "
    "within its p99 bound in BASE and none in NEW, not even the lowest rate tried, is a "
    "regression, when NEW's load generator kept time (scheduling error p99 within 5% of the "
    "bound); a late one means the machine, not the cell, was too slow."
)


LOADED_NOTE = (
    "The latency verdicts assume runs measured on a quiet machine: their noises were measured "
    "so, and runs measured beside other work gave false verdicts, since contention slows the "
    "rows unevenly (README). Treat this comparison's latency verdicts with suspicion, and "
    "measure again on a quiet machine, or with `harness ab`, which keeps both sides in the same "
    "load."
)
RELATIVE_NOTE = (
    "Latency rows are judged relative to the run: a row's change is its own minus the mean "
    "change of the other rows that changed alike, since most of the spread between stored runs "
    "is a level the whole run lands in, shared by its rows. The change of that level is the "
    "'all rows' line, judged against the whole run-to-run noise: a pair of stored runs can see "
    "only a large common shift. A row called same did not move against the others."
)


def _cell(identity: tuple[Any, ...]) -> tuple[str, ...]:
    """A row's identity as text; a per-cell figure has no batch size."""
    return tuple("-" if part is None else str(part) for part in identity)


def comparison_document(comparison: Any, args: argparse.Namespace) -> list[Any]:
    from harness.report.document import Bullets, Heading, Paragraph, Table

    shown = sorted(
        (f for f in comparison.findings if args.all or f.verdict != "same"),
        key=lambda f: (_VERDICT_ORDER[f.verdict], _cell(f.identity), f.metric),
    )
    findings = [f for f in shown if f.verdict != "report-only"]
    serving = [f for f in shown if f.verdict == "report-only"]
    counts = {v: sum(f.verdict == v for f in comparison.findings) for v in _VERDICT_ORDER}
    if args.metrics == "deterministic":
        rule = "parameter counts, MACs and status only"
    else:
        rule = (
            f"latency: p{args.percentile} of each trial, change of the geometric means, "
            + (
                f"each row on its own with a Welch interval widened by {args.run_noise:g}% "
                "run-to-run noise"
                if not comparison.latency_relative
                else "each row relative to the mean change of the other rows that changed alike, "
                "Welch interval "
                f"widened by {args.row_noise:g}% row noise, the run level against "
                f"{args.run_noise:g}% run-to-run noise"
            )
            + f", Holm over the rows at family-wise alpha {args.alpha:g}; a regression is "
            f"significant and beyond {args.threshold:g}%; accuracy drop beyond "
            f"{args.accuracy_drop_pp:g} pp"
        )
    failures = len(comparison.failures)
    blocks: list[Any] = [
        Heading(2, f"harness compare {args.base} {args.new}"),
        Paragraph(
            f"{comparison.compared_rows} rows compared ({rule}): "
            + (", ".join(f"{v} {n}" for v, n in counts.items() if n) or "no differences")
            + "."
        ),
    ]
    if findings:
        headers = ("dataset", "model", "variant", "backend", "device", "batch", "metric")
        headers += ("base", "new", "change", "noise floor", "p", "verdict")
        rows = tuple(
            (
                *_cell(f.identity),
                f.metric,
                f.base,
                f.new,
                f.change,
                "-" if f.noise_floor is None else f"±{100 * f.noise_floor:.1f}%",
                "-" if f.p_value is None else f"{f.p_value:.2g}",
                f.verdict.upper() if f.gates else f.verdict,
            )
            for f in findings
        )
        blocks.append(Table(headers, rows))
    if serving:
        headers = ("dataset", "model", "variant", "backend", "device", "metric", "base", "new")
        rows = tuple((*_cell(f.identity)[:5], f.metric, f.base, f.new, f.change) for f in serving)
        blocks += [
            Heading(3, "Serving scenarios (report-only: no verdict)"),
            Table((*headers, "change"), rows),
        ]
    if serving or any(f.metric == "serving_max_qps" for f in findings):
        blocks.append(Paragraph(SERVING_NOTE))
    if comparison.load_warnings:
        blocks += [
            Heading(3, "Measured beside other work"),
            Bullets(tuple(comparison.load_warnings)),
            Paragraph(LOADED_NOTE),
        ]
    if comparison.latency_note:
        blocks.append(Paragraph(f"Latency: {comparison.latency_note}."))
    elif comparison.latency_relative:
        blocks.append(Paragraph(RELATIVE_NOTE))
    if counts["untested"]:
        blocks.append(
            Paragraph(
                "untested: latency rows with no trials in BASE or NEW (a run from before the "
                "trial phase, or a suite with latency.trial_rounds = 0): their change is "
                "shown, not judged."
            )
        )
    if counts["inconclusive"]:
        blocks.append(
            Paragraph(
                "inconclusive: the row's interval reaches beyond the threshold, so this pair "
                "of runs cannot tell a change of that size from noise (its noise floor says "
                "how large a change it could see); `harness ab` measures both sides "
                "interleaved and sees far smaller changes."
            )
        )
    for title, keys in (
        ("Rows in BASE missing from NEW", comparison.missing),
        ("Rows new in NEW", comparison.added),
    ):
        if keys:
            items = tuple("/".join(str(part) for part in key) for key in keys)
            blocks += [Heading(3, f"{title} ({len(keys)})"), Bullets(items)]
    if comparison.environment_differences:
        blocks += [
            Heading(3, "Environment differences (allowed)"),
            Bullets(tuple(comparison.environment_differences)),
        ]
    problems = []
    if failures:
        problems.append(f"{failures} regression(s) or change(s)")
    if comparison.missing and not args.allow_missing:
        problems.append(f"{len(comparison.missing)} row(s) of BASE missing from NEW")
    verdict = f"FAILED: {'; '.join(problems)}" if problems else "no regression"
    blocks.append(Paragraph(f"Result: {verdict}."))
    return blocks


def run(args: argparse.Namespace) -> int:
    from harness.compare import CompareOptions, compare_runs
    from harness.report.markdown import render_markdown, render_text
    from harness.report.store import read_report_folder

    check_flags(
        (
            ("--alpha", args.alpha, 0 < args.alpha < 1, "in (0, 1)"),
            ("--threshold", args.threshold, args.threshold > 0, "above 0"),
            ("--run-noise", args.run_noise, args.run_noise >= 0, "0 or more"),
            ("--row-noise", args.row_noise, args.row_noise >= 0, "0 or more"),
        )
    )
    options = CompareOptions(
        alpha=args.alpha,
        threshold=args.threshold / 100,
        run_noise=args.run_noise / 100,
        row_noise=None if args.absolute else args.row_noise / 100,
        percentile=args.percentile,
        accuracy_drop_pp=args.accuracy_drop_pp,
        metrics=args.metrics,
        allow_env_mismatch=args.allow_env_mismatch,
    )
    comparison = compare_runs(read_report_folder(args.base), read_report_folder(args.new), options)
    blocks = comparison_document(comparison, args)
    print(render_markdown(blocks) if args.markdown else render_text(blocks), end="")
    missing = comparison.missing and not args.allow_missing
    return EXIT_REGRESSION if comparison.failures or missing else EXIT_OK
