"""A cell's latency and accuracy over many runs: a self-contained HTML page and a Parquet table,
one section per machine (CPU model and ISA features), runs ordered by start time and git SHA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run folders, or folders holding run folders"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("history"),
        help="folder for history.html and history.parquet (default: ./history)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.report.history import write_history

    for path in write_history(args.runs, args.output):
        print(path)
    return EXIT_OK
