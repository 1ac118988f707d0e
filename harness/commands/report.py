"""Not implemented yet."""

import argparse
import sys

from harness.errors import EXIT_USAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print(f"harness {args.command}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE
