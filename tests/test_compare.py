"""``harness compare``: what is a regression, what is noise, and what is bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.frames import build_tables
from harness.report.store import (
    RUN_JSON,
    SAMPLES_PARQUET,
    SUMMARY_PARQUET,
    TRIALS_PARQUET,
    write_parquet,
    write_run_json,
)
from harness.report.synthetic import (
    cell_record,
    environment,
    journal_records,
    model_record,
    run_record,
    serving_entry,
    trials_record,
)


def write_run(folder: Path, records: list[dict]) -> Path:
    """Only the data files compare reads (no plots: keeps the tests fast)."""
    folder.mkdir(parents=True)
    tables = build_tables(records, folder / "journal.jsonl")
    write_parquet(tables.summary, folder / SUMMARY_PARQUET)
    write_parquet(tables.samples, folder / SAMPLES_PARQUET)
    write_parquet(tables.trials, folder / TRIALS_PARQUET)
    write_run_json(tables, folder / RUN_JSON)
    return folder


def one_cell_run(
    folder: Path,
    latency_ms: float,
    samples: int,
    seed: int,
    env: dict | None = None,
    trials: int = 10,
    trial_noise: float = 0.02,
    **cell: object,
) -> Path:
    """One cell at batch sizes 1 and 8, with ``trials`` trials per row (0: no trial phase)."""
    records = [
        run_record(folder.name, env=env),
        model_record(),
        cell_record(latency_ms=latency_ms, samples=samples, seed=seed, **cell),
    ]
    if trials:
        records += [
            trials_record(batch, latency_ms * batch, trials, trial_noise, seed * 10 + batch)
            for batch in (1, 8)
        ]
    return write_run(folder, records)


def compare(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_30_percent_shift_of_the_trials_is_a_regression(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.3, 50, seed=2)
    code, out, _ = compare(capsys, base, new, "--run-noise", "2")
    assert code == 1
    assert "REGRESSION" in out and "p50_ms" in out
    assert "+30" in out or "+29" in out or "+31" in out  # the change, with its interval


def test_a_speedup_is_an_improvement_not_a_failure(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.3, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=2)
    code, out, _ = compare(capsys, base, new, "--run-noise", "2")
    assert code == 0
    assert "improvement" in out


def test_identical_runs_are_same_with_their_noise_floor(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=2)
    code, out, _ = compare(capsys, base, new, "--all", "--run-noise", "1")
    assert code == 0
    assert out.count("| same") + out.count(" same ") >= 2
    assert "±" in out


def test_a_row_noisier_than_the_threshold_is_inconclusive_not_a_verdict(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1, trial_noise=0.3)
    new = one_cell_run(tmp_path / "new", 1.15, 50, seed=2, trial_noise=0.3)
    code, out, _ = compare(capsys, base, new, "--all")
    assert code == 0
    assert "inconclusive" in out and "REGRESSION" not in out


def test_run_noise_widens_the_interval_until_a_change_is_inconclusive(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.3, 50, seed=2)
    assert compare(capsys, base, new, "--run-noise", "2")[0] == 1
    code, out, _ = compare(capsys, base, new, "--run-noise", "30")
    assert code == 0
    assert "inconclusive" in out


def test_a_significant_shift_below_the_threshold_is_not_a_regression(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1, trial_noise=0.005)
    new = one_cell_run(tmp_path / "new", 1.05, 50, seed=2, trial_noise=0.005)
    assert compare(capsys, base, new, "--run-noise", "0.5")[0] == 0
    assert compare(capsys, base, new, "--run-noise", "0.5", "--threshold", "3")[0] == 1


def test_rows_without_trials_are_untested_and_do_not_gate(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 500, seed=1, trials=0)
    new = one_cell_run(tmp_path / "new", 2.0, 500, seed=2, trials=0)
    code, out, _ = compare(capsys, base, new, "--all")
    assert code == 0
    assert "untested" in out and "+99.6%" in out  # the change is shown, not judged
    assert "no trials" in out


@pytest.mark.parametrize("flag, value", [("--alpha", "0"), ("--run-noise", "-1")])
def test_bad_statistics_flags_exit_2(tmp_path, capsys, flag, value):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    code, _, err = compare(capsys, base, base, flag, value)
    assert code == 2 and flag in err


def test_an_accuracy_drop_beyond_the_threshold_is_a_regression(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1, accuracy=0.90)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, accuracy=0.89)
    code, out, _ = compare(capsys, base, new)
    assert code == 1
    assert "test_accuracy" in out and "-1.00 pp" in out
    assert compare(capsys, base, new, "--accuracy-drop-pp", "2")[0] == 0


def test_an_environment_mismatch_exits_2_and_names_the_fields(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    other = environment(cpu_model="Other CPU", tensorflow="3.0.0")
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, env=other)
    code, _, err = compare(capsys, base, new)
    assert code == 2
    assert "cpu_model: 'Synthetic CPU' vs 'Other CPU'" in err
    assert "libraries.tensorflow (major): '2' vs '3'" in err
    code, out, _ = compare(capsys, base, new, "--allow-env-mismatch")
    assert code == 0
    assert "cpu_model" in out


def test_a_minor_library_upgrade_is_the_same_environment(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, env=environment(tensorflow="2.22.1"))
    assert compare(capsys, base, new)[0] == 0


def test_deterministic_metrics_ignore_latency_and_environment(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 500, seed=1)
    new = one_cell_run(tmp_path / "new", 3.0, 500, seed=2, env=environment(cpu_model="Other CPU"))
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic", "--markdown")
    assert code == 0
    assert out.startswith("## harness compare")
    assert "Environment differences (allowed)" in out


AVX2 = ["avx", "avx2", "f16c", "fma", "sse4_2"]
AVX512_VNNI = [*AVX2, "avx512_vnni", "avx512f"]


def fingerprinted(isa: list[str], family: int = 25) -> dict:
    """A run's environment on an "AMD EPYC" whose fingerprint has these ISA features."""
    cpu = {"vendor": "AuthenticAMD", "family": family, "model": 17, "stepping": 1, "isa": isa}
    return {**environment(cpu_model="AMD EPYC"), "cpu": cpu}


def test_cpus_with_other_instruction_sets_are_refused_even_when_allowed(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1, env=fingerprinted(AVX2))
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, env=fingerprinted(AVX512_VNNI))
    for allow in ((), ("--allow-env-mismatch",)):
        code, _, err = compare(capsys, base, new, *allow)
        assert code == 2
        assert f"cpu.isa: {AVX2!r} vs {AVX512_VNNI!r} (only in NEW: avx512_vnni, avx512f)" in err
        assert "--allow-env-mismatch does not cover cpu.isa" in err
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert code == 0
    assert "cpu.isa" in out


def test_another_cpu_family_with_the_same_isa_is_an_ordinary_difference(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1, env=fingerprinted(AVX2, family=23))
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, env=fingerprinted(AVX2))
    code, _, err = compare(capsys, base, new)
    assert code == 2
    assert "cpu.family: 23 vs 25" in err and "cpu.isa" not in err
    assert compare(capsys, base, new, "--allow-env-mismatch")[0] == 0
    same = one_cell_run(tmp_path / "same", 1.0, 50, seed=1, env=fingerprinted(AVX2, family=23))
    code, out, _ = compare(capsys, base, same)
    assert code == 0 and "cpu." not in out


def test_runs_from_before_the_fingerprint_still_compare(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)  # no "cpu" in the environment
    old = one_cell_run(tmp_path / "old", 1.0, 50, seed=1)
    code, out, _ = compare(capsys, base, old)
    assert code == 0
    assert "cpu.isa: not recorded" in out
    old_epyc = one_cell_run(tmp_path / "epyc", 1.0, 50, seed=1, env=environment("AMD EPYC"))
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, env=fingerprinted(AVX512_VNNI))
    code, out, _ = compare(capsys, old_epyc, new)
    assert code == 0
    assert f"cpu.isa: not recorded in BASE, {AVX512_VNNI!r} in NEW" in out


def test_a_parameter_count_change_fails_even_across_machines(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    records = [run_record("new"), model_record(variant="pool"), cell_record(samples=50)]
    records[1]["counts"]["params_dense"] += 1
    new = write_run(tmp_path / "new", records)
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert code == 1
    assert "params_dense" in out and "+1" in out


def test_a_cell_that_stopped_working_is_a_regression(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, status="crashed", error="SIGSEGV")
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert code == 1
    assert "status" in out and "crashed" in out and "SIGSEGV" in out


def test_missing_and_new_rows_are_listed(tmp_path, capsys):
    base = write_run(
        tmp_path / "base", journal_records("base", datasets=("mnist",), variants=("pool",))
    )
    new = write_run(
        tmp_path / "new", journal_records("new", datasets=("cifar10",), variants=("pool",))
    )
    code, out, _ = compare(capsys, base, new, "--allow-missing")
    assert code == 0
    assert "Rows in BASE missing from NEW (4)" in out
    assert "mnist/book_cnn/pool/keras/cpu/1" in out
    assert "Rows new in NEW (4)" in out


def test_a_missing_folder_exits_2_naming_it(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 5, seed=1)
    code, _, err = compare(capsys, base, tmp_path / "nowhere")
    assert code == 2
    assert "nowhere" in err


def test_a_truncated_parquet_exits_2_naming_the_file(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 5, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 5, seed=1)
    samples = new / SAMPLES_PARQUET
    samples.write_bytes(samples.read_bytes()[:100])
    code, _, err = compare(capsys, base, new)
    assert code == 2
    assert str(samples) in err


def test_a_wrong_schema_version_exits_2_naming_the_file(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 5, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 5, seed=1)
    run_json = new / RUN_JSON
    document = json.loads(run_json.read_text())
    document["schema_version"] = 0
    run_json.write_text(json.dumps(document))
    code, _, err = compare(capsys, base, new)
    assert code == 2
    assert str(run_json) in err and "schema version" in err


@pytest.mark.parametrize("percentile", ["90", "99"])
def test_another_percentile_can_be_judged(tmp_path, capsys, percentile):
    base = one_cell_run(tmp_path / "base", 1.0, 500, seed=1)
    new = one_cell_run(tmp_path / "new", 1.3, 500, seed=2)
    code, out, _ = compare(capsys, base, new, "--percentile", percentile, "--run-noise", "2")
    assert code == 1
    assert f"p{percentile}_ms" in out


def test_rows_missing_from_new_fail_unless_allowed(tmp_path, capsys):
    base = one_cell_run(tmp_path / "base", 1.0, 50, seed=1)
    new = one_cell_run(tmp_path / "new", 1.0, 50, seed=1, batch_sizes=(1,))
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert code == 1
    assert "1 row(s) of BASE missing from NEW" in out
    assert compare(capsys, base, new, "--metrics", "deterministic", "--allow-missing")[0] == 0


def served_run(folder: Path, serving: dict | None, seed: int) -> Path:
    """One cell at batch sizes 1 and 8, the same trials as the other side's, and ``serving``."""
    cell = cell_record(latency_ms=1.0, samples=50, seed=seed)
    cell["serving"] = serving
    records = [run_record(folder.name), model_record(), cell]
    records += [trials_record(batch, batch, 10, 0.02, seed * 10 + batch) for batch in (1, 8)]
    return write_run(folder, records)


def serving_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "serving_max_qps" in line or "offline_" in line]


@pytest.mark.parametrize("markdown", [False, True])
def test_serving_figures_change_per_cell_as_report_only(tmp_path, capsys, markdown):
    base = served_run(tmp_path / "base", serving_entry(800.0, images_per_s=5000.0), seed=1)
    new = served_run(tmp_path / "new", serving_entry(400.0, images_per_s=6000.0), seed=2)
    code, out, _ = compare(capsys, base, new, *(["--markdown"] if markdown else []))
    assert code == 0
    assert "Serving scenarios (report-only: no verdict)" in out
    images, qps = serving_lines(out)  # one row per cell, not one per batch size
    assert "800.0" in qps and "400.0" in qps and "-50.0%" in qps
    assert "5,000.0" in images and "6,000.0" in images and "+20.0%" in images
    assert "regression" not in qps.lower() and "improvement" not in images.lower()
    assert "their noise is not measured" in out


def test_a_cell_that_no_longer_meets_its_bound_at_any_rate_fails(tmp_path, capsys):
    base = served_run(tmp_path / "base", serving_entry(800.0), seed=1)
    new = served_run(tmp_path / "new", serving_entry(None), seed=2)
    code, out, _ = compare(capsys, base, new)
    assert code == 1
    (lost,) = [line for line in serving_lines(out) if "serving_max_qps" in line]
    assert "REGRESSION" in lost and "no rate within the bound" in lost and "none" in lost
    code, out, _ = compare(capsys, new, base)
    assert code == 0
    assert "improvement" in next(line for line in out.splitlines() if "serving_max_qps" in line)


def test_no_rate_within_the_bound_is_not_judged_when_the_load_generator_was_late(tmp_path, capsys):
    base = served_run(tmp_path / "base", serving_entry(800.0), seed=1)
    late = serving_entry(None, schedule_error_p99_ms=2.0)  # 20% of the 10 ms bound
    new = served_run(tmp_path / "new", late, seed=2)
    code, out, _ = compare(capsys, base, new)
    assert code == 0
    qps = next(line for line in serving_lines(out) if "serving_max_qps" in line)
    assert "its load generator was late, p99 2 ms: not judged" in qps
    assert "REGRESSION" not in out


def test_serving_under_another_bound_is_not_compared(tmp_path, capsys):
    base = served_run(tmp_path / "base", serving_entry(800.0, bound_ms=10.0), seed=1)
    new = served_run(tmp_path / "new", serving_entry(None, bound_ms=20.0), seed=2)
    code, out, _ = compare(capsys, base, new)
    assert code == 0
    qps = next(line for line in serving_lines(out) if "serving_max_qps" in line)
    assert "not comparable (serving_p99_bound_ms 10 vs 20)" in qps


def test_serving_measured_on_one_side_only_is_shown_and_does_not_gate(tmp_path, capsys):
    base = served_run(tmp_path / "base", serving_entry(800.0, capped=True), seed=1)
    new = served_run(tmp_path / "new", None, seed=2)
    code, out, _ = compare(capsys, base, new)
    assert code == 0
    qps = next(line for line in serving_lines(out) if "serving_max_qps" in line)
    assert "≥ 800.0" in qps and "not measured in NEW" in qps
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert code == 0 and serving_lines(out) == []


BACKENDS = ("keras", "onnxruntime", "onnxruntime_int8")


def three_backend_run(folder: Path, level: float, slower: dict[str, float], seed: int) -> Path:
    """Three backends at batch sizes 1 and 8 (6 rows): every trial scaled by the run's
    ``level``, and a backend's by its ``slower`` factor too."""
    records = [run_record(folder.name), model_record()]
    for index, backend in enumerate(BACKENDS):
        latency = (1.0 + index) * level * slower.get(backend, 1.0)
        records.append(cell_record(backend=backend, latency_ms=latency, samples=50, seed=seed))
        records += [
            trials_record(
                batch, latency * batch, 10, 0.03, seed * 100 + index * 10 + batch, backend=backend
            )
            for batch in (1, 8)
        ]
    return write_run(folder, records)


def test_a_level_the_whole_run_moved_by_is_judged_apart_from_the_rows(tmp_path, capsys):
    base = three_backend_run(tmp_path / "base", 1.0, {}, seed=1)
    new = three_backend_run(tmp_path / "new", 1.25, {}, seed=2)
    code, out, _ = compare(capsys, base, new, "--all", "--row-noise", "0")
    assert code == 0
    level = next(line for line in out.splitlines() if "p50_ms (run level)" in line)
    assert "all rows" in level and "inconclusive" in level
    assert 20 < float(re.search(r"\+(\d+\.\d)% \[", level).group(1)) < 30  # the +25% level
    rows = [line for line in out.splitlines() if "p50_ms" in map(str.strip, line.split("|"))]
    assert len(rows) == 6 and all(" same" in line for line in rows)
    assert "judged relative to the run" in out
    code, out, _ = compare(capsys, base, new, "--all", "--absolute")
    assert code == 0 and "run level" not in out
    assert out.count("inconclusive") >= 6


def test_one_backend_slower_than_the_rest_is_a_regression_whatever_the_level(tmp_path, capsys):
    base = three_backend_run(tmp_path / "base", 1.0, {}, seed=1)
    new = three_backend_run(tmp_path / "new", 0.85, {"onnxruntime": 1.5}, seed=2)
    code, out, _ = compare(capsys, base, new)
    assert code == 1
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(regressions) == 2 and all("onnxruntime " in line for line in regressions)
    assert "improvement" not in out
    code, out, _ = compare(capsys, base, new, "--absolute")
    assert code == 0 and "REGRESSION" not in out  # on its own, 12% run noise hides +27%


def test_when_most_rows_moved_each_row_is_judged_on_its_own_and_says_why(tmp_path, capsys):
    base = three_backend_run(tmp_path / "base", 1.0, {}, seed=1)
    slower = {"onnxruntime": 2.0, "onnxruntime_int8": 3.0}
    new = three_backend_run(tmp_path / "new", 1.0, slower, seed=2)
    code, out, _ = compare(capsys, base, new, "--all")
    assert code == 1  # +100% and +200% are beyond the whole run-to-run noise
    assert "rows changed alike, so no majority of rows stands for the run's level" in out
    assert "run level" not in out
    keras = [line for line in out.splitlines() if "keras" in line and "p50_ms" in line]
    assert keras and all("improvement" not in line for line in keras)


def with_trial_phase_load(folder: Path, foreign_cpu: float) -> Path:
    """The run as if its trial phase had shared the machine: ``foreign_cpu`` of its CPU went
    to other processes."""
    run_json = folder / RUN_JSON
    document = json.loads(run_json.read_text())
    load = {"foreign_cpu": foreign_cpu, "steal": 0.0, "seconds": 30.0}
    document["runs"][0]["machine_load"] = {"latency": load, "trials": load}
    run_json.write_text(json.dumps(document))
    return folder


def test_a_run_measured_beside_other_work_is_named_with_its_share(tmp_path, capsys):
    base = with_trial_phase_load(one_cell_run(tmp_path / "base", 1.0, 50, seed=1), 0.02)
    new = with_trial_phase_load(one_cell_run(tmp_path / "new", 1.0, 50, seed=2), 0.35)
    code, out, _ = compare(capsys, base, new)
    assert code == 0
    assert "Measured beside other work" in out
    assert "NEW run new: other processes took 35% of the machine's CPU" in out
    assert "BASE run" not in out  # 2% is a quiet machine
    quiet = one_cell_run(tmp_path / "quiet", 1.0, 50, seed=3)  # a run without the record
    code, out, _ = compare(capsys, base, quiet)
    assert "beside other work" not in out
    code, out, _ = compare(capsys, base, new, "--metrics", "deterministic")
    assert "beside other work" not in out
