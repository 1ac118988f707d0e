"""Checksums written as ``"<algorithm>:<hex>"``, and the warning for content that differs.

Downloads are held to the checksum of the bytes that came over the wire; local files are held to
the checksum of their uncompressed content, because copies of the same data circulate with a
different gzip or tar wrapping.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Protocol

ALGORITHMS = ("md5", "sha256")


class Hasher(Protocol):
    """What :mod:`hashlib` objects offer: fed while streaming, read at the end."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class ContentChecksumWarning(UserWarning):
    """A file parses correctly but its content is not the canonical release (e.g. re-encoded)."""


@dataclass(frozen=True)
class Checksum:
    """An expected digest, e.g. ``Checksum.parse("md5:6bbc9ace898e44ae57da46a324031adb")``."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        algorithm, sep, hexdigest = text.partition(":")
        hexdigest = hexdigest.lower()
        valid_hex = hexdigest and all(c in "0123456789abcdef" for c in hexdigest)
        if not sep or algorithm not in ALGORITHMS or not valid_hex:
            raise ValueError(
                f"checksum {text!r} is not '<algorithm>:<hex>' with algorithm one of "
                f"{', '.join(ALGORITHMS)}"
            )
        return cls(algorithm, hexdigest)

    def hasher(self) -> Hasher:
        """A fresh hash object of this checksum's algorithm, to feed while streaming."""
        return hashlib.new(self.algorithm)

    def matches(self, hasher: Hasher) -> bool:
        return hasher.hexdigest() == self.hexdigest

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def warn_if_content_differs(source: str, expected: str, actual: str) -> None:
    """Warn, naming ``source`` and both digests, when a parsed file is not the canonical one.

    ``expected`` and ``actual`` are ``"<algorithm>:<hex>"`` strings of the uncompressed content.
    """
    if expected != actual:
        warnings.warn(
            f"{source}: content checksum is {actual}, the canonical release has {expected}; "
            "the file parses correctly, so it is used (it may be a re-encoded copy)",
            ContentChecksumWarning,
            stacklevel=3,
        )
