"""Turn a suite into the work of a run: which models to train, and which cells to measure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.api import Dataset
from harness.errors import HarnessError, SuiteError
from harness.registry import Registry
from harness.suite import Suite

MAX_BATCH_SIZE = 65_536
"""Far above any batch a CNN benchmark times; far below one whose buffers exhaust a machine
(``batch_sizes = [100000000000]`` once grew a worker to 19.6 GB)."""
INPUT_BYTES_PER_VALUE = 4
"""A model's first layer sees the batch as float32, whatever the images' dtype."""


@dataclass(frozen=True, order=True)
class ModelKey:
    """One trained model: a dataset, a model and a variant."""

    dataset: str
    model: str
    variant: str

    def slug(self) -> str:
        return f"{self.dataset}-{self.model}-{self.variant}"


@dataclass(frozen=True)
class CellKey:
    """One measured cell: a trained model on a backend and device (rows per batch size)."""

    model_key: ModelKey
    backend: str
    device: str


@dataclass(frozen=True)
class ModelPlan:
    key: ModelKey
    cells: tuple[CellKey, ...]


def plan_cells(suite: Suite, registry: Registry) -> list[ModelPlan]:
    """Every dataset x model x variant, each with its backend x device cells.

    A model gets the suite's variants it has, so models with different variants can share a
    suite; a variant that no model has is an error.

    A backend is paired only with the suite's devices it knows (``keras`` x ``gpu``,
    ``onnxruntime`` x ``cuda``), so one suite can name both spellings of the GPU. Unknown names
    (in ``backend_options`` too) are errors that list what is known, as is a synthetic-data
    suite naming a dataset that cannot generate its files. Each backend checks its options
    here (``Backend.check_options``), so a misspelt key stops the run before anything trains.
    So are the batch sizes (:func:`check_batch_sizes`).
    """
    datasets = [registry.dataset(name) for name in suite.datasets]
    if suite.synthetic_data:
        cannot = [d.name for d in datasets if type(d).write_synthetic is Dataset.write_synthetic]
        if cannot:
            raise SuiteError(
                f"{suite.source}: synthetic_data = true, but dataset(s) {', '.join(cannot)} "
                "cannot generate data (no write_synthetic); run them on real files"
            )
    backends = [registry.backend(name) for name in suite.backends]
    unknown_options = [
        name for name in suite.backend_options if name not in registry.backends.entries
    ]
    if unknown_options:
        raise SuiteError(
            f"{suite.source}: backend_options for unknown backend(s) "
            f"{', '.join(unknown_options)}; backends: {', '.join(registry.backends.names())}"
        )
    for name in dict.fromkeys([*suite.backends, *suite.backend_options]):
        try:
            registry.backend(name).check_options(suite.backend_options.get(name, {}))
        except SuiteError as exc:
            raise SuiteError(f"{suite.source}: {exc}") from None
    known_devices = {device for backend in backends for device in backend.devices}
    unknown = [device for device in suite.devices if device not in known_devices]
    if unknown:
        raise SuiteError(
            f"{suite.source}: device(s) {', '.join(unknown)} are not known to backends "
            f"{', '.join(suite.backends)}; known: {', '.join(sorted(known_devices))}"
        )
    specs = [registry.model(name) for name in suite.models]
    for variant in suite.variants:
        if not any(variant in spec.variants for spec in specs):
            offered = ", ".join(f"{s.name}: {'/'.join(s.variants)}" for s in specs)
            raise SuiteError(
                f"{suite.source}: no model has variant {variant!r}; variants: {offered}"
            )
    suite.check_cell_keys(
        registry.datasets.names(), {entry.obj.name: entry.obj.variants for entry in registry.models}
    )
    check_batch_sizes(suite, datasets)
    plans: list[ModelPlan] = []
    for dataset in suite.datasets:
        for spec in specs:
            for variant in (v for v in suite.variants if v in spec.variants):
                key = ModelKey(dataset, spec.name, variant)
                cells = tuple(
                    CellKey(key, backend.name, device)
                    for backend in backends
                    for device in suite.devices
                    if device in backend.devices
                )
                plans.append(ModelPlan(key, cells))
    return plans


def check_batch_sizes(suite: Suite, datasets: list[Dataset]) -> None:
    """Refuse a batch size above :data:`MAX_BATCH_SIZE`, or one whose input alone, as float32,
    would not fit in a worker's memory limit: such a cell could only end ``oom`` (or, for
    training, take the runner down) after the models were trained."""
    from harness.memory import MIB, describe_limit, worker_memory_limit_bytes

    limit = worker_memory_limit_bytes(suite.worker_memory_limit_mb)
    named = [("batch_sizes", size) for size in suite.batch_sizes]
    named.append(("training.batch_size", suite.training.batch_size))
    if suite.serving.enabled:
        named += [
            ("serving.offline_batch_sizes", size) for size in suite.serving.offline_batch_sizes
        ]
    for key, size in named:
        if size > MAX_BATCH_SIZE:
            raise SuiteError(
                f"{suite.source}: {key} holds {size:,}, above the largest batch size the "
                f"harness runs, {MAX_BATCH_SIZE:,}"
            )
        for dataset in datasets:
            needs = size * math.prod(dataset.input_shape) * INPUT_BYTES_PER_VALUE
            if needs > limit:
                shape = "x".join(map(str, dataset.input_shape))
                raise SuiteError(
                    f"{suite.source}: {key} holds {size:,}: a batch of {size:,} {dataset.name} "
                    f"images ({shape}) needs {needs / MIB:,.0f} MiB as float32 for its input "
                    f"alone, above the worker memory limit of {describe_limit(limit)}; use a "
                    "smaller batch size or raise worker_memory_limit_mb (--memory-limit)"
                )


@dataclass(frozen=True)
class Shard:
    """One machine's share of a suite run on ``count`` machines; ``index`` counts from 1, as
    ``--shard I/N`` does."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with 1 <= I <= N; anything else is an error naming it."""
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise HarnessError(
                f"--shard {text!r}: expected I/N, shard I of N machines with 1 <= I <= N "
                "(e.g. 1/2 and 2/2)"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def shard_plans(plans: list[ModelPlan], index: int, count: int) -> list[ModelPlan]:
    """Shard ``index`` of ``count`` (from 1): every model trains and is measured on exactly one
    shard, with all its cells, so no two machines train the same model.

    The models, sorted by dataset, model and variant, are dealt to the shards like cards, one
    round forwards and the next backwards (1, 2, ..., N, N, ..., 2, 1, 1, 2, ...): neighbours in
    that order differ only in their variant, so each shard gets a mix of cheap (pool) and dear
    (nopool) models. The split depends only on the suite's models, never on the machine. A shard
    that would get no model is an error: a suite of M models runs on at most M machines.
    """
    if not 1 <= index <= count:
        raise HarnessError(f"shard {index}/{count}: the index must be 1 to {count}")
    if count > len(plans):
        raise HarnessError(
            f"--shard {index}/{count}: the suite has {len(plans)} model(s) (dataset x model x "
            f"variant), so it splits into at most {len(plans)} shards"
        )
    ordered = sorted(plan.key for plan in plans)
    mine = {key for position, key in enumerate(ordered) if _dealt_to(position, count) == index}
    return [plan for plan in plans if plan.key in mine]  # in the suite's order, as unsharded


def _dealt_to(position: int, count: int) -> int:
    """The shard (from 1) dealt the model at ``position``: forwards one round, then backwards."""
    turn = position % (2 * count)
    return 1 + (turn if turn < count else 2 * count - 1 - turn)
