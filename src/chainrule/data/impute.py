"""Missing values and column roles for tables: what the preprocessor imputes, drops or leaves out.

* Missing values (empty, ``NA``, ``NaN``, ``null``, ``?``…) are handled by ``missing=``:
  ``"impute"`` (default) fills a numeric column with its training median and adds a 0/1
  missing-indicator input where training values were missing (scikit-learn's
  ``SimpleImputer(strategy="median", add_indicator=True)``), and a categorical column with its
  most frequent training value; ``"drop"`` removes incomplete rows; ``"error"`` refuses them.
* Columns that look like identifiers (a distinct value in most rows) or free text (sentences)
  are left out with a note, unless named as categorical.
* Notes to the user are :class:`DataNote` warnings: one line each, at most ten values listed.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING_MODES = ("impute", "drop", "error")
# a text column with more distinct values than this share of its rows, and at least
# ID_MIN_DISTINCT of them, is an identifier: its categories would mostly be unseen in new rows
ID_SHARE = 0.5
ID_MIN_DISTINCT = 20
# free text: distinct values of at least this many words on average (sentences, comments)
TEXT_MIN_WORDS = 5
LIST_LIMIT = 10


class DataNote(UserWarning):
    """A one-line note about the data: columns left out, values imputed, rows dropped."""


def note(message: str) -> None:
    """Tell the user ``message`` (a :class:`DataNote`; the CLI prints it as ``note: ...``)."""
    warnings.warn(message, DataNote, stacklevel=3)


def listing(values: Sequence[Any], limit: int = LIST_LIMIT) -> str:
    """``values`` joined by commas, at most ``limit`` of them: ``"a, b, c … and 180 more"``."""
    items = [str(v) for v in values]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} … and {len(items) - limit} more"


def check_missing_mode(missing: str) -> str:
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be 'impute', 'drop' or 'error', got {missing!r}")
    return missing


def most_frequent(values: Sequence[str]) -> str:
    """The most frequent value; ties go to the smallest (as scikit-learn's SimpleImputer)."""
    counts = Counter(values)
    top = max(counts.values())
    return min(v for v, k in counts.items() if k == top)


def leave_out_reason(
    col: np.ndarray, missing: Sequence[int], bad: Sequence[int], n_rows: int
) -> str | None:
    """Why a column should be left out of the inputs (None: keep it).

    ``missing`` and ``bad`` are the rows that are missing and non-numeric. Only text columns
    (every present value non-numeric) can look like identifiers or free text; a column with no
    value at all is left out too.
    """
    present = n_rows - len(missing)
    if present == 0:
        return "no values at all"
    if len(bad) != present:  # numbers (possibly with gaps): a measurement, not a label
        return None
    values = {str(col[i]).strip() for i in bad}
    words = sum(len(v.split()) for v in values) / len(values)
    if words >= TEXT_MIN_WORDS:
        return f"free text ({len(values)} distinct values of {words:.0f} words on average)"
    if len(values) >= ID_MIN_DISTINCT and len(values) > ID_SHARE * present:
        return f"identifier-like ({len(values)} distinct values in {present} rows)"
    return None


def is_missing(value: Any) -> bool:
    from .tables import MISSING

    if isinstance(value, float) and value != value:
        return True
    return str(value).strip().lower() in MISSING


def missing_rows(col: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``col`` that are missing."""
    if col.dtype.kind in "biuf":  # NaN is missing; an infinity is a value (refused elsewhere)
        return np.isnan(col.astype(np.float64))
    return np.fromiter((is_missing(v) for v in col), bool, len(col))


def complete_rows(table: Any, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows with a value in every one of ``columns``."""
    keep = np.ones(len(table), bool)
    for c in columns:
        keep &= ~missing_rows(table.values[c])
    return keep


def drop_missing_target(table: Any, target: str) -> Any:
    """``table`` without the rows whose target is missing (never imputed), with a note."""
    keep = ~missing_rows(table.column(target))
    dropped = int((~keep).sum())
    if dropped == 0:
        return table
    if not keep.any():
        raise ValueError(f"{table.source}: the target column {target!r} has no values")
    note(
        f"{table.source}: dropped {dropped} of {len(table)} rows without a value in the target "
        f"column {target!r} (targets are never imputed)"
    )
    return table.select(np.flatnonzero(keep))


def imputation_summary(features: Sequence[dict[str, Any]]) -> str:
    """One line: how many training values were imputed in each column, and with what."""
    parts = []
    for f in features:
        k = int(f.get("imputed", 0))
        if not k:
            continue
        if f["kind"] == "numeric":
            parts.append(f"{f['name']} {k} (median {f['median']:.6g})")
        else:
            parts.append(f"{f['name']} {k} (most frequent {f['fill']!r})")
    if not parts:
        return ""
    return "imputed training values: " + listing(parts)
