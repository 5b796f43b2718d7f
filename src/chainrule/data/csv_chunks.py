"""CSV files larger than memory: :func:`read_csv_chunks` and :func:`csv_to_npy` (two passes,
constant memory). Re-exported by :mod:`chainrule.data.tabular`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_number
from ..io import atomic_write_text
from ._moments import Moments
from .preprocessing import (
    TabularPreprocessor,
    _check_target_range,
    _label_strings,
    _parse_numbers,
    _refuse_formatted_numbers,
    _sorted_classes,
)
from .tables import (
    MAX_CATEGORIES,
    Table,
    _check_header,
    _delimiter,
    _where,
)


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
    read-only as memory maps, ready for :func:`chainrule.fit`; the preprocessing is also
    written to ``preprocessing.json`` so that ``chainrule train --data out_dir`` can train on
    the directory (on any number of processes, each reading only its rows).
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
    # the preprocessing beside the arrays: `chainrule train --data OUT_DIR` needs it
    atomic_write_text(os.path.join(out, "preprocessing.json"), json.dumps(prep.to_dict()) + "\n")
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
