"""Join runs made on different machines (a CI matrix of shards, or one backend per machine) into one
report folder; each run keeps its environment, and every output is rebuilt for the merged set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (two or more)")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="the merged folder to write (new)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")


def run(args: argparse.Namespace) -> int:
    from harness.report import write_run_reports
    from harness.report.merge import merge_runs

    merge_runs(args.runs, args.output)
    write_run_reports(args.output, plots=not args.no_plots)
    print(f"merged {len(args.runs)} runs into {args.output}")
    return EXIT_OK
