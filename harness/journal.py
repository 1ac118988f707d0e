"""The run journal: append-only JSON Lines, one record per finished piece of work.

A run killed midway leaves every finished record readable; ``--resume`` skips what is there.
Record types (the ``type`` key):

- ``run``: run id, suite (``Suite.to_dict()``), environment, harness version, start time,
  the GEMM peak (:mod:`harness.peak`) and every loaded plugin with its distribution and version.
- ``model``: one trained model: identity (dataset, model, variant), parameter and MAC counts,
  per-layer table, training record, Keras reference accuracy, confusion matrix, class names.
- ``cell``: one backend x device on one model: identity, status, error, cold-start times,
  accuracy, parity, peak memory, what ran (``describe()``), and per batch size the latency
  statistics and raw samples in nanoseconds.
- ``end``: wall time per phase (train, export, prepare, accuracy, latency) and in total, and
  the GEMM peak measured again at the end.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import DataError

JOURNAL_NAME = "journal.jsonl"


class Journal:
    """Append-only JSON Lines file; each record is flushed and synced before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict[str, Any]]:
        """All complete records; a torn last line (the run was killed mid-write) is skipped."""
        return list(self._iter_records())

    def _iter_records(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            raise DataError(f"{self.path}: no journal here; is this a run folder?")
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.path}: cannot read the journal as UTF-8 text: {exc}") from None
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines) and not line.endswith("\n"):
                    warnings.warn(f"{self.path}: skipped a torn last line", stacklevel=3)
                    return
                raise DataError(f"{self.path}:{number}: not a JSON record: {exc}") from None
            if not isinstance(record, dict) or "type" not in record:
                raise DataError(f"{self.path}:{number}: a record must be an object with 'type'")
            yield record
