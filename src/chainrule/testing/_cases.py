"""What the checks of :func:`~chainrule.testing.check_primitive` share: the error and report
types, and small helpers over a case's arrays (casting, describing, locating, comparing)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._primitive import Primitive

__all__ = ["Case", "PrimitiveCheckError", "PrimitiveReport"]

Case = tuple[tuple[Any, ...], dict[str, Any]]


class PrimitiveCheckError(AssertionError):
    """A primitive broke its contract (the message names the primitive, input and position)."""


@dataclass
class PrimitiveReport:
    """What :func:`check_primitive` checked, and the largest errors it saw."""

    name: str
    cases: int = 0
    gradient_points: int = 0
    max_gradient_error: float = 0.0  # |analytic - numeric| / (atol + rtol·|numeric|), ≤ 1
    max_float32_error: float = 0.0  # relative to the largest magnitude
    torch_cases: int = 0
    max_torch_error: float = 0.0  # relative to the largest magnitude
    broadcast_cases: int = 0
    empty_cases: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _is_float_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _rule(prim: Primitive, i: int) -> Any:
    if prim.vjp_argnum is not None:
        return prim.vjp_argnum
    return prim.vjps[i] if i < len(prim.vjps) else None


def _differentiable(prim: Primitive, inputs: tuple[Any, ...]) -> list[int]:
    return [i for i, x in enumerate(inputs) if _is_float_array(x) and _rule(prim, i) is not None]


def _forward(prim: Primitive, inputs: Iterable[Any], attrs: dict[str, Any]) -> tuple[Any, ...]:
    """The forward's outputs as a tuple of arrays (``saved`` dropped)."""
    res = prim.forward(*inputs, **attrs)
    if prim.saves:
        res = res[0]
    if prim.n_outputs == 1:
        return (np.asarray(res),)
    return tuple(np.asarray(r) for r in res)


def _cast(inputs: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    return tuple(x.astype(dtype) if _is_float_array(x) else x for x in inputs)


def _describe(inputs: tuple[Any, ...], attrs: dict[str, Any]) -> str:
    parts = []
    for x in inputs:
        if isinstance(x, np.ndarray):
            parts.append(f"{x.dtype}{list(x.shape)}")
        else:
            parts.append(repr(x))
    text = f"inputs ({', '.join(parts)})"
    if attrs:
        text += f", attrs {attrs!r}"
    return text


def _pos(shape: tuple[int, ...], j: int) -> tuple[int, ...]:
    return tuple(int(p) for p in np.unravel_index(j, shape)) if shape else ()


def _relative(a: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """max |a - ref| over the largest |ref| (1 if all zero), and where it is largest."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return 0.0, 0
    diff = np.abs(a - ref)
    both_nan = np.isnan(a) & np.isnan(ref)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    finite = ref[np.isfinite(ref)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    j = int(np.argmax(diff))
    return float(diff[j]) / (scale if scale > 0 else 1.0), j
