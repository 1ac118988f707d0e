"""Verified downloads into the data folder: mirrors, retries, timeouts, checksum, atomic move.

Bytes stream into a hidden temporary file beside the target while their checksum is computed;
only a verified file is renamed into place (``os.replace``: atomic on one file system). Any
failure deletes the temporary file, so a failed or corrupt download leaves nothing behind (a
SIGTERM too: the command line turns it into an exception that unwinds through the cleanup).
Each file has an overall deadline, and a location that announces or sends more bytes than the
file's known size is refused, so neither a dripping nor an endless server holds a run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO, NoReturn

from harness import __version__
from harness.api import Dataset, RemoteFile
from harness.checksums import Checksum, Hasher
from harness.errors import DataError

CHUNK_BYTES = 1 << 20
USER_AGENT = f"cnn-harness/{__version__} (+urllib)"
PERMANENT_HTTP_ERRORS = range(400, 500)
"""Client errors (404, 403, ...) will not change on a retry: go to the next mirror at once."""
RETRYABLE_HTTP_ERRORS = (408, 429)
DEADLINE_S = 1800.0
"""How long one file may take over all its locations and retries: a server that drips a byte
now and then never trips the per-read timeout (CIFAR-10's 163 MiB at 100 kB/s fit)."""
MIRROR_VARIABLE = "HARNESS_MIRROR"
"""A base URL tried first for every file of every dataset (``$HARNESS_MIRROR/<filename>``);
``HARNESS_MIRROR_<DATASET>`` (e.g. ``HARNESS_MIRROR_CIFAR10``) for one dataset, tried before it."""


class DownloadError(DataError):
    """No location delivered a verified copy; the message lists what each location did."""


class OfflineError(DownloadError):
    """No location could be reached at all (no HTTP answer from any of them)."""


class DeadlineError(DownloadError):
    """A file was still downloading when its overall deadline passed."""


class _Refused(Exception):
    """The location answered with the wrong bytes (checksum, size): go to the next one."""


class _NoAnswer(Exception):
    """The server was never reached, or the connection broke: worth a retry."""


def download(
    remote: RemoteFile,
    data_dir: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    deadline_s: float = DEADLINE_S,
    progress: bool = True,
) -> Path:
    """Fetch ``remote`` into ``data_dir`` from the first of its URLs that delivers it intact.

    Each URL gets up to ``retries`` attempts for transient failures (timeouts, refused or broken
    connections, 5xx), waiting ``backoff_s``, then twice that, and so on; a 4xx, a checksum
    mismatch or a size other than ``remote.size`` moves on to the next URL at once.
    ``timeout_s`` bounds each connect and each read, ``deadline_s`` the whole file. A progress
    bar goes to stderr when ``progress`` is true. Returns the path of the verified file. Raises
    :class:`OfflineError` when no URL answered, else :class:`DownloadError`.
    """
    checksum = Checksum.parse(remote.checksum)
    target = data_dir / remote.filename
    target.parent.mkdir(parents=True, exist_ok=True)  # the name may include a subfolder
    deadline = time.monotonic() + deadline_s
    failures: dict[str, str] = {}  # the last failure of each URL: one line per location
    answered = False
    for url in remote.urls:
        for attempt in range(1, retries + 1):
            if time.monotonic() >= deadline:
                failures[url] = f"the deadline of {deadline_s:g} s for this file passed"
                _give_up(remote, data_dir, failures)
            try:
                _fetch_verified(url, target, remote, checksum, timeout_s, deadline, progress)
                return target
            except urllib.error.HTTPError as exc:
                answered = True
                failures[url] = f"HTTP {exc.code} {exc.reason}"
                if exc.code in PERMANENT_HTTP_ERRORS and exc.code not in RETRYABLE_HTTP_ERRORS:
                    break
            except _Refused as exc:
                answered = True
                failures[url] = str(exc)
                break
            except _NoAnswer as exc:
                failures[url] = f"{exc} ({attempt} attempts)" if attempt > 1 else str(exc)
            if attempt < retries:
                pause = backoff_s * 2 ** (attempt - 1)
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
    if not answered:
        tried = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
        raise OfflineError(f"could not reach any location of {remote.filename}: {tried}")
    _give_up(remote, data_dir, failures)


def _give_up(remote: RemoteFile, data_dir: Path, failures: dict[str, str]) -> NoReturn:
    tried = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
    raise DownloadError(
        f"could not download a verified {remote.filename} into {data_dir}: {tried}. "
        "Nothing was written to the data folder"
    )


def with_mirrors(
    remote: RemoteFile, dataset_name: str, suite_mirrors: Mapping[str, str] | None = None
) -> RemoteFile:
    """``remote`` with mirrors tried first: the environment's (:data:`MIRROR_VARIABLE`, for
    this dataset, then for all), then the suite's (``mirrors``: this dataset's, then
    ``default``), then the dataset's own locations."""
    suite_mirrors = suite_mirrors or {}
    variables = (f"{MIRROR_VARIABLE}_{dataset_name.upper()}", MIRROR_VARIABLE)
    bases = [os.environ[v].strip() for v in variables if os.environ.get(v, "").strip()]
    bases += [suite_mirrors[k] for k in (dataset_name, "default") if k in suite_mirrors]
    mirrors = tuple(f"{base.rstrip('/')}/{remote.filename}" for base in bases)
    return replace(remote, urls=tuple(dict.fromkeys((*mirrors, *remote.urls))))


def fetch_missing(
    dataset: Dataset,
    data_dir: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    deadline_s: float = DEADLINE_S,
    progress: bool = True,
    mirrors: Mapping[str, str] | None = None,
) -> list[Path]:
    """Download every file ``dataset`` lacks in ``data_dir``; return the paths downloaded.

    The environment's mirrors come first, then the suite's ``mirrors`` (:func:`with_mirrors`).
    When no location can be reached, raises :class:`OfflineError` naming the folder, the files
    expected there and how to put them there. The other options are :func:`download`'s.
    """
    fetched = []
    for remote in dataset.missing_files(data_dir):
        try:
            path = download(
                with_mirrors(remote, dataset.name, mirrors),
                data_dir,
                timeout_s=timeout_s,
                retries=retries,
                backoff_s=backoff_s,
                deadline_s=deadline_s,
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
        "or point --data-dir or HARNESS_DATA_DIR at a folder that holds them, or "
        f"{MIRROR_VARIABLE} (or {MIRROR_VARIABLE}_{dataset.name.upper()}) at a server that does"
    )


def _fetch_verified(
    url: str,
    target: Path,
    remote: RemoteFile,
    checksum: Checksum,
    timeout_s: float,
    deadline: float,
    progress: bool,
) -> None:
    handle, partial_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    partial = Path(partial_name)
    try:
        hasher = checksum.hasher()
        with os.fdopen(handle, "wb") as out:
            _stream(url, out, hasher, remote.size, timeout_s, deadline, progress, target.name)
        if not checksum.matches(hasher):
            raise _Refused(
                f"checksum mismatch: expected {checksum}, got {checksum.algorithm}:"
                f"{hasher.hexdigest()} ({partial.stat().st_size} bytes); the payload was discarded"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _stream(
    url: str,
    out: BinaryIO,
    hasher: Hasher,
    size: int | None,
    timeout_s: float,
    deadline: float,
    progress: bool,
    label: str,
) -> None:
    """Copy the body at ``url`` to ``out``, feeding ``hasher``; a short body, one longer than
    ``size`` and one still coming at ``deadline`` are errors."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(
            request, timeout=max(0.1, min(timeout_s, deadline - time.monotonic()))
        )
    except urllib.error.HTTPError:
        raise
    except OSError as exc:  # URLError, refused, timed out, unreachable
        raise _NoAnswer(_reason(exc)) from None
    length = response.headers.get("Content-Length")
    expected_size = int(length) if length and length.isdigit() else None
    if size is not None and expected_size is not None and expected_size != size:
        response.close()
        raise _Refused(f"announces {expected_size} bytes, expected {size}")
    limit = size if size is not None else expected_size
    received = 0
    bar = tqdm(
        total=limit,
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
                chunk = response.read1(CHUNK_BYTES)  # what has arrived: a drip cannot stall
            except (OSError, HTTPException) as exc:
                raise _NoAnswer(f"connection broke after {received} bytes: {exc}") from None
            if not chunk:
                break
            received += len(chunk)
            if limit is not None and received > limit:
                raise _Refused(f"sent more than the {limit} bytes expected; stopped there")
            if time.monotonic() > deadline:
                raise DeadlineError(
                    f"{label}: still downloading from {url} at the file's deadline "
                    f"({received} bytes so far); nothing was written to the data folder"
                )
            out.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))
    if expected_size is not None and received != expected_size:
        raise _NoAnswer(f"got {received} of the {expected_size} bytes announced")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}"
