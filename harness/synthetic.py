"""Tiny MNIST and CIFAR-10 files in the canonical formats, for tests and the ``smoke`` suite.

The data are learnable: each class has its own coarse pattern (shared by the train and test
splits) under uniform noise, so a CNN trained for a few steps beats chance. Classes are balanced
(counts differ by at most one), and the bytes depend only on the sizes and the seed.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.idx import write_idx

NUM_CLASSES = 10
PATTERN_CELL = 4
"""Side of the squares a class pattern is made of: coarse enough for a 5x5 conv to see."""
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_LABEL_NAMES = (
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
CIFAR_MEMBER_ORDER = (
    "data_batch_4",
    "readme.html",
    "test_batch",
    "data_batch_3",
    "batches.meta",
    "data_batch_2",
    "data_batch_5",
    "data_batch_1",
)
"""Not in name order, so a loader that assumes the order fails on these files."""


def write_mnist(
    data_dir: Path, train: int = 200, test: int = 50, seed: int = 0, gzip: bool = True
) -> list[Path]:
    """Write the four MNIST IDX files (``NAME.gz`` when ``gzip``); return their paths."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    splits = _learnable_splits((28, 28, 1), train, test, seed)
    suffix = ".gz" if gzip else ""
    paths = []
    for prefix, (images, labels) in zip(("train", "t10k"), splits, strict=True):
        paths.append(
            write_idx(
                data_dir / f"{prefix}-images-idx3-ubyte{suffix}", images[..., 0], compress=gzip
            )
        )
        paths.append(
            write_idx(data_dir / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=gzip)
        )
    return paths


def write_cifar10(
    data_dir: Path, train: int = 200, test: int = 50, seed: int = 0, extracted: bool = False
) -> Path:
    """Write ``cifar-10-python.tar.gz``, or its extracted folder when ``extracted``; return it.

    Pickled as the originals: protocol 2, Python 2 strings (``bytes`` keys such as ``b"data"``),
    arrays rebuilt through ``numpy.core.multiarray._reconstruct``. The training images are
    spread over ``data_batch_1``..``5`` as evenly as possible.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (train_images, train_labels), (test_images, test_labels) = _learnable_splits(
        (32, 32, 3), train, test, seed
    )
    members: dict[str, bytes] = {}
    parts = np.array_split(np.arange(train), 5)
    for number, part in enumerate(parts, start=1):
        members[f"data_batch_{number}"] = _batch_pickle(
            train_images[part], train_labels[part], f"training batch {number} of 5"
        )
    members["test_batch"] = _batch_pickle(test_images, test_labels, "testing batch 1 of 1")
    members["batches.meta"] = python2_pickle(
        {
            b"num_cases_per_batch": max(len(part) for part in parts),
            b"label_names": [name.encode() for name in CIFAR_LABEL_NAMES],
            b"num_vis": 32 * 32 * 3,
        }
    )
    members["readme.html"] = b"<html><body>Synthetic CIFAR-10 for tests.</body></html>\n"
    if extracted:
        folder = data_dir / CIFAR_FOLDER
        folder.mkdir(exist_ok=True)
        for name, payload in members.items():
            (folder / name).write_bytes(payload)
        return folder
    archive = data_dir / "cifar-10-python.tar.gz"
    archive.write_bytes(gzip.compress(_tar(members), compresslevel=6, mtime=0))
    return archive


def write_all(data_dir: Path, train: int, test: int, seed: int) -> None:
    """Both first-party datasets as downloaded (gzipped, archived): for ``synthetic_data`` runs."""
    write_mnist(data_dir, train=train, test=test, seed=seed)
    write_cifar10(data_dir, train=train, test=test, seed=seed)


def python2_pickle(obj: Any) -> bytes:
    """Pickle ``obj`` as Python 2's cPickle did (protocol 2): what the CIFAR-10 files contain.

    Python 3 would write ``bytes`` through ``_codecs.encode``; Python 2 wrote them as plain
    strings (``BINSTRING``), and numpy's module as ``numpy.core``.
    """
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler lets us replace its writers
    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin-1"))

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _learnable_splits(
    shape: tuple[int, int, int], train: int, test: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    coarse = rng.integers(
        0, 256, (NUM_CLASSES, height // PATTERN_CELL, width // PATTERN_CELL, channels), np.uint8
    )
    patterns = coarse.repeat(PATTERN_CELL, axis=1).repeat(PATTERN_CELL, axis=2) // 4 * 3
    splits = []
    for count in (train, test):
        labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.uint8)
        noise = rng.integers(0, 64, (count, *shape), np.uint8)
        splits.append((patterns[labels] + noise, labels))
    return splits


def _batch_pickle(images: np.ndarray, labels: np.ndarray, batch_label: str) -> bytes:
    rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
    return python2_pickle(
        {
            b"batch_label": batch_label.encode(),
            b"labels": [int(label) for label in labels],
            b"data": rows,
            b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(labels))],
        }
    )


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo(CIFAR_FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name in CIFAR_MEMBER_ORDER:
            info = tarfile.TarInfo(f"{CIFAR_FOLDER}/{name}")
            info.size, info.mode = len(members[name]), 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()
