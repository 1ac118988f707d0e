"""The host-owned registry of everything plugins contribute, keyed by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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

    def add(self, obj: T, plugin: str) -> None:
        if not isinstance(obj, self.base):
            raise RegistryError(
                f"plugin {plugin!r} registered {obj!r} as a {self.label}, "
                f"but it is not a {self.base.__module__}.{self.base.__qualname__}"
            )
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {self.label} without a name")
        if name in self.entries:
            first = self.entries[name].plugin
            raise RegistryError(
                f"{self.label} {name!r} is registered twice: by plugin {first!r} "
                f"and by plugin {plugin!r}"
            )
        self.entries[name] = Registered(obj, plugin)

    def get(self, name: str) -> T:
        try:
            return self.entries[name].obj
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise RegistryError(f"unknown {self.label} {name!r}; known: {known}") from None

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

    def dataset(self, name: str) -> Dataset:
        return self.datasets.get(name)

    def model(self, name: str) -> ModelSpec:
        return self.models.get(name)

    def backend(self, name: str) -> Backend:
        return self.backends.get(name)
