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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._random import as_generator
from .._validation import check_number

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
    """Named columns: float arrays (numbers) or object arrays of strings (as read)."""

    columns: list[str]
    values: dict[str, np.ndarray]
    source: str = "data"

    def __len__(self) -> int:
        return len(self.values[self.columns[0]]) if self.columns else 0

    def select(self, rows: np.ndarray) -> Table:
        return Table(list(self.columns), {c: v[rows] for c, v in self.values.items()}, self.source)

    def column(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise ValueError(
                f"{self.source} has no column {name!r}; its columns are: {', '.join(self.columns)}"
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


def _where(row: int) -> str:
    return f"row {row + 1} (line {row + 2})"


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
            rows = list(csv.reader(fh, delimiter=_delimiter(fh, delimiter)))
    except UnicodeDecodeError:
        raise ValueError(f"{p!r} is not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ValueError(f"{p!r} is not valid CSV: {exc}") from None
    rows = [r for r in rows if r and any(f.strip() for f in r)]
    if not rows:
        raise ValueError(f"{p!r} is empty: expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if any(not h for h in header):
        raise ValueError(
            f"{p!r}: the header has an empty column name (column {header.index('') + 1})"
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ValueError(f"{p!r}: duplicate column names in the header: {', '.join(dupes)}")
    body = rows[1:]
    if not body:
        raise ValueError(f"{p!r} has a header but no data rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(
                f"{p!r}: {_where(i)} has {len(r)} fields, the header has {len(header)}"
            )
    cols = {h: np.array([r[j].strip() for r in body], dtype=object) for j, h in enumerate(header)}
    return Table(header, cols, os.path.basename(p))


def read_array_file(path: str | os.PathLike[str], target: str | None = None) -> Table:
    """Read ``.npy`` (2-D; columns ``x0, x1, ...``) or ``.npz`` (arrays ``X`` and ``y``).

    No pickled objects are loaded (``allow_pickle=False``).
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
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
            missing.append(i)
    return out, missing, bad


def _sorted_classes(values: Sequence[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _label_strings(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind in "biuf":
        return np.array(
            [f"{v:g}" if float(v) != int(v) else str(int(v)) for v in col], dtype=object
        )
    return np.array([str(v).strip() for v in col], dtype=object)


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
        Columns to ignore (identifiers, free text).
    scale_target : bool, default True
        Standardise a regression target for training (predictions are mapped back).
    """

    def __init__(
        self,
        target: str | None,
        task: str = "auto",
        categorical: Sequence[str] = (),
        drop: Sequence[str] = (),
        scale_target: bool = True,
    ) -> None:
        if task not in ("auto", "classification", "regression"):
            raise ValueError(f"task must be auto, classification or regression, got {task!r}")
        self.target = target
        self.task = task
        self.categorical = list(categorical)
        self.drop = list(drop)
        self.scale_target = bool(scale_target)
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
        for name in names:
            col = table.values[name]
            nums, missing, bad = _parse_numbers(col, name, table.source)
            if missing:
                raise ValueError(
                    f"{table.source}: missing value in column {name!r} at {_where(missing[0])}"
                    + (f" and {len(missing) - 1} more rows" if len(missing) > 1 else "")
                    + "; fill or remove them first"
                )
            categorical = name in self.categorical or (bad and len(bad) == len(col))
            if categorical:
                cats = sorted({str(v).strip() for v in col})
                if len(cats) > MAX_CATEGORIES:
                    raise ValueError(
                        f"column {name!r} has {len(cats)} distinct text values: too many to "
                        f"one-hot encode (limit {MAX_CATEGORIES}); drop it if it is an identifier"
                    )
                self.features.append({"name": name, "kind": "categorical", "categories": cats})
            elif bad:
                raise ValueError(
                    f"{table.source}: non-numeric value {str(col[bad[0]])!r} in numeric column "
                    f"{name!r} at {_where(bad[0])}"
                )
            else:
                std = float(nums.std())
                self.features.append(
                    {
                        "name": name,
                        "kind": "numeric",
                        "mean": float(nums.mean()),
                        "std": std if std > 0 else 1.0,
                    }
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
                f"{_where(missing[0])}"
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
                    f"{self.target!r} at {_where(bad[0])} (task is regression)"
                )
            self.classes = None
            if self.scale_target:
                std = float(nums.std())
                self.target_mean, self.target_std = float(nums.mean()), std if std > 0 else 1.0

    # ----- transforming ------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.features]

    @property
    def n_inputs(self) -> int:
        return sum(1 if f["kind"] == "numeric" else len(f["categories"]) for f in self.features)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" and self.classes else 1

    def input_names(self) -> list[str]:
        out = []
        for f in self.features:
            if f["kind"] == "numeric":
                out.append(f["name"])
            else:
                out.extend(f"{f['name']}={c}" for c in f["categories"])
        return out

    def check_columns(self, table: Table) -> None:
        """Refuse a table whose columns differ from the training columns, naming them."""
        known = set(self.feature_names)
        allowed = known | set(self.drop) | ({self.target} if self.target else set())
        missing = [c for c in self.feature_names if c not in table.values]
        extra = [c for c in table.columns if c not in allowed]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing columns: {', '.join(missing)}")
            if extra:
                parts.append(f"unknown columns: {', '.join(extra)}")
            raise ValueError(
                f"{table.source} does not match the model's columns ({'; '.join(parts)}); "
                f"the model expects: {', '.join(self.feature_names)}"
            )

    def transform(self, table: Table) -> np.ndarray:
        """The network's input matrix (float32) for the rows of ``table``."""
        if not self.fitted:
            raise ValueError("the preprocessor is not fitted yet: call fit() first")
        self.check_columns(table)
        n = len(table)
        blocks = []
        for f in self.features:
            col = table.values[f["name"]]
            if f["kind"] == "numeric":
                nums, missing, bad = _parse_numbers(col, f["name"], table.source)
                if missing or bad:
                    i = (missing or bad)[0]
                    what = "missing value" if missing else f"non-numeric value {str(col[i])!r}"
                    raise ValueError(
                        f"{table.source}: {what} in column {f['name']!r} at {_where(i)}"
                    )
                blocks.append(((nums - f["mean"]) / f["std"]).reshape(n, 1))
            else:
                cats = f["categories"]
                index = {c: k for k, c in enumerate(cats)}
                onehot = np.zeros((n, len(cats)))
                for i, v in enumerate(col):
                    k = index.get(str(v).strip())
                    if k is None:
                        raise ValueError(
                            f"{table.source}: column {f['name']!r} has the category {str(v)!r} at "
                            f"{_where(i)}, unseen in training; known: {', '.join(cats)}"
                        )
                    onehot[i, k] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1).astype(np.float32)

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
                if k is None:
                    raise ValueError(
                        f"{table.source}: target {v!r} at {_where(i)} is not one of the classes "
                        f"the model knows: {', '.join(self.classes or [])}"
                    )
                out[i] = k
            return out
        nums, missing, bad = _parse_numbers(col, self.target, table.source)
        if missing or bad:
            i = (missing or bad)[0]
            raise ValueError(f"{table.source}: invalid target {str(col[i])!r} at {_where(i)}")
        return ((nums - self.target_mean) / self.target_std).astype(np.float32).reshape(-1, 1)

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularPreprocessor:
        try:
            p = cls(d["target"], d["task"], drop=d.get("drop", ()), scale_target=d["scale_target"])
            p.features = [dict(f) for f in d["features"]]
            for f in p.features:
                if f["kind"] == "numeric":
                    float(f["mean"]), float(f["std"])
                elif f["kind"] == "categorical":
                    f["categories"] = [str(c) for c in f["categories"]]
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
            lines.append(f"classes ({len(self.classes)}): {', '.join(self.classes)}")
        elif self.task == "regression":
            lines.append(
                f"target scaling: (y - {self.target_mean:.6g}) / {self.target_std:.6g}"
                if self.scale_target
                else "target scaling: none"
            )
        lines.append(f"input columns ({len(self.features)} -> {self.n_inputs} network inputs):")
        for f in self.features:
            if f["kind"] == "numeric":
                lines.append(
                    f"  {f['name']}: numeric, standardised "
                    f"(mean {f['mean']:.6g}, std {f['std']:.6g})"
                )
            else:
                lines.append(
                    f"  {f['name']}: categorical, one-hot over {', '.join(f['categories'])}"
                )
        if self.drop:
            lines.append(f"ignored columns: {', '.join(self.drop)}")
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
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise ValueError(f"{p!r}: duplicate column names in the header: {', '.join(dupes)}")
        start = 0
        rows: list[list[str]] = []
        for row in reader:
            if not row or not any(f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{p!r}: {_where(start + len(rows))} has {len(row)} fields, "
                    f"the header has {len(header)}"
                )
            rows.append(row)
            if len(rows) == chunk_rows:
                yield _chunk_table(header, rows, p, start)
                start += len(rows)
                rows = []
        if rows:
            yield _chunk_table(header, rows, p, start)


def _chunk_table(header: list[str], rows: list[list[str]], path: str, start: int) -> Table:
    cols = {h: np.array([r[j].strip() for r in rows], dtype=object) for j, h in enumerate(header)}
    t = Table(list(header), cols, os.path.basename(path))
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
    tstats = [0, 0.0, 0.0]
    for chunk in read_csv_chunks(path, chunk_rows):
        if probe is None:
            probe = TabularPreprocessor(target, task, categorical, drop)
            for name in [*categorical, *drop, target]:
                chunk.column(name)
        names = [c for c in chunk.columns if c != target and c not in drop]
        for name in names:
            col = chunk.values[name]
            nums, missing, bad = _parse_numbers(col, name, chunk.source)
            offset = getattr(chunk, "row_offset", 0)
            if missing:
                raise ValueError(
                    f"{chunk.source}: missing value in column {name!r} at "
                    f"{_where(offset + missing[0])}"
                )
            kind = (
                "categorical"
                if (name in categorical or len(bad) == len(col))
                else ("mixed" if bad else "numeric")
            )
            kinds.setdefault(name, set()).add(kind)
            s = stats.setdefault(name, {"n": 0, "mean": 0.0, "m2": 0.0, "cats": set()})
            if kind == "categorical":
                s["cats"].update(str(v).strip() for v in col)
            elif kind == "numeric":
                k = len(nums)
                mean_b = float(nums.mean())
                m2_b = float(((nums - mean_b) ** 2).sum())
                tot = s["n"] + k
                delta = mean_b - s["mean"]
                s["mean"] += delta * k / tot
                s["m2"] += m2_b + delta * delta * s["n"] * k / tot
                s["n"] = tot
            else:
                raise ValueError(
                    f"{chunk.source}: non-numeric value {str(col[bad[0]])!r} in numeric column "
                    f"{name!r} at {_where(offset + bad[0])}"
                )
        tcol = chunk.values[target]
        tn, tmiss, tbad = _parse_numbers(tcol, target, chunk.source)
        if tmiss:
            raise ValueError(
                f"{chunk.source}: missing target value at "
                f"{_where(getattr(chunk, 'row_offset', 0) + tmiss[0])}"
            )
        labels.update(_label_strings(tcol).tolist() if len(labels) < 10_000 else [])
        if not tbad:
            tstats[0] += len(tn)
            tstats[1] += float(tn.sum())
            tstats[2] += float((tn.astype(np.float64) ** 2).sum())
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
            std = float(np.sqrt(s["m2"] / s["n"]))
            prep.features.append(
                {"name": name, "kind": "numeric", "mean": s["mean"], "std": std if std > 0 else 1.0}
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
    else:
        mean = tstats[1] / tstats[0]
        std = float(np.sqrt(max(tstats[2] / tstats[0] - mean * mean, 0.0)))
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
