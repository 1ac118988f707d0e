"""Randomized interleaved trials: many cells, on one or two sides, timed turn by turn.

For every side and backend, ``workers`` trial worker processes (:mod:`harness.trial_worker`)
are started and kept alive. Then, round after round, every row (a cell at one batch size) is
visited in a fresh random order; a visit times one short trial of the row on each side, back to
back, in an order decided by a coin. The workers of a round rotate, so each process serves an
equal share of the visits. Machine phases of seconds to minutes then fall on every row and side
alike instead of on whichever ran at that moment (Abedi & Brecht's randomized multiple
interleaved trials), and with two sides, the ratio within a visit cancels them.

With ``serving_rounds``, the cells the suite's ``[serving]`` selects are then visited again, each
visit running the Server and Offline scenarios (:mod:`harness.serving`) once on each side, in
coin order, on the same workers: ``harness ab`` reports both sides' serving figures from the
same machine window.

``harness ab`` visits two sides; ``harness run`` visits its own cells (one side) after measuring
them, so that a stored run carries its own spread between trials.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.machine_load import MachineLoad
from harness.memory import worker_memory_limit_bytes
from harness.trial_worker import TrialWorker
from harness.worker import CellSpec

RowKey = tuple[str, str, str, str, str, int]
"""dataset, model, variant, backend, device, batch size: the identity of a report row."""
CellKey = tuple[str, str, str, str, str]
"""dataset, model, variant, backend, device: a cell, serving's unit (all its batch sizes)."""


@dataclass(frozen=True)
class Side:
    """Who runs a side's workers (an interpreter) and with which backend options."""

    name: str
    python: str = sys.executable
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialConfig:
    workers: int = 3
    """Worker processes per side and backend; visits rotate over them."""
    rounds: int = 48
    """Visits per row."""
    trial_seconds: float = 0.03
    warmup_seconds: float = 0.07
    """Calls before a trial's timing starts: the worker sat idle while the others ran, and the
    process that ran just before may still be busy on the cores (ONNX Runtime's threads spin
    for a while after a call). Measured on MNIST pool, A/A, at the same cost per row
    (docs/reports.md): with 0.03 s of settling ONNX Runtime's batch-8 noise floor was 18%;
    0.07 s settles it (4-6%), and the shorter visit keeps BASE and NEW closer in time than
    0.15 s did, which narrowed the calibrated backend's floor from 4-13% to about 3%."""
    min_iterations: int = 5
    """Calls per trial at least, however long a call takes."""
    slices: int = 1
    """A visit alternates the sides this many times, each slice timing ``trial_seconds /
    slices`` (and at least 2 calls) per side, so that interference shorter than a trial still
    falls on both sides alike; the visit's figure per side is the median over its slices."""
    seed: int = 0
    """Seeds the visiting order and the coin of each visit."""
    timeout_s: float = 600.0
    """Longest wait for one answer of a worker (preparing a nopool model, or a serving visit,
    included)."""
    serving_rounds: int = 0
    """Serving visits per cell the suite's ``[serving]`` selects, after the latency rounds;
    0: none. A visit costs two searches (tens of seconds each), so few fit."""
    memory_limit_mb: int = 0
    """MiB each worker may hold, as the suite's ``worker_memory_limit_mb``: 0 means the same
    default as a cell worker's (:func:`harness.memory.worker_memory_limit_bytes`)."""


@dataclass
class RowTrials:
    key: RowKey
    visits: list[dict[str, Any]] = field(default_factory=list)
    """One record per visit: ``round``, ``worker``, ``order`` (side names in the order they
    ran) and, per side name, the trial's summary (:func:`harness.trial_worker.summarize_trial`)."""


@dataclass
class ServingTrials:
    key: CellKey
    visits: list[dict[str, Any]] = field(default_factory=list)
    """One record per visit: ``round``, ``worker``, ``seed``, ``order`` and, per side name, the
    worker's reply: ``serving`` (``server`` and ``offline``, as a cell record's) and
    ``seconds``."""


@dataclass
class TrialsResult:
    rows: list[RowTrials]
    describe: dict[str, dict[str, Any]]
    """Per side, what each cell's predictor reported (paths, threads, providers)."""
    seconds: dict[str, float]
    """Wall time of starting and preparing the workers (``prepare``), of the trials and of
    the serving visits (``serving``, when there were any)."""
    serving: list[ServingTrials] = field(default_factory=list)
    machine_load: dict[str, Any] = field(default_factory=lambda: MachineLoad().to_dict())
    """What other processes and the hypervisor took of the machine while the trials and
    serving visits ran (:meth:`harness.machine_load.MachineLoad.to_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [{"key": list(row.key), "visits": row.visits} for row in self.rows],
            "serving": [{"key": list(cell.key), "visits": cell.visits} for cell in self.serving],
            "describe": self.describe,
            "seconds": self.seconds,
            "machine_load": self.machine_load,
        }


def combine_slices(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures for a visit from its slices: percentiles by the median over slices,
    the mean weighted by calls."""
    if len(summaries) == 1:
        return summaries[0]
    iterations = sum(s["iterations"] for s in summaries)
    combined: dict[str, Any] = {
        "ok": True,
        "iterations": iterations,
        "mean_ns": sum(s["mean_ns"] * s["iterations"] for s in summaries) / iterations,
        "slices": len(summaries),
    }
    for name in summaries[0]:
        if name.startswith("p") and name.endswith("_ns"):
            combined[name] = statistics.median(s[name] for s in summaries)
    return combined


def journal_record(key: RowKey, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The journal's ``trials`` record of one row: its identity and one summary per trial."""
    identity = ("dataset", "model", "variant", "backend", "device", "batch_size")
    return {"type": "trials", **dict(zip(identity, key, strict=True)), "trials": trials}


def row_key(spec: CellSpec, batch_size: int) -> RowKey:
    return (*cell_key(spec), batch_size)


def cell_key(spec: CellSpec) -> CellKey:
    return (spec.dataset, spec.model, spec.variant, spec.backend, spec.device)


def run_trials(
    cells: Sequence[CellSpec],
    sides: Sequence[Side],
    config: TrialConfig,
    work_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> TrialsResult:
    """Start every side's workers, prepare their cells, and run the interleaved rounds.

    Raises :class:`harness.trial_worker.TrialWorkerError` when a worker dies or cannot prepare.
    """
    by_group: dict[tuple[str, str], list[CellSpec]] = defaultdict(list)
    for spec in cells:
        by_group[(spec.backend, spec.device)].append(spec)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    workers: dict[tuple[str, tuple[str, str]], list[TrialWorker]] = {}
    describe: dict[str, dict[str, Any]] = {side.name: {} for side in sides}
    served: list[ServingTrials] = []
    load = MachineLoad()
    memory_limit = worker_memory_limit_bytes(config.memory_limit_mb)
    try:
        for side in sides:
            for group in by_group:
                workers[(side.name, group)] = [
                    TrialWorker(
                        side.python,
                        work_dir / f"trials-{side.name}-{group[0]}-{group[1]}-{index}.log",
                        config.timeout_s,
                        memory_limit,
                    )
                    for index in range(config.workers)
                ]
        per = "per side and backend" if len(sides) > 1 else "per backend"
        log(f"trials: preparing {len(workers) * config.workers} worker processes ({per})")
        for side in sides:
            for group, specs in by_group.items():
                side_specs = [_with_options(spec, side) for spec in specs]
                for worker in workers[(side.name, group)]:
                    describe[side.name] |= worker.prepare(side_specs)["describe"]
        seconds["prepare"] = time.perf_counter() - started
        rows = [RowTrials(row_key(s, batch_size)) for s in cells for batch_size in s.batch_sizes]
        names = [side.name for side in sides]
        rng = random.Random(config.seed)
        started = time.perf_counter()
        with load.span():
            _visit(rows, names, workers, config, progress, rng)
        seconds["trials"] = time.perf_counter() - started
        serving = [s for s in cells if s.serving.measures(s.dataset, s.variant)]
        if config.serving_rounds and serving:
            started = time.perf_counter()
            with load.span():
                served = _visit_serving(serving, names, workers, config, progress, rng)
            seconds["serving"] = time.perf_counter() - started
    finally:
        for pool in workers.values():
            for worker in pool:
                worker.close()
    return TrialsResult(rows, describe, seconds, served, load.to_record("trial", log))


def _with_options(spec: CellSpec, side: Side) -> CellSpec:
    options = {**spec.backend_options, **side.backend_options.get(spec.backend, {})}
    return CellSpec(**{**asdict(spec), "trained": spec.trained, "backend_options": options})


def _visit(
    rows: list[RowTrials],
    sides: list[str],
    workers: Mapping[tuple[str, tuple[str, str]], list[TrialWorker]],
    config: TrialConfig,
    progress: bool,
    rng: random.Random,
) -> None:
    with _visits_bar(len(rows) * config.rounds, "trials", progress) as bar:
        for round_index in range(config.rounds):
            worker_index = round_index % config.workers
            for row in rng.sample(rows, len(rows)):
                dataset, model, variant, backend, device, batch_size = row.key
                label = f"{dataset}-{model}-{variant}-{backend}-{device}"
                visit: dict[str, Any] = {"round": round_index, "worker": worker_index}
                slices: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
                for slice_index in range(config.slices):
                    order = rng.sample(sides, len(sides))
                    if slice_index == 0:
                        visit["order"] = order
                    for side in order:
                        worker = workers[(side, (backend, device))][worker_index]
                        slices[side].append(
                            worker.trial(
                                label,
                                batch_size,
                                seconds=config.trial_seconds / config.slices,
                                warmup_seconds=config.warmup_seconds / config.slices,
                                min_iterations=max(2, config.min_iterations // config.slices),
                            )
                        )
                for side, summaries in slices.items():
                    visit[side] = combine_slices(summaries)
                row.visits.append(visit)
                bar.update()


def _visits_bar(total: int, desc: str, progress: bool) -> Any:
    """The progress bar of a phase's visits, on stderr like every progress bar here."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="visit",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _visit_serving(
    cells: list[CellSpec],
    sides: list[str],
    workers: Mapping[tuple[str, tuple[str, str]], list[TrialWorker]],
    config: TrialConfig,
    progress: bool,
    rng: random.Random,
) -> list[ServingTrials]:
    """Every round, each cell in a fresh random order, its sides in coin order, on the round's
    workers; a round's seed (the cell's plus the round) gives both sides one arrival schedule."""
    results = {spec.label: ServingTrials(cell_key(spec)) for spec in cells}
    with _visits_bar(len(cells) * config.serving_rounds, "serving", progress) as bar:
        for round_index in range(config.serving_rounds):
            worker_index = round_index % config.workers
            for spec in rng.sample(cells, len(cells)):
                order = rng.sample(sides, len(sides))
                seed = spec.seed + round_index
                visit: dict[str, Any] = {
                    "round": round_index,
                    "worker": worker_index,
                    "seed": seed,
                    "order": order,
                }
                for side in order:
                    worker = workers[(side, (spec.backend, spec.device))][worker_index]
                    reply = worker.serving(spec.label, seed)
                    visit[side] = {"serving": reply["serving"], "seconds": reply["seconds"]}
                results[spec.label].visits.append(visit)
                bar.update()
    return list(results.values())
