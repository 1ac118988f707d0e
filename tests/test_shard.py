"""`harness run --shard I/N`: N machines run one suite, each model on exactly one of them, and
`harness merge` joins only the shards of one suite split one way."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dry_runner import DryRunner

from harness.cli import main
from harness.errors import DataError, HarnessError
from harness.journal import Journal
from harness.planner import ModelKey, Shard, plan_cells, shard_plans
from harness.plugins import get_registry
from harness.report.frames import build_tables
from harness.report.merge import merge_runs
from harness.report.synthetic import (
    cell_record,
    journal_records,
    model_record,
    run_record,
    write_journal,
)
from harness.runner import new_run_dir
from harness.suite import Suite, load_suite, override


def slugs(plans) -> list[str]:
    return [plan.key.slug() for plan in plans]


def test_two_shards_cover_the_quick_suite_once_mixing_pool_and_nopool():
    plans = plan_cells(load_suite("quick"), get_registry())
    first, second = (shard_plans(plans, index, 2) for index in (1, 2))
    assert slugs(first) == ["mnist-book_cnn-pool", "cifar10-book_cnn-nopool"]
    assert slugs(second) == ["mnist-book_cnn-nopool", "cifar10-book_cnn-pool"]
    assert sorted(slugs(first + second)) == sorted(slugs(plans))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8])
def test_every_model_is_on_exactly_one_shard_and_shards_differ_by_at_most_one(count):
    suite = Suite(name="wide", datasets=("mnist", "cifar10"), variants=("pool", "nopool"))
    plans = plan_cells(suite, get_registry())
    plans = [replace(p, key=replace(p.key, model=f"m{i}")) for i in range(2) for p in plans]
    shards = [slugs(shard_plans(plans, index, count)) for index in range(1, count + 1)]
    together = [slug for shard in shards for slug in shard]
    assert sorted(together) == sorted(slugs(plans)) and len(set(together)) == len(plans)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_the_split_does_not_depend_on_the_suites_order():
    plans = plan_cells(load_suite("quick"), get_registry())
    reordered = plan_cells(
        override(load_suite("quick"), datasets=("cifar10", "mnist"), variants=("nopool", "pool")),
        get_registry(),
    )
    for index in (1, 2):
        assert sorted(slugs(shard_plans(plans, index, 2))) == sorted(
            slugs(shard_plans(reordered, index, 2))
        )


def test_more_shards_than_models_is_an_error_naming_the_limit():
    plans = plan_cells(load_suite("quick"), get_registry())
    with pytest.raises(HarnessError, match=r"the suite has 4 model\(s\).*at most 4 shards"):
        shard_plans(plans, 1, 5)


@pytest.mark.parametrize("text", ["0/2", "3/2", "x", "1/0", "-1/2", "1/2/3", "1.0/2", ""])
def test_a_bad_shard_is_an_error_naming_it(text):
    with pytest.raises(HarnessError, match=re.escape(f"--shard {text!r}: expected I/N")):
        Shard.parse(text)


def test_a_shard_parses_and_prints_as_given():
    assert Shard.parse("2/3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


@pytest.mark.parametrize(
    ("shard", "expected"),
    [
        ("0/2", "--shard '0/2': expected I/N"),
        ("3/2", "--shard '3/2': expected I/N"),
        ("x", "--shard 'x': expected I/N"),
        ("1/5", "the suite has 4 model(s)"),
    ],
)
def test_run_with_a_bad_shard_is_exit_2_before_a_run_folder(tmp_path, capsys, shard, expected):
    out = tmp_path / "runs"
    assert main(["run", "--suite", "quick", "--shard", shard, "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_resume_keeps_the_shard_it_started_with(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--shard", "1/2"]) == 2
    assert "drop --shard" in capsys.readouterr().err


def fake_run(tmp_path: Path, name: str, shard: Shard | None) -> Path:
    quick = load_suite("quick")
    suite = replace(quick, latency=replace(quick.latency, trial_rounds=0))  # no trial workers
    run_dir = tmp_path / name
    run_dir.mkdir()
    runner = DryRunner(
        suite, get_registry(), tmp_path, run_dir, tmp_path, log=lambda line: None, shard=shard
    )
    runner.start_journal(run_record()["environment"], run_record()["gemm_peak"], {})
    runner.run()
    return run_dir


def cells_of(run_dir: Path) -> set[tuple]:
    return {
        (r["dataset"], r["model"], r["variant"], r["backend"], r["device"])
        for r in Journal(run_dir / "journal.jsonl").records()
        if r["type"] == "cell"
    }


def test_two_shards_merged_measure_what_the_unsharded_run_measures(tmp_path):
    whole = fake_run(tmp_path, "whole", None)
    first = fake_run(tmp_path, "first", Shard(1, 2))
    second = fake_run(tmp_path, "second", Shard(2, 2))
    records = Journal(first / "journal.jsonl").records()
    assert records[0]["shard"] == {"index": 1, "count": 2}
    assert "shard" not in Journal(whole / "journal.jsonl").records()[0]
    assert {ModelKey(r["dataset"], r["model"], r["variant"]) for r in records[1:-1]} == {
        ModelKey("mnist", "book_cnn", "pool"),
        ModelKey("cifar10", "book_cnn", "nopool"),
    }
    assert not cells_of(first) & cells_of(second)
    merged = tmp_path / "merged"
    merge_runs([first, second], merged)
    every_cell = 4 * len(load_suite("quick").backends)  # 2 datasets x 2 variants x backends
    assert cells_of(merged) == cells_of(whole) and len(cells_of(whole)) == every_cell


def shard_journal(folder: Path, run_id: str, shard: Shard, suite: Suite | None = None) -> Path:
    """A finished synthetic shard of ``suite`` (quick's plan by default)."""
    suite = suite or load_suite("quick")
    record = run_record(run_id, suite) | {"shard": shard.to_dict()}
    records: list[dict[str, Any]] = [record]
    for plan in shard_plans(plan_cells(suite, get_registry()), shard.index, shard.count):
        key = plan.key
        records.append(model_record(key.dataset, key.variant, key.model))
        records += (
            cell_record(key.dataset, key.variant, c.backend, c.device, key.model)
            for c in plan.cells
        )
    write_journal(folder, records)
    return folder


def test_merge_refuses_shards_of_different_suites_naming_what_differs(tmp_path):
    first = shard_journal(tmp_path / "a", "run-1", Shard(1, 2))
    other = override(load_suite("quick"), seed=7, batch_sizes=(1, 4))
    second = shard_journal(tmp_path / "b", "run-2", Shard(2, 2), other)
    with pytest.raises(
        DataError, match=r"shards of different suites .*differ in batch_sizes, seed"
    ):
        merge_runs([first, second], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_takes_shards_whose_suites_were_read_from_different_paths(tmp_path):
    first = shard_journal(tmp_path / "a", "run-1", Shard(1, 2))
    moved = replace(load_suite("quick"), source="/elsewhere/quick.toml")
    second = shard_journal(tmp_path / "b", "run-2", Shard(2, 2), moved)
    merge_runs([first, second], tmp_path / "merged")


def test_merge_refuses_shards_of_different_splits(tmp_path):
    first = shard_journal(tmp_path / "a", "run-1", Shard(1, 2))
    second = shard_journal(tmp_path / "b", "run-2", Shard(3, 3))
    with pytest.raises(DataError, match=r"is shard 1/2 but .* is shard 3/3"):
        merge_runs([first, second], tmp_path / "merged")


def test_merge_refuses_one_shard_twice(tmp_path):
    first = shard_journal(tmp_path / "a", "run-1", Shard(1, 2))
    again = shard_journal(tmp_path / "b", "run-2", Shard(1, 2))
    with pytest.raises(DataError, match="are both shard 1/2"):
        merge_runs([first, again], tmp_path / "merged")


def test_merge_refuses_overlapping_cells_of_one_suite(tmp_path):
    shard = shard_journal(tmp_path / "a", "run-1", Shard(1, 2))
    whole = write_journal(
        tmp_path / "b",
        [run_record("run-2", load_suite("quick")), cell_record("mnist", "pool", "keras")],
    )
    with pytest.raises(DataError, match="mnist/book_cnn/pool/keras/cpu was measured in both"):
        merge_runs([shard, whole.parent], tmp_path / "merged")


def test_merge_names_the_missing_shards(tmp_path):
    lines: list[str] = []
    first = shard_journal(tmp_path / "a", "run-1", Shard(1, 3))
    third = shard_journal(tmp_path / "c", "run-3", Shard(3, 3))
    merge_runs([first, third], tmp_path / "merged", log=lines.append)
    assert lines == [
        "warning: shard(s) 2/3 of suite quick are not among the runs: their models are missing "
        "from the merged report"
    ]


def test_a_shards_run_folder_says_which_shard_it_is(tmp_path):
    made = new_run_dir(tmp_path, Suite(name="quick"), Shard(1, 2))
    assert made.name.endswith("-quick-shard1of2")


def test_a_shard_is_in_the_run_record_reports_read() -> None:
    records = journal_records("run-s", datasets=("mnist",), variants=("pool",))
    records[0]["shard"] = {"index": 2, "count": 3}
    tables = build_tables(records, Path("journal.jsonl"))
    assert tables.runs[0]["shard"] == {"index": 2, "count": 3}
