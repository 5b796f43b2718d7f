"""Metrics on NumPy arrays, with scikit-learn's definitions (macro averages, zero_division=0).

In ``fit(metrics=[...])`` a metric is named by a string (``"accuracy"``, ``"f1"``, ``"r2"``, ...)
or given as a callable ``f(y_true, y_pred) -> float``. Classification metrics receive predicted
labels; ``log_loss`` receives predicted probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "accuracy",
    "confusion_matrix",
    "f1",
    "get_metric",
    "log_loss",
    "mae",
    "mse",
    "precision",
    "r2",
    "recall",
    "rmse",
]


def _labels(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[Any] | None) -> np.ndarray:
    if labels is not None:
        return np.asarray(labels)
    return np.union1d(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel())


def _check_pair(y_true: Any, y_pred: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y_true), np.asarray(y_pred)
    for what, v in (("y_true", a), ("y_pred", b)):
        if v.ndim == 0:
            raise ValueError(
                f"{name}: {what} must have one value per sample (shape (n,)), got shape ()"
            )
    if a.shape[0:1] != b.shape[0:1]:
        raise ValueError(f"{name}: y_true has {a.shape[0]} rows, y_pred has {b.shape[0]}")
    # (n,) and (n, 1) are the same thing; any other difference would broadcast or reshape wrongly
    if a.shape != b.shape:
        if len(a) and not a[0].size == b[0].size == 1:
            raise ValueError(
                f"{name}: y_true has shape {a.shape} and y_pred {b.shape}; they must match (one "
                "value per sample, or one per output)"
            )
        b = b.reshape(a.shape)  # never compared by broadcasting ((n,) == (n, 1) is (n, n))
    return a, b


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of exactly right predictions (all labels of a row, for multilabel)."""
    a, b = _check_pair(y_true, y_pred, "accuracy")
    if a.size == 0:
        return float("nan")
    eq = a == b
    if eq.ndim > 1:
        eq = eq.all(axis=tuple(range(1, eq.ndim)))
    return float(eq.mean())


def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``labels[i]`` predicted as ``labels[j]``."""
    a, b = _check_pair(y_true, y_pred, "confusion_matrix")
    labs = _labels(a, b, labels)
    index = {v: i for i, v in enumerate(labs.tolist())}
    k = len(labs)
    ia = np.array([index.get(v, -1) for v in a.ravel().tolist()], dtype=np.int64)
    ib = np.array([index.get(v, -1) for v in b.ravel().tolist()], dtype=np.int64)
    keep = (ia >= 0) & (ib >= 0)
    return np.bincount(ia[keep] * k + ib[keep], minlength=k * k).reshape(k, k).astype(np.int64)


def _prf(y_true: Any, y_pred: Any, labels: Sequence[Any] | None) -> tuple[np.ndarray, ...]:
    c = confusion_matrix(y_true, y_pred, labels).astype(np.float64)
    tp = np.diag(c)
    predicted = c.sum(axis=0)
    actual = c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        r = np.where(actual > 0, tp / np.where(actual > 0, actual, 1), 0.0)
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return p, r, f


def precision(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Macro-averaged precision ``mean_k TP_k / (TP_k + FP_k)`` (0 for a never-predicted class)."""
    return float(np.mean(_prf(y_true, y_pred, labels)[0]))


def recall(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Macro-averaged recall ``mean_k TP_k / (TP_k + FN_k)``."""
    return float(np.mean(_prf(y_true, y_pred, labels)[1]))


def f1(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Macro-averaged F1, the mean over classes of ``2PR/(P + R)``."""
    return float(np.mean(_prf(y_true, y_pred, labels)[2]))


def log_loss(y_true: Any, proba: Any, eps: float | None = None) -> float:
    """Mean negative log-likelihood of the true class under predicted probabilities.

    ``proba`` is ``(n, C)`` (class index targets) or ``(n,)`` / ``(n, 1)`` for binary targets;
    probabilities are clipped to ``[eps, 1 - eps]`` (eps = the dtype's machine epsilon).
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    e = float(np.finfo(np.float64).eps) if eps is None else eps
    p = np.clip(p, e, 1 - e)
    if p.ndim == 1 or p.shape[1] == 1:
        p = p.reshape(-1)
        yy = y.reshape(-1).astype(np.float64)
        return float(-np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y.astype(np.int64).reshape(-1)])))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error."""
    a, b = _check_pair(y_true, y_pred, "mae")
    return float(np.mean(np.abs(a.astype(np.float64) - b.reshape(a.shape))))


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error."""
    a, b = _check_pair(y_true, y_pred, "mse")
    return float(np.mean((a.astype(np.float64) - b.reshape(a.shape)) ** 2))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination ``1 - Σ(y - ŷ)² / Σ(y - ȳ)²`` (averaged over outputs)."""
    a, b = _check_pair(y_true, y_pred, "r2")
    a = a.astype(np.float64).reshape(len(a), -1)
    b = b.astype(np.float64).reshape(a.shape)
    ss_res = ((a - b) ** 2).sum(axis=0)
    ss_tot = ((a - a.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(
            ss_tot > 0,
            1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
            np.where(ss_res == 0, 1.0, 0.0),
        )
    return float(scores.mean())


# name -> (function, kind): kind is "label" (gets predicted labels), "proba" or "value"
METRICS: dict[str, tuple[Callable[..., float], str]] = {
    "accuracy": (accuracy, "label"),
    "acc": (accuracy, "label"),
    "precision": (precision, "label"),
    "recall": (recall, "label"),
    "f1": (f1, "label"),
    "log_loss": (log_loss, "proba"),
    "mae": (mae, "value"),
    "mse": (mse, "value"),
    "rmse": (rmse, "value"),
    "r2": (r2, "value"),
}


def get_metric(metric: str | Callable[..., float]) -> tuple[str, Callable[..., float], str]:
    """Resolve a metric name or callable to ``(name, function, kind)``."""
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric, "label"
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)} or a callable")
    fn, kind = METRICS[metric]
    return ("accuracy" if metric == "acc" else metric), fn, kind
