"""Kill a real run at random moments, resume it each time, and count what was lost.

Starts ``harness run --suite smoke`` (a fresh model cache, so training is among the moments
hit), kills the runner after a random delay with SIGKILL or SIGTERM (a coin), checks that every
process the runner had started is gone within seconds, and resumes with ``harness run
--resume``; ``--kills`` times, then lets the last resume finish. Then it checks the journal
reads, that no cell or model was journaled twice and none is missing, and compares the run with
an uninterrupted one (``harness compare --metrics deterministic``).

    python benchmarks/soak_resume.py [--kills 20] [--max-delay 40] [--seed 0] [--out DIR]

Writes each attempt's output and ``soak.json`` into the output folder and prints the counts.
Minutes: about two smoke runs plus a start-up (imports, GEMM peak) per kill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
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
from harness.planner import plan_cells
from harness.plugins import get_registry
from harness.suite import load_suite

SUITE = "smoke"
HARNESS = (sys.executable, "-m", "harness")
ORPHAN_GRACE_S = 15.0
"""How long the processes a killed runner started may take to go (PDEATHSIG is immediate; a
SIGTERMed runner kills its worker's group before it exits)."""


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--min-delay", type=float, default=2.0)
    parser.add_argument("--max-delay", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or Path("reports/soak") / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    env = os.environ | {"HARNESS_CACHE_DIR": str(out / "model-cache")}
    runs = out / "runs"

    attempts: list[dict[str, Any]] = []
    run_dir: Path | None = None
    for attempt in range(args.kills):
        run_dir = run_folder(runs)
        command = ["run", "--resume", str(run_dir)] if run_dir else ["run", "--suite", SUITE]
        if not run_dir:
            command += ["--out", str(runs)]
        log = out / f"attempt-{attempt:02d}.log"
        started = time.monotonic()
        runner = harness(command, env, log)
        delay = rng.uniform(args.min_delay, args.max_delay)
        how = rng.choice([signal.SIGKILL, signal.SIGTERM])
        children: list[psutil.Process] = []
        while runner.poll() is None and time.monotonic() - started < delay:
            children = descendants(runner.pid) or children
            time.sleep(0.2)
        finished = runner.poll() is not None
        if not finished:
            children = descendants(runner.pid) or children
            runner.send_signal(how)
        returncode = runner.wait()
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
                "signal": None if finished else how.name,
                "after_s": round(time.monotonic() - started, 1),
                "returncode": returncode,
                "doing": last_line(log),
                "children": len(children),
                "orphans": orphans,
            }
        )
        print(json.dumps(attempts[-1]), flush=True)
        if finished and returncode == 0:
            break

    run_dir = run_folder(runs)
    final: dict[str, Any] = {}
    if run_dir is not None:
        records = Journal(run_dir / JOURNAL_NAME).records()
        if records[-1].get("type") != "end":
            log = out / "final.log"
            final["returncode"] = harness(["run", "--resume", str(run_dir)], env, log).wait()
            records = Journal(run_dir / JOURNAL_NAME).records()
        final |= check_journal(records)
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
        "statuses": Counter(r["status"] for r in records if r["type"] == "cell"),
        "trials_records": sum(r["type"] == "trials" for r in records),
    }


if __name__ == "__main__":
    sys.exit(main())
