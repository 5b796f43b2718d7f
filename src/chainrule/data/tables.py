"""Tables from CSV/NPY/NPZ files: :class:`Table` and the readers (:func:`read_csv`,
:func:`read_array_file`, :func:`read_table`). Re-exported by :mod:`chainrule.data.tabular`.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import impute
from ._arrayfile import check_array_file

MISSING = frozenset({"", "na", "nan", "null", "none", "?", "n/a", "#n/a"})
MAX_CATEGORIES = 200


@dataclass
class Table:
    """Named columns: float arrays (numbers) or object arrays of strings (as read).

    ``rows`` and ``lines`` (optional) give, for each row, its position among the file's data
    rows and the line of the file it starts on, so messages name the right place even after
    quoted fields spanning lines, skipped blank lines, or a split into training and test rows.
    ``image_shape`` is ``(C, H, W)`` when the rows are images read from an array file (their
    pixels as columns ``x0, x1, ...`` in C order), else None.
    """

    columns: list[str]
    values: dict[str, np.ndarray]
    source: str = "data"
    rows: np.ndarray | None = None
    lines: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.values[self.columns[0]]) if self.columns else 0

    def select(self, rows: np.ndarray) -> Table:
        return Table(
            list(self.columns),
            {c: v[rows] for c, v in self.values.items()},
            self.source,
            (self.rows if self.rows is not None else np.arange(len(self)))[rows],
            None if self.lines is None else self.lines[rows],
            self.image_shape,
        )

    def column(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise ValueError(
                f"{self.source} has no column {name!r}; its columns are: "
                f"{impute.listing(self.columns)}"
            )
        return self.values[name]

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        feature_names: Sequence[str] | None = None,
        y: np.ndarray | None = None,
        target_name: str = "target",
        class_names: Sequence[str] | None = None,
        source: str = "data",
    ) -> Table:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"x{i}" for i in range(X.shape[1])]
        )
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        values: dict[str, np.ndarray] = {}
        for j, n in enumerate(names):
            col = X[:, j]
            values[n] = col.astype(np.float64) if col.dtype.kind in "biuf" else col.astype(object)
        columns = list(names)
        if y is not None:
            y = np.asarray(y)
            if class_names is not None:
                labels = np.asarray(class_names, dtype=object)[y.astype(np.int64)]
                values[target_name] = labels
            else:
                values[target_name] = (
                    y.astype(np.float64) if y.dtype.kind in "biuf" else y.astype(object)
                )
            columns.append(target_name)
        return cls(columns, values, source)


def _where(row: int, table: Any = None) -> str:
    """``row R (line L)`` for row ``row`` of ``table``, as numbered in the file it came from."""
    rows, lines = getattr(table, "rows", None), getattr(table, "lines", None)
    r = int(rows[row]) if rows is not None else row
    line = int(lines[row]) if lines is not None else r + 2
    return f"row {r + 1} (line {line})"


def _delimiter(fh: Any, delimiter: str | None) -> str:
    """The given delimiter, or the one detected among ``, ; tab |`` in the file's start."""
    if delimiter is not None:
        return delimiter
    sample = fh.read(65536)
    fh.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _check_header(header: list[str], p: str) -> None:
    """Refuse empty or repeated column names (one pass: linear in the number of columns)."""
    if any(not h for h in header):
        raise ValueError(
            f"{p!r}: the header has an empty column name (column {header.index('') + 1})"
        )
    counts = Counter(header)
    dupes = sorted(h for h, c in counts.items() if c > 1)
    if dupes:
        raise ValueError(f"{p!r}: duplicate column names in the header: {', '.join(dupes)}")


def read_csv(path: str | os.PathLike[str], delimiter: str | None = None) -> Table:
    """Read a CSV file with a header row into a :class:`Table` (values kept as strings).

    The delimiter is detected among ``, ; tab |`` unless given. Every row must have as many
    fields as the header; column names must be unique.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    if os.path.isdir(p):
        raise ValueError(f"{p!r} is a directory, not a CSV file")
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=_delimiter(fh, delimiter))
            rows, starts, line = [], [], 0
            for r in reader:
                if r and any(f.strip() for f in r):
                    rows.append(r)
                    starts.append(line + 1)  # the line this record starts on
                line = reader.line_num
    except UnicodeDecodeError:
        raise ValueError(f"{p!r} is not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ValueError(f"{p!r} is not valid CSV: {exc}") from None
    if not rows:
        raise ValueError(f"{p!r} is empty: expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    _check_header(header, p)
    body = rows[1:]
    if not body:
        raise ValueError(f"{p!r} has a header but no data rows")
    lines = np.array(starts[1:], dtype=np.int64)
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(
                f"{p!r}: row {i + 1} (line {lines[i]}) has {len(r)} fields, the header has "
                f"{len(header)}"
            )
    cols = {h: np.array([r[j].strip() for r in body], dtype=object) for j, h in enumerate(header)}
    return Table(header, cols, os.path.basename(p), np.arange(len(body)), lines)


def _image_rows(X: np.ndarray, p: str, what: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """``X`` as rows: 2-D as is; images ``(N, C, H, W)`` or ``(N, H, W)`` (one channel, as
    ``(N, 1, H, W)``) flattened to ``(N, C·H·W)`` with their shape ``(C, H, W)``."""
    if X.ndim == 2:
        return X, None
    if X.ndim in (3, 4):
        shape = tuple(int(n) for n in X.shape[1:])
        if X.ndim == 3:
            shape = (1, *shape)
        if 0 in shape:
            raise ValueError(f"{p!r}: {what} holds empty images, shape {X.shape}")
        return X.reshape(len(X), -1), shape
    raise ValueError(
        f"{p!r}: {what} must be 2-D (rows, columns), or images (N, C, H, W) or (N, H, W); "
        f"got shape {X.shape}"
    )


def read_array_file(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read ``.npy`` (columns ``x0, x1, ...``) or ``.npz`` (arrays ``X`` and ``y``).

    ``X`` is 2-D (rows, columns) or a batch of images, ``(N, C, H, W)`` or ``(N, H, W)`` (one
    channel): the images become rows of their pixels in C order (``x0`` is pixel (0, 0, 0),
    ``x1`` pixel (0, 0, 1), ...) and the table's ``image_shape`` is ``(C, H, W)``, as
    ``cr.datasets``' image sets give rows in ``X`` and the shape in ``extra["shape"]``. A
    network for them (``chainrule train --arch``) starts with ``Unflatten(1, (C, H, W))``.

    No pickled objects are loaded (``allow_pickle=False``).
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    check_array_file(p)  # sizes checked against what the file holds before NumPy allocates
    try:
        obj = np.load(p, allow_pickle=False, mmap_mode=None)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{p!r} is not a readable .npy/.npz file: {exc}") from None
    name = os.path.basename(p)
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            if "X" not in obj.files:
                raise ValueError(
                    f"{p!r} must contain an array named 'X' (and 'y'); it has {obj.files}"
                )
            X = obj["X"]
            y = obj["y"] if "y" in obj.files else None
        X, image_shape = _image_rows(X, p, "X")
        if y is not None and y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y is not None and y.ndim != 1:
            raise ValueError(
                f"{p!r}: y must hold one target per row (shape ({len(X)},)), got shape {y.shape}"
            )
        if y is not None and len(y) != len(X):
            raise ValueError(f"{p!r}: X has {len(X)} rows but y has {len(y)}")
        table = Table.from_arrays(X, y=y, target_name=target or "y", source=name)
        table.image_shape = image_shape
        return table
    X, image_shape = _image_rows(np.asarray(obj), p, "the array")
    table = Table.from_arrays(X, source=name)
    table.image_shape = image_shape
    return table


def read_table(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read a CSV, NPY or NPZ file by its extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in (".npy", ".npz"):
        return read_array_file(path, target)
    return read_csv(path)
