"""Kill a real run in each of its phases, resume it each time, and count what was lost.

Starts ``harness run --suite smoke`` (a fresh model cache, so there is training to hit) and
kills the runner with SIGKILL or SIGTERM (a coin) at a random moment inside a chosen phase:
training, export (a model's scoring and conversions), a cell (a worker measuring), the trial
phase, or report writing. The phase is read from what the run shows: its log lines (``training
N steps``, ``trained``/``reused from cache``, ``measuring in a worker``, ``trials: preparing``)
and, for report writing, its journal's ``end`` record and the report files written after it.
Targets cycle through training, export and cell while the run has them, then the trial phase,
then report writing (nothing else follows it), ``--kills`` divided evenly among the five. After
each kill it checks that every process the runner had started is gone within seconds, and
resumes with ``harness run --resume``; then lets the last resume finish, checks that the journal
reads, that no cell, model or end was journaled twice and none is missing, and compares the run
with an uninterrupted one (``harness compare --metrics deterministic``).

    python benchmarks/soak_resume.py [--kills 20] [--seed 0] [--out DIR]

Writes each attempt's output and ``soak.json`` (per kill: the phase aimed at and the phase hit;
``exit`` for a report-writing kill whose signal came after the last report file) into the output
folder and prints the counts. A run that finished before its kill is resumed again while report
kills are due: resuming a finished run writes its reports again. Minutes: about two smoke runs
plus a start-up (imports, GEMM peak) per kill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from harness.journal import JOURNAL_NAME, Journal
from harness.model_cache import SIDECAR_FILE
from harness.planner import plan_cells
from harness.plugins import get_registry
from harness.report import BENCHMARK_JSON, REPORT_HTML, REPORT_MD
from harness.report.store import (
    RUN_JSON,
    SAMPLES_PARQUET,
    SUMMARY_CSV,
    SUMMARY_PARQUET,
    TRIALS_PARQUET,
)
from harness.suite import load_suite

SUITE = "smoke"
HARNESS = (sys.executable, "-m", "harness")
ORPHAN_GRACE_S = 15.0
"""How long the processes a killed runner started may take to go (PDEATHSIG is immediate; a
SIGTERMed runner kills its worker's group before it exits)."""
PHASES = ("training", "export", "cell", "trials", "report")
CYCLED = PHASES[:3]
"""Phases that recur model after model; the trial phase and report writing come once, last."""
LOG_PHASES = (
    (re.compile(r": training \d+ steps"), "training"),
    (re.compile(r": (trained|reused from cache) \("), "export"),
    (re.compile(r": measuring in a worker"), "cell"),
    (re.compile(r"^trials: preparing"), "trials"),
    (re.compile(r"^(run folder|writing generated|loading )|^\S+ on \S+/\S+: "), "between"),
)
"""What the runner is doing from its last line of each kind; other lines (TensorFlow's,
warnings) change nothing."""
FIRST_LENGTH_S = {"training": 3.0, "export": 1.0, "cell": 4.0, "trials": 15.0}
"""A first guess at each phase's length on the smoke suite; a kill falls uniformly within it,
and a phase seen to end sooner shortens the guess to what it lasted."""
REPORT_FILES = (
    SUMMARY_PARQUET,
    SAMPLES_PARQUET,
    TRIALS_PARQUET,
    SUMMARY_CSV,
    RUN_JSON,
    BENCHMARK_JSON,
    REPORT_MD,
    REPORT_HTML,
)
"""Written in this order (the plots between the last two data files and ``report.md``): a
report-writing kill comes once the first k of them are written, k at random below their
number, so it falls before, between or after any of them but never after the run is done."""
POLL_S = 0.02


def harness(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*HARNESS, *args, "--no-progress"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_folder(runs: Path) -> Path | None:
    """The run folder to resume: the one holding a journal that starts with its run record."""
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        journal = folder / JOURNAL_NAME
        try:
            records = Journal(journal).records() if journal.is_file() else []
        except Exception:  # what --resume would repair
            return folder
        if records and records[0].get("type") == "run":
            return folder
    return None


def folder_unresumable(folder: Path) -> bool:
    journal = folder / JOURNAL_NAME
    try:
        records = Journal(journal).records() if journal.is_file() else []
    except Exception:
        return False
    return not records or records[0].get("type") != "run"


def last_line(log: Path) -> str:
    """What the run was doing when it was killed: its last line before the stop messages."""
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith(("harness run: stopped", "stopped; finish it"))
    ]
    return lines[-1][:160] if lines else ""


class Phase:
    """The phase a runner is in, as its log, its journal and its report files show it."""

    def __init__(self, log: Path, runs: Path, started: float) -> None:
        self.log = log
        self.runs = runs
        self.started = started
        """Wall-clock time the attempt began: files written since are this attempt's."""
        self.run_dir = run_folder(runs)
        self.lines = 0
        self.phase = "start-up"
        self.since = time.monotonic()
        self.instance = 0
        """Counts the phases entered, so that a phase entered again is told from one going on."""
        self.report_files = 0

    def read(self) -> str:
        complete = self.log.read_text(errors="replace").split("\n")[:-1]
        for line in complete[self.lines :]:
            if line.startswith("the run ended already"):
                self._enter("report")
            for pattern, phase in LOG_PHASES:
                if pattern.search(line):
                    self._enter(phase)
                    break
        self.lines = len(complete)
        if self.run_dir is None:
            self.run_dir = run_folder(self.runs)
        if self.run_dir is None:
            return self.phase
        if self.phase != "report" and self._ended_here(self.run_dir / JOURNAL_NAME):
            self._enter("report")
        if self.phase == "report":
            self.report_files = sum(
                _written_since(self.run_dir / name, self.started) for name in REPORT_FILES
            )
        return self.phase

    def _enter(self, phase: str) -> None:
        self.phase, self.since, self.instance = phase, time.monotonic(), self.instance + 1

    def _ended_here(self, journal: Path) -> bool:
        """Whether this attempt journaled the run's ``end``: its reports are next."""
        if not _written_since(journal, self.started):
            return False
        with journal.open("rb") as f:
            f.seek(max(0, journal.stat().st_size - 4096))
            tail = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return b'"type":"end"' in tail


def _written_since(path: Path, started: float) -> bool:
    try:
        return path.stat().st_mtime >= started
    except FileNotFoundError:
        return False


def available(runs: Path, cache: Path) -> set[str]:
    """The phases the next resume (or start) still goes through."""
    run_dir = run_folder(runs)
    records = Journal(run_dir / JOURNAL_NAME).records() if run_dir else []
    if any(r["type"] == "end" for r in records):
        return {"report"}
    plans = plan_cells(load_suite(SUITE), get_registry())
    phases = {"export", "trials", "report"}
    trained = sum(1 for _ in cache.glob(f"*/{SIDECAR_FILE}"))
    if trained < len(plans):
        phases.add("training")
    if not records or check_journal(records)["cells_missing"]:
        phases.add("cell")
    return phases


def choose_target(hit: Counter[str], quota: dict[str, int], phases: set[str], last: str) -> str:
    """The next phase to kill in: training, export and cell in turn while the run has them and
    they are under their share, then the trial phase, then report writing."""
    wanted = [p for p in PHASES if p in phases and hit[p] < quota[p]]
    cycled = [p for p in CYCLED if p in wanted]
    if cycled:
        after = CYCLED[(CYCLED.index(last) + 1) % len(CYCLED)] if last in CYCLED else CYCLED[0]
        order = CYCLED[CYCLED.index(after) :] + CYCLED[: CYCLED.index(after)]
        return next(p for p in order if p in cycled)
    if wanted:
        return wanted[0]
    return min(
        (p for p in PHASES if p in phases and p != "report"), key=hit.__getitem__, default="report"
    )


def kill_in(
    runner: subprocess.Popen[bytes],
    phase: Phase,
    target: str,
    rng: random.Random,
    lengths: dict[str, float],
) -> tuple[str | None, float]:
    """Wait until the runner is at a random moment inside ``target``; return the phase it is in
    then and how long it has been in it, or None when the runner ended first. A run writing its
    reports while waiting for another phase is stopped there: nothing else comes after it."""
    instance, entered, at = 0, 0.0, 0.0
    report_after = rng.randrange(len(REPORT_FILES))
    while runner.poll() is None:
        now = phase.read()
        if instance and phase.instance != instance:  # it ended before the chosen moment
            lengths[target] = min(lengths[target], phase.since - entered)
            instance = 0
        if now == "report":
            if phase.report_files >= report_after:
                return now, time.monotonic() - phase.since
        elif now == target:
            if not instance:
                instance, entered = phase.instance, phase.since
                at = rng.uniform(0, lengths[target])
            if time.monotonic() - entered >= at:
                return now, time.monotonic() - entered
        time.sleep(POLL_S)
    return None, 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or Path("reports/soak") / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    env = os.environ | {"HARNESS_CACHE_DIR": str(out / "model-cache")}
    runs = out / "runs"
    quota = {
        p: args.kills // len(PHASES) + (i < args.kills % len(PHASES)) for i, p in enumerate(PHASES)
    }
    hit: Counter[str] = Counter()
    lengths = dict(FIRST_LENGTH_S)

    attempts: list[dict[str, Any]] = []
    target = ""
    for attempt in range(args.kills):
        run_dir = run_folder(runs)
        target = choose_target(hit, quota, available(runs, out / "model-cache" / "models"), target)
        command = ["run", "--resume", str(run_dir)] if run_dir else ["run", "--suite", SUITE]
        if not run_dir:
            command += ["--out", str(runs)]
        log = out / f"attempt-{attempt:02d}.log"
        log.touch()
        started, started_wall = time.monotonic(), time.time()
        runner = harness(command, env, log)
        how = rng.choice([signal.SIGKILL, signal.SIGTERM])
        phase = Phase(log, runs, started_wall)
        at_phase, into_s = kill_in(runner, phase, target, rng, lengths)
        children: list[psutil.Process] = []
        if at_phase is not None:
            children = descendants(runner.pid)
            runner.send_signal(how)
        returncode = runner.wait()
        if at_phase == "report":
            phase.read()
            if phase.report_files == len(REPORT_FILES):  # the signal came after the last file
                at_phase = "exit"
        if at_phase is not None:
            hit[at_phase] += 1
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while any(alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [c.pid for c in children if alive(c)]
        for pid in orphans:  # ours: started by the runner this script started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        attempts.append(
            {
                "attempt": attempt,
                "resumed": run_dir is not None,
                "target": target,
                "phase": at_phase,
                "into_phase_s": round(into_s, 2),
                "report_files_written": phase.report_files if at_phase == "report" else None,
                "signal": how.name if at_phase else None,
                "after_s": round(time.monotonic() - started, 1),
                "returncode": returncode,
                "doing": last_line(log),
                "children": len(children),
                "orphans": orphans,
            }
        )
        print(json.dumps(attempts[-1]), flush=True)
        if at_phase is None and returncode == 0 and hit["report"] >= quota["report"]:
            break  # finished; a finished run is resumed again only to stop its report writing

    run_dir = run_folder(runs)
    final: dict[str, Any] = {}
    if run_dir is not None:
        if attempts[-1]["phase"] is not None:  # killed, if only while writing its reports
            log = out / "final.log"
            final["returncode"] = harness(["run", "--resume", str(run_dir)], env, log).wait()
        records = Journal(run_dir / JOURNAL_NAME).records()
        final |= check_journal(records)
        final["reports_written"] = all((run_dir / name).is_file() for name in REPORT_FILES)
        baseline = out / "baseline"
        log = out / "baseline.log"
        base_env = os.environ | {"HARNESS_CACHE_DIR": str(out / "baseline-cache")}
        final["baseline_returncode"] = harness(
            ["run", "--suite", SUITE, "--out", str(baseline)], base_env, log
        ).wait()
        (base_dir,) = baseline.iterdir()
        base_records = Journal(base_dir / JOURNAL_NAME).records()
        final["baseline_trials_records"] = sum(r["type"] == "trials" for r in base_records)
        compare = subprocess.run(
            [*HARNESS, "compare", str(base_dir), str(run_dir), "--metrics", "deterministic"],
            capture_output=True,
            text=True,
        )
        final["compare_deterministic_returncode"] = compare.returncode
        (out / "compare.txt").write_text(compare.stdout + compare.stderr)
    summary = {
        "kills": sum(a["signal"] is not None for a in attempts),
        "by_signal": Counter(a["signal"] for a in attempts if a["signal"]),
        "by_phase": {p: hit[p] for p in (*PHASES, "exit")},
        "resumes": sum(a["resumed"] for a in attempts) + ("returncode" in final),
        "fresh_starts": sum(not a["resumed"] for a in attempts),
        "orphans": sum(len(a["orphans"]) for a in attempts),
        "folders_without_run_record": sorted(
            folder.name for folder in runs.iterdir() if folder_unresumable(folder)
        ),
        "attempts": attempts,
        "final": final,
        "run_dir": str(run_dir),
    }
    (out / "soak.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "attempts"}, indent=1))
    return 0


def check_journal(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Cells and models journaled twice or never, against the smoke suite's plan."""
    keys = ("dataset", "model", "variant", "backend", "device")
    cells = Counter(tuple(r[k] for k in keys) for r in records if r["type"] == "cell")
    models = Counter(tuple(r[k] for k in keys[:3]) for r in records if r["type"] == "model")
    planned = {
        (plan.key.dataset, plan.key.model, plan.key.variant, cell.backend, cell.device)
        for plan in plan_cells(load_suite(SUITE), get_registry())
        for cell in plan.cells
    }
    return {
        "records": len(records),
        "ends_with_end": records[-1]["type"] == "end",
        "cells": len(cells),
        "cells_twice": sorted(map(list, (k for k, n in cells.items() if n > 1))),
        "cells_missing": sorted(map(list, planned - set(cells))),
        "models_twice": sorted(map(list, (k for k, n in models.items() if n > 1))),
        "end_records": sum(r["type"] == "end" for r in records),
        "statuses": Counter(r["status"] for r in records if r["type"] == "cell"),
        "trials_records": sum(r["type"] == "trials" for r in records),
    }


if __name__ == "__main__":
    sys.exit(main())
