"""The one place that touches pluggy: loads entry points one by one and builds the registry.

A plugin that fails to import, or whose hook raises, is recorded as broken and shown by
``harness list``; everything else keeps working. ``HARNESS_PLUGINS`` (comma-separated entry
point names) allow-lists plugins; ``HARNESS_DISABLE_PLUGINS`` blocks them.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from harness import PROJECT_NAME, hookspecs
from harness.errors import RegistryError
from harness.registry import Registry

ENTRY_POINT_GROUP = PROJECT_NAME
ALLOW_ENV = "HARNESS_PLUGINS"
BLOCK_ENV = "HARNESS_DISABLE_PLUGINS"

HOOK_KINDS = {
    "register_datasets": "datasets",
    "register_models": "models",
    "register_backends": "backends",
}


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and where it came from."""

    name: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be used, and why."""

    name: str
    distribution: str | None
    version: str | None
    stage: str
    """``import``, or the hook that raised (e.g. ``register_models``)."""
    error: str


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


@dataclass
class PluginHost:
    """Owns the PluginManager: loads plugins lazily, once, and builds the registry."""

    pm: pluggy.PluginManager = field(init=False)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    _entry_points_loaded: bool = False
    _registry: Registry | None = None

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    def load_entry_points(self) -> None:
        """Import every entry point of the group on its own; record the ones that fail."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        allowed = _names_from_env(ALLOW_ENV)
        blocked = _names_from_env(BLOCK_ENV) or set()
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if (allowed is not None and ep.name not in allowed) or ep.name in blocked:
                self.disabled.append(ep.name)
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
                self.pm.check_pending()
            except Exception as exc:
                if self.pm.has_plugin(ep.name):
                    self.pm.unregister(name=ep.name)
                self.broken.append(BrokenPlugin(ep.name, dist, version, "import", _describe(exc)))
                continue
            self.plugins[ep.name] = PluginInfo(ep.name, dist, version)
        self._registry = None

    def register(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object (tests, embedding applications)."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except Exception:
            self.pm.unregister(name=name)
            raise
        self.plugins[name] = PluginInfo(name, None, None)
        self._registry = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self.broken = [b for b in self.broken if b.name != name]
        self._registry = None

    def registry(self) -> Registry:
        """Call every registration hook of every plugin, each on its own, once."""
        if self._registry is not None:
            return self._registry
        self.load_entry_points()
        registry = Registry()
        self.broken = [b for b in self.broken if b.stage == "import"]
        for hook_name, kind_name in HOOK_KINDS.items():
            kind = getattr(registry, kind_name)
            hook = getattr(self.pm.hook, hook_name)
            impls = sorted(hook.get_hookimpls(), key=lambda impl: impl.plugin_name)
            for impl in impls:
                collected: list[Any] = []
                try:
                    impl.function(register=collected.append)
                except Exception as exc:
                    self._mark_broken(impl.plugin_name, hook_name, exc)
                    continue
                for obj in collected:
                    try:
                        kind.add(obj, impl.plugin_name)
                    except RegistryError as exc:  # e.g. a duplicate name: the first one stays
                        self._mark_broken(impl.plugin_name, hook_name, exc)
        self._registry = registry
        return registry

    def _mark_broken(self, plugin_name: str, stage: str, exc: BaseException) -> None:
        info = self.plugins.get(plugin_name, PluginInfo(plugin_name, None, None))
        self.broken.append(
            BrokenPlugin(plugin_name, info.distribution, info.version, stage, _describe(exc))
        )


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, created on first use (never at import time)."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def reset_host() -> None:
    """Forget the process-wide host, so the next ``get_host`` rediscovers plugins."""
    global _host
    _host = None


def get_registry() -> Registry:
    return get_host().registry()
