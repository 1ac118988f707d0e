"""The run journal survives a run killed mid-write: a torn last line never spoils what follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import DataError
from harness.journal import JOURNAL_NAME, Journal
from harness.report.synthetic import journal_records, write_journal

TORN = b'{"type":"cell","dataset":"mni'


def _journal(tmp_path: Path, records: list[dict], tail: bytes = b"") -> Journal:
    path = write_journal(tmp_path, records)
    with path.open("ab") as f:
        f.write(tail)
    return Journal(path)


def test_append_after_a_torn_last_line_drops_it_and_keeps_every_whole_record(tmp_path):
    journal = _journal(tmp_path, [{"type": "run"}, {"type": "model"}], TORN)
    with pytest.warns(UserWarning, match=rf"{JOURNAL_NAME}: dropped .*\({len(TORN)} bytes\)"):
        journal.append({"type": "cell"})
    assert [r["type"] for r in Journal(journal.path).records()] == ["run", "model", "cell"]


def test_a_last_record_missing_only_its_newline_is_finished_not_dropped(tmp_path, recwarn):
    journal = _journal(tmp_path, [{"type": "run"}], b'{"type":"model"}')
    assert journal.repair() == 0
    journal.append({"type": "cell"})
    assert [r["type"] for r in journal.records()] == ["run", "model", "cell"]
    assert not recwarn.list


def test_reading_skips_a_torn_last_line_and_leaves_the_file_alone(tmp_path):
    journal = _journal(tmp_path, [{"type": "run"}], TORN)
    before = journal.path.read_bytes()
    with pytest.warns(UserWarning, match=rf"skipped a torn last line \({len(TORN)} bytes\)"):
        assert journal.records() == [{"type": "run"}]
    assert journal.path.read_bytes() == before


def test_a_torn_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(b'{"type":"run"}\n' + TORN + b'\n{"type":"end"}\n')
    with pytest.raises(DataError, match=rf"{JOURNAL_NAME}:2: not a JSON record"):
        Journal(path).records()
    Journal(path).append({"type": "cell"})  # repair touches no line that ends in a newline
    with pytest.raises(DataError, match=rf"{JOURNAL_NAME}:2: not a JSON record"):
        Journal(path).records()


def test_resume_and_report_work_after_a_torn_last_line(tmp_path, capsys):
    """A run killed while writing its ``end`` record: resuming finishes it, the report reads it."""
    records = journal_records(datasets=("mnist",), variants=("pool",), samples=20)
    assert records[-1]["type"] == "end"
    line = json.dumps(records[-1]).encode()
    path = _journal(tmp_path, records[:-1], line[: len(line) // 2]).path
    with pytest.warns(UserWarning, match=rf"dropped a torn last line \({len(line) // 2} bytes\)"):
        assert main(["run", "--resume", str(tmp_path), "--no-progress"]) == 0
    types = [r["type"] for r in Journal(path).records()]
    assert types == ["run", "model", "cell", "cell", "end"]
    assert main(["report", str(tmp_path), "--quiet", "--no-plots"]) == 0
    assert (tmp_path / "report.md").is_file()
