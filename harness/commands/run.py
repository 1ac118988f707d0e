"""Run a suite end to end: train or reuse models, measure every cell, write the reports.

Exits 1 when a cell failed, crashed, timed out or ran out of memory (unavailable devices are
not failures).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import EXIT_OK, EXIT_REGRESSION, HarnessError

if TYPE_CHECKING:
    from harness.planner import Shard
    from harness.suite import Suite

DEFAULT_SUITE = "quick"
DEFAULT_OUT = "reports/runs"


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a suite's cells and budget; ``harness ab`` takes them too."""
    for flag, help_text in (
        ("--dataset", "dataset to run (repeatable; overrides the suite)"),
        ("--model", "model to run (repeatable)"),
        ("--variant", "model variant, e.g. pool or nopool (repeatable)"),
        ("--backend", "backend, e.g. keras or onnxruntime (repeatable)"),
        ("--device", "device, e.g. cpu, gpu (keras), cuda (onnxruntime) (repeatable)"),
    ):
        parser.add_argument(flag, action="append", help=help_text)
    parser.add_argument("--batch-size", type=int, action="append", help="batch size (repeatable)")
    parser.add_argument("--steps", type=int, help="training steps for every model")


def suite_from_arguments(args: argparse.Namespace, **changes: Any) -> Suite:
    """The suite named by ``--suite`` with the plan flags (and ``changes``) applied, checked as
    a suite file is."""
    from harness.suite import load_suite, override

    def as_tuple(values: list | None) -> tuple | None:
        return tuple(values) if values else None

    return override(
        load_suite(args.suite or DEFAULT_SUITE),
        datasets=as_tuple(args.dataset),
        models=as_tuple(args.model),
        variants=as_tuple(args.variant),
        backends=as_tuple(args.backend),
        devices=as_tuple(args.device),
        batch_sizes=as_tuple(args.batch_size),
        steps=args.steps,
        **changes,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite",
        help=f"built-in suite (smoke, quick, book) or a .toml path (default: {DEFAULT_SUITE})",
    )
    parser.add_argument("--data-dir", help="dataset folder (default: $HARNESS_DATA_DIR, or cache)")
    parser.add_argument("--out", help=f"folder for run folders (default: {DEFAULT_OUT})")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    add_plan_arguments(parser)
    parser.add_argument("--seed", type=int, help="seed for data order, weights and dropout")
    parser.add_argument("--test-subset", type=int, help="score only the first N test images")
    parser.add_argument("--timeout", type=float, help="seconds before a worker is killed")
    parser.add_argument(
        "--memory-limit",
        type=int,
        metavar="MB",
        help="MiB a worker may hold before it is killed (default: half the machine's memory)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="run shard I of N: this machine's share of the suite's models (merge the N runs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


PLAN_FLAGS = {
    "suite": "--suite",
    "out": "--out",
    "dataset": "--dataset",
    "model": "--model",
    "variant": "--variant",
    "backend": "--backend",
    "device": "--device",
    "batch_size": "--batch-size",
    "steps": "--steps",
    "seed": "--seed",
    "test_subset": "--test-subset",
    "timeout": "--timeout",
    "memory_limit": "--memory-limit",
    "shard": "--shard",
}
"""Flags that shape a new run; a resumed run keeps the plan it started with."""


TENSORFLOW_LOG_LEVEL = "2"
"""TensorFlow's C++ info and warning lines (one per graph optimisation of each ONNX export, no
CUDA driver on a CPU machine) would bury the run's own; errors still show. A user's own
``TF_CPP_MIN_LOG_LEVEL`` wins."""


def run(args: argparse.Namespace) -> int:
    from harness.environment import capture_environment
    from harness.journal import JOURNAL_NAME, Journal
    from harness.paths import model_cache_dir, resolve_data_dir
    from harness.peak import measure_gemm_peak
    from harness.planner import Shard, plan_cells, shard_plans
    from harness.plugins import get_host
    from harness.report import write_run_reports
    from harness.runner import Runner, load_datasets, new_run_dir, suite_of_run

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TENSORFLOW_LOG_LEVEL)  # workers inherit it
    host = get_host()
    data_dir = resolve_data_dir(args.data_dir)
    datasets = {}
    if args.resume:
        given = [flag for name, flag in PLAN_FLAGS.items() if getattr(args, name) is not None]
        if given:
            raise HarnessError(
                f"--resume finishes a run with the plan it started with; drop {', '.join(given)}"
            )
        run_dir = Path(args.resume)
        if not (run_dir / JOURNAL_NAME).is_file():
            raise HarnessError(f"{run_dir}: not a run folder (no {JOURNAL_NAME}) to resume")
        Journal(run_dir / JOURNAL_NAME).repair()  # a run killed mid-write left a torn line
        suite = suite_of_run(run_dir)
        shard = _shard_of_run(run_dir)
    else:
        shard = Shard.parse(args.shard) if args.shard is not None else None
        suite = suite_from_arguments(
            args,
            seed=args.seed,
            test_subset=args.test_subset,
            worker_timeout_s=args.timeout,
            worker_memory_limit_mb=args.memory_limit,
        )
        plans = plan_cells(suite, host.registry())  # a bad plan fails before a run folder exists
        if shard is not None:
            plans = shard_plans(plans, shard.index, shard.count)
        if not suite.synthetic_data:  # and so does bad data
            needed = dict.fromkeys(plan.key.dataset for plan in plans)
            datasets = load_datasets(
                host.registry(), needed, data_dir, not args.no_progress, mirrors=suite.mirrors
            )
        environment, gemm_peak = capture_environment(), measure_gemm_peak().to_dict()
        run_dir = new_run_dir(Path(args.out or DEFAULT_OUT), suite, shard)
    runner = Runner(
        suite,
        host.registry(),
        data_dir,
        run_dir,
        model_cache_dir(),
        progress=not args.no_progress,
        measure_peak=lambda: measure_gemm_peak().to_dict(),
        shard=shard,
        datasets=datasets,
    )
    if not args.resume:  # at once: a run folder without its run record cannot be resumed
        runner.start_journal(environment, gemm_peak, host.record())
    print(f"run folder: {run_dir}", file=sys.stderr)
    try:
        outcome = runner.run()
    except KeyboardInterrupt:
        print(f"stopped; finish it with: harness run --resume {run_dir}", file=sys.stderr)
        raise
    for path in write_run_reports(run_dir):
        print(path)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.cells.items()))
    print(f"cells: {counts}; report: {run_dir / 'report.md'}", file=sys.stderr)
    return EXIT_REGRESSION if outcome.failed else EXIT_OK


def _shard_of_run(run_dir: Path) -> Shard | None:
    """The shard a run was started as, from its ``run`` record: a resumed shard stays one."""
    from harness.journal import JOURNAL_NAME, Journal
    from harness.planner import Shard

    recorded = Journal(run_dir / JOURNAL_NAME).records()[0].get("shard")
    return Shard(recorded["index"], recorded["count"]) if recorded else None
