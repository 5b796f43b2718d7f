"""Gradient clipping."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._validation import check_number
from ..tensor import Tensor

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value", "clip_grad_value_"]


def _grads(params: Iterable[Any] | Tensor) -> list[np.ndarray]:
    ps = [params] if isinstance(params, Tensor) else list(params)
    return [p.grad for p in ps if p.grad is not None]


def clip_grad_norm(
    params: Iterable[Any] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients together so that their global norm is at most ``max_norm``.

    ``‖g‖ = (Σ_p Σ_i |g_pi|^q)^{1/q}`` over every parameter's gradient; if it exceeds
    ``max_norm`` each gradient is multiplied by ``max_norm / (‖g‖ + 1e-6)`` (as PyTorch).

    Returns
    -------
    float
        The global norm *before* clipping.

    Raises
    ------
    RuntimeError
        If the norm is NaN or infinite and ``error_if_nonfinite`` is True.
    """
    check_number("max_norm", max_norm, low=0)
    check_number("norm_type", norm_type, low=0, low_inclusive=False)
    grads = _grads(params)
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    else:
        with np.errstate(over="ignore"):
            acc = sum(float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in grads)
        total = acc ** (1.0 / norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise RuntimeError(
                f"the total norm of the gradients is {total}: some gradient is NaN or infinite "
                "(lower the learning rate, scale the inputs, or check the loss)"
            )
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return total


clip_grad_norm_ = clip_grad_norm


def clip_grad_value(params: Iterable[Any] | Tensor, clip_value: float) -> None:
    """Clip every gradient element into ``[-clip_value, clip_value]`` in place."""
    check_number("clip_value", clip_value, low=0)
    for g in _grads(params):
        np.clip(g, -clip_value, clip_value, out=g)


clip_grad_value_ = clip_grad_value
