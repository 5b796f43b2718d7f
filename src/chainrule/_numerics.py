"""Numerically stable array functions: the one place chainrule computes them (engine floor).

Softmax, log-softmax, log-sum-exp, the logistic sigmoid and softplus on NumPy arrays, used by
the engine's primitives (``ops``), the fit loop, the fused MLP step, the scikit-learn
estimators and the CLI alike, so that every part of the package gives the same numbers.

Every function here

- is finite and warning-free for inputs of any magnitude (logits of ±1e4 included, even under
  ``np.errstate(all="raise")``): exponentials are only ever taken of non-positive numbers, and
  those that would underflow to a subnormal are returned as exact 0 (:func:`exp_nonpositive`);
- keeps a floating input's dtype (float32 stays float32; integer input is computed in float64,
  as ``np.exp`` would).

Formulas (``m = max_j x_j`` along the axis, 0 if it is not finite):

- ``logsumexp(x) = m + log Σ_j e^{x_j - m}``
- ``log_softmax(x)_i = (x_i - m) - log Σ_j e^{x_j - m}``
- ``softmax(x)_i = exp(log_softmax(x)_i)``
- ``sigmoid(x) = 1/(1 + e^{-x})`` for x ≥ 0, ``e^x/(1 + e^x)`` for x < 0
- ``softplus(x) = log(1 + e^{βx})/β = (max(βx, 0) + log1p(e^{-|βx|}))/β``
- ``log_sigmoid(x) = -softplus(-x)``
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "LOG_TINY",
    "exp_nonpositive",
    "finite_max",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "softmax",
    "softplus",
]

# log of the smallest normal number (plus a margin): e^a below it would be subnormal
LOG_TINY: dict[np.dtype[Any], float] = {
    np.dtype(t): float(np.log(np.finfo(t).tiny)) + 1e-3 for t in (np.float32, np.float64)
}
LOG_TINY[np.dtype(np.float16)] = float(np.log(np.finfo(np.float16).tiny)) + 1e-2


def log_tiny(dtype: Any, default: float = -700.0) -> float:
    """``log`` of the smallest normal number of ``dtype`` (plus a small margin)."""
    return LOG_TINY.get(np.dtype(dtype), default)


def _float(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def exp_nonpositive(a: Any) -> np.ndarray:
    """``e^a`` for ``a ≤ 0``, exact 0 where the result would be subnormal (no underflow).

    Stable softmax, sigmoid and softplus exponentiate non-positive numbers only; the tiny
    results would raise under ``np.errstate(under="raise")`` and make later arithmetic slow
    (subnormals), so they are flushed to 0.
    """
    a = np.asarray(a)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    # np.zeros and a dict lookup: a third of zeros_like + log_tiny's cost on small arrays (the
    # fused step calls this every batch)
    out = np.zeros(a.shape, a.dtype)
    np.exp(a, out=out, where=a > LOG_TINY.get(a.dtype, -700.0))
    return out


def finite_max(a: np.ndarray, axis: Any) -> np.ndarray:
    """The maximum along ``axis`` (dimensions kept), 0 where it is not finite or empty."""
    if a.size == 0:
        return np.zeros((1,) * a.ndim, a.dtype)
    m = np.max(a, axis=axis, keepdims=True)
    return np.where(np.isfinite(m), m, 0).astype(a.dtype, copy=False)  # type: ignore[no-any-return]


def logsumexp(a: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """``log Σ e^{a_i}`` along ``axis`` (all axes by default), as ``m + log Σ e^{a_i - m}``.

    An all ``-inf`` slice gives ``-inf`` (``log 0``), as expected.

    Examples
    --------
    >>> import numpy as np
    >>> float(logsumexp(np.array([1e4, 1e4])))  # 1e4 + log 2
    10000.69314718056
    """
    a = _float(a)
    m = finite_max(a, axis)
    s = np.sum(exp_nonpositive(a - m), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        out = np.log(s) + m
    if not keepdims:
        out = out.reshape(np.sum(s, axis=axis).shape) if axis is not None else out.reshape(())
    return out.astype(a.dtype, copy=False)


def log_softmax(a: Any, axis: int = -1) -> np.ndarray:
    """``a_i - logsumexp(a)`` along ``axis``, as ``(a_i - m) - log Σ e^{a_j - m}``.

    Shifting first keeps float32 exact where ``a - logsumexp(a)`` would cancel two large
    numbers (``a = -1e4`` everywhere).
    """
    a = _float(a)
    shifted = a - finite_max(a, axis)
    s = np.sum(exp_nonpositive(shifted), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return (shifted - np.log(s)).astype(a.dtype, copy=False)


def softmax(a: Any, axis: int = -1) -> np.ndarray:
    """``e^{a_i} / Σ_j e^{a_j}`` along ``axis``, as ``exp(log_softmax(a))``.

    Examples
    --------
    >>> import numpy as np
    >>> softmax(np.array([[1e4, -1e4, 0.0]], np.float32)).tolist()
    [[1.0, 0.0, 0.0]]
    """
    return exp_nonpositive(log_softmax(a, axis))


def sigmoid(a: Any) -> np.ndarray:
    """Logistic function ``σ(a) = 1/(1 + e^{-a})``, from ``e^{-|a|} ≤ 1`` (never overflows).

    Examples
    --------
    >>> import numpy as np
    >>> sigmoid(np.array([-1e4, 0.0, 1e4], np.float32)).tolist()
    [0.0, 0.5, 1.0]
    """
    a = _float(a)
    e = exp_nonpositive(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))  # type: ignore[no-any-return]


def softplus(a: Any, beta: float = 1.0) -> np.ndarray:
    """``log(1 + e^{βa})/β``, as ``(max(βa, 0) + log1p(e^{-|βa|}))/β``: exact for every a."""
    a = _float(a)
    z = a * beta
    return (np.maximum(z, 0) + np.log1p(exp_nonpositive(-np.abs(z)))) / beta  # type: ignore[no-any-return]


def log_sigmoid(a: Any) -> np.ndarray:
    """``log σ(a) = -softplus(-a)``; ``log(1 - σ(a)) = log_sigmoid(-a)``."""
    return -softplus(-_float(a))
