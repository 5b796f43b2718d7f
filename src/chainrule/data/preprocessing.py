"""Preprocessing that travels with the model: :class:`TabularPreprocessor` learns, from the
training rows only, how to turn raw columns into the network's inputs and how to encode the
target; it is saved in the model file. Re-exported by :mod:`chainrule.data.tabular`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import impute
from ._moments import moments, standardize
from .tables import (
    MAX_CATEGORIES,
    MISSING,
    Table,
    _where,
)


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
