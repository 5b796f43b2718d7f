"""Tables from CSV/NPY/NPZ files, splits, and preprocessing that travels with the model.

:class:`TabularPreprocessor` learns, from the training rows only, how to turn raw columns into
the network's inputs — standardising numeric columns and one-hot encoding categorical ones —
and how to encode the target (class names to indices; regression values standardised). It is
saved inside the model file (``extra["preprocessing"]``), so a loaded model predicts on raw rows
and refuses rows whose columns do not match, naming them.

The readers live in :mod:`~chainrule.data.tables`, the preprocessing in
:mod:`~chainrule.data.preprocessing` and the out-of-memory CSV tools in
:mod:`~chainrule.data.csv_chunks`; every name is importable from here as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._random import as_generator
from .._validation import check_number
from .csv_chunks import (  # noqa: F401
    _chunk_table,
    _is_number,
    csv_to_npy,
    read_csv_chunks,
)
from .preprocessing import (  # noqa: F401
    _FORMATTED_NUMBER,
    TARGET_LIMIT,
    TabularPreprocessor,
    _canonical_label,
    _check_target_range,
    _label_strings,
    _parse_numbers,
    _refuse_formatted_numbers,
    _sorted_classes,
)
from .tables import (  # noqa: F401
    MAX_CATEGORIES,
    MISSING,
    Table,
    _check_header,
    _delimiter,
    _where,
    read_array_file,
    read_csv,
    read_table,
)

__all__ = [
    "MISSING",
    "Table",
    "TabularPreprocessor",
    "read_array_file",
    "read_csv",
    "read_table",
    "train_test_split",
]


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
