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
    """Append-only JSON Lines file; each record is flushed and synced before ``append`` returns.

    A run killed mid-write leaves a torn last line. Appending after it would merge the next
    record into it and make the whole journal unreadable, so the first ``append`` repairs the
    file first (``repair``); reading only skips the torn tail and leaves the file as it is.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._repaired = False

    def append(self, record: dict[str, Any]) -> None:
        if not self._repaired:
            self.repair()
        line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def repair(self) -> int:
        """Make the file end on a whole record: a last line that lacks only its newline is
        finished, a torn one is dropped with a warning naming the byte count. Returns the bytes
        dropped; every whole record is kept."""
        self._repaired = True
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read the journal to repair it: {exc}") from None
        _, tail = _split_tail(data)
        if not tail:
            return 0
        with self.path.open("r+b") as f:
            try:
                _parse(tail)
            except ValueError:
                f.truncate(len(data) - len(tail))
                dropped = len(tail)
                warnings.warn(
                    f"{self.path}: dropped a torn last line ({dropped} bytes) left by a run "
                    "killed mid-write; every whole record before it is kept",
                    stacklevel=2,
                )
            else:
                f.seek(len(data))
                f.write(b"\n")
                dropped = 0
            f.flush()
            os.fsync(f.fileno())
        return dropped

    def records(self) -> list[dict[str, Any]]:
        """All complete records; a torn last line (the run was killed mid-write) is skipped."""
        return list(self._iter_records())

    def _iter_records(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            raise DataError(f"{self.path}: no journal here; is this a run folder?")
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read the journal: {exc}") from None
        whole, tail = _split_tail(data)
        lines = whole.splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                yield _parse(line)
            except ValueError as exc:
                raise DataError(f"{self.path}:{number}: {exc}") from None
        if tail:
            try:
                record = _parse(tail)
            except ValueError:
                warnings.warn(
                    f"{self.path}: skipped a torn last line ({len(tail)} bytes)", stacklevel=3
                )
                return
            yield record


def _split_tail(data: bytes) -> tuple[bytes, bytes]:
    """``data`` as its whole lines and the last line's bytes when it lacks its newline."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def _parse(line: bytes) -> dict[str, Any]:
    """The record on one line; ValueError saying what is wrong if it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON record: {exc}") from None
    if not isinstance(record, dict) or "type" not in record:
        raise ValueError("a record must be an object with 'type'")
    return record
