"""The ``harness`` command line: one subcommand per module, each with ``add_arguments`` and ``run``.

Exit codes: 0 ok; 1 a regression (compare) or a failed cell (run); 2 bad usage or input;
130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from harness import __version__
from harness.errors import EXIT_USAGE, HarnessError

EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
RESIGNAL_DELAY_S = 0.01

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("harness.commands.list_plugins", "show datasets, models, backends and broken plugins"),
    "run": ("harness.commands.run", "run a suite and write a report folder"),
    "compare": ("harness.commands.compare", "compare two runs; exit 1 on a real regression"),
    "ab": ("harness.commands.ab", "time two sides interleaved; exit 1 on a regression"),
    "report": ("harness.commands.report", "rebuild every report output of a run folder"),
    "merge": ("harness.commands.merge", "join runs made on different machines"),
    "history": ("harness.commands.history", "latency and accuracy of every cell over many runs"),
    "data": ("harness.commands.data", "where datasets live; fetch and verify them"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark CNN inference on Keras and ONNX Runtime through plugins.",
        epilog="Exit codes: 0 ok, 1 regression or failed cell, 2 usage or input error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command_parser)
        command_parser.set_defaults(handler=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI cancel, ``timeout``), raised where Ctrl-C would be, so that it unwinds the
    same way: the running worker's process group is killed and the journal keeps what finished."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _signal_again(unraisable: Any) -> None:
    """Python prints and drops an exception raised in a finalizer or a weakref callback: a
    SIGTERM or Ctrl-C whose handler ran there would be lost, and the run would go on (seen in
    the soak test). Send the signal again, from a thread a moment later, so that its handler
    runs outside (sent from here, it would run in this hook and be dropped too)."""
    for kind, signum in ((Terminated, signal.SIGTERM), (KeyboardInterrupt, signal.SIGINT)):
        if isinstance(unraisable.exc_value, kind):
            threading.Timer(RESIGNAL_DELAY_S, os.kill, (os.getpid(), signum)).start()
            return
    sys.__unraisablehook__(unraisable)


def guarded(command: str, call: Callable[[], int]) -> int:
    """Run a command with the exit codes of the module doc: SIGTERM and Ctrl-C unwind it as an
    exception (the running worker's group is killed, the journal keeps what finished)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_hook, sys.unraisablehook = sys.unraisablehook, _signal_again
    try:
        return int(call())
    except HarnessError as exc:
        print(f"harness {command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(f"harness {command}: stopped by SIGTERM", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"harness {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(args.command, lambda: args.handler(args))
