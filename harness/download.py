"""Verified downloads into the data folder: mirrors, retries, timeouts, checksum, atomic move.

Bytes stream into a hidden temporary file beside the target while their checksum is computed;
only a verified file is renamed into place (``os.replace``: atomic on one file system). Any
failure deletes the temporary file, so a failed or corrupt download leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from harness import __version__
from harness.api import Dataset, RemoteFile
from harness.checksums import Checksum, Hasher
from harness.errors import DataError

CHUNK_BYTES = 1 << 20
USER_AGENT = f"cnn-harness/{__version__} (+urllib)"
PERMANENT_HTTP_ERRORS = range(400, 500)
"""Client errors (404, 403, ...) will not change on a retry: go to the next mirror at once."""
RETRYABLE_HTTP_ERRORS = (408, 429)


class DownloadError(DataError):
    """No location delivered a verified copy; the message lists what each location did."""


class OfflineError(DownloadError):
    """No location could be reached at all (no HTTP answer from any of them)."""


class _ChecksumMismatch(Exception):
    pass


class _NoAnswer(Exception):
    """The server was never reached, or the connection broke: worth a retry."""


def download(
    remote: RemoteFile,
    data_dir: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> Path:
    """Fetch ``remote`` into ``data_dir`` from the first of its URLs that delivers it intact.

    Each URL gets up to ``retries`` attempts for transient failures (timeouts, refused or broken
    connections, 5xx), waiting ``backoff_s``, then twice that, and so on; a 4xx or a checksum
    mismatch moves on to the next URL at once. ``timeout_s`` bounds each connect and each read.
    A progress bar goes to stderr when ``progress`` is true. Returns the path of the verified
    file. Raises :class:`OfflineError` when no URL answered, else :class:`DownloadError`.
    """
    checksum = Checksum.parse(remote.checksum)
    target = data_dir / remote.filename
    target.parent.mkdir(parents=True, exist_ok=True)  # the name may include a subfolder
    failures: dict[str, str] = {}  # the last failure of each URL: one line per location
    answered = False
    for url in remote.urls:
        for attempt in range(1, retries + 1):
            try:
                _fetch_verified(url, target, checksum, timeout_s, progress)
                return target
            except urllib.error.HTTPError as exc:
                answered = True
                failures[url] = f"HTTP {exc.code} {exc.reason}"
                if exc.code in PERMANENT_HTTP_ERRORS and exc.code not in RETRYABLE_HTTP_ERRORS:
                    break
            except _ChecksumMismatch as exc:
                answered = True
                failures[url] = str(exc)
                break
            except _NoAnswer as exc:
                failures[url] = f"{exc} ({attempt} attempts)" if attempt > 1 else str(exc)
            if attempt < retries:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    tried = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
    if not answered:
        raise OfflineError(f"could not reach any location of {remote.filename}: {tried}")
    raise DownloadError(
        f"could not download a verified {remote.filename} into {data_dir}: {tried}. "
        "Nothing was written to the data folder"
    )


def fetch_missing(
    dataset: Dataset,
    data_dir: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> list[Path]:
    """Download every file ``dataset`` lacks in ``data_dir``; return the paths downloaded.

    When no location can be reached, raises :class:`OfflineError` naming the folder, the files
    expected there and how to put them there. The options are :func:`download`'s.
    """
    fetched = []
    for remote in dataset.missing_files(data_dir):
        try:
            path = download(
                remote,
                data_dir,
                timeout_s=timeout_s,
                retries=retries,
                backoff_s=backoff_s,
                progress=progress,
            )
        except OfflineError as exc:
            raise OfflineError(f"{exc}.\n{how_to_provide(dataset, data_dir)}") from None
        fetched.append(path)
    return fetched


def how_to_provide(dataset: Dataset, data_dir: Path) -> str:
    """What a user without a working download does: which files, where, and how."""
    folders = dict.fromkeys(
        url.rsplit("/", 1)[0] + "/" for remote in dataset.remote_files() for url in remote.urls
    )
    where = f" (downloads: {', '.join(folders)})" if folders else ""
    return (
        f"{dataset.name} expects these files in the data folder {data_dir}: "
        f"{dataset.describe_files()}. Copy them there from a machine that has them{where}, "
        "or point --data-dir or HARNESS_DATA_DIR at a folder that holds them"
    )


def _fetch_verified(
    url: str, target: Path, checksum: Checksum, timeout_s: float, progress: bool
) -> None:
    handle, partial_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    partial = Path(partial_name)
    try:
        hasher = checksum.hasher()
        with os.fdopen(handle, "wb") as out:
            _stream(url, out, hasher, timeout_s, progress, label=target.name)
        if not checksum.matches(hasher):
            raise _ChecksumMismatch(
                f"checksum mismatch: expected {checksum}, got {checksum.algorithm}:"
                f"{hasher.hexdigest()} ({partial.stat().st_size} bytes); the payload was discarded"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _stream(
    url: str, out: BinaryIO, hasher: Hasher, timeout_s: float, progress: bool, label: str
) -> None:
    """Copy the body at ``url`` to ``out``, feeding ``hasher``; a short body is an error."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError:
        raise
    except OSError as exc:  # URLError, refused, timed out, unreachable
        raise _NoAnswer(_reason(exc)) from None
    length = response.headers.get("Content-Length")
    expected_size = int(length) if length and length.isdigit() else None
    received = 0
    bar = tqdm(
        total=expected_size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    with response, bar:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, HTTPException) as exc:
                raise _NoAnswer(f"connection broke after {received} bytes: {exc}") from None
            if not chunk:
                break
            out.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if expected_size is not None and received != expected_size:
        raise _NoAnswer(f"got {received} of the {expected_size} bytes announced")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}"
