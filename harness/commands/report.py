"""Rebuild every report output of a run folder from its journal.

Writes summary.parquet, samples.parquet, summary.csv, run.json, benchmark.json (pytest-benchmark
layout), plots/*.png, report.md and report.html. Works on finished, interrupted and merged runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder holding journal.jsonl")
    parser.add_argument("--quiet", action="store_true", help="do not list the files written")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")


def run(args: argparse.Namespace) -> int:
    from harness.report import write_run_reports

    written = write_run_reports(args.run_dir, plots=not args.no_plots)
    if not args.quiet:
        for path in written:
            print(path)
    return EXIT_OK
