"""Fused primitives, each for numerical stability: softmax, log-softmax and two losses.

Composite functions are built from primitives; these exist as primitives of their own because
the composition would overflow, cancel or produce ``-inf`` (see each ``# NOTE:``).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .. import _numerics
from .._primitive import Case, apply, primitive
from ..tensor import Tensor
from ._common import (
    _LOG_TINY,
    _alias,
    _coerce,
    _exp_nonneg_underflow,
    _norm_axis,
    _shape,
    _t,
)


def _axis_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    return [
        ((r(4, 3),), {"axis": -1}),
        ((r(4, 3),), {"axis": 0}),
        ((r(2, 3, 4),), {"axis": 1}),
        ((r(5),), {"axis": 0}),
        ((r(0, 3),), {"axis": -1}),
    ]


def _torch_softmax(name: str) -> Any:
    def call(x: Any, *, axis: int) -> Any:
        return getattr(x, name)(dim=axis)

    call.__name__ = f"torch_{name}"
    return call


# (x - m) - log Σ e^{x - m}: shifting first keeps float32 exact where x - logsumexp(x)
# would cancel two large numbers (x = -1e4 everywhere)
_log_softmax = _numerics.log_softmax


@primitive(
    "softmax",
    kind="fused",
    vjps=(lambda g, out, saved, x, axis: out * (g - (g * out).sum(axis=axis, keepdims=True)),),
    reads_out=True,
    examples=_axis_examples,
    torch=_torch_softmax("softmax"),
)
def softmax_p(a: np.ndarray, *, axis: int) -> np.ndarray:
    """``exp(a - logsumexp(a))`` along ``axis``."""
    return _numerics.softmax(a, axis)


# NOTE: a primitive (not log ∘ softmax) for stability: log(softmax) is -inf where softmax
# underflows, this is exact. ∂C/∂x = g - softmax(x)·Σ g, with softmax(x) = e^out.
@primitive(
    "log_softmax",
    kind="fused",
    vjps=(
        lambda g, out, saved, x, axis: (
            g - _exp_nonneg_underflow(out) * g.sum(axis=axis, keepdims=True)
        ),
    ),
    reads_out=True,
    examples=_axis_examples,
    torch=_torch_softmax("log_softmax"),
)
def log_softmax_p(a: np.ndarray, *, axis: int) -> np.ndarray:
    """``(a - m) - log Σ e^{a - m}`` along ``axis`` (``m`` the finite max)."""
    return _log_softmax(a, axis)


def softmax(x: Any, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``e^{x_i} / Σ_j e^{x_j}`` along ``axis``, computed as ``exp(x - logsumexp(x))``.

    ``∂C/∂x = s ⊙ (g - Σ g ⊙ s)``.
    """
    x = _t(x)
    axis = _alias("softmax", "axis", axis, "dim", dim, -1)
    _norm_axis(axis, x.ndim)
    return apply(softmax_p, x, axis=axis)  # type: ignore[no-any-return]


def log_softmax(x: Any, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``x_i - logsumexp(x)`` along ``axis``; ``∂C/∂x = g - softmax(x)·Σ g``.

    # NOTE: a primitive (not log ∘ softmax) for stability: log(softmax) is -inf where softmax
    # underflows, this is exact.
    """
    x = _t(x)
    axis = _alias("log_softmax", "axis", axis, "dim", dim, -1)
    _norm_axis(axis, x.ndim)
    return apply(log_softmax_p, x, axis=axis)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# fused losses
# ---------------------------------------------------------------------------------------------
def _xent_grad_logits(g: Any, out: Any, logp: Any, z: Any, y: Any, axis: int) -> Any:
    # ∂/∂z = softmax(z)·Σ_k y_k - y  (= softmax(z) - y for a distribution)
    ge = np.expand_dims(g, axis)
    return ge * (_exp_nonneg_underflow(logp) * y.sum(axis=axis, keepdims=True) - y)


def _xent_grad_target(g: Any, out: Any, logp: Any, z: Any, y: Any, axis: int) -> Any:
    return -np.expand_dims(g, axis) * logp  # ∂/∂y_k = -log softmax(z)_k


def _xent_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    cases: list[Case] = []
    for shape, axis in (((4, 3), -1), ((4, 3), 1), ((3, 5), 0), ((0, 3), -1)):
        z = rng.standard_normal(shape).astype(dtype)
        y = rng.uniform(0.1, 1.0, shape)
        y = (y / y.sum(axis=axis, keepdims=True)).astype(dtype)
        cases.append(((z, y), {"axis": axis}))
    return cases


def _torch_xent(z: Any, y: Any, *, axis: int) -> Any:
    return -(y * z.log_softmax(dim=axis)).sum(dim=axis)


# NOTE: one primitive for stability and speed: log-softmax is never materialised as a node,
# and the forward saves it: both rules read it (the softmax is its exponential), none of them
# recomputes it. With a mean over n samples ∂/∂z is the familiar (softmax(z) - y)/n.
@primitive(
    "softmax_cross_entropy",
    kind="fused",
    vjps=(_xent_grad_logits, _xent_grad_target),
    saves=True,
    examples=_xent_examples,
    torch=_torch_xent,
)
def softmax_cross_entropy_p(z: np.ndarray, y: np.ndarray, *, axis: int) -> tuple[Any, Any]:
    """``-Σ_k y_k log softmax(z)_k`` along ``axis``; saves ``log softmax(z)``."""
    logp = _log_softmax(z, axis)
    return -(y * logp).sum(axis=axis), logp


def softmax_cross_entropy(logits: Any, target: Any, axis: int = -1) -> Tensor:
    """Per-sample cross-entropy ``-Σ_k y_k log softmax(z)_k`` of logits against a distribution.

    # NOTE: one primitive for stability and speed: log-softmax is never materialised as a
    # node, and ``∂/∂z = softmax(z)·Σ_k y_k - y`` (= ``softmax(z) - y`` for a distribution);
    # with a mean over n samples this is the familiar ``(softmax(z) - y)/n``.
    """
    z = _t(logits)
    y = _coerce(target, z)
    if _shape(y) != z.shape:
        raise ValueError(
            f"softmax_cross_entropy: target shape {_shape(y)} does not match logits {z.shape}"
        )
    return apply(softmax_cross_entropy_p, z, y, axis=axis)  # type: ignore[no-any-return]


def _log_clamped(p: np.ndarray) -> np.ndarray:
    # NOTE: dtype-aware bound: log p is clamped at max(-100, log(smallest normal)), -100 as
    # PyTorch in float64 and -87.3 in float32, so p = 0 or 1 gives a large finite loss.
    lo = builtins.max(-100.0, _LOG_TINY.get(p.dtype, -100.0))
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(p), lo)


def _bce_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    cases: list[Case] = []
    for shape in ((), (3,), (4, 2), (0, 3)):
        p = rng.uniform(0.1, 0.9, shape).astype(dtype)
        y = rng.uniform(0.0, 1.0, shape).astype(dtype)
        cases.append(((p, y), {}))
    return cases


def _torch_bce(p: Any, y: Any) -> Any:
    return -(y * p.log() + (1 - y) * (1 - p).log())


@primitive(
    "binary_cross_entropy",
    kind="fused",
    vjps=(
        lambda g, out, saved, p, y: g * (p - y) / np.maximum(p * (1 - p), 1e-12),
        lambda g, out, saved, p, y: g * (_log_clamped(1 - p) - _log_clamped(p)),
    ),
    examples=_bce_examples,
    torch=_torch_bce,
)
def binary_cross_entropy_p(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``-(y log p + (1-y) log(1-p))`` with the logs clamped (finite at p = 0 and 1)."""
    return -(y * _log_clamped(p) + (1 - y) * _log_clamped(1 - p))  # type: ignore[no-any-return]


def binary_cross_entropy_elementwise(prob: Any, target: Any) -> Tensor:
    """Elementwise log loss ``-(y log p + (1-y) log(1-p))`` on probabilities.

    # NOTE: a primitive so that p = 0 or 1 stays finite: the logs are clamped (see
    # ``_log_clamped``) and the gradient ``(p - y) / max(p(1-p), 1e-12)`` is bounded, as PyTorch.
    """
    p = _t(prob)
    y = _coerce(target, p)
    return apply(binary_cross_entropy_p, p, y)  # type: ignore[no-any-return]
