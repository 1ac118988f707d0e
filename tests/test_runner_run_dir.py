"""Run folders: one per run, even for runs started in the same second."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from harness import runner
from harness.runner import new_run_dir
from harness.suite import Suite


class FrozenClock(datetime):
    """Every run starts in the same second."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2025, 1, 1, 12, 0, 0, tzinfo=tz or UTC)


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "datetime", FrozenClock)
    suite = Suite(name="quick")
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: new_run_dir(tmp_path / "runs", suite), range(8)))
    assert len(set(made)) == 8 and all(path.is_dir() for path in made)
    names = sorted(path.name for path in made)
    assert names[0] == "20250101T120000Z-quick"
    assert sorted(names[1:]) == sorted(f"20250101T120000Z-quick-{n}" for n in range(2, 9))


def test_a_run_folder_is_never_one_that_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "datetime", FrozenClock)
    first = tmp_path / "20250101T120000Z-quick"
    first.mkdir()
    (first / "journal.jsonl").write_text("{}\n")
    made = new_run_dir(tmp_path, Suite(name="quick"))
    assert made.name == "20250101T120000Z-quick-2"
    assert (first / "journal.jsonl").read_text() == "{}\n"
