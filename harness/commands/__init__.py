"""One module per ``harness`` subcommand; each defines ``add_arguments(parser)`` and ``run(args)``.

Command modules are imported to build the parser, so they import heavy libraries inside ``run``.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.errors import HarnessError


def check_flags(checks: Iterable[tuple[str, object, bool, str]]) -> None:
    """Each ``(flag, value, ok, allowed)``: exit 2 naming the first flag whose value is not ok
    (a nan fails every comparison, so it is never ok)."""
    for flag, value, ok, allowed in checks:
        if not ok:
            raise HarnessError(f"{flag} must be {allowed}, got {value}")
