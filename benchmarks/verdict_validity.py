"""How often the latency verdicts are wrong on this machine, and what they cost.

Runs the real commands (``harness ab``, ``harness run``, ``harness compare``) many times and
counts what they say about changes whose truth is known:

- ``ab-aa``: both sides identical (MNIST pool on Keras and ONNX Runtime): any regression or
  improvement is a false verdict;
- ``ab-threads``: ONNX Runtime with 1 intra-op thread against the default (a real effect);
- ``ab-work``: a calibrated backend (``harness_validity_work``, installed for the run) whose call
  does a fixed amount of numpy work, NEW doing 0%, 5% and 10% more of it in the same job;
- ``runs``: repeated ``harness run`` of the same cells (A/A), plus 3 runs with 1 intra-op
  thread; the first half of the A/A runs calibrates the two noises ``harness compare`` adds (a
  row's whole run-to-run noise, and what is left of it against the run's other rows), and the
  second half, never used for that, is compared pairwise and with the 1-thread runs, judged
  relative to the run and each row on its own.

    python benchmarks/verdict_validity.py --data-dir DIR [--out reports/validity] [--quick]
    python benchmarks/verdict_validity.py --runs-from OUT_DIR     # judge saved runs anew

Writes every job's output and ``validity.json`` into the output folder and prints the figures
the README reports. Minutes to an hour: ``--quick`` runs a few of each to try it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

WORK_PLUGIN = '''
"""Backends whose call costs a fixed amount of numpy work, scaled by the option ``scale``."""
import numpy as np

from harness import hookimpl
from harness.api import Backend, Predictor

BASE_REPEATS = 400


class WorkPredictor(Predictor):
    def __init__(self, scale):
        self.repeats = int(round(BASE_REPEATS * scale))
        self.a = np.random.default_rng(0).standard_normal((48, 48)).astype(np.float32)

    def predict(self, batch):
        x = self.a
        for _ in range(self.repeats):
            x = np.tanh(x @ self.a)
        return np.zeros((len(batch), 10), dtype=np.float32) + x[0, :10]

    def describe(self):
        return {"inference_path": "numpy work", "repeats": self.repeats}


def _backend(backend_name):
    class WorkBackend(Backend):
        name = backend_name
        description = "fixed numpy work per call (the verdict validity benchmark)"

        def prepare(self, model, device, options):
            return WorkPredictor(float(options.get("scale", 1.0)))

    return WorkBackend()


@hookimpl
def register_backends(register):
    for name in ("work0", "work5", "work10"):
        register(_backend(name))
'''

WORK_EFFECTS = {"work0": 0.0, "work5": 0.05, "work10": 0.10}
AA_BATCHES = ("--batch-size", "1", "--batch-size", "8", "--batch-size", "32")


def install_work_plugin(site: Path) -> dict[str, str]:
    """A throwaway distribution on PYTHONPATH, found through its entry point like any plugin."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "harness_validity_work.py").write_text(WORK_PLUGIN)
    info = site / "harness_validity_work-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: harness-validity-work\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[harness]\nvalidity_work = harness_validity_work\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def harness(args: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "harness", *args],
            stdout=out,
            stderr=out,
            env={**os.environ, **env},
            check=False,
        )
    return done.returncode


def ab_job(out: Path, name: str, extra: list[str], env: dict[str, str]) -> dict:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code = harness(
        ["ab", "--out", str(folder), "--no-progress", *extra],
        env,
        folder / "log.txt",
    )
    wall = time.perf_counter() - started
    documents = sorted(folder.glob("*/ab.json"))
    if code not in (0, 1) or not documents:
        raise RuntimeError(f"harness ab failed (exit {code}); see {folder / 'log.txt'}")
    record = json.loads(documents[-1].read_text())
    return {"exit": code, "wall_seconds": wall, **record}


def summarize_saved(folders: list[Path]) -> dict[str, Any]:
    """The ``ab`` parts' figures from jobs already run (``--summarize``)."""
    effects = {
        "ab-aa": lambda v: 0.0,
        "ab-threads": lambda v: "1 vs default threads",
        "ab-work": lambda v: WORK_EFFECTS[v["backend"]],
    }
    results = {}
    for part, effect_of in effects.items():
        jobs = load_jobs(folders, part)
        if jobs:
            for job in jobs:
                job.setdefault("wall_seconds", math.nan)
            results[part] = summarize_ab(jobs, effect_of)
    return results


def run_job(out: Path, name: str, extra: list[str], env: dict[str, str]) -> Path:
    folder = out / name
    code = harness(["run", "--out", str(folder), "--no-progress", *extra], env, out / f"{name}.log")
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    if code != 0 or not runs:
        raise RuntimeError(f"harness run failed (exit {code}); see {out / f'{name}.log'}")
    return runs[-1]


def verdicts_of(record: dict) -> list[dict]:
    """A job's verdicts, judged from its recorded trials by this harness's judge with ``ab``'s
    defaults, so that a summary of older jobs uses the same statistics as new ones."""
    from harness.ab import judge_ab
    from harness.trials import RowTrials, TrialsResult

    rows = [RowTrials(tuple(row["key"]), row["visits"]) for row in record["rows"]]
    verdicts = judge_ab(TrialsResult(rows, {}, record["seconds"]), 50, 0.01, 0.05, 0.01)
    return [
        {"backend": key[3], "batch_size": key[5], **verdict.to_dict()}
        for key, verdict in verdicts.items()
    ]


def load_jobs(folders: list[Path], part: str) -> list[dict]:
    """The ``ab.json`` of every job of ``part`` under ``folders`` (earlier outputs)."""
    return [
        json.loads(path.read_text())
        for folder in folders
        for path in sorted(folder.glob(f"{part}-*/*/ab.json"))
    ]


def summarize_ab(jobs: list[dict], effect_of: Any) -> dict[str, Any]:
    """Per true effect: rows judged, verdicts given, detection or false rates, noise floors."""
    by_effect: dict[float, list[dict]] = {}
    failed_jobs = {}
    for job in jobs:
        for verdict in verdicts_of(job):
            effect = effect_of(verdict)
            by_effect.setdefault(effect, []).append(verdict)
            if effect == 0 and verdict["verdict"] in ("regression", "improvement"):
                failed_jobs[id(job)] = True
    summary: dict[str, Any] = {"jobs": len(jobs)}
    for effect, verdicts in sorted(by_effect.items()):
        counts = {
            name: sum(v["verdict"] == name for v in verdicts)
            for name in ("regression", "improvement", "same", "inconclusive")
        }
        floors = [100 * v["noise_floor"] for v in verdicts if math.isfinite(v["noise_floor"])]
        label = effect if isinstance(effect, str) else f"effect {effect:+.0%}"
        summary[label] = {
            "rows": len(verdicts),
            **counts,
            "noise_floor_pct_median": float(np.median(floors)) if floors else None,
            "noise_floor_pct_max": float(np.max(floors)) if floors else None,
            "change_pct_median": float(np.median([100 * v["change"] for v in verdicts])),
        }
    summary["jobs with a false verdict"] = len(failed_jobs)
    summary["seconds per job (prepare, trials, wall)"] = [
        float(np.median([job["seconds"].get("prepare", 0) for job in jobs])),
        float(np.median([job["seconds"].get("trials", 0) for job in jobs])),
        float(np.median([job["wall_seconds"] for job in jobs])),
    ]
    return summary


def compare_pairs(
    base_runs: list[Path], new_runs: list[Path], noise: dict[str, float | None], out: Path, tag: str
) -> list[dict]:
    """``harness compare`` on every (base, new) pair; the latency findings of each, the
    ``all rows`` line (the median row's change) with backend ``all rows``."""
    from harness.compare import CompareOptions, compare_runs
    from harness.report.store import read_report_folder

    tables = {path: read_report_folder(path) for path in {*base_runs, *new_runs}}
    options = CompareOptions(run_noise=noise["run"], row_noise=noise["row"])
    findings = []
    for base, new in itertools.product(base_runs, new_runs):
        if base == new:
            continue
        comparison = compare_runs(tables[base], tables[new], options)
        for finding in comparison.findings:
            if finding.metric.startswith("p"):
                findings.append(
                    {
                        "pair": [base.name, new.name],
                        "backend": finding.identity[0]
                        if finding.identity[3] == "-"
                        else finding.identity[3],
                        "batch_size": finding.identity[5],
                        "verdict": finding.verdict,
                        "change": finding.change,
                        "noise_floor": finding.noise_floor,
                        "judged": "relative" if comparison.latency_relative else "absolute",
                    }
                )
    (out / f"compare-{tag}.json").write_text(json.dumps(findings, indent=1))
    return findings


def _run_rows(path: Path) -> dict[tuple, tuple[float, float]]:
    """Each row's (backend, batch size) mean log trial latency and the variance of that mean,
    from the trials ``compare`` judges."""
    from harness.report.frames import trial_logs
    from harness.report.store import read_report_folder

    return {
        (key[4], key[6]): (logs.mean(), logs.var(ddof=1) / logs.size)
        for key, logs in trial_logs(read_report_folder(path).trials).items()
    }


def calibrate_run_noise(runs: list[Path]) -> dict[str, Any]:
    """The two noises ``harness compare`` adds to what each run's trials show, from pairs of
    A/A runs (d: the difference of a row's mean log trial latency, w: its trial variance).

    - run noise, a row's own: mean over run pairs and rows of (d^2 - w) / 2; per backend and
      batch size, and pooled;
    - row noise, what is left once the run's level is taken out: c = d minus the mean d of
      the other n rows has expectation of c^2 = w + sum(w_others) / n^2 + 2 * row^2 * (1 + 1 / n);
      pooled.
    """
    per_run = [_run_rows(path) for path in runs]
    keys = sorted(per_run[0])
    own: dict[tuple, list[float]] = {key: [] for key in keys}
    left_over = []
    for a, b in itertools.combinations(per_run, 2):
        d = np.array([b[key][0] - a[key][0] for key in keys])
        w = np.array([a[key][1] + b[key][1] for key in keys])
        for index, key in enumerate(keys):
            own[key].append((d[index] ** 2 - w[index]) / 2)
            others = np.delete(np.arange(len(keys)), index)
            c = d[index] - d[others].mean()
            excess = c**2 - w[index] - w[others].sum() / others.size**2
            left_over.append(excess / (2 * (1 + 1 / others.size)))
    pooled = [term for terms in own.values() for term in terms]
    return {
        "per_row_pct": {
            f"{key[0]} batch {key[1]}": 100 * math.sqrt(max(float(np.mean(own[key])), 0.0))
            for key in keys
        },
        "pooled_pct": 100 * math.sqrt(max(float(np.mean(pooled)), 0.0)),
        "row_noise_pct": 100 * math.sqrt(max(float(np.mean(left_over)), 0.0)),
    }


def judged_findings(
    held_out: list[Path], one_thread: list[Path], noise: dict[str, float | None], out: Path
) -> dict[str, Any]:
    """The A/A and 1-thread figures of the held-out runs compared with the given noises."""
    tag = "relative" if noise["row"] is not None else "absolute"
    findings_aa = compare_pairs(held_out, held_out, noise, out, f"aa-{tag}")
    findings_ab = compare_pairs(held_out, one_thread, noise, out, f"threads-{tag}")
    aa_rows = [f for f in findings_aa if f["backend"] != "all rows"]
    threads_rows = [f for f in findings_ab if f["backend"] == "onnxruntime"]
    others = [f for f in findings_ab if f["backend"] not in ("onnxruntime", "all rows")]
    pairs_failed = {
        tuple(f["pair"]) for f in findings_aa if f["verdict"] in ("regression", "improvement")
    }
    floors: dict[str, list[float]] = {}
    for f in aa_rows:
        if f["noise_floor"] is not None:
            floors.setdefault(f"{f['backend']} batch {f['batch_size']}", []).append(
                100 * f["noise_floor"]
            )
    level = [f for f in findings_aa if f["backend"] == "all rows"]
    relative = sum(f["judged"] == "relative" for f in threads_rows)
    return {
        "A/A rows: false verdicts": rate(aa_rows, ("regression", "improvement")),
        "A/A rows: inconclusive": rate(aa_rows, ("inconclusive",)),
        "A/A rows: same": rate(aa_rows, ("same",)),
        "A/A comparisons with a false verdict": f"{len(pairs_failed)}/"
        f"{len({tuple(f['pair']) for f in findings_aa})}",
        "A/A 'all rows' lines: false verdicts": rate(level, ("regression", "improvement")),
        "A/A noise floor pct (median per row)": {
            k: float(np.median(v)) for k, v in sorted(floors.items())
        },
        "A/A 'all rows' noise floor pct (median)": float(
            np.median([100 * f["noise_floor"] for f in level])
        )
        if level
        else None,
        "1 thread vs default, onnxruntime rows called regression": rate(
            threads_rows, ("regression",)
        ),
        "1 thread vs default, other rows called regression or improvement": rate(
            others, ("regression", "improvement")
        ),
        "1 thread vs default, comparisons judged relative": f"{relative}/{len(threads_rows)}",
        "1 thread vs default, changes": sorted({f["change"] for f in threads_rows}),
    }


def judge_saved_runs(aa: list[Path], one_thread: list[Path], out: Path) -> dict[str, Any]:
    """The ``runs`` part's figures: calibrate on the first half of the A/A runs, judge the
    held-out half against itself and against the 1-thread runs, in both modes."""
    calibration_runs, held_out = aa[: len(aa) // 2], aa[len(aa) // 2 :]
    calibration = calibrate_run_noise(calibration_runs)
    run_noise = math.ceil(calibration["pooled_pct"]) / 100
    row_noise = math.ceil(calibration["row_noise_pct"]) / 100
    rows = len(_run_rows(aa[0]))
    return {
        "A/A runs, 1-thread runs, rows per run": [len(aa), len(one_thread), rows],
        "calibration (first half of the A/A runs)": calibration,
        "noise used (run, row), pct": [100 * run_noise, 100 * row_noise],
        "relative to the run (default)": judged_findings(
            held_out, one_thread, {"run": run_noise, "row": row_noise}, out
        ),
        "each row on its own (--absolute)": judged_findings(
            held_out, one_thread, {"run": run_noise, "row": None}, out
        ),
        "trial phase CPU share taken by other processes, per run (A/A, then 1-thread)": [
            trial_phase_foreign_cpu(run) for run in (*aa, *one_thread)
        ],
        "latency phase seconds per row (median over runs)": float(
            np.median([latency_phase_seconds(run) / rows for run in aa])
        ),
        "trial phase seconds per row (median over runs)": float(
            np.median([trial_phase_seconds(run) / rows for run in aa])
        ),
    }


def trial_phase_foreign_cpu(run_dir: Path) -> float | None:
    """What ``compare`` warns by, for a run folder."""
    from harness.machine_load import trial_phase_foreign_cpu as share

    (run,) = json.loads((run_dir / "run.json").read_text())["runs"]
    return share(run)


def saved_runs(folder: Path, prefix: str) -> list[Path]:
    """The run folders of a part's jobs (``run-aa-0/<run>``, ...), in job order."""
    jobs = sorted(
        (path for path in folder.glob(f"{prefix}-*") if path.is_dir()),
        key=lambda path: int(path.name.rsplit("-", 1)[1]),
    )
    return [sorted(p for p in job.iterdir() if p.is_dir())[-1] for job in jobs]


def rate(findings: list[dict], verdicts: tuple[str, ...]) -> str:
    hits = sum(f["verdict"] in verdicts for f in findings)
    return f"{hits}/{len(findings)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding MNIST's files (required to run)")
    parser.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="OUT_DIR",
        help="only summarize the ab jobs already in these output folders, judged anew",
    )
    parser.add_argument("--out", default="reports/validity", help="output folder")
    parser.add_argument("--quick", action="store_true", help="a few jobs of each, to try it")
    parser.add_argument(
        "--parts", default="ab-aa,ab-threads,ab-work,runs", help="which parts to run"
    )
    parser.add_argument(
        "--runs-from",
        type=Path,
        metavar="OUT_DIR",
        help="only judge the runs part's saved runs in this output folder anew",
    )
    args = parser.parse_args()
    if args.summarize:
        print(json.dumps(summarize_saved(args.summarize), indent=1))
        return 0
    if args.runs_from:
        aa, one = saved_runs(args.runs_from, "run-aa"), saved_runs(args.runs_from, "run-1thread")
        print(json.dumps(judge_saved_runs(aa, one, args.runs_from), indent=1))
        return 0
    if not args.data_dir:
        parser.error("--data-dir is required to run the benchmark")
    parts = set(args.parts.split(","))
    scale = 0.2 if args.quick else 1.0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) / stamp
    out.mkdir(parents=True)
    env = {"HARNESS_DATA_DIR": args.data_dir, "TF_CPP_MIN_LOG_LEVEL": "2"}
    mnist = ["--suite", "quick", "--dataset", "mnist", "--variant", "pool"]
    results: dict[str, Any] = {"started": stamp}

    if "ab-aa" in parts:
        jobs = [
            ab_job(
                out,
                f"ab-aa-{i}",
                [*mnist, *AA_BATCHES, "--seed", str(i)],
                env,
            )
            for i in range(max(2, round(17 * scale)))
        ]
        results["ab-aa"] = summarize_ab(jobs, lambda v: 0.0)
        print("ab A/A:", json.dumps(results["ab-aa"], indent=1), flush=True)
        (out / "validity.json").write_text(json.dumps(results, indent=1))

    if "ab-threads" in parts:
        jobs = [
            ab_job(
                out,
                f"ab-threads-{i}",
                [
                    *mnist,
                    "--backend",
                    "onnxruntime",
                    "--seed",
                    str(i),
                    "--new-option",
                    "onnxruntime.intra_op_threads=1",
                ],
                env,
            )
            for i in range(max(2, round(8 * scale)))
        ]
        results["ab-threads"] = summarize_ab(jobs, lambda v: "1 vs default threads")
        print("ab 1 vs 2 threads:", json.dumps(results["ab-threads"], indent=1), flush=True)
        (out / "validity.json").write_text(json.dumps(results, indent=1))

    if "ab-work" in parts:
        # One BLAS thread: idle workers' OpenBLAS threads would otherwise spin on the cores
        # that the timed worker needs (measured: noise floors of 11-28% instead of a few %).
        work_env = {**env, **install_work_plugin(out / "site"), "OPENBLAS_NUM_THREADS": "1"}
        work = ["--suite", "smoke", "--dataset", "mnist", "--variant", "pool"]
        work += ["--batch-size", "1", "--batch-size", "8"]
        for name, effect in WORK_EFFECTS.items():
            work += ["--backend", name, "--new-option", f"{name}.scale={1 + effect}"]
        jobs = [
            ab_job(out, f"ab-work-{i}", [*work, "--seed", str(i)], work_env)
            for i in range(max(2, round(10 * scale)))
        ]
        results["ab-work"] = summarize_ab(jobs, lambda v: WORK_EFFECTS[v["backend"]])
        print("ab calibrated work:", json.dumps(results["ab-work"], indent=1), flush=True)
        (out / "validity.json").write_text(json.dumps(results, indent=1))

    if "runs" in parts:
        count = max(4, round(10 * scale))
        # The quick suite without its serving scenarios: only the latency phases are compared.
        quick = (Path(__file__).parent.parent / "harness" / "suites" / "quick.toml").read_text()
        quick = quick.replace("enabled = true", "enabled = false")
        plain_suite, threads_suite = out / "quick-no-serving.toml", out / "one-thread.toml"
        plain_suite.write_text(quick)
        threads_suite.write_text(quick + "\n[backend_options.onnxruntime]\nintra_op_threads = 1\n")
        plain = ["--suite", str(plain_suite), *mnist[2:]]
        aa = [run_job(out, f"run-aa-{i}", plain, env) for i in range(count)]
        one_thread = [
            run_job(out, f"run-1thread-{i}", ["--suite", str(threads_suite), *mnist[2:]], env)
            for i in range(3)
        ]
        results["runs"] = judge_saved_runs(aa, one_thread, out)
        print("stored runs:", json.dumps(results["runs"], indent=1), flush=True)

    (out / "validity.json").write_text(json.dumps(results, indent=1))
    print(f"written: {out / 'validity.json'}")
    return 0


def _phase_seconds(run_dir: Path, phase: str) -> float:
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "end":
            return float(record["phases"].get(phase, 0.0))
    return math.nan


def latency_phase_seconds(run_dir: Path) -> float:
    """The ordinary latency phase of a run (MNIST pool: 4 rows): what ``ab`` is weighed
    against."""
    return _phase_seconds(run_dir, "latency")


def trial_phase_seconds(run_dir: Path) -> float:
    return _phase_seconds(run_dir, "trials")


if __name__ == "__main__":
    sys.exit(main())
