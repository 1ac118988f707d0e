"""The host-owned registry of everything plugins contribute, keyed by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from harness.api import Backend, Dataset, ModelSpec
from harness.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """An object and the plugin that registered it."""

    obj: T
    plugin: str


@dataclass
class Kind(Generic[T]):
    """All registered objects of one kind (datasets, models or backends)."""

    label: str
    base: type
    entries: dict[str, Registered[T]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    """Names a broken plugin registered, and why they are not here."""
    hints: list[str] = field(default_factory=list)
    """Why an unknown name may be missing (broken or disabled plugins), for its error."""

    def check(self, obj: object, plugin: str) -> str:
        """The name ``obj`` would be registered under; an error if it is not a named ``base``."""
        if not isinstance(obj, self.base):
            raise RegistryError(
                f"plugin {plugin!r} registered {obj!r} as a {self.label}, "
                f"but it is not a {self.base.__module__}.{self.base.__qualname__}"
            )
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {self.label} without a name")
        return name

    def add(self, obj: T, plugin: str, replace: bool = False) -> None:
        """Register ``obj``; a taken name is an error naming both plugins unless ``replace``."""
        name = self.check(obj, plugin)
        if name in self.entries and not replace:
            first = self.entries[name].plugin
            raise RegistryError(
                f"{self.label} {name!r} is registered twice: by plugin {first!r} "
                f"and by plugin {plugin!r}"
            )
        self.entries[name] = Registered(obj, plugin)

    def get(self, name: str) -> T:
        entry = self.entries.get(name)
        if entry is not None:
            return entry.obj
        if name in self.unavailable:
            raise RegistryError(f"{self.label} {name!r} is unavailable: {self.unavailable[name]}")
        known = ", ".join(sorted(self.entries)) or "none"
        hints = "".join(f"; {hint}" for hint in self.hints)
        raise RegistryError(f"unknown {self.label} {name!r}; known: {known}{hints}")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __iter__(self) -> Iterator[Registered[T]]:
        return iter(self.entries[name] for name in self.names())


@dataclass
class Registry:
    """Datasets, models and backends by name, each remembering its plugin."""

    datasets: Kind[Dataset] = field(default_factory=lambda: Kind("dataset", Dataset))
    models: Kind[ModelSpec] = field(default_factory=lambda: Kind("model", ModelSpec))
    backends: Kind[Backend] = field(default_factory=lambda: Kind("backend", Backend))

    def kinds(self) -> tuple[Kind[Any], ...]:
        return (self.datasets, self.models, self.backends)

    def dataset(self, name: str) -> Dataset:
        return self.datasets.get(name)

    def model(self, name: str) -> ModelSpec:
        return self.models.get(name)

    def backend(self, name: str) -> Backend:
        return self.backends.get(name)
