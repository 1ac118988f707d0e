"""`harness history`: every cell's p50 (with its interval) and accuracy over runs, in time and
SHA order, one section per machine, as a self-contained page and a Parquet table."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import DataError
from harness.report.history import (
    HISTORY_COLUMNS,
    find_runs,
    history_table,
    machine_key,
    median_interval,
    thinned,
)
from harness.report.synthetic import (
    environment,
    journal_records,
    trials_record,
    write_journal,
)

AVX2 = ["avx", "avx2", "fma"]


def fingerprinted(cpu_model: str = "Synthetic CPU", isa: list[str] = AVX2) -> dict:
    return {**environment(cpu_model), "cpu": {"vendor": "GenuineIntel", "isa": isa}}


def write_run(folder: Path, run_id: str, started: str, sha: str, latency_ms: float, env: dict):
    records = journal_records(
        run_id, datasets=("mnist",), batch_sizes=(1,), latency_ms=latency_ms, env=env
    )
    records[0]["started"] = started
    records[0]["environment"]["git_sha"] = sha
    seed = sum(map(ord, run_id))
    records += [
        trials_record(1, latency_ms, 10, 0.02, seed + k, variant=variant, backend=backend)
        for k, (variant, backend) in enumerate(
            (v, b) for v in ("pool", "nopool") for b in ("keras", "onnxruntime")
        )
    ]
    write_journal(folder / run_id, records)
    return folder / run_id


@pytest.fixture
def runs(tmp_path) -> Path:
    """Five runs on one machine (the fourth three times as slow in every row: a change that a
    pair of stored runs tells from the run-to-run noise even when all rows share it),
    written out of order, and one run on a machine with AVX-512."""
    folder = tmp_path / "runs"
    days = ["05", "01", "03", "04", "02"]
    slow = {"04"}
    for day in days:
        latency = 3.0 if day in slow else 1.0
        write_run(
            folder,
            f"run-{day}",
            f"2025-01-{day}T00:00:00+00:00",
            f"sha{day}",
            latency,
            fingerprinted(),
        )
    write_run(
        folder,
        "run-other",
        "2025-01-03T12:00:00+00:00",
        "sha03",
        0.5,
        fingerprinted(isa=[*AVX2, "avx512f"]),
    )
    return folder


def test_a_folder_of_runs_gives_five_points_per_cell_in_time_order(runs):
    table = history_table(find_runs([runs]))
    assert list(table.columns) == HISTORY_COLUMNS
    here = table[table["machine"] == machine_key(fingerprinted())]
    for _, cell in here.groupby(["dataset", "model", "variant", "backend", "device", "batch_size"]):
        assert list(cell["run_id"]) == [f"run-0{d}" for d in range(1, 6)]
        p50 = cell["p50_ms"].to_numpy()
        assert p50[3] == pytest.approx(3 * p50[2], rel=0.1), "the slow run shows"
        low, high = cell["p50_low_ms"].to_numpy(), cell["p50_high_ms"].to_numpy()
        assert (low <= p50).all() and (p50 <= high).all()
        assert high[2] < low[3], "the step is outside both intervals"
        assert cell["test_accuracy"].notna().all()


def test_steps_the_trials_call_a_change_are_marked_and_the_others_are_not(runs, tmp_path):
    table = history_table(find_runs([runs]))
    here = table[table["machine"] == machine_key(fingerprinted())]
    verdicts = here.groupby("run_id")["verdict"].unique().to_dict()
    assert list(verdicts["run-01"]) == ["first"]
    assert list(verdicts["run-04"]) == ["regression"]  # three times as slow as run-03
    assert list(verdicts["run-05"]) == ["improvement"]
    for quiet in ("run-02", "run-03"):
        assert set(verdicts[quiet]) <= {"same", "inconclusive"}
    slow = here[here["run_id"] == "run-04"]
    assert (slow["change_low"] < 2.0).all() and (slow["change_high"] > 2.0).all()
    out = tmp_path / "page"
    assert main(["history", str(runs), "-o", str(out)]) == 0
    assert (out / "history.html").read_text().count("\u25b2 +") == 4


def test_runs_on_another_instruction_set_are_kept_apart(runs):
    table = history_table(find_runs([runs]))
    machines = table.groupby("machine")["run_id"].unique()
    assert len(machines) == 2
    other = machine_key(fingerprinted(isa=[*AVX2, "avx512f"]))
    assert list(machines[other]) == ["run-other"]
    assert "avx512f" in other and "Synthetic CPU" in other


def test_a_run_without_a_fingerprint_is_its_own_machine():
    assert machine_key(environment()) == "Synthetic CPU | ISA not recorded"
    assert machine_key(environment()) != machine_key(fingerprinted())


def test_the_median_interval_holds_the_median_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    few, many = (rng.normal(1e6, 1e5, n).astype(np.int64) for n in (30, 3000))
    for samples in (few, many):
        low, high = median_interval(samples)
        assert low <= np.median(samples) / 1e6 <= high
    assert np.subtract(*median_interval(many)[::-1]) < np.subtract(*median_interval(few)[::-1])


def test_the_command_writes_a_self_contained_page_and_a_parquet_table(runs, tmp_path, capsys):
    out = tmp_path / "history"
    assert main(["history", str(runs), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "history.parquet"), str(out / "history.html")]
    table = pd.read_parquet(out / "history.parquet")
    assert len(table) == 6 * 4 and table["run_id"].nunique() == 6
    page = (out / "history.html").read_text()
    assert page.count("<h2>") == 2
    assert "6 runs on 2 machines" in page
    assert "http://" not in page and "https://" not in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 2 and all(s.startswith("data:image/png;base64,") for s in images)
    first = page.split("<h2>")[1]
    assert [first.index(f"sha0{d}") for d in range(1, 6)] == sorted(
        first.index(f"sha0{d}") for d in range(1, 6)
    )


def test_run_folders_can_be_named_one_by_one(runs):
    assert find_runs([runs / "run-02", runs / "run-01", runs / "run-02"]) == [
        runs / "run-02",
        runs / "run-01",
    ]


def test_a_folder_without_runs_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        find_runs([tmp_path])


@pytest.mark.parametrize("runs", [1, 5, 8, 9, 12, 40])
def test_the_figure_labels_at_most_so_many_runs_evenly(runs):
    labels = [f"run {index}" for index in range(runs)]
    shown = thinned(labels, 8)
    kept = [index for index, label in enumerate(shown) if label]
    assert len(shown) == runs and len(kept) <= 8 and kept[0] == 0
    assert len({b - a for a, b in itertools.pairwise(kept)}) <= 1  # evenly spaced
    assert all(shown[index] == labels[index] for index in kept)
