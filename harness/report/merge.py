"""Join runs made on different machines into one report folder.

The merged journal is the inputs' journals one after another: every cell stays after its own
``run`` record, so each row keeps its run id and each run its environment, and ``harness report``
and ``harness compare`` read a merged folder like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.journal import JOURNAL_NAME, Journal
from harness.report.atomic import write_text
from harness.report.schema import CELL_IDENTITY


def _check_source(
    source: Path,
    records: list[dict[str, Any]],
    run_owner: dict[str, Path],
    cell_owner: dict[tuple, Path],
) -> None:
    if not records or records[0].get("type") != "run":
        raise DataError(f"{source / JOURNAL_NAME}: does not start with a run record")
    for record in records:
        if record["type"] == "run":
            run_id = record.get("run_id")
            if run_id in run_owner and run_owner[run_id] != source:
                raise DataError(
                    f"run {run_id} is in both {run_owner[run_id]} and {source}; merge it once"
                )
            run_owner[run_id] = source
        elif record["type"] == "cell":
            cell = tuple(record.get(k) for k in CELL_IDENTITY)
            if cell in cell_owner and cell_owner[cell] != source:
                raise DataError(
                    f"cell {'/'.join(map(str, cell))} was measured in both {cell_owner[cell]} "
                    f"and {source}; a merged report holds each cell once"
                )
            cell_owner[cell] = source


def merge_runs(sources: list[Path], out: Path) -> Path:
    """Write ``out/journal.jsonl`` joining the sources' journals; returns its path."""
    if len(sources) < 2:
        raise DataError("merge needs at least two run folders")
    target = out / JOURNAL_NAME
    if target.exists():
        raise DataError(f"{target}: already exists; choose an empty output folder")
    run_owner: dict[str, Path] = {}
    cell_owner: dict[tuple, Path] = {}
    lines: list[str] = []
    for source in sources:
        records = Journal(source / JOURNAL_NAME).records()
        _check_source(source, records, run_owner, cell_owner)
        lines += (json.dumps(record, separators=(",", ":")) for record in records)
    out.mkdir(parents=True, exist_ok=True)
    return write_text(target, "\n".join(lines) + "\n")
