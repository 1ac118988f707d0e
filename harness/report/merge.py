"""Join runs made on different machines into one report folder.

The merged journal is the inputs' journals one after another: every cell stays after its own
``run`` record, so each row keeps its run id and each run its environment, and ``harness report``
and ``harness compare`` read a merged folder like any other. Shards (``harness run --shard``)
must be of one suite split one way: shards of two suites, or two copies of one shard, would
make a report whose rows answer different questions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.journal import JOURNAL_NAME, Journal
from harness.report.atomic import write_text
from harness.report.schema import CELL_IDENTITY

SUITE_PROVENANCE = frozenset({"source"})
"""Suite keys that say where a suite was read from (a path differs per machine), not what it
measures: shards may differ in them."""


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


def _check_shards(runs: list[tuple[Path, dict[str, Any]]], log: Callable[[str], None]) -> None:
    """Refuse shards of different suites or splits and a shard given twice; say which shards
    of the split are missing (a CI job that died), since their models are then absent."""
    shards = [(source, record) for source, record in runs if record.get("shard")]
    if not shards:
        return
    first_source, first = shards[0]
    seen: dict[int, Path] = {}
    for source, record in shards:
        index, count = record["shard"]["index"], record["shard"]["count"]
        if count != first["shard"]["count"]:
            raise DataError(
                f"{first_source} is shard {_shard(first)} but {source} is shard {_shard(record)}: "
                "merge the shards of one split (one N)"
            )
        suites = first.get("suite") or {}, record.get("suite") or {}
        differ = sorted(
            key
            for key in (suites[0].keys() | suites[1].keys()) - SUITE_PROVENANCE
            if suites[0].get(key) != suites[1].get(key)
        )
        if differ:
            raise DataError(
                f"{first_source} and {source} are shards of different suites (they differ in "
                f"{', '.join(differ)}); merge the shards of one suite"
            )
        if index in seen:
            raise DataError(f"{seen[index]} and {source} are both shard {_shard(record)}")
        seen[index] = source
    count = first["shard"]["count"]
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if missing:
        log(
            f"warning: shard(s) {', '.join(missing)} of suite {first['suite'].get('name')} are "
            "not among the runs: their models are missing from the merged report"
        )


def _shard(record: dict[str, Any]) -> str:
    return f"{record['shard']['index']}/{record['shard']['count']}"


def merge_runs(
    sources: list[Path],
    out: Path,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Path:
    """Write ``out/journal.jsonl`` joining the sources' journals; returns its path."""
    if len(sources) < 2:
        raise DataError("merge needs at least two run folders")
    target = out / JOURNAL_NAME
    if target.exists():
        raise DataError(f"{target}: already exists; choose an empty output folder")
    run_owner: dict[str, Path] = {}
    cell_owner: dict[tuple, Path] = {}
    journals = [(source, Journal(source / JOURNAL_NAME).records()) for source in sources]
    runs = [(source, r) for source, records in journals for r in records if r["type"] == "run"]
    _check_shards(runs, log)  # first: shards of two suites overlap in cells, for another reason
    lines: list[str] = []
    for source, records in journals:
        _check_source(source, records, run_owner, cell_owner)
        lines += (json.dumps(record, separators=(",", ":")) for record in records)
    out.mkdir(parents=True, exist_ok=True)
    return write_text(target, "\n".join(lines) + "\n")
