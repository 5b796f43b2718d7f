"""The trainer's data: batches gathered into reused buffers, rows of memory-mapped files read
with ``pread``, sample and class weights, and the stratified validation split.

A mixin of :class:`~chainrule.training.trainer.Trainer` (it uses the trainer's ``dtype``,
``rng`` and file state); kept apart so that the trainer module reads as the loop and the step.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._validation import check_number
from ._inputs import as_data, batches_to_arrays, check_finite, is_batches

__all__ = ["MemmapRows"]


def _file_position(X: np.memmap) -> int | None:
    """Byte position in its file of ``X[0]``, or None if rows cannot be read with ``pread``.

    A view of a memory map (``mm[2000:]``, ``mm[::-3]``) keeps its parent's ``offset``, which is
    where the *mapping* starts in the file, not where the view does: the view's first row is
    ``offset`` plus its distance from the mapped array's first byte. Each row must itself be
    one contiguous run of bytes (any row stride, negative too), and the mapping must show the
    file (not copy-on-write, ``mode="c"``, whose private writes ``pread`` would not see).
    """
    root: Any = X
    while isinstance(root.base, np.ndarray):
        root = root.base
    if (
        X.ndim == 0
        or getattr(root, "_mmap", None) is None
        or root.base is not root._mmap
        or getattr(X, "mode", None) == "c"
        or not isinstance(getattr(root, "offset", None), int)
        or not (X.ndim == 1 or X[:1].flags.c_contiguous)  # each row contiguous
        or X.strides[0] == 0
    ):
        return None
    return int(root.offset) + (X.ctypes.data - root.ctypes.data)


class MemmapRows:
    """Some rows of a memory-mapped array, read on demand with ``pread``: the training rows of
    ``fit(memmap, validation_split=...)``, which are never copied into memory as a whole.

    It has what the training loop asks of its inputs: ``len``, ``shape``, ``dtype``, ``ndim``
    and ``rows[idx]`` (an int, a slice or an index array: a fresh array of those rows, in that
    order). ``np.asarray(rows)`` reads them all.
    """

    def __init__(self, base: np.memmap, rows: np.ndarray, read: Any) -> None:
        self.base, self.rows, self._read = base, np.asarray(rows, np.int64), read
        self.shape: tuple[int, ...] = (len(self.rows), *base.shape[1:])
        self.dtype, self.ndim = base.dtype, base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._read(self.base, self.rows[idx : idx + 1 or None])[0]  # type: ignore[no-any-return]
        return self._read(self.base, self.rows[idx])  # type: ignore[no-any-return]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"MemmapRows({len(self)} of {len(self.base)} rows of {self.base.filename!r})"


class _DataMixin:
    """Batches, weights and the validation split of a :class:`Trainer`."""

    dtype: Any
    rng: np.random.Generator
    _xbuf: dict[tuple[int, ...], np.ndarray]
    _fd: tuple[str, int] | None

    def _fit_data(
        self,
        X: Any,
        y: Any,
        batch_size: int | None,
        validation_data: tuple[Any, ...] | None,
        validation_split: float,
        sample_weight: Any,
        class_weight: Any,
    ) -> tuple[Any, Any, np.ndarray | None, Any, Any, Any, int | None]:
        """The data of a fit, checked, weighed and split: ``(X, y, w, Xv, yv, wv, batch_size)``.

        Batches (a DataLoader, a generator, a list of ``(x, y)``) become arrays; the validation
        data is given or split off with the run's generator (stratified for class labels).
        """
        if y is None and is_batches(X):  # a DataLoader, a generator, a list of (x, y)
            X, y, w_batches, batch_size = batches_to_arrays(X, "fit")
            if sample_weight is None:
                sample_weight = w_batches
        if batch_size is not None:
            check_number("batch_size", batch_size, low=1, integer=True)
        check_number("validation_split", validation_split, low=0, high=1, high_inclusive=False)
        X = as_data("X", X)
        check_finite("X", X)
        if y is None:
            raise ValueError("y is required: fit trains against targets")
        y = as_data("y", y)
        if len(y) != len(X):
            raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
        check_finite("y", y)
        n = len(X)
        w = self._weights(y, n, sample_weight, class_weight)
        Xv = yv = wv = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(
                    "validation_data must be a tuple (X_val, y_val[, sample_weight_val])"
                )
            Xv = as_data("validation X", validation_data[0])
            yv = as_data("validation y", validation_data[1])
            if len(Xv) != len(yv):
                raise ValueError(
                    f"validation X and y have different numbers of samples: {len(Xv)} and {len(yv)}"
                )
            check_finite("validation X", Xv)
            wv = None if len(validation_data) == 2 else np.asarray(validation_data[2], np.float64)
            train_idx = None
        elif validation_split > 0:
            train_idx, val_idx = self._split(y, validation_split)
            # a memory-mapped set: the rows are read with pread, never through the mapping
            # (which would make the touched pages resident), and the training rows are left
            # in the file, read batch by batch (MemmapRows)
            mapped = isinstance(X, np.memmap) and _file_position(X) is not None
            Xv, yv = (self._read_rows(X, val_idx) if mapped else X[val_idx]), y[val_idx]
            wv = None if w is None else w[val_idx]
        else:
            train_idx = None
        if train_idx is not None:
            X = MemmapRows(X, train_idx, self._read_rows) if mapped else X[train_idx]
            y = y[train_idx]
            w = None if w is None else w[train_idx]
        return X, y, w, Xv, yv, wv, batch_size

    def _batch(self, X: np.ndarray, idx: Any) -> np.ndarray:
        if (
            isinstance(idx, np.ndarray)
            and X.dtype == self.dtype
            and type(X) is np.ndarray
            and X.flags.c_contiguous
        ):
            # gather the rows into a reused buffer (no allocation per batch)
            shape = (len(idx), *X.shape[1:])
            buf = self._xbuf.get(shape)
            if buf is None:
                buf = self._xbuf[shape] = np.empty(shape, X.dtype)
            return np.take(X, idx, axis=0, out=buf)
        if isinstance(X, np.memmap):
            xb = self._read_rows(X, idx)
        elif isinstance(X, MemmapRows):
            xb = X[idx]
        else:
            xb = X[idx]
        if xb.dtype != self.dtype:
            xb = xb.astype(self.dtype)
        return xb

    def _read_rows(self, X: np.memmap, idx: Any) -> np.ndarray:
        """Rows of a memory-mapped file, read with ``pread`` instead of through the mapping.

        Touching a mapping makes its pages resident in this process (whole large folios at a
        time on current kernels), so shuffled batches from a big ``.npy`` would soon count the
        entire file in the process's memory. Reading the rows with ``os.preadv`` straight into
        the batch buffer keeps the footprint to the batch itself; the data still comes from
        the kernel's page cache.
        """
        filename = getattr(X, "filename", None)
        start = _file_position(X)
        if filename is None or start is None or not hasattr(os, "preadv"):
            return np.array(X[idx])
        rows = np.arange(len(X))[idx] if not isinstance(idx, np.ndarray) else idx
        out = np.empty((len(rows), *X.shape[1:]), X.dtype)
        row_bytes = out[0].nbytes if len(rows) else 0
        row_stride = X.strides[0] if X.ndim else 0
        if self._fd is None or self._fd[0] != filename:
            if self._fd is not None:
                os.close(self._fd[1])
            self._fd = (filename, os.open(filename, os.O_RDONLY))
        fd = self._fd[1]
        view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        for k, r in enumerate(rows.tolist()):
            got = os.preadv(fd, [view[k * row_bytes : (k + 1) * row_bytes]], start + r * row_stride)
            if got != row_bytes:
                raise ValueError(f"{filename!r} ended early: row {r} is incomplete")
        return out

    def _weights(
        self, y: np.ndarray, n: int, sample_weight: Any, class_weight: Any
    ) -> np.ndarray | None:
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("sample_weight must be finite and non-negative")
        if class_weight is not None:
            labels = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
            classes, counts = np.unique(labels, return_counts=True)
            if class_weight == "balanced":
                cw = {c: n / (len(classes) * k) for c, k in zip(classes.tolist(), counts.tolist())}
            elif isinstance(class_weight, dict):
                cw = {k: float(v) for k, v in class_weight.items()}
                unknown = set(cw) - set(classes.tolist())
                if unknown:
                    raise ValueError(f"class_weight names classes not in y: {sorted(unknown)}")
            else:
                raise TypeError("class_weight must be a dict {class: weight} or 'balanced'")
            per = np.array([cw.get(v, 1.0) for v in labels.tolist()], dtype=np.float64)
            w = per if w is None else w * per
        return w

    def _split(self, y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        n_val = max(1, round(fraction * n))
        if n_val >= n:
            raise ValueError(f"validation_split={fraction} leaves no training samples out of {n}")
        labels = y if y.ndim == 1 and y.dtype.kind in "biu" else None
        if labels is not None:
            val: list[int] = []
            classes = np.unique(labels)
            for c in classes:
                members = np.flatnonzero(labels == c)
                members = members[self.rng.permutation(len(members))]
                take = round(len(members) * n_val / n)
                val.extend(members[:take].tolist())
            val_idx = np.sort(np.array(val, dtype=np.int64))
        if labels is None or len(val_idx) == 0:  # many small classes round to none: not stratified
            val_idx = np.sort(self.rng.permutation(n)[:n_val])
        mask = np.ones(n, bool)
        mask[val_idx] = False
        return np.flatnonzero(mask), val_idx
