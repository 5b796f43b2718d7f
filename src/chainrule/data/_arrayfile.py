"""Checks of ``.npy`` / ``.npz`` files before NumPy allocates anything for them.

A ``.npy`` header declares a shape and a dtype; NumPy allocates ``prod(shape) · itemsize`` bytes
and only then finds the file too short, so a 192-byte file declaring 200 000 × 200 000 float64
asks for 298 GiB. A ``.npz`` is a zip archive: 3 MB of deflated zeros can expand to 3.2 GB.
:func:`check_array_file` reads only the headers and refuses, with a ``ValueError`` naming the
file, any array larger than the bytes the file holds, and any archive that would expand to
more than ``MAX_NPZ_EXPANSION`` times its size (and more than ``NPZ_FLOOR_BYTES``), so the
memory used to read an accepted file is bounded by the file's own size.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import Any

import numpy as np

__all__ = ["MAX_NPZ_EXPANSION", "NPZ_FLOOR_BYTES", "check_array_file"]

MAX_NPZ_EXPANSION = 100  # uncompressed / compressed size of a whole .npz
NPZ_FLOOR_BYTES = 256 * 2**20  # archives expanding to less than this are always accepted
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def check_array_file(path: str) -> None:
    """Refuse ``path`` unless it is a ``.npy``/``.npz`` file whose arrays it really holds.

    Raises
    ------
    ValueError
        Naming the file and what is wrong: not NumPy's format at all (a CSV file renamed
        ``.npz``), an array declared larger than the data present, pickled objects, or an
        archive expanding beyond ``MAX_NPZ_EXPANSION`` times its size.
    """
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory, not a .npy/.npz file")
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        start = fh.read(64)
        if start.startswith(_NPY_MAGIC):
            fh.seek(0)
            _check_npy(fh, size, repr(path))
            return
    if start[:4] in _ZIP_MAGICS:
        _check_npz(path, size)
        return
    hint = ""
    if b"," in start or b";" in start or b"\t" in start:
        hint = "; it looks like a CSV text file: give it the .csv extension"
    raise ValueError(
        f"{path!r} is neither a .npy nor a .npz file (it starts with {start[:16]!r}){hint}"
    )


def _check_npy(fh: Any, available: int, label: str) -> None:
    """Check one ``.npy`` stream's header against the ``available`` bytes (header included)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{label} has an invalid .npy header: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{label} holds Python objects (pickled data), which are never loaded")
    header = fh.tell()
    needed = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    if needed > available - header:
        raise ValueError(
            f"{label} declares an array of shape {tuple(shape)} and dtype {dtype.str} "
            f"({needed:,} bytes) but holds only {max(available - header, 0):,} bytes of data"
        )


def _check_npz(path: str, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            limit = max(MAX_NPZ_EXPANSION * size, NPZ_FLOOR_BYTES)
            if total > limit:
                raise ValueError(
                    f"{path!r} would expand from {size:,} bytes to {total:,} bytes "
                    f"({total / max(size, 1):.0f} times its size; limit {MAX_NPZ_EXPANSION} "
                    f"times, or {NPZ_FLOOR_BYTES >> 20} MiB): refused as a possible zip bomb"
                )
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as member:
                    _check_npy(
                        _Prefix(member), info.file_size, f"{path!r} member {info.filename!r}"
                    )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ValueError(f"{path!r} is not a readable .npz archive: {exc}") from None


class _Prefix:
    """A read-only stream that counts what has been read (``tell``) without seeking."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.pos = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        return bytes(data)

    def tell(self) -> int:
        return self.pos
