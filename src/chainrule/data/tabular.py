"""Tables from CSV/NPY/NPZ files, splits, and preprocessing that travels with the model.

:class:`TabularPreprocessor` learns, from the training rows only, how to turn raw columns into
the network's inputs — standardising numeric columns and one-hot encoding categorical ones —
and how to encode the target (class names to indices; regression values standardised). It is
saved inside the model file (``extra["preprocessing"]``), so a loaded model predicts on raw rows
and refuses rows whose columns do not match, naming them.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._random import as_generator
from .._validation import check_number
from . import impute
from ._arrayfile import check_array_file
from ._moments import Moments, moments, standardize

__all__ = [
    "MISSING",
    "Table",
    "TabularPreprocessor",
    "read_array_file",
    "read_csv",
    "read_table",
    "train_test_split",
]

MISSING = frozenset({"", "na", "nan", "null", "none", "?", "n/a", "#n/a"})
MAX_CATEGORIES = 200


@dataclass
class Table:
    """Named columns: float arrays (numbers) or object arrays of strings (as read).

    ``rows`` and ``lines`` (optional) give, for each row, its position among the file's data
    rows and the line of the file it starts on, so messages name the right place even after
    quoted fields spanning lines, skipped blank lines, or a split into training and test rows.
    """

    columns: list[str]
    values: dict[str, np.ndarray]
    source: str = "data"
    rows: np.ndarray | None = None
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values[self.columns[0]]) if self.columns else 0

    def select(self, rows: np.ndarray) -> Table:
        return Table(
            list(self.columns),
            {c: v[rows] for c, v in self.values.items()},
            self.source,
            (self.rows if self.rows is not None else np.arange(len(self)))[rows],
            None if self.lines is None else self.lines[rows],
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


def read_array_file(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read ``.npy`` (2-D; columns ``x0, x1, ...``) or ``.npz`` (arrays ``X`` and ``y``).

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
        if X.ndim != 2:
            raise ValueError(f"{p!r}: X must be 2-D, got shape {X.shape}")
        if y is not None and y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y is not None and y.ndim != 1:
            raise ValueError(
                f"{p!r}: y must hold one target per row (shape ({len(X)},)), got shape {y.shape}"
            )
        if y is not None and len(y) != len(X):
            raise ValueError(f"{p!r}: X has {len(X)} rows but y has {len(y)}")
        return Table.from_arrays(X, y=y, target_name=target or "y", source=name)
    X = np.asarray(obj)
    if X.ndim != 2:
        raise ValueError(f"{p!r}: expected a 2-D array (rows, columns), got shape {X.shape}")
    return Table.from_arrays(X, source=name)


def read_table(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read a CSV, NPY or NPZ file by its extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in (".npy", ".npz"):
        return read_array_file(path, target)
    return read_csv(path)


def _parse_numbers(
    col: np.ndarray, name: str, source: str
) -> tuple[np.ndarray, list[int], list[int]]:
    """Floats for a column, with the rows that are missing and the rows that are not numbers."""
    if col.dtype.kind in "biuf":
        out = col.astype(np.float64)
        return out, np.flatnonzero(~np.isfinite(out)).tolist(), []
    out = np.empty(len(col), np.float64)
    missing, bad = [], []
    for i, v in enumerate(col):
        s = str(v).strip()
        if s.lower() in MISSING:
            missing.append(i)
            out[i] = math.nan
            continue
        try:
            out[i] = float(s)
        except ValueError:
            bad.append(i)
            out[i] = math.nan
            continue
        if not math.isfinite(out[i]):
            if "inf" not in s.lower() and "nan" not in s.lower():  # "1e400": too large
                raise ValueError(
                    f"{source}: the value {s!r} in column {name!r} at {_where(i)} is beyond the "
                    f"range of float64 (±{np.finfo(np.float64).max:.4g}); rescale the column"
                )
            missing.append(i)
    return out, missing, bad


_FORMATTED_NUMBER = re.compile(
    r"[+-]?(\d{1,3}(,\d{3})+(\.\d+)?"  # 1,234 or 1,234.5
    r"|\d{1,3}(\.\d{3})+(,\d+)?"  # 1.234.567 or 1.234,5
    r"|\d{1,3}([ \u00a0\u202f']\d{3})+([.,]\d+)?"  # 1 234 or 1'234.5
    r"|\d*,\d+)"  # 3,14
)


def _refuse_formatted_numbers(col: np.ndarray, bad: list[int], name: str, table: Any) -> None:
    """Refuse a column whose unreadable values are all numbers with thousands separators or
    decimal commas ("1,234", "1.234,5", "3,14"): read as text they would silently become
    categories (or a confusing "non-numeric value")."""
    values = [str(col[i]).strip() for i in bad]
    if values and all(_FORMATTED_NUMBER.fullmatch(v) for v in values):
        raise ValueError(
            f"{table.source}: column {name!r} holds numbers written with thousands separators "
            f"or a decimal comma ({values[0]!r} at {_where(bad[0], table)}); numbers must be "
            "written like 1234.5: remove the separators and use '.' for decimals (or declare "
            "the column categorical if these are codes)"
        )


def _sorted_classes(values: Sequence[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


TARGET_LIMIT = 2.0**1020  # ≈ 1.1e307: a 16th of float64's largest value


def _check_target_range(nums: np.ndarray, name: str, source: str) -> None:
    """Refuse a regression target so large that predictions and errors would overflow."""
    big = float(np.max(np.abs(nums))) if len(nums) else 0.0
    if big > TARGET_LIMIT:
        raise ValueError(
            f"{source}: the target column {name!r} has values up to {big:.4g}, too close to the "
            f"largest float64 ({np.finfo(np.float64).max:.4g}) for predictions and errors to be "
            f"represented (limit {TARGET_LIMIT:.3g}); divide the column by a power of ten first"
        )


def _canonical_label(v: Any) -> str:
    """One name per class: labels equal as numbers (``1``, ``1.0``, ``1e0``) are one class.

    Integral numbers are written as integers (``"1"``), other numbers in the shortest form that
    reads back to the same float64 (``"0.5"``); text is kept as written (stripped).
    """
    s = str(v).strip()
    try:
        x = float(s)
    except ValueError:
        return s
    if not math.isfinite(x):
        return s
    return str(int(x)) if x == int(x) else repr(x)


def _label_strings(col: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(np.asarray(col).astype(str), return_inverse=True)
    names = np.array([_canonical_label(u) for u in uniq], dtype=object)
    return names[inverse.reshape(-1)]


class TabularPreprocessor:
    """Turn raw table columns into network inputs and targets, fitted on training rows only.

    Parameters
    ----------
    target : str or None
        The target column (None to transform features only).
    task : {"auto", "classification", "regression"}
        "auto": classification if the target has non-numeric values, or integer values with few
        distinct ones (at most 20, and at most a fifth of the rows); regression otherwise.
    categorical : sequence of str
        Columns to one-hot encode even if they look numeric. Columns whose values are all
        non-numeric are categorical anyway.
    drop : sequence of str
        Columns to ignore. Columns that look like identifiers (a distinct text value in most
        rows) or free text (sentences) are left out anyway, with a note, unless named in
        ``categorical``.
    scale_target : bool, default True
        Standardise a regression target for training (predictions are mapped back).
    missing : {"impute", "drop", "error"}, default "impute"
        Missing feature values (empty, NA, NaN, ?): "impute" fills a numeric column with its
        training median and adds a 0/1 missing-indicator input ``"<name> (missing)"`` when
        training values were missing, and a categorical column with its most frequent
        training value — learned by ``fit`` and applied the same way by ``transform`` (and by
        a saved model); "drop" learns from complete rows only (remove incomplete rows with
        :meth:`drop_incomplete`); "error" refuses them. A target is never imputed.

    Notes
    -----
    A category not seen in training is encoded as all zeros (scikit-learn's
    ``handle_unknown="ignore"``); ``transform`` counts such values and reports them in one
    :class:`~chainrule.data.impute.DataNote`.
    """

    def __init__(
        self,
        target: str | None,
        task: str = "auto",
        categorical: Sequence[str] = (),
        drop: Sequence[str] = (),
        scale_target: bool = True,
        missing: str = "impute",
    ) -> None:
        if task not in ("auto", "classification", "regression"):
            raise ValueError(f"task must be auto, classification or regression, got {task!r}")
        self.target = target
        self.task = task
        self.categorical = list(categorical)
        self.drop = list(drop)
        self.scale_target = bool(scale_target)
        self.missing = impute.check_missing_mode(missing)
        self.ignored: dict[str, str] = {}  # columns left out automatically, with the reason
        self.last_unknown: dict[str, int] = {}  # unseen categories in the last transform
        self.features: list[dict[str, Any]] = []
        self.classes: list[str] | None = None
        self.target_mean = 0.0
        self.target_std = 1.0
        self.fitted = False

    # ----- fitting ------------------------------
    def fit(self, table: Table) -> TabularPreprocessor:
        """Learn column kinds, scaling, categories and the target encoding from ``table``."""
        for name in [*self.categorical, *self.drop] + ([self.target] if self.target else []):
            table.column(name)  # unknown column -> clear error
        names = [c for c in table.columns if c != self.target and c not in self.drop]
        if not names:
            raise ValueError(f"{table.source} has no feature columns besides the target")
        self.features = []
        self.ignored = {}
        if self.missing == "drop":  # learn from the rows complete in the columns kept
            kept = [
                n
                for n in names
                if n in self.categorical
                or impute.leave_out_reason(
                    table.values[n],
                    *_parse_numbers(table.values[n], n, table.source)[1:],
                    len(table),
                )
                is None
            ]
            table = self.drop_incomplete(table, kept)
        for name in names:
            col = table.values[name]
            nums, missing, bad = _parse_numbers(col, name, table.source)
            if missing and self.missing == "error":
                raise ValueError(
                    f"{table.source}: missing value in column {name!r} at "
                    f"{_where(missing[0], table)}"
                    + (f" and {len(missing) - 1} more rows" if len(missing) > 1 else "")
                    + "; fill or remove them first, or use missing='impute' or 'drop'"
                    " (--missing impute|drop)"
                )
            if bad and name not in self.categorical:
                _refuse_formatted_numbers(col, bad, name, table)
            reason = None
            if name not in self.categorical:
                reason = impute.leave_out_reason(col, missing, bad, len(col))
            if reason is not None:
                self.ignored[name] = reason
                continue
            categorical = name in self.categorical or (bad and len(bad) + len(missing) == len(col))
            if categorical:
                gap = set(missing)
                present = [str(v).strip() for i, v in enumerate(col) if i not in gap]
                if not present:
                    raise ValueError(f"{table.source}: column {name!r} has no values")
                cats = sorted(set(present))
                if len(cats) > MAX_CATEGORIES:
                    raise ValueError(
                        f"column {name!r} has {len(cats)} distinct text values: too many to "
                        f"one-hot encode (limit {MAX_CATEGORIES}); drop it if it is an identifier"
                    )
                self.features.append(
                    {
                        "name": name,
                        "kind": "categorical",
                        "categories": cats,
                        "fill": impute.most_frequent(present),
                        "imputed": len(missing),
                    }
                )
            elif bad:
                raise ValueError(
                    f"{table.source}: non-numeric value {str(col[bad[0]])!r} in numeric column "
                    f"{name!r} at {_where(bad[0], table)}"
                )
            else:
                median = float(np.median(np.delete(nums, missing)))
                nums[missing] = median  # scaling is learned on the imputed column
                mean, std = moments(nums)
                self.features.append(
                    {
                        "name": name,
                        "kind": "numeric",
                        "mean": mean,
                        "std": std if std > 0 else 1.0,
                        "median": median,
                        "imputed": len(missing),
                        "indicator": bool(missing),
                    }
                )
        if not self.features:
            raise ValueError(
                f"{table.source} has no usable feature columns: "
                + impute.listing([f"{n!r} ({r})" for n, r in self.ignored.items()])
            )
        if self.ignored:
            impute.note(
                f"left out {len(self.ignored)} column(s) that look like identifiers or free "
                "text: "
                + impute.listing([f"{n!r} {r}" for n, r in self.ignored.items()])
                + "; name a column in categorical= (--categorical) to one-hot encode it anyway"
            )
        if self.target is not None:
            self._fit_target(table)
        self.fitted = True
        return self

    def _fit_target(self, table: Table) -> None:
        col = table.column(self.target)  # type: ignore[arg-type]
        nums, missing, bad = _parse_numbers(col, self.target or "", table.source)
        if missing:
            raise ValueError(
                f"{table.source}: missing target value in column {self.target!r} at "
                f"{_where(missing[0], table)}; targets are never imputed: remove those rows first "
                "(chainrule.data.impute.drop_missing_target)"
            )
        task = self.task
        if task == "auto":
            if bad:
                task = "classification"
            else:
                distinct = np.unique(nums)
                integral = bool(np.all(distinct == np.round(distinct)))
                few = len(distinct) <= min(20, max(2, len(nums) // 5))
                task = "classification" if integral and few else "regression"
        self.task = task
        if task == "classification":
            labels = _label_strings(col)
            self.classes = _sorted_classes(sorted(set(labels.tolist())))
            if len(self.classes) < 2:
                raise ValueError(
                    f"the target column {self.target!r} has a single class "
                    f"({self.classes[0]!r}); classification needs at least two"
                )
        else:
            if bad:
                raise ValueError(
                    f"{table.source}: non-numeric target {str(col[bad[0]])!r} in column "
                    f"{self.target!r} at {_where(bad[0], table)} (task is regression)"
                )
            self.classes = None
            _check_target_range(nums, self.target or "", table.source)
            if self.scale_target:
                mean, std = moments(nums)
                self.target_mean, self.target_std = mean, std if std > 0 else 1.0

    # ----- transforming ------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.features]

    @property
    def n_inputs(self) -> int:
        return len(self.input_names())

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" and self.classes else 1

    def input_names(self) -> list[str]:
        out = []
        for f in self.features:
            if f["kind"] == "numeric":
                out.append(f["name"])
                if f.get("indicator"):
                    out.append(f"{f['name']} (missing)")
            else:
                out.extend(f"{f['name']}={c}" for c in f["categories"])
        return out

    def check_columns(self, table: Table) -> None:
        """Refuse a table whose columns differ from the training columns, naming them."""
        known = set(self.feature_names)
        allowed = known | set(self.drop) | set(self.ignored)
        allowed |= {self.target} if self.target else set()
        missing = [c for c in self.feature_names if c not in table.values]
        extra = [c for c in table.columns if c not in allowed]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing columns: {impute.listing(missing)}")
            if extra:
                parts.append(f"unknown columns: {impute.listing(extra)}")
            raise ValueError(
                f"{table.source} does not match the model's columns ({'; '.join(parts)}); "
                f"the model expects: {impute.listing(self.feature_names)}"
            )

    def transform(self, table: Table) -> np.ndarray:
        """The network's input matrix (float32) for the rows of ``table``."""
        if not self.fitted:
            raise ValueError("the preprocessor is not fitted yet: call fit() first")
        self.check_columns(table)
        n = len(table)
        blocks = []
        fills = self.missing == "impute"
        unknown: dict[str, list[str]] = {}
        for f in self.features:
            col = table.values[f["name"]]
            if f["kind"] == "numeric":
                nums, missing, bad = _parse_numbers(col, f["name"], table.source)
                if bad or (missing and not (fills and "median" in f)):
                    i = (bad or missing)[0]
                    what = f"non-numeric value {str(col[i])!r}" if bad else "missing value"
                    raise ValueError(
                        f"{table.source}: {what} in column {f['name']!r} at {_where(i, table)}"
                        + ("" if bad else self._no_fill())
                    )
                flag = np.zeros(n)
                flag[missing] = 1.0
                nums[missing] = f.get("median", math.nan)
                blocks.append(standardize(nums, f["mean"], f["std"]).reshape(n, 1))
                if f.get("indicator"):
                    blocks.append(flag.reshape(n, 1))
            else:
                cats = f["categories"]
                index = {c: k for k, c in enumerate(cats)}
                onehot = np.zeros((n, len(cats)))
                for i, v in enumerate(col):
                    text = str(v).strip()
                    # a file from before imputation may know "NA" as a category of its own
                    if text not in index and impute.is_missing(v):
                        if not (fills and "fill" in f):
                            raise ValueError(
                                f"{table.source}: missing value in column {f['name']!r} at "
                                f"{_where(i, table)}{self._no_fill()}"
                            )
                        text = f["fill"]
                    k = index.get(text)
                    if k is None:  # unseen in training: all zeros, counted and reported
                        unknown.setdefault(f["name"], []).append(text)
                        continue
                    onehot[i, k] = 1.0
                blocks.append(onehot)
        self.last_unknown = {c: len(v) for c, v in unknown.items()}
        if unknown:
            impute.note(
                f"{table.source}: categories unseen in training, encoded as all zeros: "
                + "; ".join(
                    f"{c!r} in {len(v)} row(s) ({impute.listing(sorted(set(v)), 5)})"
                    for c, v in unknown.items()
                )
            )
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def _no_fill(self) -> str:
        if self.missing == "impute":  # a model fitted where the column had no fill value
            return "; the model stores no fill value for this column: fill or remove such rows"
        return f" (missing={self.missing!r}: fill or remove such rows)"

    def drop_incomplete(self, table: Table, columns: Sequence[str] | None = None) -> Table:
        """``table`` without the rows missing a value in a feature column, with a note.

        ``columns`` defaults to the fitted feature columns (the target is left to
        :func:`~chainrule.data.impute.drop_missing_target`).
        """
        cols = list(columns) if columns is not None else self.feature_names
        keep = impute.complete_rows(table, [c for c in cols if c in table.values])
        dropped = int((~keep).sum())
        if dropped == 0:
            return table
        if not keep.any():
            raise ValueError(f"{table.source}: every row has a missing value (missing='drop')")
        impute.note(
            f"{table.source}: dropped {dropped} of {len(table)} rows with missing values "
            "(missing='drop')"
        )
        return table.select(np.flatnonzero(keep))

    def encode_target(self, table: Table) -> np.ndarray:
        """Class indices (int64) or the standardised regression target (float32, shape (n, 1))."""
        if self.target is None:
            raise ValueError("this preprocessor has no target column")
        col = table.column(self.target)
        if self.task == "classification":
            index = {c: k for k, c in enumerate(self.classes or [])}
            labels = _label_strings(col)
            out = np.empty(len(labels), np.int64)
            for i, v in enumerate(labels):
                k = index.get(v)
                if k is None:  # a model file written before labels were made canonical
                    k = index.get(str(col[i]).strip())
                if k is None:
                    raise ValueError(
                        f"{table.source}: target {v!r} at {_where(i, table)} is not one of the "
                        f"classes the model knows: {impute.listing(self.classes or [])}"
                    )
                out[i] = k
            return out
        nums, missing, bad = _parse_numbers(col, self.target, table.source)
        if missing or bad:
            i = (missing or bad)[0]
            raise ValueError(
                f"{table.source}: invalid target {str(col[i])!r} at {_where(i, table)}"
            )
        z = standardize(nums, self.target_mean, self.target_std)
        return z.astype(np.float32).reshape(-1, 1)

    def target_values(self, table: Table) -> np.ndarray:
        """The raw target: class indices, or regression values in original units."""
        y = self.encode_target(table)
        return y if self.task == "classification" else self.decode_values(y)

    def decode_values(self, out: np.ndarray) -> np.ndarray:
        """Regression outputs back in the target's units."""
        return np.asarray(out, np.float64).reshape(-1) * self.target_std + self.target_mean

    def decode_classes(self, indices: np.ndarray) -> list[str]:
        return [self.classes[int(i)] for i in indices] if self.classes else []

    # ----- persistence ------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "task": self.task,
            "features": self.features,
            "drop": self.drop,
            "classes": self.classes,
            "scale_target": self.scale_target,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "missing": self.missing,
            "ignored": self.ignored,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularPreprocessor:
        try:
            # files written before missing values were handled refuse them ("error")
            p = cls(
                d["target"],
                d["task"],
                drop=d.get("drop", ()),
                scale_target=d["scale_target"],
                missing=d.get("missing", "error"),
            )
            p.ignored = {str(k): str(v) for k, v in dict(d.get("ignored", {})).items()}
            p.features = [dict(f) for f in d["features"]]
            for f in p.features:
                if f["kind"] == "numeric":
                    float(f["mean"]), float(f["std"])
                    if "median" in f:
                        f["median"] = float(f["median"])
                        f["indicator"] = bool(f.get("indicator", False))
                elif f["kind"] == "categorical":
                    f["categories"] = [str(c) for c in f["categories"]]
                    if "fill" in f:
                        f["fill"] = str(f["fill"])
                else:
                    raise ValueError(f"unknown column kind {f['kind']!r}")
            p.classes = None if d["classes"] is None else [str(c) for c in d["classes"]]
            p.target_mean, p.target_std = float(d["target_mean"]), float(d["target_std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"the model file's preprocessing description is invalid: {exc}"
            ) from None
        p.fitted = True
        return p

    def describe(self) -> str:
        lines = [f"task: {self.task}", f"target: {self.target}"]
        if self.classes:
            lines.append(f"classes ({len(self.classes)}): {impute.listing(self.classes)}")
        elif self.task == "regression":
            lines.append(
                f"target scaling: (y - {self.target_mean:.6g}) / {self.target_std:.6g}"
                if self.scale_target
                else "target scaling: none"
            )
        lines.append(f"input columns ({len(self.features)} -> {self.n_inputs} network inputs):")
        for f in self.features:
            k = int(f.get("imputed", 0))
            if f["kind"] == "numeric":
                lines.append(
                    f"  {f['name']}: numeric, standardised "
                    f"(mean {f['mean']:.6g}, std {f['std']:.6g})"
                    + (
                        f"; {k} training values imputed with the median {f['median']:.6g}, "
                        "plus a missing-indicator input"
                        if k
                        else ""
                    )
                )
            else:
                lines.append(
                    f"  {f['name']}: categorical, one-hot over {impute.listing(f['categories'])}"
                    + (f"; {k} training values imputed with {f['fill']!r}" if k else "")
                )
        lines.append(f"missing values: {self.missing}")
        if self.drop:
            lines.append(f"ignored columns: {impute.listing(self.drop)}")
        for name, reason in self.ignored.items():
            lines.append(f"left out: {name}: {reason}")
        return "\n".join(lines)


def train_test_split(
    y: np.ndarray, test_size: float = 0.25, seed: Any = None, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(train, test)``; stratified by class when ``stratify`` and y are labels.

    Each class contributes ``round(test_size · n_class)`` test rows (at least one when it has
    two or more rows), so class proportions are kept in both parts.
    """
    check_number("test_size", test_size, low=0, high=1, low_inclusive=False, high_inclusive=False)
    rng = as_generator(seed, "seed")
    y = np.asarray(y)
    n = len(y)
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into training and test sets")
    if stratify and y.ndim == 1 and y.dtype.kind in "biuO":
        test: list[int] = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            members = members[rng.permutation(len(members))]
            k = round(len(members) * test_size)
            if len(members) >= 2:
                k = min(max(k, 1), len(members) - 1)
            test.extend(members[:k].tolist())
        test_idx = np.sort(np.array(test, dtype=np.int64))
    else:
        k = min(max(round(n * test_size), 1), n - 1)
        test_idx = np.sort(rng.permutation(n)[:k])
    mask = np.ones(n, bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


# ----- CSV files larger than memory ------------------------------------------------------
def read_csv_chunks(
    path: str | os.PathLike[str], chunk_rows: int = 65536, delimiter: str | None = None
) -> Any:
    """Yield a CSV file as :class:`Table` chunks of at most ``chunk_rows`` rows.

    Memory stays proportional to one chunk. Error messages count rows from the start of the
    file, as :func:`read_csv` does.
    """
    check_number("chunk_rows", chunk_rows, low=1, integer=True)
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    with open(p, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(fh, delimiter))
        header = None
        for row in reader:
            if row and any(f.strip() for f in row):
                header = [h.strip() for h in row]
                break
        if header is None:
            raise ValueError(f"{p!r} is empty: expected a header row and data rows")
        _check_header(header, p)
        start = 0
        rows: list[list[str]] = []
        lines: list[int] = []
        line = reader.line_num
        for row in reader:
            first, line = line + 1, reader.line_num  # the record spans lines first..line
            if not row or not any(f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{p!r}: row {start + len(rows) + 1} (line {first}) has {len(row)} fields, "
                    f"the header has {len(header)}"
                )
            rows.append(row)
            lines.append(first)
            if len(rows) == chunk_rows:
                yield _chunk_table(header, rows, p, start, lines)
                start += len(rows)
                rows, lines = [], []
        if rows:
            yield _chunk_table(header, rows, p, start, lines)


def _chunk_table(
    header: list[str], rows: list[list[str]], path: str, start: int, lines: list[int]
) -> Table:
    cols = {h: np.array([r[j].strip() for r in rows], dtype=object) for j, h in enumerate(header)}
    t = Table(
        list(header),
        cols,
        os.path.basename(path),
        np.arange(start, start + len(rows)),
        np.array(lines, dtype=np.int64),
    )
    t.row_offset = start  # type: ignore[attr-defined]
    return t


def csv_to_npy(
    path: str | os.PathLike[str],
    target: str,
    out_dir: str | os.PathLike[str],
    task: str = "auto",
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
    chunk_rows: int = 65536,
) -> tuple[TabularPreprocessor, np.ndarray, np.ndarray]:
    """Convert a CSV file of any size into memory-mapped ``X.npy`` / ``y.npy``, in chunks.

    Two passes over the file, each holding one chunk in memory: the first learns the
    preprocessing (column kinds, means and spreads, categories, classes), the second writes
    the transformed rows. Returns the fitted preprocessor and the two arrays opened
    read-only as memory maps, ready for :func:`chainrule.fit`.
    """
    # pass 1: statistics, merged chunk by chunk (Chan et al.'s parallel variance)
    stats: dict[str, Any] = {}
    kinds: dict[str, set[str]] = {}
    probe: TabularPreprocessor | None = None
    n = 0
    labels: set[str] = set()
    tstats = Moments()
    tstats_max = 0.0
    first_bad: tuple[str, str] | None = None
    for chunk in read_csv_chunks(path, chunk_rows):
        if probe is None:
            probe = TabularPreprocessor(target, task, categorical, drop)
            for name in [*categorical, *drop, target]:
                chunk.column(name)
        names = [c for c in chunk.columns if c != target and c not in drop]
        for name in names:
            col = chunk.values[name]
            nums, missing, bad = _parse_numbers(col, name, chunk.source)
            if missing:
                raise ValueError(
                    f"{chunk.source}: missing value in column {name!r} at "
                    f"{_where(missing[0], chunk)}"
                )
            if bad and name not in categorical:
                _refuse_formatted_numbers(col, bad, name, chunk)
            kind = (
                "categorical"
                if (name in categorical or len(bad) == len(col))
                else ("mixed" if bad else "numeric")
            )
            kinds.setdefault(name, set()).add(kind)
            s = stats.setdefault(name, {"moments": Moments(), "cats": set()})
            if kind == "categorical":
                s["cats"].update(str(v).strip() for v in col)
                if len(s["cats"]) > MAX_CATEGORIES:
                    raise ValueError(
                        f"column {name!r} has more than {MAX_CATEGORIES} distinct text values: "
                        f"too many to one-hot encode (limit {MAX_CATEGORIES}); drop it if it is "
                        "an identifier"
                    )
            elif kind == "numeric":
                s["moments"].update(nums)
            else:
                raise ValueError(
                    f"{chunk.source}: non-numeric value {str(col[bad[0]])!r} in numeric column "
                    f"{name!r} at {_where(bad[0], chunk)}"
                )
        tcol = chunk.values[target]
        tn, tmiss, tbad = _parse_numbers(tcol, target, chunk.source)
        if tbad and first_bad is None:
            first_bad = (_where(tbad[0], chunk), str(tcol[tbad[0]]))
        if tmiss:
            raise ValueError(f"{chunk.source}: missing target value at {_where(tmiss[0], chunk)}")
        labels.update(_label_strings(tcol).tolist() if len(labels) < 10_000 else [])
        if not tbad:
            tstats.update(tn)
            tstats_max = max(tstats_max, float(np.max(np.abs(tn))))
        n += len(chunk)
    if probe is None or n == 0:
        raise ValueError(f"{os.fspath(path)!r} has a header but no data rows")
    for name, ks in kinds.items():
        if len(ks) > 1:
            raise ValueError(f"column {name!r} mixes numbers and text across the file")
    prep = probe
    prep.features = []
    for name, ks in kinds.items():
        s = stats[name]
        if "categorical" in ks:
            prep.features.append(
                {"name": name, "kind": "categorical", "categories": sorted(s["cats"])}
            )
        else:
            mean, std = s["moments"].result()
            prep.features.append(
                {"name": name, "kind": "numeric", "mean": mean, "std": std if std > 0 else 1.0}
            )
    numeric_labels = all(_is_number(v) for v in labels)
    if prep.task == "auto":
        integral = numeric_labels and all(float(v) == int(float(v)) for v in labels)
        prep.task = (
            "classification"
            if (not numeric_labels or (integral and len(labels) <= min(20, max(2, n // 5))))
            else "regression"
        )
    if prep.task == "classification":
        prep.classes = _sorted_classes(sorted(labels))
        if len(prep.classes) < 2:
            raise ValueError(
                f"the target column {target!r} has a single class "
                f"({prep.classes[0]!r}); classification needs at least two"
            )
    else:
        if first_bad is not None:
            raise ValueError(
                f"{os.path.basename(os.fspath(path))}: non-numeric target {first_bad[1]!r} in "
                f"column {target!r} at {first_bad[0]} (task is regression)"
            )
        _check_target_range(np.array([tstats_max]), target, os.path.basename(os.fspath(path)))
        mean, std = tstats.result()
        prep.target_mean, prep.target_std = mean, std if std > 0 else 1.0
    prep.fitted = True
    # pass 2: transform chunk by chunk into memory-mapped arrays
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    X = np.lib.format.open_memmap(
        os.path.join(out, "X.npy"), mode="w+", dtype=np.float32, shape=(n, prep.n_inputs)
    )
    ydt, yshape = (np.int64, (n,)) if prep.task == "classification" else (np.float32, (n, 1))
    Y = np.lib.format.open_memmap(os.path.join(out, "y.npy"), mode="w+", dtype=ydt, shape=yshape)
    row = 0
    for chunk in read_csv_chunks(path, chunk_rows):
        k = len(chunk)
        X[row : row + k] = prep.transform(chunk)
        Y[row : row + k] = prep.encode_target(chunk)
        row += k
    X.flush()
    Y.flush()
    del X, Y
    return (
        prep,
        np.load(os.path.join(out, "X.npy"), mmap_mode="r"),
        np.load(os.path.join(out, "y.npy"), mmap_mode="r"),
    )


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True
