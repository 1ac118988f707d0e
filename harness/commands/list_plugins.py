"""List datasets, models and backends (with the devices each can use here), and broken plugins."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from harness.errors import EXIT_OK
from harness.plugins import OVERRIDE_ENV, get_host

NAME_WIDTH = 16
"""The name column's least width; longer names widen it for every section."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def collect() -> dict[str, Any]:
    """Everything ``harness list`` shows, as plain data."""
    host = get_host()
    registry = host.registry()

    def origin(plugin: str) -> dict[str, Any]:
        info = host.plugins.get(plugin)
        return {
            "plugin": plugin,
            "distribution": info.distribution if info else None,
            "version": info.version if info else None,
        }

    datasets = [
        {
            "name": entry.obj.name,
            "description": entry.obj.description,
            "input_shape": list(entry.obj.input_shape),
            "num_classes": entry.obj.num_classes,
            **origin(entry.plugin),
        }
        for entry in registry.datasets
    ]
    models = [
        {
            "name": entry.obj.name,
            "description": entry.obj.description,
            "variants": list(entry.obj.variants),
            **origin(entry.plugin),
        }
        for entry in registry.models
    ]
    backends = []
    for entry in registry.backends:
        probe = _probe(entry.obj)
        backends.append(
            {
                "name": entry.obj.name,
                "description": entry.obj.description,
                "devices": {
                    device: {"available": reason is None, "reason": reason}
                    for device, reason in probe.items()
                },
                **origin(entry.plugin),
            }
        )
    return {
        "datasets": datasets,
        "models": models,
        "backends": backends,
        "plugins": [vars(info) for info in sorted(host.plugins.values(), key=lambda i: i.name)],
        "broken": [vars(b) for b in host.broken],
        "disabled": sorted(host.disabled),
        "overrides": [vars(o) for o in host.overrides],
        "override_requested": os.environ.get(OVERRIDE_ENV),
    }


def _probe(backend: Any) -> dict[str, str | None]:
    """The backend's device probe; one that raises makes each device unavailable, with why."""
    try:
        return backend.probe_devices()
    except Exception as exc:
        reason = f"probe_devices() raised {type(exc).__name__}: {exc}"
        return dict.fromkeys(backend.devices, reason)


def _render(listing: dict[str, Any]) -> str:
    lines: list[str] = []

    def source(item: dict[str, Any]) -> str:
        dist = item["distribution"]
        where = f"{dist} {item['version']}" if dist else "registered in-process"
        return f"[{item['plugin']}: {where}]"

    kinds = ("datasets", "models", "backends")
    width = max([NAME_WIDTH, *(len(item["name"]) for kind in kinds for item in listing[kind])])
    lines.append("Datasets:")
    for d in listing["datasets"]:
        shape = "x".join(map(str, d["input_shape"]))
        lines.append(f"  {d['name']:<{width}} {shape}, {d['num_classes']} classes  {source(d)}")
    lines.append("Models:")
    for m in listing["models"]:
        lines.append(f"  {m['name']:<{width}} variants: {', '.join(m['variants'])}  {source(m)}")
    lines.append("Backends:")
    for b in listing["backends"]:
        devices = ", ".join(
            name if state["available"] else f"{name} (unavailable: {state['reason']})"
            for name, state in b["devices"].items()
        )
        lines.append(f"  {b['name']:<{width}} devices: {devices}  {source(b)}")
    if listing["broken"]:
        lines.append("Broken plugins:")
        for p in listing["broken"]:
            dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "no distribution"
            lines.append(f"  {p['name']} ({dist}) failed at {p['stage']}: {p['error']}")
    if listing["disabled"]:
        lines.append(f"Disabled plugins: {', '.join(listing['disabled'])}")
    if listing["override_requested"] is not None:
        lines.append(f"Overrides ({OVERRIDE_ENV}={listing['override_requested']}):")
        for o in listing["overrides"]:
            lines.append(
                f"  {o['kind']} {o['name']}: plugin {o['plugin']} replaces the harness's "
                f"plugin {o['replaced_plugin']}"
            )
        if not listing["overrides"]:
            lines.append("  none took effect: no other plugin registers those names")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    listing = collect()
    print(json.dumps(listing, indent=2) if args.json else _render(listing))
    return EXIT_OK
