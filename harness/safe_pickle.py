"""A restricted unpickler for data files that come as pickles (CIFAR-10's "python version").

``pickle.load`` calls whatever global a file names, so a crafted file runs code. Here the only
globals a pickle may name are those numpy needs to rebuild an array, and ``_codecs.encode``
for text to latin-1 bytes (how Python 3 writes ``bytes`` at protocol 2, e.g. a CIFAR-10 batch
re-pickled); any other is refused before anything is called, with an error naming the global
and the file.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

from harness.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
"""(module, name) -> object. numpy 1 wrote ``numpy.core``, numpy 2 writes ``numpy._core``; both
resolve to the object directly, so no module is imported on a file's say-so."""


LATIN1_NAMES = frozenset({"latin1", "latin-1"})
"""``pickle`` writes ``latin1``; the other spelling is the same codec."""


class UnsafePickleError(DataError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing it names was called."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only resolves :data:`ALLOWED_GLOBALS`.

    Every opcode that can call something (REDUCE, NEWOBJ, INST, OBJ, EXT*) gets its callable
    through ``find_class``, so refusing there refuses before any call.
    """

    def __init__(self, file: BinaryIO, *, source: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_bytes
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join([*(f"{m}.{n}" for m, n in ALLOWED_GLOBALS), "_codecs.encode"])
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle the global {module}.{name}: a data file may "
                f"only name {allowed}. The file is not a genuine data file; do not load it with "
                "plain pickle either"
            ) from None

    def _latin1_bytes(self, *args: Any) -> bytes:
        """``_codecs.encode(text, "latin1")`` as Python 3's pickler writes ``bytes``, and
        nothing else: any other argument is refused before a codec is looked up."""
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in LATIN1_NAMES:
            shown = ", ".join(f"{type(arg).__name__} {arg!r:.40}" for arg in args)
            raise UnsafePickleError(
                f"{self.source}: refused _codecs.encode({shown}): a data file may call it only "
                "with a str and 'latin1', as Python 3 pickles bytes"
            )
        return args[0].encode("latin-1")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused a persistent id in a data file")


def safe_loads(data: bytes, *, source: str, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    ``encoding="bytes"`` keeps Python 2 strings as ``bytes`` (the CIFAR-10 files have keys such
    as ``b"data"``). A malformed pickle is a :class:`DataError` naming ``source``.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:  # the unpickler raises many types on malformed input
        raise DataError(f"{source}: not a valid pickle ({type(exc).__name__}: {exc})") from None
