"""Suites: TOML files that say what a run measures. Built-in ones ship in ``harness/suites``."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import SuiteError

BUILTIN_SUITES = ("smoke", "quick", "book")
MAX_SEED = 2**32 - 1
"""NumPy's legacy seeding, which Keras uses, takes 0 .. 2**32 - 1."""
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
"""A suite's name ends its run folder's name: no path separator, no leading dot, no control
character, nothing a shell or a file system treats specially."""
CELL_KEYS = ("DATASET.MODEL.VARIANT", "MODEL.VARIANT", "DATASET.VARIANT", "VARIANT", "DATASET")
"""The forms of a key of ``[training.steps]`` and of ``serving.p99_bound_ms`` besides
``default``, the most specific first: a cell takes the value of the first key that names it."""


@dataclass(frozen=True)
class TrainingRecipe:
    """How models are trained (the book's recipe by default: Adam, 1e-4, batch 50)."""

    learning_rate: float = 1e-4
    batch_size: int = 50
    dropout: float = 0.5
    steps: dict[str, int] = field(default_factory=lambda: {"default": 1000})
    """Step budget by key (:data:`CELL_KEYS`, then ``default``): models of different cost
    that share variant names (``pool``) get budgets of their own through ``model.variant``."""
    train_subset: int = 0
    """Train on only the first N training images (0: all of them)."""

    def steps_for(self, dataset: str, variant: str, model: str | None = None) -> int:
        """The budget of the most specific key naming this model (:data:`CELL_KEYS`); without
        ``model``, the keys that name a model are passed over."""
        by_model = (f"{dataset}.{model}.{variant}", f"{model}.{variant}") if model else ()
        for key in (*by_model, f"{dataset}.{variant}", variant, dataset, "default"):
            if key in self.steps:
                return self.steps[key]
        raise SuiteError(f"training.steps has no entry for {dataset}.{variant} and no 'default'")


@dataclass(frozen=True)
class LatencyConfig:
    """The dual stopping rule: at least N iterations AND at least T seconds, with a cap."""

    warmup_iterations: int = 10
    warmup_seconds: float = 0.5
    min_iterations: int = 100
    min_seconds: float = 2.0
    max_iterations: int = 100_000
    max_seconds: float = 60.0
    trial_rounds: int = 0
    """After every cell is measured, time each row again in this many short trials,
    interleaved across cells (:mod:`harness.trials`); ``harness compare`` judges by them.
    0: no trial phase."""
    trial_workers: int = 2
    """Worker processes per backend in the trial phase; trials rotate over them."""
    trial_seconds: float = 0.1
    """Timed seconds per trial (and at least 5 calls)."""


@dataclass(frozen=True)
class ServingConfig:
    """MLPerf-style Server and Offline scenarios (:mod:`harness.serving`), off by default: they
    add about ``(search_steps + 2) x max(min_seconds, min_queries / rate)`` seconds per cell."""

    enabled: bool = False
    datasets: tuple[str, ...] = ()
    """Only cells of these datasets (empty: every dataset)."""
    variants: tuple[str, ...] = ()
    """Only cells of these model variants (empty: every variant)."""
    p99_bound_ms: dict[str, float] = field(default_factory=lambda: {"default": 100.0})
    """The Server scenario's p99 bound; keys looked up as ``dataset.variant``, ``variant``,
    ``dataset``, ``default``; a table without ``default`` keeps 100 ms for the rest."""
    concurrency: int = 1
    """Server queries in flight at once (threads calling ``predict``)."""
    min_queries: int = 662
    """Per rate; 662 is MLPerf LoadGen's minimum for a p99 claim at 99% confidence."""
    min_seconds: float = 2.0
    """Per rate: at least this long a schedule."""
    rate_low: float = 0.1
    rate_high: float = 1.0
    """The rate search's range, as fractions of the capacity a closed loop suggests
    (``concurrency`` / mean seconds per call)."""
    search_steps: int = 6
    """Bisection steps between ``rate_low`` and ``rate_high`` (log-space midpoints)."""
    offline_batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    offline_concurrency: tuple[int, ...] = (1, 2)
    """Threads calling ``predict`` at once in the Offline scenario."""
    offline_seconds: float = 1.0
    """Per Offline configuration."""

    def measures(self, dataset: str, variant: str) -> bool:
        return (
            self.enabled
            and (not self.datasets or dataset in self.datasets)
            and (not self.variants or variant in self.variants)
        )

    def bound_for(self, dataset: str, variant: str, model: str | None = None) -> float:
        """The bound of the most specific key naming this cell, keyed as ``training.steps``
        is (:data:`CELL_KEYS`); without ``model``, the keys that name a model are passed over."""
        by_model = (f"{dataset}.{model}.{variant}", f"{model}.{variant}") if model else ()
        for key in (*by_model, f"{dataset}.{variant}", variant, dataset, "default"):
            if key in self.p99_bound_ms:
                return self.p99_bound_ms[key]
        raise SuiteError(f"serving.p99_bound_ms has no entry for {dataset}.{variant}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServingConfig:
        lists = ("datasets", "variants", "offline_batch_sizes", "offline_concurrency")
        return cls(**{key: tuple(v) if key in lists else v for key, v in data.items()})


@dataclass(frozen=True)
class Suite:
    """Everything a run measures: the plan's axes and how to train and time."""

    name: str
    description: str = ""
    datasets: tuple[str, ...] = ("mnist", "cifar10")
    models: tuple[str, ...] = ("book_cnn",)
    variants: tuple[str, ...] = ("pool", "nopool")
    backends: tuple[str, ...] = ("keras", "onnxruntime")
    devices: tuple[str, ...] = ("cpu",)
    batch_sizes: tuple[int, ...] = (1, 32)
    seed: int = 0
    test_subset: int = 0
    """Measure accuracy on only the first N test images (0: the full test set)."""
    worker_timeout_s: float = 1800.0
    worker_memory_limit_mb: int = 0
    """MiB of resident memory a worker (with the processes it starts) may hold before it is
    killed and its cell is ``oom``; 0: half the machine's memory (:mod:`harness.memory`)."""
    synthetic_data: bool = False
    """Use tiny generated data in the canonical formats instead of a data folder (CI, tests)."""
    training: TrainingRecipe = field(default_factory=TrainingRecipe)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-backend settings, e.g. ``{"onnxruntime": {"intra_op_threads": 2}}``."""
    mirrors: dict[str, str] = field(default_factory=dict)
    """Base URLs tried before a dataset's own locations when its files are missing: by dataset
    name, or ``default`` for every dataset (after ``$HARNESS_MIRROR``, which wins)."""
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, recorded with every run."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TrainingRecipe | LatencyConfig | ServingConfig):
                value = {g.name: _plain(getattr(value, g.name)) for g in fields(value)}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def check_cell_keys(
        self, datasets: Collection[str], models: Mapping[str, Collection[str]]
    ) -> None:
        """Refuse a ``training.steps`` (or, with serving on, ``serving.p99_bound_ms``) key that
        names no dataset, model or variant known here (``models``: each model's variants), so
        that a misspelt key is an error before anything trains, not a value silently unused."""
        tables = {"training.steps": self.training.steps}
        if self.serving.enabled:  # the serving bounds are keyed the same way
            tables["serving.p99_bound_ms"] = self.serving.p99_bound_ms
        for table, keys in tables.items():
            for key in keys:
                problem = _cell_key_problem(key, datasets, models)
                if problem:
                    offered = ", ".join(f"{m}: {'/'.join(v)}" for m, v in sorted(models.items()))
                    raise SuiteError(
                        f"{self.source}: {table} key {key!r}: {problem}; keys are default, "
                        f"{', '.join(CELL_KEYS)}; datasets: {', '.join(sorted(datasets))}; "
                        f"models and their variants: {offered}"
                    )


def _cell_key_problem(
    key: str, datasets: Collection[str], models: Mapping[str, Collection[str]]
) -> str | None:
    """What in ``key`` names nothing known, or None when it fits one of :data:`CELL_KEYS`."""
    variants = {variant for offered in models.values() for variant in offered}
    *head, variant = key.split(".")
    if len(head) > 2:
        return "more than three names"
    if not head:
        if key == "default" or key in datasets or key in variants:
            return None
        return "neither default nor a dataset or a variant"
    if len(head) == 2 and head[0] not in datasets:
        return f"{head[0]!r} is not a dataset"
    first = head[-1]
    if first in models:
        offered = models[first]
        if variant not in offered:
            return (
                f"model {first!r} has no variant {variant!r} (its variants: {', '.join(offered)})"
            )
        return None
    if len(head) == 2:
        return f"{first!r} is not a model"
    if first not in datasets:
        return f"{first!r} is neither a dataset nor a model"
    return None if variant in variants else f"no model has variant {variant!r}"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_TOP_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "description": (str,),
    "datasets": (list,),
    "models": (list,),
    "variants": (list,),
    "backends": (list,),
    "devices": (list,),
    "batch_sizes": (list,),
    "seed": (int,),
    "test_subset": (int,),
    "worker_timeout_s": (int, float),
    "worker_memory_limit_mb": (int,),
    "synthetic_data": (bool,),
    "training": (dict,),
    "latency": (dict,),
    "serving": (dict,),
    "backend_options": (dict,),
    "mirrors": (dict,),
}


_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"be between 0 and {MAX_SEED}"),
    "test_subset": (lambda v: v >= 0, "be 0 (all) or a number of images"),
    "worker_timeout_s": (lambda v: v > 0, "be positive"),
    "worker_memory_limit_mb": (lambda v: v >= 0, "be 0 (half the machine's memory) or MiB"),
    "training.learning_rate": (lambda v: v > 0, "be positive"),
    "training.batch_size": (lambda v: v >= 1, "be at least 1"),
    "training.dropout": (lambda v: 0 <= v < 1, "be at least 0 and below 1 (a drop rate)"),
    "training.train_subset": (lambda v: v >= 0, "be 0 (all) or a number of images"),
    "latency.max_iterations": (lambda v: v >= 1, "be at least 1"),
    "latency.max_seconds": (lambda v: v > 0, "be positive"),
    "latency.trial_workers": (lambda v: v >= 1, "be at least 1"),
    "latency.trial_seconds": (lambda v: v > 0, "be positive"),
    "serving.concurrency": (lambda v: v >= 1, "be at least 1"),
    "serving.min_queries": (lambda v: v >= 1, "be at least 1"),
    "serving.rate_low": (lambda v: 0 < v < 10, "be above 0 and below 10 (x capacity)"),
    "serving.rate_high": (lambda v: 0 < v <= 10, "be above 0 and at most 10 (x capacity)"),
    "serving.search_steps": (lambda v: v >= 1, "be at least 1"),
    "serving.offline_seconds": (lambda v: v > 0, "be positive"),
}
"""What each number may be beyond its type, by dotted key; any other number must not be
negative. Every float must be finite as well (TOML and ``float()`` read ``nan`` and ``inf``)."""


def _check_type(source: str, key: str, value: Any, allowed: tuple[type, ...]) -> None:
    # bool is an int in Python; a suite saying `seed = true` is still wrong.
    is_wrong_bool = isinstance(value, bool) and bool not in allowed
    if is_wrong_bool or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise SuiteError(f"{source}: key {key!r} must be {names}, got {value!r}")
    _check_finite(source, key, value)


def _check_finite(source: str, key: str, value: Any) -> None:
    """Reject nan and inf anywhere in ``value``: they pass every range check, disable
    timeouts and make the run's JSON unwritable."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SuiteError(f"{source}: {key} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for sub, item in value.items():
            _check_finite(source, f"{key}.{sub}", item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_finite(source, key, item)


def _check_limit(source: str, key: str, value: int | float) -> None:
    allowed, says = _LIMITS.get(key, (lambda v: v >= 0, "not be negative"))
    if not allowed(value):
        raise SuiteError(f"{source}: {key} must {says}, got {value!r}")


def _check_unique(source: str, key: str, values: list[Any]) -> None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise SuiteError(
            f"{source}: {key} lists {', '.join(repeated)} more than once ({values!r}); "
            "give each entry once"
        )


def _check_name(source: str, name: str) -> None:
    if not SAFE_NAME.fullmatch(name):
        raise SuiteError(
            f"{source}: name {name!r} cannot name a run folder; allowed: letters, digits and "
            "'.', '_', '+', '-', starting with a letter or a digit, at most 100 characters"
        )


def _section(source: str, prefix: str, data: dict[str, Any], cls: type) -> Any:
    known = {f.name: f for f in fields(cls)}
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise SuiteError(
                f"{source}: unknown key {prefix}.{key!r}; allowed: {', '.join(sorted(known))}"
            )
        default = getattr(defaults, key)
        if isinstance(default, dict):
            _check_type(source, f"{prefix}.{key}", value, (dict, int))
            if isinstance(value, int):
                value = {"default": value}
            value = _dotted(source, f"{prefix}.{key}", value)
            for sub, n in value.items():
                _check_type(source, f"{prefix}.{key}.{sub}", n, (int,))
                if n < 1:
                    raise SuiteError(f"{source}: {prefix}.{key}.{sub} must be at least 1, got {n}")
        elif isinstance(default, float):
            _check_type(source, f"{prefix}.{key}", value, (int, float))
            value = float(value)
        else:
            _check_type(source, f"{prefix}.{key}", value, (type(default),))
        if isinstance(value, int | float) and not isinstance(value, bool):
            _check_limit(source, f"{prefix}.{key}", value)
        values[key] = value
    return cls(**values)


def _dotted(source: str, where: str, table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``table`` with nested tables as dotted keys: TOML reads ``book_cnn.nopool = 400`` as
    ``{"book_cnn": {"nopool": 400}}``, which means what ``"book_cnn.nopool" = 400`` does."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        inner = (
            _dotted(source, where, value, f"{name}.") if isinstance(value, dict) else {name: value}
        )
        twice = sorted(inner.keys() & flat.keys())
        if twice:
            raise SuiteError(f"{source}: {where} gives {twice[0]!r} twice; give each key once")
        flat |= inner
    return flat


def _serving(source: str, data: dict[str, Any]) -> ServingConfig:
    """The ``[serving]`` table: its lists and bound table here, its numbers by ``_section``."""
    scalars = dict(data)
    lists: dict[str, Any] = {}
    for key, kind in (
        ("datasets", str),
        ("variants", str),
        ("offline_batch_sizes", int),
        ("offline_concurrency", int),
    ):
        if key not in scalars:
            continue
        value = scalars.pop(key)
        allowed = "names" if kind is str else "integers of at least 1"
        ok = isinstance(value, list) and all(
            isinstance(v, kind) and not isinstance(v, bool) and (kind is str or v >= 1)
            for v in value
        )
        if not ok or (kind is int and not value):
            empty = "" if kind is str else "non-empty "
            raise SuiteError(
                f"{source}: serving.{key} must be a {empty}list of {allowed}, got {value!r}"
            )
        _check_unique(source, f"serving.{key}", value)
        lists[key] = tuple(value)
    if "p99_bound_ms" in scalars:
        value = scalars.pop("p99_bound_ms")
        _check_type(source, "serving.p99_bound_ms", value, (dict, int, float))
        bounds = value if isinstance(value, dict) else {"default": value}
        for sub, bound in bounds.items():
            _check_type(source, f"serving.p99_bound_ms.{sub}", bound, (int, float))
            if bound <= 0:
                raise SuiteError(
                    f"{source}: serving.p99_bound_ms.{sub} must be positive (ms), got {bound!r}"
                )
        lists["p99_bound_ms"] = {**ServingConfig().p99_bound_ms} | {
            sub: float(bound) for sub, bound in bounds.items()
        }
    config = replace(_section(source, "serving", scalars, ServingConfig), **lists)
    if config.rate_low >= config.rate_high:
        raise SuiteError(
            f"{source}: serving.rate_low ({config.rate_low:g}) must be below serving.rate_high "
            f"({config.rate_high:g})"
        )
    return config


def parse_suite(data: dict[str, Any], source: str) -> Suite:
    """Validate a suite's TOML content; errors name the source, the key and what is allowed."""
    values: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key not in _TOP_TYPES:
            raise SuiteError(
                f"{source}: unknown key {key!r}; allowed: {', '.join(sorted(_TOP_TYPES))}"
            )
        _check_type(source, key, value, _TOP_TYPES[key])
        if key == "training":
            value = _section(source, "training", value, TrainingRecipe)
        elif key == "latency":
            value = _section(source, "latency", value, LatencyConfig)
        elif key == "serving":
            value = _serving(source, value)
        elif key == "batch_sizes":
            if not value or not all(
                isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value
            ):
                raise SuiteError(f"{source}: batch_sizes must be positive integers, got {value!r}")
            _check_unique(source, key, value)
            value = tuple(value)
        elif isinstance(value, list):
            if not value or not all(isinstance(v, str) for v in value):
                raise SuiteError(
                    f"{source}: {key} must be a non-empty list of names, got {value!r}"
                )
            _check_unique(source, key, value)
            value = tuple(value)
        elif key == "backend_options":
            for backend, options in value.items():
                _check_type(source, f"backend_options.{backend}", options, (dict,))
        elif key == "mirrors":
            _check_mirrors(source, value)
        elif key == "name":
            _check_name(source, value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _check_limit(source, key, value)
        values[key] = value
    if "name" not in values:
        raise SuiteError(f"{source}: key 'name' is required")
    return Suite(**values)


def _check_mirrors(source: str, mirrors: dict[str, Any]) -> None:
    """Each mirror is an http(s) or file URL: a typo fails here, not as a download error."""
    for key, url in mirrors.items():
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "file://")):
            raise SuiteError(
                f"{source}: mirrors.{key} must be a URL starting with https://, http:// or "
                f"file://, got {url!r}"
            )


def load_suite(name_or_path: str) -> Suite:
    """Load a built-in suite by name, or a user's suite from a ``.toml`` path."""
    if name_or_path in BUILTIN_SUITES:
        text = resources.files("harness.suites").joinpath(f"{name_or_path}.toml").read_text()
        source = f"built-in suite {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise SuiteError(
                f"suite {name_or_path!r} is neither a built-in suite "
                f"({', '.join(BUILTIN_SUITES)}) nor an existing .toml file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SuiteError(f"{path}: not UTF-8 text ({exc}); a suite is a TOML file") from None
        except OSError as exc:
            raise SuiteError(f"{path}: cannot read the suite ({exc.strerror or exc})") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{source}: not valid TOML: {exc}") from None
    return parse_suite(data, source)


def override(suite: Suite, **changes: Any) -> Suite:
    """Apply CLI overrides of single fields (``None`` means "not given"), validated as a suite
    file's values are."""
    given = {key: value for key, value in changes.items() if value is not None}
    if not given:
        return suite
    training_steps = given.pop("steps", None)
    if training_steps is not None:
        given["training"] = replace(suite.training, steps={"default": training_steps})
    return suite_from_dict(
        replace(suite, **given).to_dict(), f"{suite.source} with the command line's changes"
    )


def suite_from_dict(data: dict[str, Any], source: str) -> Suite:
    """A suite back from its ``Suite.to_dict()`` form (a journal's, an override's), checked
    as a suite file is; ``source`` replaces the recorded one in error messages."""
    return parse_suite({key: value for key, value in data.items() if key != "source"}, source)
