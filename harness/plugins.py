"""The one place that touches pluggy: loads entry points one by one and builds the registry.

A plugin that fails to import, whose hook raises, or that registers a name another plugin
holds, is recorded as broken, contributes nothing, and is shown by ``harness list``; everything
else keeps working. The harness's own plugins win every name clash, whatever the names sort
like, so an installed package cannot silently replace the book's model: ``HARNESS_OVERRIDE``
(comma-separated object names) lets a third-party plugin replace a first-party object on
purpose. ``HARNESS_PLUGINS`` (comma-separated entry point names) allow-lists plugins;
``HARNESS_DISABLE_PLUGINS`` blocks them.
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
from harness.registry import Kind, Registry

ENTRY_POINT_GROUP = PROJECT_NAME
ALLOW_ENV = "HARNESS_PLUGINS"
BLOCK_ENV = "HARNESS_DISABLE_PLUGINS"
OVERRIDE_ENV = "HARNESS_OVERRIDE"
FIRST_PARTY_DISTRIBUTION = "cnn-harness"
"""The distribution whose plugins win every name clash."""

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

    @property
    def first_party(self) -> bool:
        return self.distribution == FIRST_PARTY_DISTRIBUTION


@dataclass(frozen=True)
class Override:
    """A first-party object that a third-party plugin replaces, as ``HARNESS_OVERRIDE`` asked."""

    kind: str
    name: str
    plugin: str
    replaced_plugin: str


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
    overrides: list[Override] = field(default_factory=list)
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
        seen: dict[str, str | None] = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_load_order):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if ep.name in seen:
                if seen[ep.name] != dist:  # not the same distribution visible twice on sys.path
                    error = f"entry point name {ep.name!r} is taken by distribution {seen[ep.name]}"
                    self.broken.append(BrokenPlugin(ep.name, dist, version, "import", error))
                continue
            seen[ep.name] = dist
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
        """Call every registration hook of every plugin, each on its own, once.

        Every hook runs before anything is registered; then plugins are registered one at a
        time, first-party ones first, the rest in name order, each with all its objects or, if
        one of them is refused, none.
        """
        if self._registry is not None:
            return self._registry
        self.load_entry_points()
        registry = Registry()
        self.broken = [b for b in self.broken if b.stage == "import"]
        self.overrides = []
        contributions = self._collect()
        overridable = _names_from_env(OVERRIDE_ENV) or set()
        for plugin in sorted(contributions, key=lambda name: (not self._first_party(name), name)):
            items = [
                (hook, getattr(registry, HOOK_KINDS[hook]), obj)
                for hook, obj in contributions[plugin]
            ]
            try:
                replacing = self._admit(plugin, items, overridable)
            except _Refused as refused:
                self._mark_broken(plugin, refused.stage, refused.error)
                for _, kind, obj in items:
                    name = getattr(obj, "name", None)
                    if isinstance(name, str) and name not in kind.entries:
                        kind.unavailable[name] = f"its plugin {plugin!r} is broken: {refused.error}"
                continue
            for _, kind, obj in items:
                kind.add(obj, plugin, replace=(kind.label, obj.name) in replacing)
            self.overrides.extend(replacing.values())
        hints = self._missing_name_hints()
        for kind in registry.kinds():
            kind.hints = hints
        self._registry = registry
        return registry

    def _collect(self) -> dict[str, list[tuple[str, Any]]]:
        """What each plugin's hooks register, as (hook, object); a hook that raises marks its
        plugin broken."""
        contributions: dict[str, list[tuple[str, Any]]] = {}
        failed: set[str] = set()
        for hook_name in HOOK_KINDS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                collected: list[Any] = []
                try:
                    impl.function(register=collected.append)
                except Exception as exc:
                    self._mark_broken(plugin, hook_name, _describe(exc))
                    failed.add(plugin)
                    contributions.pop(plugin, None)
                    continue
                contributions.setdefault(plugin, []).extend((hook_name, obj) for obj in collected)
        return contributions

    def _admit(
        self, plugin: str, items: list[tuple[str, Kind[Any], Any]], overridable: set[str]
    ) -> dict[tuple[str, str], Override]:
        """The first-party objects ``plugin`` replaces, by (kind, name); ``_Refused`` if one of
        its objects cannot be registered."""
        replacing: dict[tuple[str, str], Override] = {}
        seen: set[tuple[str, str]] = set()
        for hook_name, kind, obj in items:
            try:
                name = kind.check(obj, plugin)
            except RegistryError as exc:
                raise _Refused(hook_name, str(exc)) from None
            if (kind.label, name) in seen:
                raise _Refused(
                    hook_name, f"plugin {plugin!r} registers {kind.label} {name!r} twice"
                )
            seen.add((kind.label, name))
            holder = kind.entries.get(name)
            if holder is None:
                continue
            protected = self._first_party(holder.plugin) and not self._first_party(plugin)
            if protected and name in overridable:
                replacing[(kind.label, name)] = Override(kind.label, name, plugin, holder.plugin)
                continue
            rule = (
                f"the harness's own plugin wins; {OVERRIDE_ENV}={name} would use plugin "
                f"{plugin!r}'s instead"
                if protected
                else "the first in name order wins"
            )
            raise _Refused(
                hook_name,
                f"{kind.label} {name!r} is registered twice: by plugin {holder.plugin!r} and by "
                f"plugin {plugin!r}; {rule}",
            )
        return replacing

    def _first_party(self, plugin: str) -> bool:
        info = self.plugins.get(plugin)
        return info is not None and info.first_party

    def _missing_name_hints(self) -> list[str]:
        """Why a name may be unknown: the plugins that are broken or switched off."""
        hints = [f"plugin {b.name!r} is broken ({b.stage}: {b.error})" for b in self.broken]
        blocked = _names_from_env(BLOCK_ENV) or set()
        for name in sorted(self.disabled):
            why = f"named in {BLOCK_ENV}" if name in blocked else f"not named in {ALLOW_ENV}"
            hints.append(f"plugin {name!r} is disabled ({why})")
        return hints

    def record(self) -> dict[str, dict[str, str | None]]:
        """Every plugin, broken ones included, as a run's journal keeps it."""
        self.registry()
        record: dict[str, dict[str, str | None]] = {}
        for info in self.plugins.values():
            replaced = [o for o in self.overrides if o.plugin == info.name]
            record[info.name] = {
                "distribution": info.distribution,
                "version": info.version,
                "status": "ok",
                "error": None,
                "overrides": ", ".join(
                    f"{o.kind} {o.name} of plugin {o.replaced_plugin}" for o in replaced
                )
                or None,
            }
        for broken in self.broken:
            other = record.get(broken.name, {}).get("distribution", broken.distribution)
            key = (
                broken.name
                if other == broken.distribution
                else f"{broken.name} ({broken.distribution})"
            )
            record[key] = {
                "distribution": broken.distribution,
                "version": broken.version,
                "status": "broken",
                "error": f"{broken.stage}: {broken.error}",
                "overrides": None,
            }
        return dict(sorted(record.items()))

    def _mark_broken(self, plugin_name: str, stage: str, error: str) -> None:
        info = self.plugins.get(plugin_name, PluginInfo(plugin_name, None, None))
        self.broken.append(BrokenPlugin(plugin_name, info.distribution, info.version, stage, error))


class _Refused(Exception):
    """A plugin's objects cannot be registered: at which hook, and why."""

    def __init__(self, stage: str, error: str) -> None:
        super().__init__(error)
        self.stage = stage
        self.error = error


def _load_order(ep: metadata.EntryPoint) -> tuple[str, bool]:
    """By name; of two entry points with one name, the harness's own first."""
    return ep.name, not (ep.dist and ep.dist.name == FIRST_PARTY_DISTRIBUTION)


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
