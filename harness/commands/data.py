"""Where datasets live, and fetching and verifying their files.

  harness data path   [DATASET ...]   the data folder, and which expected files are in it
  harness data fetch  [DATASET ...]   download the missing files (verified, atomic)
  harness data verify [DATASET ...]   parse every file; check checksums, shapes, counts, labels

The data folder is ``--data-dir``, else ``$HARNESS_DATA_DIR``, else ``$XDG_CACHE_HOME/harness/data``
(``~/.cache/harness/data``). With no DATASET, every registered dataset. ``verify`` exits 2 when
a file is missing or bad; warnings (a re-encoded copy, a non-canonical count) do not fail it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import EXIT_OK, EXIT_USAGE, DataError
from harness.paths import DATA_DIR_ENV, resolve_data_dir

if TYPE_CHECKING:
    from harness.api import Dataset

ACTIONS = ("path", "fetch", "verify")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help="default: all")
    parser.add_argument("--data-dir", help=f"data folder (default: ${DATA_DIR_ENV} or cache)")


def run(args: argparse.Namespace) -> int:
    from harness.plugins import get_registry

    registry = get_registry()
    datasets = [registry.dataset(name) for name in args.datasets or registry.datasets.names()]
    data_dir = resolve_data_dir(args.data_dir)
    if args.action == "path":
        return _show_paths(datasets, data_dir, _data_dir_origin(args.data_dir))
    if args.action == "fetch":
        return _fetch(datasets, data_dir)
    return _verify(datasets, data_dir)


def _data_dir_origin(cli_value: str | None) -> str:
    if cli_value:
        return "--data-dir"
    if os.environ.get(DATA_DIR_ENV):
        return f"${DATA_DIR_ENV}"
    return "the per-user cache; set --data-dir or $HARNESS_DATA_DIR to choose"


def _show_paths(datasets: list[Dataset], data_dir: Path, origin: str) -> int:
    print(f"data folder: {data_dir} (from {origin})")
    for dataset in datasets:
        missing = {remote.filename for remote in dataset.missing_files(data_dir)}
        state = "missing files" if missing else "present"
        print(f"{dataset.name}: {state}; expects {dataset.describe_files()}")
        for filename in dataset.files():
            print(f"  {'missing' if filename in missing else 'present'}  {filename}")
    return EXIT_OK


def _fetch(datasets: list[Dataset], data_dir: Path) -> int:
    from harness.download import fetch_missing

    for dataset in datasets:
        fetched = fetch_missing(dataset, data_dir)
        if fetched:
            for path in fetched:
                print(f"{dataset.name}: downloaded and verified {path}")
        else:
            print(f"{dataset.name}: already present in {data_dir}")
    return EXIT_OK


def _verify(datasets: list[Dataset], data_dir: Path) -> int:
    failed = False
    for dataset in datasets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                counts = dataset.verify(data_dir)
            except DataError as exc:
                failed = True
                print(f"{dataset.name}: FAILED: {exc}")
                counts = None
        if counts is not None:
            sizes = ", ".join(
                f"{split} {sum(per_class):,} (canonical {dataset.split_sizes[split]:,})"
                for split, per_class in counts.items()
            )
            print(f"{dataset.name}: OK: {sizes}")
            for split, per_class in counts.items():
                classes = ", ".join(
                    f"{name} {count:,}"
                    for name, count in zip(dataset.class_names, per_class, strict=True)
                )
                print(f"  {split} per class: {classes}")
        for warning in caught:
            print(f"  warning: {warning.message}")
    if failed:
        print(f"data folder: {data_dir}", file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK
