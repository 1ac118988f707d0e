"""The journal's ``cell`` and ``model`` records: their one definition.

The worker and the runner build these records, the report frames read them and the synthetic
fixtures (:mod:`harness.report.synthetic`) make them through these classes, so a new field is
added here once. ``to_dict()`` is the record as the journal holds it (JSON-ready, the ``type``
field first); ``from_dict()`` reads a journal's record: a key that older journals lack takes its
default (None, or an empty list or mapping), a key this version does not know is kept in
``extra`` and written back by ``to_dict()``, and a record of another type is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from harness.api import ParityTolerance
from harness.errors import DataError
from harness.latency import LatencyStats

CELL_IDENTITY_KEYS = ("dataset", "model", "variant", "backend", "device")
MODEL_IDENTITY_KEYS = ("dataset", "model", "variant")


def _check_type(data: Mapping[str, Any], expected: str) -> None:
    if not isinstance(data, Mapping):
        raise DataError(f"a journal {expected} record must be a mapping, got {type(data).__name__}")
    found = data.get("type")
    if found != expected:
        raise DataError(
            f"not a journal {expected} record: its type is {found!r}, expected {expected!r}"
        )


def _known(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "extra")


def _extra(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in known and key != "type"}


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def latency_stats_from_dict(data: Mapping[str, Any]) -> LatencyStats:
    """A batch's ``stats``; a statistic an older record lacks reads as None (one this version
    does not know is not kept: the statistics are :class:`harness.latency.LatencyStats`)."""
    return LatencyStats(**{f.name: data.get(f.name) for f in fields(LatencyStats)})


def _parity_tolerance(data: Mapping[str, Any]) -> ParityTolerance:
    """A cell's ``parity_tolerance``; a bound it lacks takes today's default."""
    known = {f.name for f in fields(ParityTolerance)}
    return ParityTolerance(**{key: value for key, value in data.items() if key in known})


@dataclass
class BatchRecord:
    """One batch size of a cell: its latency statistics and every raw sample."""

    batch_size: int | None
    stats: LatencyStats | None = None
    samples_ns: list[int] = field(default_factory=list)
    """Every timed call, in nanoseconds."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "stats": self.stats.to_dict() if self.stats is not None else None,
            "samples_ns": self.samples_ns,
        } | self.extra

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRecord:
        stats = data.get("stats")
        return cls(
            batch_size=data.get("batch_size"),
            stats=latency_stats_from_dict(stats) if isinstance(stats, Mapping) else None,
            samples_ns=_list(data.get("samples_ns")),
            extra=_extra(data, _known(cls)),
        )


def empty_phases() -> dict[str, float | None]:
    return {"prepare": None, "accuracy": None, "latency": None}


@dataclass(kw_only=True)
class CellRecord:
    """One backend x device measured on one trained model (the worker's result).

    ``status`` is ``ok``, ``failed``, ``timeout``, ``oom``, ``crashed`` or ``unavailable``
    (:mod:`harness.worker`); a cell that did not measure keeps None in its measurements."""

    TYPE: ClassVar[str] = "cell"

    dataset: str
    model: str
    variant: str
    backend: str
    device: str
    status: str
    error: str | None = None
    prepare_s: float | None = None
    first_inference_ms: float | None = None
    accuracy: float | None = None
    num_eval: int | None = None
    parity_top1_agreement: float | None = None
    parity_max_abs_diff: float | None = None
    parity_ok: bool | None = None
    parity_tolerance: ParityTolerance | None = None
    """The backend's declared tolerance the cell was judged by (None before it was recorded)."""
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    """What the predictor's ``describe()`` returned, every key kept."""
    phases: dict[str, float | None] = field(default_factory=empty_phases)
    """Seconds per phase: ``prepare``, ``accuracy``, ``latency`` and, when measured,
    ``serving``."""
    worker_seconds: float | None = None
    batches: list[BatchRecord] = field(default_factory=list)
    serving: dict[str, Any] | None = None
    """The Server and Offline scenarios (:func:`harness.serving.measure_serving`), or None."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know (a newer journal's), written back unchanged."""

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.model, self.variant, self.backend, self.device)

    def to_dict(self) -> dict[str, Any]:
        """The record as the journal holds it."""
        out: dict[str, Any] = {"type": self.TYPE}
        for name in _known(type(self)):
            out[name] = getattr(self, name)
        out["parity_tolerance"] = (
            asdict(self.parity_tolerance) if self.parity_tolerance is not None else None
        )
        out["describe"] = dict(self.describe)
        out["phases"] = dict(self.phases)
        out["batches"] = [batch.to_dict() for batch in self.batches]
        return out | self.extra

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellRecord:
        """A journal's cell record; keys older journals lack take their defaults."""
        _check_type(data, cls.TYPE)
        known = _known(cls)
        values = {name: data.get(name) for name in known}
        tolerance = data.get("parity_tolerance")
        phases = data.get("phases")
        serving = data.get("serving")
        values |= {
            "parity_tolerance": (
                _parity_tolerance(tolerance) if isinstance(tolerance, Mapping) else None
            ),
            "describe": _mapping(data.get("describe")),
            "phases": dict(phases) if isinstance(phases, Mapping) else empty_phases(),
            "batches": [
                BatchRecord.from_dict(batch)
                for batch in _list(data.get("batches"))
                if isinstance(batch, Mapping)
            ],
            "serving": dict(serving) if isinstance(serving, Mapping) else None,
        }
        return cls(**values, extra=_extra(data, known))


@dataclass
class TrainingRecord:
    """How a model was trained (from the trained-model cache's sidecar)."""

    steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    train_images: int | None = None
    train_seconds: float | None = None
    images_per_s: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    """Per metric (``loss``, ``accuracy``), its value along training."""
    test_accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _known(type(self))} | self.extra

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRecord:
        known = _known(cls)
        values = {name: data.get(name) for name in known}
        values["history"] = _mapping(data.get("history"))
        return cls(**values, extra=_extra(data, known))


@dataclass(kw_only=True)
class ModelRecord:
    """One trained (or reused) model: its counts, training and reference accuracy."""

    TYPE: ClassVar[str] = "model"

    dataset: str
    model: str
    variant: str
    cache_key: str | None = None
    cache_hit: bool | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    """:meth:`harness.counting.ModelCounts.to_dict`: totals and the per-layer table."""
    training: TrainingRecord = field(default_factory=TrainingRecord)
    keras_bytes: int | None = None
    test_accuracy: float | None = None
    """The Keras reference's accuracy on the evaluation images."""
    num_eval: int | None = None
    class_names: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    """Rows: true class; columns: the reference's predicted class."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.dataset, self.model, self.variant)

    def to_dict(self) -> dict[str, Any]:
        """The record as the journal holds it."""
        out: dict[str, Any] = {"type": self.TYPE}
        for name in _known(type(self)):
            out[name] = getattr(self, name)
        out["counts"] = dict(self.counts)
        out["training"] = self.training.to_dict()
        return out | self.extra

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        """A journal's model record; keys older journals lack take their defaults."""
        _check_type(data, cls.TYPE)
        known = _known(cls)
        values = {name: data.get(name) for name in known}
        values |= {
            "counts": _mapping(data.get("counts")),
            "training": TrainingRecord.from_dict(_mapping(data.get("training"))),
            "class_names": _list(data.get("class_names")),
            "confusion": _list(data.get("confusion")),
        }
        return cls(**values, extra=_extra(data, known))
