"""Where data, trained models and runs live, and how a user chooses."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "HARNESS_DATA_DIR"
CACHE_DIR_ENV = "HARNESS_CACHE_DIR"


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/harness`` (``~/.cache/harness`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harness"


def resolve_data_dir(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir`` beats ``HARNESS_DATA_DIR``, which beats ``<user cache>/data``."""
    if cli_value:
        return Path(cli_value).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return user_cache_root() / "data"


def model_cache_dir() -> Path:
    """The trained-model cache: ``HARNESS_CACHE_DIR`` or ``<user cache>/models``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser() / "models"
    return user_cache_root() / "models"
