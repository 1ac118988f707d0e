"""Run a suite: train (or reuse) each model, measure each cell in a worker, journal everything.

Every finished model and cell is appended to the run's journal before the next one starts, so
an interrupted run keeps its work and ``resume`` picks up where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import __version__
from harness.api import LabelledImages, TrainedModel
from harness.errors import HarnessError
from harness.journal import JOURNAL_NAME, Journal
from harness.machine_load import MachineLoad
from harness.planner import CellKey, ModelKey, ModelPlan, Shard, plan_cells, shard_plans
from harness.records import CellRecord, ModelRecord, TrainingRecord
from harness.registry import Registry
from harness.suite import Suite, suite_from_dict

if TYPE_CHECKING:
    from harness.worker import CellSpec

FAILED_STATUSES = frozenset({"failed", "timeout", "oom", "crashed"})
SYNTHETIC_SIZES = {"train": 600, "test": 200}
"""Images per split that suites with ``synthetic_data = true`` generate (smoke, CI)."""
MAX_RUN_DIR_ATTEMPTS = 1000
TRIAL_PHASE_WARMUP_SECONDS = 0.15
"""Settling before each trial of a run's trial phase. Kept at the value the run-to-run noise
that ``harness compare`` assumes (``DEFAULT_RUN_NOISE``) was measured with; ``harness ab``
settles for less since its pairs are shorter (:class:`harness.trials.TrialConfig`)."""


@dataclass
class RunOutcome:
    run_dir: Path
    cells: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """How many cells ended in each status."""

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.cells.items() if status in FAILED_STATUSES)


def new_run_dir(runs_root: Path, suite: Suite, shard: Shard | None = None) -> Path:
    """A fresh folder ``<UTC time>-<suite name>`` under ``runs_root``, ending in
    ``-shard<I>of<N>`` for a shard (its name is its run id, and shards started in the same
    second on N machines are merged); a run started in the same second gets ``-2``, ``-3``,
    ... (``mkdir`` is atomic, so two processes never share one)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runs_root.mkdir(parents=True, exist_ok=True)
    base = f"{stamp}-{suite.name}" + (f"-shard{shard.index}of{shard.count}" if shard else "")
    for attempt in range(1, MAX_RUN_DIR_ATTEMPTS + 1):
        run_dir = runs_root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise HarnessError(
        f"{runs_root}: {MAX_RUN_DIR_ATTEMPTS} run folders named {base}[-N] exist already"
    )


def load_datasets(
    registry: Registry,
    names: Iterable[str],
    data_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    mirrors: dict[str, str] | None = None,
) -> dict[str, tuple[LabelledImages, LabelledImages]]:
    """Fetch what is missing (from the suite's ``mirrors`` too) and load both splits of each
    dataset, checked: ``harness run`` does it before it makes the run folder, so a data error
    (exit 2) leaves no run folder behind, and hands the result to :class:`Runner`, so nothing
    is read twice."""
    from harness.download import fetch_missing

    loaded = {}
    for name in names:
        dataset = registry.dataset(name)
        fetch_missing(dataset, data_dir, progress=progress, mirrors=mirrors)
        log(f"loading {name} from {data_dir}")
        train = dataset.load_checked(data_dir, "train")
        loaded[name] = (train, dataset.load_checked(data_dir, "test"))
    return loaded


def _identity(record: dict[str, Any]) -> tuple[str, ...]:
    keys = ("dataset", "model", "variant", "backend", "device")
    return tuple(record[k] for k in keys if k in record)


def suite_of_run(run_dir: Path) -> Suite:
    """The suite a run was started with, read back from its journal (for ``--resume``)."""
    records = Journal(run_dir / JOURNAL_NAME).records()
    if not records or records[0]["type"] != "run" or not isinstance(records[0].get("suite"), dict):
        raise HarnessError(
            f"{run_dir / JOURNAL_NAME}: does not start with a 'run' record holding the suite"
        )
    return suite_from_dict(records[0]["suite"], source=f"{run_dir / JOURNAL_NAME} (resumed)")


class Runner:
    """Executes one run of a suite into ``run_dir``."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        data_dir: Path,
        run_dir: Path,
        cache_root: Path,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
        progress: bool = True,
        measure_peak: Callable[[], dict[str, Any]] | None = None,
        shard: Shard | None = None,
        datasets: dict[str, tuple[LabelledImages, LabelledImages]] | None = None,
    ) -> None:
        """``measure_peak`` measures the GEMM peak again when the run ends: on a shared machine
        one measurement can come out low, and the reports take the best of start and end.
        ``shard`` runs only that shard's models (``harness run --shard``). ``datasets`` are
        splits :func:`load_datasets` read already; the run loads any other it needs."""
        self.suite = suite
        self.registry = registry
        self.data_dir = data_dir
        self.run_dir = run_dir
        self.cache_root = cache_root
        self.log = log
        self.progress = progress
        self.measure_peak = measure_peak
        self.shard = shard
        self.journal = Journal(run_dir / JOURNAL_NAME)
        self.phases: dict[str, float] = defaultdict(float)
        self.latency_load = MachineLoad()
        """What others took of the machine while this invocation's cell workers ran."""
        self.trials_load: dict[str, Any] = MachineLoad().to_dict()
        self._loaded = dict(datasets or {})

    def run(self) -> RunOutcome:
        started = time.perf_counter()
        plans = plan_cells(self.suite, self.registry)
        if self.shard is not None:
            plans = shard_plans(plans, self.shard.index, self.shard.count)
        outcome = RunOutcome(self.run_dir)
        done_models, done_cells = self._journal_state(outcome)
        if self._ended():  # stopped while writing its reports: they are all that is left
            self.log("the run ended already; its reports are written again")
            return outcome
        untimed = self._ok_cells_without_trials() if self.suite.latency.trial_rounds else set()
        measured: list[CellSpec] = []  # ok cells whose rows the trial phase times again
        if self.suite.synthetic_data:
            self._write_synthetic_data()
        by_dataset: dict[str, list[ModelPlan]] = defaultdict(list)
        for plan in plans:
            by_dataset[plan.key.dataset].append(plan)
        for dataset_name, dataset_plans in by_dataset.items():
            pending = [
                p
                for p in dataset_plans
                if p.key not in done_models
                or any(c not in done_cells or c in untimed for c in p.cells)
            ]
            if not pending:
                continue
            train, test = self._load(dataset_name)
            for plan in pending:
                todo = [cell for cell in plan.cells if cell not in done_cells]
                trained, eval_path = self._prepare_model(
                    plan.key, train, test, plan.key in done_models, {c.backend for c in todo}
                )
                for cell in todo:
                    with self.latency_load.span():
                        record = self._measure(cell, trained, eval_path)
                    self.journal.append(record)
                    outcome.cells[record["status"]] += 1
                    if record["status"] == "ok":
                        measured.append(self.cell_spec(cell, trained, eval_path))
                measured += [
                    self.cell_spec(c, trained, eval_path) for c in plan.cells if c in untimed
                ]
                if not self.suite.latency.trial_rounds:
                    eval_path.unlink()  # tens of MB per model, made anew on resume
        if measured and self.suite.latency.trial_rounds:
            self._trial_phase(measured)
        end: dict[str, Any] = {"type": "end"}
        if self.measure_peak is not None:
            end["gemm_peak"] = self.measure_peak()
        end |= {
            "finished": datetime.now(UTC).isoformat(),
            "wall_seconds": time.perf_counter() - started,
            "phases": dict(self.phases),
            "machine_load": {
                "latency": self.latency_load.to_record("latency", self.log),
                "trials": self.trials_load,
            },
        }
        self.journal.append(end)
        return outcome

    def _trial_phase(self, cells: list[CellSpec]) -> None:
        """Time every measured row again in short trials, interleaved in random order across
        cells and spread over several worker processes, and journal one ``trials`` record per
        row: the trials' spread is what ``harness compare`` judges a stored run's latency by.
        A failure here costs the trials, never the cells already measured."""
        from harness.trial_worker import TrialWorkerError
        from harness.trials import Side, TrialConfig, journal_record, run_trials

        latency = self.suite.latency
        config = TrialConfig(
            workers=latency.trial_workers,
            rounds=latency.trial_rounds,
            trial_seconds=latency.trial_seconds,
            warmup_seconds=TRIAL_PHASE_WARMUP_SECONDS,
            seed=self.suite.seed,
            timeout_s=self.suite.worker_timeout_s,
            memory_limit_mb=self.suite.worker_memory_limit_mb,
        )
        try:
            result = run_trials(
                cells, [Side("run")], config, self.run_dir / "work", self.progress, self.log
            )
        except TrialWorkerError as exc:
            self.log(f"warning: the trial phase failed, so this run has no trials: {exc}")
            return
        finally:
            for path in {cell.eval_path for cell in cells}:
                path.unlink(missing_ok=True)
        self.phases["trials"] += sum(result.seconds.values())
        self.trials_load = result.machine_load
        for row in result.rows:
            trials = [{"round": v["round"], "worker": v["worker"], **v["run"]} for v in row.visits]
            self.journal.append(journal_record(row.key, trials))

    def prepare_models(self) -> list[tuple[ModelPlan, TrainedModel, Path]]:
        """Train or reuse every model of the plan and write its evaluation inputs, measuring
        nothing: for ``harness ab``, which times the cells itself. The caller deletes the
        evaluation files when done."""
        if self.suite.synthetic_data:
            self._write_synthetic_data()
        prepared = []
        loaded: dict[str, tuple[LabelledImages, LabelledImages]] = {}
        for plan in plan_cells(self.suite, self.registry):
            if plan.key.dataset not in loaded:
                loaded[plan.key.dataset] = self._load(plan.key.dataset)
            train, test = loaded[plan.key.dataset]
            backends = {cell.backend for cell in plan.cells}
            trained, eval_path = self._prepare_model(plan.key, train, test, False, backends)
            prepared.append((plan, trained, eval_path))
        return prepared

    def cell_spec(self, cell: CellKey, trained: TrainedModel, eval_path: Path) -> CellSpec:
        """What a worker needs to measure ``cell`` with this suite's settings."""
        from harness.worker import CellSpec

        key = cell.model_key
        return CellSpec(
            dataset=key.dataset,
            model=key.model,
            variant=key.variant,
            backend=cell.backend,
            device=cell.device,
            trained=trained,
            eval_path=eval_path,
            batch_sizes=self.suite.batch_sizes,
            latency=self.suite.latency,
            backend_options=self.suite.backend_options.get(cell.backend, {}),
            seed=self.suite.seed,
            serving=self.suite.serving,
        )

    def start_journal(
        self,
        environment: dict[str, Any],
        gemm_peak: dict[str, Any],
        plugins: dict[str, dict[str, str | None]],
    ) -> None:
        self.journal.append(
            {
                "type": "run",
                "run_id": self.run_dir.name,
                "started": datetime.now(UTC).isoformat(),
                "harness_version": __version__,
                "suite": self.suite.to_dict(),
                "environment": environment,
                "gemm_peak": gemm_peak,
                "plugins": plugins,
            }
            | ({"shard": self.shard.to_dict()} if self.shard is not None else {})
        )

    def _journal_state(self, outcome: RunOutcome) -> tuple[set[ModelKey], set[CellKey]]:
        """What a resumed run already finished; its cells count in ``outcome``."""
        models: set[ModelKey] = set()
        cells: set[CellKey] = set()
        for record in self.journal.records():
            if record["type"] == "model":
                models.add(ModelKey(*_identity(record)))
            elif record["type"] == "cell":
                dataset, model, variant, backend, device = _identity(record)
                cells.add(CellKey(ModelKey(dataset, model, variant), backend, device))
                outcome.cells[record["status"]] += 1
        return models, cells

    def _ended(self) -> bool:
        """Whether the journal holds the run's ``end`` record: its wall time and phases stay
        those of the run, not of an invocation that found nothing to do."""
        return any(record["type"] == "end" for record in self.journal.records())

    def _ok_cells_without_trials(self) -> set[CellKey]:
        """Cells measured ok by an earlier invocation that was stopped before its trial phase
        journaled their rows: this one times them with its own cells, so a resumed run has the
        trials an uninterrupted one has."""
        ok: set[CellKey] = set()
        timed: set[CellKey] = set()
        for record in self.journal.records():
            if record["type"] in ("cell", "trials"):
                dataset, model, variant, backend, device = _identity(record)
                cell = CellKey(ModelKey(dataset, model, variant), backend, device)
                if record["type"] == "trials":
                    timed.add(cell)
                elif record["status"] == "ok":
                    ok.add(cell)
        return ok - timed

    def _write_synthetic_data(self) -> None:
        self.data_dir = self.run_dir / "synthetic-data"
        self.log(f"writing generated data in the canonical formats to {self.data_dir}")
        for name in self.suite.datasets:
            self.registry.dataset(name).write_synthetic(
                self.data_dir,
                train=SYNTHETIC_SIZES["train"],
                test=SYNTHETIC_SIZES["test"],
                seed=self.suite.seed,
            )

    def _load(self, dataset_name: str) -> tuple[LabelledImages, LabelledImages]:
        if dataset_name in self._loaded:  # let go of it once used
            return self._loaded.pop(dataset_name)
        loaded = load_datasets(
            self.registry,
            [dataset_name],
            self.data_dir,
            self.progress,
            self.log,
            mirrors=self.suite.mirrors,
        )
        return loaded[dataset_name]

    def _prepare_model(
        self,
        key: ModelKey,
        train: LabelledImages,
        test: LabelledImages,
        journaled: bool,
        backends: set[str],
    ) -> tuple[TrainedModel, Path]:
        """Train or reuse the model; journal its counts and reference accuracy; write the
        evaluation inputs every worker of this model reads; let ``backends`` convert it while
        it is in memory."""
        import keras
        from sklearn.metrics import confusion_matrix

        from harness.counting import count_model
        from harness.model_cache import TrainedModelCache, holding, load_model
        from harness.training import predict_logits

        dataset = self.registry.dataset(key.dataset)
        spec = self.registry.model(key.model)
        steps = self.suite.training.steps_for(key.dataset, key.variant, model=key.model)
        t0 = time.perf_counter()
        cached = TrainedModelCache(self.cache_root).get_or_train(
            spec,
            key.variant,
            dataset,
            train,
            test,
            self.suite.training,
            steps=steps,
            seed=self.suite.seed,
            progress=self.progress,
            log=lambda line: self.log(f"{key.slug()}: {line}"),
        )
        self.phases["train"] += time.perf_counter() - t0
        state = "reused from cache" if cached.hit else "trained"
        self.log(f"{key.slug()}: {state} ({cached.trained.artifact_dir})")

        t0 = time.perf_counter()
        model = cached.model if cached.model is not None else load_model(cached.trained.keras_path)
        eval_set = test
        if self.suite.test_subset:
            n = self.suite.test_subset
            eval_set = LabelledImages(test.images[:n], test.labels[:n])
        if cached.test_logits is not None:  # just trained: scored on the test set already
            logits = cached.test_logits[: len(eval_set)]
        else:
            logits = predict_logits(model, eval_set.images)
        predictions = logits.argmax(axis=1)
        eval_path = self.run_dir / "work" / f"{key.slug()}.npz"
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            eval_path,
            images=eval_set.images,
            labels=eval_set.labels,
            reference_logits=logits.astype(np.float32),
        )
        if not journaled:
            labels = range(dataset.num_classes)
            confusion = confusion_matrix(eval_set.labels, predictions, labels=labels)
            self.journal.append(
                ModelRecord(
                    dataset=key.dataset,
                    model=key.model,
                    variant=key.variant,
                    cache_key=cached.trained.cache_key,
                    cache_hit=cached.hit,
                    counts=count_model(model).to_dict(),
                    training=_training_summary(cached.record),
                    keras_bytes=cached.trained.keras_path.stat().st_size,
                    test_accuracy=float((predictions == eval_set.labels).mean()),
                    num_eval=len(eval_set),
                    class_names=list(dataset.class_names),
                    confusion=confusion.tolist(),
                ).to_dict()
            )
        self.phases["accuracy"] += time.perf_counter() - t0
        trained = cached.trained
        with holding(trained.keras_path, model):
            self._convert(trained, backends)
        del model, cached  # a nopool model holds hundreds of MB; the workers load their own
        keras.backend.clear_session()
        return trained, eval_path

    def _convert(self, trained: TrainedModel, backends: set[str]) -> None:
        """Let each backend make its artifacts here, where TensorFlow is already loaded; a
        failure only warns, since the worker's ``prepare`` retries and records it."""
        for name in sorted(backends):
            t0 = time.perf_counter()
            try:
                self.registry.backend(name).convert(
                    trained, self.suite.backend_options.get(name, {})
                )
            except Exception as exc:
                self.log(
                    f"warning: {name} could not convert {trained.artifact_dir.name} ({exc}); "
                    "its workers will try again"
                )
            self.phases["export"] += time.perf_counter() - t0

    def _measure(self, cell: CellKey, trained: TrainedModel, eval_path: Path) -> dict[str, Any]:
        from harness.memory import describe_limit, worker_memory_limit_bytes
        from harness.worker import run_cell_subprocess

        key = cell.model_key
        spec = self.cell_spec(cell, trained, eval_path)
        label = f"{key.slug()} on {cell.backend}/{cell.device}"
        limit = worker_memory_limit_bytes(self.suite.worker_memory_limit_mb)
        self.log(
            f"{label}: measuring in a worker (timeout {self.suite.worker_timeout_s:.0f} s, "
            f"memory limit {describe_limit(limit)})"
        )
        record = run_cell_subprocess(
            spec, self.suite.worker_timeout_s, self.run_dir / "work", limit
        )
        cell_record = CellRecord.from_dict(record)
        for phase, seconds in cell_record.phases.items():
            if seconds is not None:
                self.phases[phase] += seconds
        p50s = ", ".join(
            f"batch {b.batch_size}: p50 {b.stats.p50_ms:.3f} ms"
            for b in cell_record.batches
            if b.stats is not None
        )
        error = f": {cell_record.error}" if cell_record.error else ""
        outcome = f"{cell_record.status}{_parity_failure(cell_record)}{error}"
        self.log(f"{label}: {outcome}{' (' + p50s + ')' if p50s else ''}")
        return record


def _parity_failure(record: CellRecord) -> str:
    """What the console says of a cell whose logits are outside its backend's tolerance: its
    status stays ``ok`` (it was measured), so this is the only place a person sees it live."""
    if record.parity_ok is not False:
        return ""
    return (
        f", parity FAILED (agreement {record.parity_top1_agreement:.2%}, max diff "
        f"{record.parity_max_abs_diff:.3g}, tolerance {record.parity_tolerance})"
    )


def _training_summary(sidecar: dict[str, Any]) -> TrainingRecord:
    """The model record's ``training``, from the trained-model cache's sidecar."""
    training = sidecar["training"]
    return TrainingRecord(
        steps=training["steps"],
        batch_size=training["batch_size"],
        learning_rate=sidecar["key_inputs"]["recipe"]["learning_rate"],
        seed=training["seed"],
        train_images=training["train_images"],
        train_seconds=training["seconds"],
        images_per_s=training["images_per_second"],
        history=training["history"],
        test_accuracy=sidecar["test_accuracy"],
    )
