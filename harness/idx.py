"""Safe reading of IDX files (the MNIST format), gzipped or not.

An IDX file is a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 dimensions,
then exactly ``prod(dims)`` big-endian items. Everything is validated before it is trusted: a
truncated file is an error, never a short array, and trailing bytes are an error too. Reusable
by any plugin whose data comes as IDX files (e.g. Fashion-MNIST).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harness.api import LabelledImages
from harness.checksums import warn_if_content_differs
from harness.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type byte -> the dtype of its items as stored (big-endian)."""


@dataclass(frozen=True)
class IdxContent:
    """The array an IDX file holds, and the checksum of its uncompressed bytes."""

    array: np.ndarray
    """Native byte order, C-contiguous, writable, shaped as the header declares."""
    content_md5: str
    """``"md5:<hex>"`` of the whole uncompressed file (header included), as published for MNIST."""


def read_idx(
    path: Path, *, expected_type: int | None = None, expected_ndim: int | None = None
) -> IdxContent:
    """Read and validate one IDX file; gzip is recognised by its magic bytes, not its name.

    ``expected_type`` (e.g. ``0x08`` for uint8) and ``expected_ndim`` (3 for images, 1 for
    labels) turn a valid file of the wrong kind into an error. Every problem is a
    :class:`DataError` that names ``path`` and says what was wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_stream(stream, path, expected_type, expected_ndim)
            return _read_stream(raw, path, expected_type, expected_ndim)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except EOFError as exc:
        raise DataError(
            f"{path}: truncated gzip stream ({exc}); the file was cut short: delete it and "
            "fetch or copy it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream ({exc})") from None
    except OSError as exc:  # unreadable: permissions, a folder, an I/O error of the disk
        raise DataError(
            f"{path}: cannot read it ({exc.strerror or exc}); expected a readable IDX file"
        ) from None


def _read_stream(
    stream: BinaryIO, path: Path, expected_type: int | None, expected_ndim: int | None
) -> IdxContent:
    digest = hashlib.md5()
    magic = _read_exactly(stream, 4, path, "the 4-byte magic number")
    digest.update(magic)
    if magic[:2] != b"\x00\x00" or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise DataError(
            f"{path}: not an IDX file: magic number is {magic.hex()}, expected 0000<type><ndim> "
            f"with type one of {', '.join(f'{t:02x}' for t in IDX_TYPES)} and ndim >= 1"
        )
    type_code, ndim = magic[2], magic[3]
    if expected_type is not None and type_code != expected_type:
        raise DataError(
            f"{path}: IDX item type is 0x{type_code:02x} ({IDX_TYPES[type_code]}), "
            f"expected 0x{expected_type:02x} ({IDX_TYPES[expected_type]})"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = _read_exactly(stream, 4 * ndim, path, f"{ndim} dimension sizes")
    digest.update(header)
    dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
    stored = IDX_TYPES[type_code]
    expected_bytes = math.prod(dims) * stored.itemsize
    try:
        array = np.empty(dims, dtype=stored)
    except (MemoryError, ValueError):
        raise DataError(
            f"{path}: the header declares {'x'.join(map(str, dims))} items "
            f"({expected_bytes} bytes), more than can be allocated"
        ) from None
    received = _read_into(stream, memoryview(array).cast("B") if array.size else None)
    if received < expected_bytes:
        raise DataError(
            f"{path}: truncated: the header declares {'x'.join(map(str, dims))} items "
            f"({expected_bytes} bytes of data) but only {received} bytes follow"
        )
    if stream.read(1):
        raise DataError(
            f"{path}: {expected_bytes} bytes of data for dimensions {dims}, but more bytes follow"
        )
    digest.update(array.data if array.size else b"")
    if not stored.isnative:
        array = array.astype(stored.newbyteorder("="))
    return IdxContent(array, f"md5:{digest.hexdigest()}")


def _read_exactly(stream: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise DataError(f"{path}: truncated: ended after {len(data)} of the {size} bytes of {what}")
    return data


def _read_into(stream: BinaryIO, buffer: memoryview | None) -> int:
    """Fill ``buffer`` from ``stream`` without an intermediate copy; return the bytes read."""
    if buffer is None:
        return 0
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress``), byte-for-byte canonical.

    The gzip header carries no timestamp, so the same array always gives the same bytes.
    """
    stored = {dtype.newbyteorder(">"): code for code, dtype in IDX_TYPES.items()}
    dtype = array.dtype.newbyteorder(">")
    if dtype not in stored or not 1 <= array.ndim <= 255:
        raise ValueError(f"cannot write a {array.dtype} array of {array.ndim} dimensions as IDX")
    header = bytes([0, 0, stored[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    content = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(content, compresslevel=6, mtime=0) if compress else content)
    return path


def find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name``, else ``folder/name.gz``: the plain file wins when both are there."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_labelled_images(
    images_path: Path,
    labels_path: Path,
    *,
    image_shape: tuple[int, int],
    num_classes: int,
    canonical_count: int,
    content_checksums: tuple[str, str],
) -> LabelledImages:
    """One split stored as an IDX pair (uint8 images N x H x W, uint8 labels N), as the MNIST
    family ships it: each file checked on its own, then against the other and the dataset.

    ``content_checksums`` (images, labels) identify the published release, so they are compared
    only when the split has ``canonical_count`` images: a subset cannot match. A mismatch is a
    warning (re-encoded copies exist); everything else wrong is a DataError naming the file.
    """
    images = read_idx(images_path, expected_type=IDX_UBYTE, expected_ndim=3)
    height, width = image_shape
    if images.array.shape[1:] != (height, width):
        raise DataError(
            f"{images_path}: images are {images.array.shape[1]}x{images.array.shape[2]}, "
            f"expected {height}x{width}"
        )
    labels = read_idx(labels_path, expected_type=IDX_UBYTE, expected_ndim=1)
    count = len(images.array)
    if len(labels.array) != count:
        raise DataError(
            f"{labels_path}: wrong count: {len(labels.array)} labels, but {images_path} "
            f"holds {count} images; the two files of a split must match"
        )
    bad = np.flatnonzero(labels.array >= num_classes)
    if bad.size:
        raise DataError(
            f"{labels_path}: label out of range: {labels.array[bad[0]]} at index {bad[0]} "
            f"({bad.size} such labels); expected 0..{num_classes - 1}"
        )
    if count == canonical_count:
        for path, content, expected in zip(
            (images_path, labels_path), (images, labels), content_checksums, strict=True
        ):
            warn_if_content_differs(str(path), expected, content.content_md5)
    return LabelledImages(
        images=images.array.reshape(count, height, width, 1),
        labels=labels.array.astype(np.int64),
    )
