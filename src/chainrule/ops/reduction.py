"""Reduction primitives: sum, mean, max, min, var, logsumexp over ``axis`` (NumPy's keywords).

Every reduction takes NumPy's ``axis``/``keepdims`` and PyTorch's ``dim``/``keepdim``; its
rule broadcasts the gradient back over the reduced axes (``_expand``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import _numerics
from .._primitive import Case, Primitive, apply, defprimitive, primitive
from ..tensor import Tensor
from ._common import (
    _alias,
    _check_axis,
    _exp_nonneg_underflow,
    _expand,
    _reduced_count,
    _t,
    reduction_cases,
)


def _torch_reduce(name: str) -> Any:
    """``x.<name>(dim=axis, keepdim=keepdims)`` in PyTorch (all axes for ``axis=None``)."""

    def call(x: Any, *, axis: Any, keepdims: bool, **attrs: Any) -> Any:
        if axis is None:
            axis = tuple(range(x.ndim))
        if name in ("amax", "amin") and x.ndim == 0:
            return x.clone()
        if name == "var":
            return x.var(dim=axis, keepdim=keepdims, correction=attrs["ddof"])
        return getattr(x, name)(dim=axis, keepdim=keepdims)

    call.__name__ = f"torch_{name}"
    return call


def _reduction(
    name: str,
    fn: Callable[..., Any],
    rule: Any,
    *,
    torch: str | None = None,
    examples: Any = reduction_cases,
    **facts: Any,
) -> Primitive:
    """Register the reduction ``name``: forward ``fn(a, axis=axis, keepdims=keepdims)`` (a NumPy
    reduction), one rule, PyTorch's ``x.<torch or name>(dim=, keepdim=)`` as its oracle.

    Runs once, at import: the record is the one ``@primitive(...)`` over a ``def`` would build.
    """

    def forward(a: np.ndarray, *, axis: Any, keepdims: bool) -> Any:
        return fn(a, axis=axis, keepdims=keepdims)

    forward.__name__ = forward.__qualname__ = f"{name}_p"
    return defprimitive(
        name,
        forward,
        kind="reduction",
        vjps=(rule,),
        examples=examples,
        torch=_torch_reduce(torch or name),
        **facts,
    )


def _nonempty_cases(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return reduction_cases(rng, dtype, empty=False)


def _distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # a permutation of well-separated values: no ties for max/min
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 1.0).astype(float)


def _mean_grad(g: Any, out: Any, saved: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    n = _reduced_count(x.shape, axis)
    return _expand(g, x.shape, axis, keepdims) / np.asarray(n, dtype=x.dtype)


# NOTE: tied extrema share the gradient equally (PyTorch's amax/amin do the same).
def _maxmin_reduce_grad(g: Any, out: Any, saved: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    hit = x == _expand(out, x.shape, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True)
    return _expand(g, x.shape, axis, keepdims) * hit / count


def _maxmin_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return reduction_cases(rng, dtype, _distinct_values, empty=False)


# Σ, mean, max and min over ``axis``: the gradient broadcast back over the reduced axes
sum_p = _reduction(
    "sum",
    np.sum,
    lambda g, out, saved, x, axis, keepdims: _expand(g, x.shape, axis, keepdims),
    reads_inputs=False,
)
mean_p = _reduction("mean", np.mean, _mean_grad, reads_inputs=False, examples=_nonempty_cases)
max_p, min_p = (
    _reduction(name, fn, _maxmin_reduce_grad, torch=t, reads_out=True, examples=_maxmin_examples)
    for name, fn, t in (("max", np.max, "amax"), ("min", np.min, "amin"))
)


def _var_grad(g: Any, out: Any, centred: Any, x: Any, axis: Any, keepdims: bool, ddof: int) -> Any:
    n = _reduced_count(x.shape, axis)
    return _expand(g, x.shape, axis, keepdims) * centred * (2.0 / (n - ddof))


def _var_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    cases = []
    for (x,), attrs in _nonempty_cases(rng, dtype):
        if x.ndim:
            cases.append(((x,), {**attrs, "ddof": 0}))
            cases.append(((x,), {**attrs, "ddof": 1}))
    return cases


@primitive(
    "var",
    kind="reduction",
    vjps=(_var_grad,),
    saves=True,
    examples=_var_examples,
    torch=_torch_reduce("var"),
)
def var_p(a: np.ndarray, *, axis: Any, keepdims: bool, ddof: int) -> tuple[Any, np.ndarray]:
    """``Σ(a - ā)² / (n - ddof)`` over ``axis``; saves the centred values ``a - ā``.

    # NOTE: NumPy's own sequence (mean, centre, square, sum, divide), so the value is bitwise
    # ``np.var``'s; the centred values are kept for the rule, ``2(a - ā)/(n - ddof)``.
    """
    centred = a - np.mean(a, axis=axis, keepdims=True)
    n = _reduced_count(a.shape, axis)
    if n - ddof <= 0:  # NumPy's warning and its nan/inf
        return np.var(a, axis=axis, keepdims=keepdims, ddof=ddof), centred
    out = np.sum(np.square(centred), axis=axis, keepdims=keepdims)
    count = np.intp(n - ddof)
    if isinstance(out, np.ndarray):
        return np.true_divide(out, count, out=out, casting="unsafe"), centred
    return out.dtype.type(out / count), centred


def sum(  # noqa: A001
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Sum over ``axis`` (all axes by default); the gradient is broadcast back."""
    x = _t(x)
    axis = _check_axis(x, _alias("sum", "axis", axis, "dim", dim, None))
    keepdims = _alias("sum", "keepdims", keepdims, "keepdim", keepdim, False)
    return apply(sum_p, x, axis=axis, keepdims=keepdims)  # type: ignore[no-any-return]


def mean(
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Mean over ``axis``; ``∂/∂x_i = 1/n``."""
    x = _t(x)
    axis = _check_axis(x, _alias("mean", "axis", axis, "dim", dim, None))
    keepdims = _alias("mean", "keepdims", keepdims, "keepdim", keepdim, False)
    return apply(mean_p, x, axis=axis, keepdims=keepdims)  # type: ignore[no-any-return]


class MinMax(NamedTuple):
    """``(values, indices)`` of ``max``/``min`` called with PyTorch's ``dim=``."""

    values: Tensor
    indices: np.ndarray


def max(  # noqa: A001
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
) -> Any:
    """Maximum over ``axis``; the gradient is shared equally among tied maxima.

    With NumPy's ``axis=`` the result is the tensor of maxima; with PyTorch's ``dim=`` it is
    PyTorch's ``(values, indices)`` named tuple (``indices`` a NumPy integer array).
    """
    x = _t(x)
    axis = _check_axis(x, _alias("max", "axis", axis, "dim", dim, None))
    keepdims = _alias("max", "keepdims", keepdims, "keepdim", keepdim, False)
    _check_nonempty("max", x, axis)
    values = apply(max_p, x, axis=axis, keepdims=keepdims)
    if dim is None:
        return values
    # NOTE: with PyTorch's dim=, PyTorch's result: (values, indices)
    return MinMax(values, np.argmax(x.data, axis=axis, keepdims=keepdims))


def min(  # noqa: A001
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
) -> Any:
    """Minimum over ``axis``; the gradient is shared equally among tied minima.

    With PyTorch's ``dim=`` the result is ``(values, indices)``, as :func:`max`.
    """
    x = _t(x)
    axis = _check_axis(x, _alias("min", "axis", axis, "dim", dim, None))
    keepdims = _alias("min", "keepdims", keepdims, "keepdim", keepdim, False)
    _check_nonempty("min", x, axis)
    values = apply(min_p, x, axis=axis, keepdims=keepdims)
    if dim is None:
        return values
    # NOTE: with PyTorch's dim=, PyTorch's result: (values, indices)
    return MinMax(values, np.argmin(x.data, axis=axis, keepdims=keepdims))


def _check_nonempty(op: str, x: Tensor, axis: Any) -> None:
    if _reduced_count(x.shape, axis) == 0:
        raise ValueError(f"{op}: cannot reduce an empty axis (tensor shape {x.shape}, axis={axis})")


def var(
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    ddof: int = 0,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
    correction: int | None = None,
    unbiased: bool | None = None,
) -> Tensor:
    """Variance ``Σ(x - x̄)² / (n - ddof)``; ``∂/∂x_i = 2(x_i - x̄)/(n - ddof)``.

    ``ddof=0`` by default (NumPy's population variance). PyTorch's ``var`` defaults to the
    unbiased ``n - 1``: write ``ddof=1``, ``correction=1`` or ``unbiased=True`` for that.
    """
    x = _t(x)
    axis = _check_axis(x, _alias("var", "axis", axis, "dim", dim, None))
    keepdims = _alias("var", "keepdims", keepdims, "keepdim", keepdim, False)
    if unbiased is not None:
        correction = _alias("var", "correction", correction, "unbiased", int(bool(unbiased)), None)
    ddof = _alias("var", "ddof", ddof, "correction", correction, 0)
    return apply(var_p, x, axis=axis, keepdims=keepdims, ddof=int(ddof))  # type: ignore[no-any-return]


def logsumexp(
    x: Any,
    axis: Any = None,
    keepdims: bool = False,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
) -> Tensor:
    """``log Σ e^{x_i}`` computed as ``m + log Σ e^{x_i - m}`` with ``m = max x``.

    The gradient is ``softmax(x)``. Finite for inputs of any magnitude.
    """
    x = _t(x)
    axis = _check_axis(x, _alias("logsumexp", "axis", axis, "dim", dim, None))
    keepdims = _alias("logsumexp", "keepdims", keepdims, "keepdim", keepdim, False)
    return apply(logsumexp_p, x, axis=axis, keepdims=keepdims)  # type: ignore[no-any-return]


_finite_max = _numerics.finite_max  # the max along axis (kept), 0 where not finite or empty


@primitive(
    "logsumexp",
    kind="reduction",
    vjps=(
        lambda g, out, saved, x, axis, keepdims: (
            _expand(g, x.shape, axis, keepdims)
            * _exp_nonneg_underflow(x - _expand(out, x.shape, axis, keepdims))
        ),
    ),
    reads_out=True,
    examples=_nonempty_cases,
    torch=_torch_reduce("logsumexp"),
)
def logsumexp_p(a: np.ndarray, *, axis: Any, keepdims: bool) -> np.ndarray:
    """``m + log Σ e^{a - m}`` with ``m`` the finite max along ``axis``."""
    return _numerics.logsumexp(a, axis, keepdims)
