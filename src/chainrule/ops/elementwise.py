"""Elementwise primitives: arithmetic, unary functions and activations, casts, selection.

Each primitive is a record (:class:`chainrule._primitive.Primitive`) with one rule per input,
``rule(g, out, saved, *inputs, **attrs)``; binary rules may return a gradient of the
broadcast shape (the engine sums it back to the input's shape).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _numerics, kernels
from .._primitive import Case, Primitive, apply, defprimitive, primitive
from ..tensor import Tensor, _raw
from ._common import (
    _SCALARS,
    _binary,
    _coerce,
    _exp_nonneg_underflow,
    _promote,
    _shape,
    _t,
    away_from,
    binary_cases,
    positive,
    torch_fn,
    unary_cases,
)


def _elementwise(
    name: str,
    forward: Any,
    *vjps: Any,
    out_capable: bool = True,
    examples: Any = None,
    **facts: Any,
) -> Primitive:
    """Register the elementwise primitive ``name`` whose oracle is PyTorch's ``torch.<name>``.

    ``forward`` is a NumPy ufunc (or an array function that takes ``out=`` like one), ``vjps``
    one rule per input, ``facts`` the record's in-place facts (``reads_out``, ...).
    ``examples`` defaults to :func:`unary_cases` or :func:`binary_cases` by the number of
    inputs. Runs once, at import: the record is the one ``@primitive(...)`` would build.
    """
    if examples is None:
        examples = unary_cases if len(vjps) == 1 else binary_cases
    return defprimitive(
        name,
        forward,
        kind="elementwise",
        vjps=vjps,
        out_capable=out_capable,
        examples=examples,
        torch=torch_fn(name),
        **facts,
    )


def _positive_cases(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return unary_cases(rng, dtype, positive)


def _off_zero_cases(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return unary_cases(rng, dtype, away_from(0.0))


# ---------------------------------------------------------------------------------------------
# arithmetic (binary, broadcasting: the engine sums a rule's result back to its input's shape)
# ---------------------------------------------------------------------------------------------


def _distinct(rng: np.random.Generator, dtype: Any) -> list[Case]:
    # operands at least 0.2 apart: maximum/minimum away from ties
    cases = binary_cases(rng, dtype)
    out = []
    for (a, b), attrs in cases:
        b = np.where(np.abs(a - b) < 0.2, b + 0.5, b).astype(dtype) if a.size and b.size else b
        out.append(((a, b), attrs))
    return out


add_p = _elementwise(
    "add",
    np.add,
    lambda g, out, saved, x, y: g,
    lambda g, out, saved, x, y: g,
    reads_inputs=False,
)
sub_p = _elementwise(
    "sub",
    np.subtract,
    lambda g, out, saved, x, y: g,
    lambda g, out, saved, x, y: -g,
    reads_inputs=False,
)
# x·y: x's value matters only for y's gradient and the other way round (as PyTorch saves it)
mul_p = _elementwise(
    "mul",
    np.multiply,
    lambda g, out, saved, x, y: g * y,
    lambda g, out, saved, x, y: g * x,
    needed_by=((1,), (0,)),
)
div_p = _elementwise(
    "div",
    np.true_divide,
    lambda g, out, saved, x, y: g / y,
    lambda g, out, saved, x, y: -g * out / y,
    reads_out=True,
    examples=lambda rng, dtype: binary_cases(rng, dtype, sample_b=positive),
)
neg_p = _elementwise("neg", np.negative, lambda g, out, saved, x: -g)


def _pow_grad_base(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    # NOTE: y·x^(y-1) rather than y·out/x, which is wrong at x = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * y * np.power(x, y - 1)


def _pow_grad_exponent(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    # ∂(x^y)/∂y = x^y·ln x, taken as 0 where x <= 0 (ln undefined)
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * np.where(x > 0, out * np.log(np.where(x > 0, x, 1)), 0)


pow_p = _elementwise(
    "pow",
    np.power,
    _pow_grad_base,
    _pow_grad_exponent,
    reads_out=True,
    examples=lambda rng, dtype: binary_cases(rng, dtype, sample_a=positive),
)


# NOTE: ties split the gradient evenly between the operands, as PyTorch does.
def _maxmin_grad_first(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    gx = (x == out) * 1.0
    gy = (y == out) * 1.0
    return g * (gx - 0.5 * (gx * gy))


def _maxmin_grad_second(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    gx = (x == out) * 1.0
    gy = (y == out) * 1.0
    return g * (gy - 0.5 * (gx * gy))


maximum_p, minimum_p = (
    _elementwise(
        name, fn, _maxmin_grad_first, _maxmin_grad_second, reads_out=True, examples=_distinct
    )
    for name, fn in (("maximum", np.maximum), ("minimum", np.minimum))
)


def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return _binary(add_p, a, b)


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return _binary(sub_p, a, b)


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return _binary(mul_p, a, b)


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return _binary(div_p, a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - the operator's name
    """Elementwise ``a ** b``; ``∂/∂a = b·a^(b-1)``, ``∂/∂b = a^b·ln a`` (0 where a ≤ 0)."""
    return _binary(pow_p, a, b)


def neg(x: Any) -> Tensor:
    """Elementwise ``-x``."""
    return apply(neg_p, _t(x))  # type: ignore[no-any-return]


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; the gradient goes to the larger operand (split evenly on ties)."""
    return _binary(maximum_p, a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; the gradient goes to the smaller operand (split evenly on ties)."""
    return _binary(minimum_p, a, b)


# ---------------------------------------------------------------------------------------------
# unary functions and activations
# ---------------------------------------------------------------------------------------------
# (a rule may read the forward output ``out``: often the cheapest form)
exp_p = _elementwise("exp", np.exp, lambda g, out, saved, x: g * out, reads_out=True)
log_p = _elementwise("log", np.log, lambda g, out, saved, x: g / x, examples=_positive_cases)
sqrt_p = _elementwise(
    "sqrt",
    np.sqrt,
    lambda g, out, saved, x: g / (2 * out),
    reads_out=True,
    examples=_positive_cases,
)
abs_p = _elementwise(
    "abs", np.abs, lambda g, out, saved, x: g * np.sign(x), examples=_off_zero_cases
)
tanh_p = _elementwise("tanh", np.tanh, lambda g, out, saved, x: g * (1 - out * out), reads_out=True)


def exp(x: Any) -> Tensor:
    """Elementwise ``e^x``; ``∂/∂x = e^x``."""
    return apply(exp_p, _t(x))  # type: ignore[no-any-return]


def log(x: Any) -> Tensor:
    """Elementwise natural logarithm; ``∂/∂x = 1/x``."""
    return apply(log_p, _t(x))  # type: ignore[no-any-return]


def sqrt(x: Any) -> Tensor:
    """Elementwise square root; ``∂/∂x = 1/(2√x)``."""
    return apply(sqrt_p, _t(x))  # type: ignore[no-any-return]


def abs(x: Any) -> Tensor:  # noqa: A001 - NumPy's name
    """Elementwise ``|x|``; ``∂/∂x = sign(x)`` (0 at 0)."""
    return apply(abs_p, _t(x))  # type: ignore[no-any-return]


def tanh(x: Any) -> Tensor:
    """Elementwise hyperbolic tangent; ``∂/∂x = 1 - tanh²(x)``."""
    return apply(tanh_p, _t(x))  # type: ignore[no-any-return]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1/(1+e^{-x})`` for x ≥ 0 and ``e^x/(1+e^x)`` for x < 0: finite for any x."""
    return _numerics.sigmoid(x)


sigmoid_p = _elementwise(
    "sigmoid",
    _sigmoid,
    lambda g, out, saved, x: g * out * (1 - out),
    out_capable=False,
    reads_out=True,
)


def sigmoid(x: Any) -> Tensor:
    """Logistic function ``σ(x) = 1 / (1 + e^{-x})``; ``∂/∂x = σ(x)(1 - σ(x))``.

    Computed as ``1/(1+e^{-x})`` for x ≥ 0 and ``e^x/(1+e^x)`` for x < 0: finite for any x.
    """
    return apply(sigmoid_p, _t(x))  # type: ignore[no-any-return]


def _relu_array(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(a, 0)`` elementwise, NaN kept: :func:`chainrule.kernels.relu` (the fast form)."""
    return kernels.relu(a, out=out)


# NOTE: relu passes no gradient at 0 (subgradient 0), as PyTorch and JAX do.
relu_p = _elementwise(
    "relu",
    _relu_array,
    lambda g, out, saved, x: g * (out > 0),
    reads_out=True,
    examples=_off_zero_cases,
)


def relu(x: Any) -> Tensor:
    """Rectified linear unit ``max(x, 0)``; ``∂/∂x = 1`` for x > 0, else 0 (also at 0)."""
    return apply(relu_p, _t(x))  # type: ignore[no-any-return]


def _torch_functional(name: str, **rename: str) -> Any:
    """``torch.nn.functional.<name>`` with chainrule's attribute names mapped to PyTorch's."""

    def call(*args: Any, **attrs: Any) -> Any:
        import torch.nn.functional as F

        return getattr(F, name)(*args, **{rename.get(k, k): v for k, v in attrs.items()})

    call.__name__ = f"torch_{name}"
    return call


@primitive(
    "leaky_relu",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, slope: g * np.where(x > 0, 1, slope).astype(x.dtype),),
    examples=lambda rng, dtype: unary_cases(rng, dtype, away_from(0.0), slope=0.1),
    torch=_torch_functional("leaky_relu", slope="negative_slope"),
)
def leaky_relu_p(a: np.ndarray, *, slope: float) -> np.ndarray:
    """``a`` where positive, ``slope·a`` elsewhere."""
    return np.where(a > 0, a, a * slope)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    """``x`` for x > 0, ``negative_slope·x`` otherwise (PyTorch's definition)."""
    return apply(leaky_relu_p, _t(x), slope=float(negative_slope))  # type: ignore[no-any-return]


# for x <= 0, d/dx α(e^x - 1) = α e^x = out + α
@primitive(
    "elu",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, alpha: g * np.where(x > 0, 1, out + alpha),),
    reads_out=True,
    examples=lambda rng, dtype: unary_cases(rng, dtype, away_from(0.0), alpha=1.5),
    torch=_torch_functional("elu"),
)
def elu_p(a: np.ndarray, *, alpha: float) -> np.ndarray:
    """``a`` where positive, ``α(e^a - 1)`` elsewhere."""
    return np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0)))


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit: ``x`` for x > 0, ``α(e^x - 1)`` otherwise (Clevert et al. 2015)."""
    return apply(elu_p, _t(x), alpha=float(alpha))  # type: ignore[no-any-return]


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(a: np.ndarray) -> np.ndarray:
    # NOTE: NumPy has no erf; the core depends on NumPy only, so the C library's math.erf
    # (correctly rounded to ~1 ulp) is applied per element.
    return np.asarray(_erf_scalar(a), dtype=a.dtype)


def _gelu_grad(g: Any, out: Any, saved: Any, x: Any, approximate: str) -> Any:
    if approximate == "tanh":
        k = 0.044715
        t = np.tanh(_SQRT_2_OVER_PI * (x + k * x * x * x))
        dt = (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * k * x * x)
        return g * (0.5 * (1 + t) + 0.5 * x * dt)
    cdf = 0.5 * (1 + _erf(x * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * _exp_nonneg_underflow(-0.5 * x * x)
    return g * (cdf + x * pdf)


def _gelu_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return unary_cases(rng, dtype, approximate="none") + unary_cases(rng, dtype, approximate="tanh")


@primitive(
    "gelu",
    kind="elementwise",
    vjps=(_gelu_grad,),
    examples=_gelu_examples,
    torch=_torch_functional("gelu"),
)
def gelu_p(a: np.ndarray, *, approximate: str) -> np.ndarray:
    """``a·Φ(a)`` (exact with erf, or PyTorch's tanh approximation)."""
    if approximate == "tanh":
        return 0.5 * a * (1 + np.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a * a * a)))
    return 0.5 * a * (1 + _erf(a * _INV_SQRT_2))


def gelu(x: Any, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x·Φ(x)`` (Hendrycks & Gimpel 2016).

    ``approximate="none"`` uses ``Φ(x) = (1 + erf(x/√2))/2``; ``"tanh"`` uses
    ``(1 + tanh(√(2/π)(x + 0.044715x³)))/2``, as PyTorch.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(gelu_p, _t(x), approximate=approximate)  # type: ignore[no-any-return]


@primitive(
    "softplus",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, beta: g * _sigmoid(x * beta),),
    examples=lambda rng, dtype: unary_cases(rng, dtype, beta=2.0),
    torch=_torch_functional("softplus"),
)
def softplus_p(a: np.ndarray, *, beta: float) -> np.ndarray:
    """``(max(βa, 0) + log1p(e^{-|βa|}))/β``."""
    return _numerics.softplus(a, beta)


def softplus(x: Any, beta: float = 1.0) -> Tensor:
    """``(1/β)·log(1 + e^{βx})``, computed as ``(max(βx,0) + log1p(e^{-|βx|}))/β``.

    Exact for every x (PyTorch switches to the identity above ``βx > 20``; the two agree to
    within ``e^{-20}``). ``∂/∂x = σ(βx)``.
    """
    if not float(beta) > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    return apply(softplus_p, _t(x), beta=float(beta))  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# casts, clipping, selection, rounding
# ---------------------------------------------------------------------------------------------
def _torch_astype(x: Any, *, dtype: Any) -> Any:
    import torch

    return x.to({np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype])


def _astype_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    # exact casts only (float64 -> float32 rounds: finite differences cannot check it)
    return unary_cases(rng, dtype, dtype=np.dtype(np.float64))


@primitive(
    "astype",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, dtype: g.astype(x.dtype),),
    reads_inputs=False,
    examples=_astype_examples,
    torch=_torch_astype,
)
def astype_p(a: np.ndarray, *, dtype: Any) -> np.ndarray:
    """``a`` converted to ``dtype``."""
    return a.astype(dtype)


def astype(x: Any, dtype: Any) -> Tensor:
    """Convert to ``dtype``; the gradient is converted back to the input's dtype."""
    return apply(astype_p, _t(x), dtype=np.dtype(dtype))  # type: ignore[no-any-return]


def _clip_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    sample = away_from(-0.5, 0.5)
    return (
        unary_cases(rng, dtype, sample, lo=-0.5, hi=0.5)
        + unary_cases(rng, dtype, sample, lo=-0.5, hi=np.inf)
        + unary_cases(rng, dtype, sample, lo=-np.inf, hi=0.5)
    )


# NOTE: the bounds are inside (gradient 1 at x = lo and x = hi), as torch.clamp.
@primitive(
    "clip",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, lo, hi: g * ((x >= lo) & (x <= hi)),),
    examples=_clip_examples,
    torch=lambda x, lo, hi: x.clamp(float(lo), float(hi)),
)
def clip_p(a: np.ndarray, *, lo: Any, hi: Any) -> np.ndarray:
    """``a`` limited to ``[lo, hi]``."""
    return np.clip(a, lo, hi)


def clip(x: Any, lo: Any = None, hi: Any = None) -> Tensor:
    """Limit values to ``[lo, hi]`` (``torch.clamp``; alias :func:`clamp`).

    ``∂/∂x = 1`` for ``lo ≤ x ≤ hi`` (bounds included, as ``torch.clamp``), 0 outside.
    """
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi, got neither")
    lo = -np.inf if lo is None else _raw(lo)
    hi = np.inf if hi is None else _raw(hi)
    return apply(clip_p, _t(x), lo=lo, hi=hi)  # type: ignore[no-any-return]


def _where_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    cases: list[Case] = []
    for (a, b), _ in binary_cases(rng, dtype):
        shape = np.broadcast_shapes(a.shape, b.shape)
        cases.append(((rng.random(shape) < 0.5, a, b), {}))
    return cases


@primitive(
    "where",
    kind="elementwise",
    vjps=(
        None,  # the condition is not differentiable
        lambda g, out, saved, c, x, y: g * c,
        lambda g, out, saved, c, x, y: g * np.logical_not(c),
    ),
    reads_inputs=False,
    examples=_where_examples,
    torch=torch_fn("where"),
)
def where_p(c: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """``a`` where ``c`` else ``b``."""
    return np.where(c, a, b)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a`` where ``condition`` else ``b``; the gradient goes to the chosen one."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
    if cond.dtype != np.bool_:
        cond = cond.astype(bool)
    ref = a if isinstance(a, Tensor) else b
    a = _coerce(a, ref)
    b = _coerce(b, ref)
    if not isinstance(ref, Tensor) or ref.data.dtype.kind != "f":
        a, b = _promote("where", a, b)
        ref = a if isinstance(a, Tensor) else b
    # NOTE: np.where is not a ufunc and would turn a Python float into float64: cast scalars.
    dt = ref.dtype if isinstance(ref, Tensor) else None
    if dt is not None and dt.kind == "f":
        a = np.asarray(a, dtype=dt) if type(a) in _SCALARS else a
        b = np.asarray(b, dtype=dt) if type(b) in _SCALARS else b
    try:
        return apply(where_p, cond, a, b)  # type: ignore[no-any-return]
    except ValueError:
        raise ValueError(
            f"where: condition, a and b with shapes {cond.shape}, {_shape(a)} and {_shape(b)} "
            "cannot be broadcast together"
        ) from None


def _round_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    # away from the half-integers, where rounding jumps
    return unary_cases(rng, dtype, away_from(-1.5, -0.5, 0.5, 1.5), decimals=0)


@primitive(
    "round",
    kind="elementwise",
    vjps=(lambda g, out, saved, x, decimals: np.zeros_like(g),),
    reads_inputs=False,
    examples=_round_examples,
    torch=lambda x, decimals: x.round(decimals=decimals),
)
def round_p(a: np.ndarray, *, decimals: int) -> np.ndarray:
    """``a`` rounded to ``decimals`` digits, half to even."""
    return np.round(a, decimals)


def round(x: Any, decimals: int = 0) -> Tensor:  # noqa: A001 - Python's and NumPy's name
    """Round to ``decimals`` digits (half to even, as NumPy and PyTorch); the gradient is 0."""
    return apply(round_p, _t(x), decimals=decimals)  # type: ignore[no-any-return]
