"""Primitives: their forward computations and the one table of backward rules.

Every differentiable operation in chainrule is one of the primitives below. Each primitive
computes its value with NumPy and, when gradients are being recorded, returns a Tensor that
remembers the primitive's name, its inputs and attributes.

Its backward rule lives in ``RULES`` with the signature ``rule(g, out, *inputs, **attrs)``:
``g`` is ∂C/∂out, ``out`` is the forward value, ``inputs`` are the input *arrays*; it returns
one gradient ∂C/∂input (or ``None``: not differentiable) per input. The engine undoes
broadcasting (``tensor.unbroadcast``), casts to the input's dtype and accumulates. A rule may
return a zero-argument callable for an expensive gradient (a matrix product): the engine calls
it only if that input needs a gradient — e.g. never the gradient of the input data.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._primitive import Case, Primitive, apply, check_registry, primitive
from .tensor import Tensor, _grad_mode, _raw, tensor

Rule = Callable[..., tuple[Any, ...]]
RULES: dict[str, Rule] = {}

_SCALARS = (bool, int, float)


# ---------------------------------------------------------------------------------------------
# plumbing
# ---------------------------------------------------------------------------------------------
def _apply(op: str, fwd: Callable[..., Any], inputs: tuple[Any, ...], **attrs: Any) -> Tensor:
    """Run ``fwd`` on the inputs' arrays and record the node if any input requires grad."""
    data = [x.data if isinstance(x, Tensor) else x for x in inputs]
    out = fwd(*data, **attrs) if attrs else fwd(*data)
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if _grad_mode.enabled:
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                return Tensor._make(out, _legacy(op), inputs, attrs or None)
    return Tensor._const(out)


_LEGACY: dict[str, Primitive] = {}


def _legacy(op: str) -> Primitive:
    """A record for a primitive still written as a RULES entry (during the conversion)."""
    prim = _LEGACY.get(op)
    if prim is None:

        def vjp(i: int, g: Any, out: Any, saved: Any, *xs: Any, **attrs: Any) -> Any:
            try:
                rule = RULES[op]
            except KeyError:
                raise NotImplementedError(f"no gradient rule for '{op}'") from None
            gi = rule(g, out, *xs, **attrs)[i]
            return gi() if callable(gi) else gi

        prim = _LEGACY[op] = Primitive(
            op,
            _legacy_forward,
            kind="fused",
            vjp_argnum=vjp,
            reads_out=op in READS_OUT,
            reads_inputs=op not in READS_NO_INPUTS,
            needed_by=NEEDED_BY.get(op),
        )
    return prim


def _legacy_forward(*arrays: Any, **attrs: Any) -> Any:
    raise NotImplementedError("a legacy primitive's forward is run by ops._apply")


def _t(x: Any) -> Tensor:
    """A Tensor for ``x`` (an unrecorded constant if ``x`` is not one already)."""
    return x if isinstance(x, Tensor) else Tensor._const(np.asarray(tensor(x).data))


def _coerce(value: Any, ref: Any) -> Any:
    """Prepare a non-Tensor operand for a binary op with ``ref``.

    Python scalars stay scalars (NumPy treats them as weak: ``float32 * 2.0`` stays float32);
    arrays and lists take a floating ``ref``'s dtype so that mixing never upcasts silently.
    """
    if isinstance(value, Tensor):
        return value
    if type(value) in _SCALARS:  # exactly Python's: np.float64 subclasses float
        return value
    ref_dtype = ref.data.dtype if isinstance(ref, Tensor) else None
    arr = tensor(value).data if not isinstance(value, np.ndarray) else value
    if ref_dtype is not None and ref_dtype.kind == "f" and arr.dtype != ref_dtype:
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"expected a numeric operand, got dtype {arr.dtype}")
        arr = arr.astype(ref_dtype)
    elif arr.dtype.kind not in "biuf":
        raise TypeError(f"expected a numeric operand, got dtype {arr.dtype}")
    return arr


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x.data if isinstance(x, Tensor) else x))


def _kind(x: Any) -> str:
    d = x.data if isinstance(x, Tensor) else x
    return d.dtype.kind if isinstance(d, np.ndarray) else "f" if type(d) is float else "i"


def _float_of(x: Any) -> Any:
    d = x.data if isinstance(x, Tensor) else x
    return d.dtype if isinstance(d, np.ndarray) else np.float32


def _to_float(x: Any, dtype: Any) -> Any:
    """An integer/bool operand as a constant of float ``dtype``; Python scalars stay as they are."""
    if isinstance(x, Tensor):
        return Tensor._const(x.data.astype(dtype))
    return x.astype(dtype) if isinstance(x, np.ndarray) else x


def _promote(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Make integer/bool operands float before a binary op, as PyTorch does.

    NumPy would give float64 for ``int64 ⊕ float32``, for ``int ⊕ 2.5`` and for ``int / int``:
    here an integer operand takes the float operand's dtype (float32 for a Python float), and
    division or ``**`` of two integers gives float32 — never a silent float64. float32 ⊕ float64
    tensors give float64 (as PyTorch and NumPy).
    """
    ka, kb = _kind(a), _kind(b)
    if ka == "f" and kb == "f":
        return a, b
    if ka == "f":
        return a, _to_float(b, _float_of(a))
    if kb == "f":
        return _to_float(a, _float_of(b)), b
    if op == "div":
        return _to_float(a, np.float32), _to_float(b, np.float32)
    return a, b


def _binary(op: str, fwd: Callable[..., Any], a: Any, b: Any) -> Tensor:
    if not isinstance(a, Tensor):
        a = _coerce(a, b)
    elif not isinstance(b, Tensor):
        b = _coerce(b, a)
    if not (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.data.dtype.kind == "f"
        and b.data.dtype.kind == "f"
    ):
        a, b = _promote(op, a, b)
    try:
        return _apply(op, fwd, (a, b))
    except ValueError as exc:
        if "broadcast" in str(exc):
            raise ValueError(
                f"{op}: operands with shapes {_shape(a)} and {_shape(b)} cannot be broadcast "
                "together"
            ) from None
        raise


def _norm_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {axis!r} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % builtins.max(ndim, 1))
    return tuple(out)


def _expand(g: np.ndarray, shape: tuple[int, ...], axis: Any, keepdims: bool) -> np.ndarray:
    """Broadcast a reduced gradient back to the shape of the reduction's input."""
    if not keepdims and axis is not None and len(shape) > 0:
        g = np.expand_dims(g, _norm_axis(axis, len(shape)))
    return np.broadcast_to(g, shape)


def _reduced_count(shape: tuple[int, ...], axis: Any) -> int:
    if axis is None:
        return math.prod(shape)
    return math.prod(shape[a] for a in _norm_axis(axis, len(shape)))


_LOG_TINY: dict[np.dtype[Any], float] = {
    np.dtype(t): float(np.log(np.finfo(t).tiny)) + 1e-3 for t in (np.float32, np.float64)
}
_LOG_TINY[np.dtype(np.float16)] = float(np.log(np.finfo(np.float16).tiny)) + 1e-2


def _exp_nonneg_underflow(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` for ``a <= 0`` that returns exact 0 instead of a subnormal (no underflow).

    # NOTE: stable softmax / sigmoid / softplus exponentiate non-positive numbers; the tiny ones
    # would raise under ``np.errstate(under="raise")`` and produce slow subnormals otherwise.
    """
    a = np.asarray(a)
    lo = _LOG_TINY.get(a.dtype, -700.0)
    out = np.zeros_like(a)
    np.exp(a, out=out, where=a > lo)
    return out


# ---------------------------------------------------------------------------------------------
# elementwise arithmetic
# ---------------------------------------------------------------------------------------------
def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return _binary("add", np.add, a, b)


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return _binary("sub", np.subtract, a, b)


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return _binary("mul", np.multiply, a, b)


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return _binary("div", np.true_divide, a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - the operator's name
    """Elementwise ``a ** b``; ``∂/∂a = b·a^(b-1)``, ``∂/∂b = a^b·ln a`` (0 where a ≤ 0)."""
    return _binary("pow", np.power, a, b)


def neg(x: Any) -> Tensor:
    """Elementwise ``-x``."""
    return _apply("neg", np.negative, (_t(x),))


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; the gradient goes to the larger operand (split evenly on ties)."""
    return _binary("maximum", np.maximum, a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; the gradient goes to the smaller operand (split evenly on ties)."""
    return _binary("minimum", np.minimum, a, b)


RULES["add"] = lambda g, out, x, y: (g, g)
RULES["sub"] = lambda g, out, x, y: (g, -g)
RULES["mul"] = lambda g, out, x, y: (g * y, g * x)
RULES["div"] = lambda g, out, x, y: (g / y, lambda: -g * out / y)
RULES["neg"] = lambda g, out, x: (-g,)


def _grad_pow(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, ...]:
    def d_exponent() -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return g * np.where(x > 0, out * np.log(np.where(x > 0, x, 1)), 0)

    # NOTE: y·x^(y-1) rather than y·out/x, which is wrong at x = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return (g * y * np.power(x, y - 1), d_exponent)


RULES["pow"] = _grad_pow


def _grad_maxmin(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, ...]:
    # NOTE: ties split the gradient evenly between the operands, as PyTorch does.
    gx = (x == out) * 1.0
    gy = (y == out) * 1.0
    both = gx * gy
    return (g * (gx - 0.5 * both), g * (gy - 0.5 * both))


RULES["maximum"] = _grad_maxmin
RULES["minimum"] = _grad_maxmin


# ---------------------------------------------------------------------------------------------
# unary functions and activations
# ---------------------------------------------------------------------------------------------
def exp(x: Any) -> Tensor:
    """Elementwise ``e^x``; ``∂/∂x = e^x``."""
    return _apply("exp", np.exp, (_t(x),))


def log(x: Any) -> Tensor:
    """Elementwise natural logarithm; ``∂/∂x = 1/x``."""
    return _apply("log", np.log, (_t(x),))


def sqrt(x: Any) -> Tensor:
    """Elementwise square root; ``∂/∂x = 1/(2√x)``."""
    return _apply("sqrt", np.sqrt, (_t(x),))


def abs(x: Any) -> Tensor:  # noqa: A001 - NumPy's name
    """Elementwise ``|x|``; ``∂/∂x = sign(x)`` (0 at 0)."""
    return _apply("abs", np.abs, (_t(x),))


def tanh(x: Any) -> Tensor:
    """Elementwise hyperbolic tangent; ``∂/∂x = 1 - tanh²(x)``."""
    return _apply("tanh", np.tanh, (_t(x),))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = _exp_nonneg_underflow(-np.abs(x))  # e^{-|x|} never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x: Any) -> Tensor:
    """Logistic function ``σ(x) = 1 / (1 + e^{-x})``; ``∂/∂x = σ(x)(1 - σ(x))``.

    Computed as ``1/(1+e^{-x})`` for x ≥ 0 and ``e^x/(1+e^x)`` for x < 0: finite for any x.
    """
    return _apply("sigmoid", _sigmoid, (_t(x),))


_ZERO_ROWS: dict[tuple[int, np.dtype[Any]], np.ndarray] = {}


def _relu_array(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(a, 0)`` elementwise, NaN kept (NumPy's ``maximum`` propagates it).

    Against a row of zeros instead of the scalar 0: NumPy's ``maximum`` takes its vectorised
    loop only when both operands advance, and is 2.5–4× slower against a scalar (measured on
    (128, 256) and (512, 256) float32 arrays). Same values either way.
    """
    if a.ndim == 0 or a.shape[-1] < 16 or a.dtype.kind != "f":
        return np.maximum(a, 0, out=out)
    key = (a.shape[-1], a.dtype)
    zeros = _ZERO_ROWS.get(key)
    if zeros is None:
        if len(_ZERO_ROWS) > 64:
            _ZERO_ROWS.clear()
        zeros = _ZERO_ROWS[key] = np.zeros(a.shape[-1], a.dtype)
        zeros.flags.writeable = False
    return np.maximum(a, zeros, out=out)


def relu(x: Any) -> Tensor:
    """Rectified linear unit ``max(x, 0)``; ``∂/∂x = 1`` for x > 0, else 0 (also at 0)."""
    return _apply("relu", _relu_array, (_t(x),))


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    """``x`` for x > 0, ``negative_slope·x`` otherwise (PyTorch's definition)."""
    s = float(negative_slope)
    return _apply("leaky_relu", lambda a, slope: np.where(a > 0, a, a * slope), (_t(x),), slope=s)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit: ``x`` for x > 0, ``α(e^x - 1)`` otherwise (Clevert et al. 2015)."""

    def fwd(a: np.ndarray, alpha: float) -> np.ndarray:
        return np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0)))

    return _apply("elu", fwd, (_t(x),), alpha=float(alpha))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(a: np.ndarray) -> np.ndarray:
    # NOTE: NumPy has no erf; the core depends on NumPy only, so the C library's math.erf
    # (correctly rounded to ~1 ulp) is applied per element.
    return np.asarray(_erf_scalar(a), dtype=a.dtype)


def _gelu(a: np.ndarray, approximate: str) -> np.ndarray:
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
    return _apply("gelu", _gelu, (_t(x),), approximate=approximate)


def _softplus(a: np.ndarray, beta: float) -> np.ndarray:
    z = a * beta
    return (np.maximum(z, 0) + np.log1p(_exp_nonneg_underflow(-np.abs(z)))) / beta


def softplus(x: Any, beta: float = 1.0) -> Tensor:
    """``(1/β)·log(1 + e^{βx})``, computed as ``(max(βx,0) + log1p(e^{-|βx|}))/β``.

    Exact for every x (PyTorch switches to the identity above ``βx > 20``; the two agree to
    within ``e^{-20}``). ``∂/∂x = σ(βx)``.
    """
    if not float(beta) > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    return _apply("softplus", _softplus, (_t(x),), beta=float(beta))


RULES["exp"] = lambda g, out, x: (g * out,)
RULES["log"] = lambda g, out, x: (g / x,)
RULES["sqrt"] = lambda g, out, x: (g / (2 * out),)
RULES["abs"] = lambda g, out, x: (g * np.sign(x),)
RULES["tanh"] = lambda g, out, x: (g * (1 - out * out),)
RULES["sigmoid"] = lambda g, out, x: (g * out * (1 - out),)
# NOTE: relu passes no gradient at 0 (subgradient 0), as PyTorch and JAX do.
RULES["relu"] = lambda g, out, x: (g * (out > 0),)
RULES["leaky_relu"] = lambda g, out, x, slope: (g * np.where(x > 0, 1, slope).astype(x.dtype),)
# for x <= 0, d/dx α(e^x - 1) = α e^x = out + α
RULES["elu"] = lambda g, out, x, alpha: (g * np.where(x > 0, 1, out + alpha),)
RULES["softplus"] = lambda g, out, x, beta: (g * _sigmoid(x * beta),)


def _grad_gelu(g: Any, out: Any, x: Any, approximate: str) -> tuple[Any, ...]:
    if approximate == "tanh":
        k = 0.044715
        t = np.tanh(_SQRT_2_OVER_PI * (x + k * x * x * x))
        dt = (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * k * x * x)
        return (g * (0.5 * (1 + t) + 0.5 * x * dt),)
    cdf = 0.5 * (1 + _erf(x * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * _exp_nonneg_underflow(-0.5 * x * x)
    return (g * (cdf + x * pdf),)


RULES["gelu"] = _grad_gelu


def astype(x: Any, dtype: Any) -> Tensor:
    """Convert to ``dtype``; the gradient is converted back to the input's dtype."""
    return _apply("astype", lambda a, dtype: a.astype(dtype), (_t(x),), dtype=np.dtype(dtype))


RULES["astype"] = lambda g, out, x, dtype: (g.astype(x.dtype),)


def clip(x: Any, lo: Any = None, hi: Any = None) -> Tensor:
    """Limit values to ``[lo, hi]`` (``torch.clamp``; alias :func:`clamp`).

    ``∂/∂x = 1`` for ``lo ≤ x ≤ hi`` (bounds included, as ``torch.clamp``), 0 outside.
    """
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi, got neither")
    lo = -np.inf if lo is None else _raw(lo)
    hi = np.inf if hi is None else _raw(hi)
    return _apply("clip", lambda a, lo, hi: np.clip(a, lo, hi), (_t(x),), lo=lo, hi=hi)


# NOTE: the bounds are inside (gradient 1 at x = lo and x = hi), as torch.clamp.
RULES["clip"] = lambda g, out, x, lo, hi: (g * ((x >= lo) & (x <= hi)),)


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
        return _apply("where", np.where, (cond, a, b))
    except ValueError:
        raise ValueError(
            f"where: condition, a and b with shapes {cond.shape}, {_shape(a)} and {_shape(b)} "
            "cannot be broadcast together"
        ) from None


RULES["where"] = lambda g, out, c, x, y: (None, g * c, g * np.logical_not(c))


# ---------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------
def _alias(op: str, name: Any, value: Any, torch_name: str, torch_value: Any, default: Any) -> Any:
    """Merge a NumPy keyword with its PyTorch spelling (``axis``/``dim``, ``keepdims``/``keepdim``).

    ``default`` is the NumPy keyword's default: giving both spellings is an error.
    """
    if torch_value is None:
        return value
    if value is not default:
        raise TypeError(
            f"{op}() got both {name}={value!r} and {torch_name}={torch_value!r}: they are the "
            f"same argument (NumPy's and PyTorch's name), pass one"
        )
    return torch_value


def _check_axis(x: Tensor, axis: Any) -> Any:
    if axis is not None:
        if isinstance(axis, list):
            axis = tuple(axis)
        _norm_axis(axis, x.ndim)
    return axis


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
    return _apply("sum", np.sum, (x,), axis=axis, keepdims=keepdims)


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
    return _apply("mean", np.mean, (x,), axis=axis, keepdims=keepdims)


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
    values = _apply("max", np.max, (x,), axis=axis, keepdims=keepdims)
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
    values = _apply("min", np.min, (x,), axis=axis, keepdims=keepdims)
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
    return _apply("var", np.var, (x,), axis=axis, keepdims=keepdims, ddof=int(ddof))


def _grad_mean(g: Any, out: Any, x: Any, axis: Any, keepdims: bool) -> tuple[Any, ...]:
    n = _reduced_count(x.shape, axis)
    return (_expand(g, x.shape, axis, keepdims) / np.asarray(n, dtype=x.dtype),)


def _grad_maxmin_reduce(g: Any, out: Any, x: Any, axis: Any, keepdims: bool) -> tuple[Any, ...]:
    hit = x == _expand(out, x.shape, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True)
    return (_expand(g, x.shape, axis, keepdims) * hit / count,)


def _grad_var(g: Any, out: Any, x: Any, axis: Any, keepdims: bool, ddof: int) -> tuple[Any, ...]:
    n = _reduced_count(x.shape, axis)
    centred = x - x.mean(axis=axis, keepdims=True)
    return (_expand(g, x.shape, axis, keepdims) * centred * (2.0 / (n - ddof)),)


RULES["sum"] = lambda g, out, x, axis, keepdims: (_expand(g, x.shape, axis, keepdims),)
RULES["mean"] = _grad_mean
RULES["max"] = _grad_maxmin_reduce
RULES["min"] = _grad_maxmin_reduce
RULES["var"] = _grad_var


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
    return _apply("logsumexp", _logsumexp, (x,), axis=axis, keepdims=keepdims)


def _finite_max(a: np.ndarray, axis: Any) -> np.ndarray:
    """The max along ``axis`` (kept), 0 where it is not finite or the axis is empty."""
    if a.size == 0:
        return np.zeros((1,) * a.ndim, a.dtype)
    m = np.max(a, axis=axis, keepdims=True)
    return np.where(np.isfinite(m), m, 0).astype(a.dtype, copy=False)


def _logsumexp(a: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    m = _finite_max(a, axis)
    s = np.sum(_exp_nonneg_underflow(a - m), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf slice, as expected
        out = np.log(s) + m
    if not keepdims:
        out = out.reshape(np.sum(s, axis=axis).shape) if axis is not None else out.reshape(())
    return out.astype(a.dtype, copy=False)


RULES["logsumexp"] = lambda g, out, x, axis, keepdims: (
    _expand(g, x.shape, axis, keepdims)
    * _exp_nonneg_underflow(x - _expand(out, x.shape, axis, keepdims)),
)


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    # (x - m) - log Σ e^{x - m}: shifting first keeps float32 exact where x - logsumexp(x)
    # would cancel two large numbers (x = -1e4 everywhere).
    shifted = a - _finite_max(a, axis)
    s = np.sum(_exp_nonneg_underflow(shifted), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return (shifted - np.log(s)).astype(a.dtype, copy=False)


def softmax(x: Any, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``e^{x_i} / Σ_j e^{x_j}`` along ``axis``, computed as ``exp(x - logsumexp(x))``.

    ``∂C/∂x = s ⊙ (g - Σ g ⊙ s)``.
    """
    x = _t(x)
    axis = _alias("softmax", "axis", axis, "dim", dim, -1)
    _norm_axis(axis, x.ndim)
    return _apply(
        "softmax", lambda a, axis: _exp_nonneg_underflow(_log_softmax(a, axis)), (x,), axis=axis
    )


def log_softmax(x: Any, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``x_i - logsumexp(x)`` along ``axis``; ``∂C/∂x = g - softmax(x)·Σ g``.

    # NOTE: a primitive (not log ∘ softmax) for stability: log(softmax) is -inf where softmax
    # underflows, this is exact.
    """
    x = _t(x)
    axis = _alias("log_softmax", "axis", axis, "dim", dim, -1)
    _norm_axis(axis, x.ndim)
    return _apply("log_softmax", _log_softmax, (x,), axis=axis)


RULES["softmax"] = lambda g, out, x, axis: (out * (g - (g * out).sum(axis=axis, keepdims=True)),)
RULES["log_softmax"] = lambda g, out, x, axis: (
    g - _exp_nonneg_underflow(out) * g.sum(axis=axis, keepdims=True),
)


# ---------------------------------------------------------------------------------------------
# fused losses
# ---------------------------------------------------------------------------------------------
def _softmax_xent(z: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return -(y * _log_softmax(z, axis)).sum(axis=axis)


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
    return _apply("softmax_cross_entropy", _softmax_xent, (z, y), axis=axis)


def _grad_softmax_xent(g: Any, out: Any, z: Any, y: Any, axis: int) -> tuple[Any, ...]:
    ge = np.expand_dims(g, axis)
    logp = _log_softmax(z, axis)
    return (
        lambda: ge * (_exp_nonneg_underflow(logp) * y.sum(axis=axis, keepdims=True) - y),
        lambda: -ge * logp,
    )


RULES["softmax_cross_entropy"] = _grad_softmax_xent


def _log_clamped(p: np.ndarray) -> np.ndarray:
    # NOTE: dtype-aware bound: log p is clamped at max(-100, log(smallest normal)), -100 as
    # PyTorch in float64 and -87.3 in float32, so p = 0 or 1 gives a large finite loss.
    lo = builtins.max(-100.0, _LOG_TINY.get(p.dtype, -100.0))
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(p), lo)


def _bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -(y * _log_clamped(p) + (1 - y) * _log_clamped(1 - p))


def binary_cross_entropy_elementwise(prob: Any, target: Any) -> Tensor:
    """Elementwise log loss ``-(y log p + (1-y) log(1-p))`` on probabilities.

    # NOTE: a primitive so that p = 0 or 1 stays finite: the logs are clamped (see
    # ``_log_clamped``) and the gradient ``(p - y) / max(p(1-p), 1e-12)`` is bounded, as PyTorch.
    """
    p = _t(prob)
    y = _coerce(target, p)
    return _apply("binary_cross_entropy", _bce, (p, y))


def _grad_bce(g: Any, out: Any, p: Any, y: Any) -> tuple[Any, ...]:
    denom = np.maximum(p * (1 - p), 1e-12)
    return (g * (p - y) / denom, lambda: g * (_log_clamped(1 - p) - _log_clamped(p)))


RULES["binary_cross_entropy"] = _grad_bce


# ---------------------------------------------------------------------------------------------
# linear algebra
# ---------------------------------------------------------------------------------------------
def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with ``numpy.matmul`` semantics (1-D, 2-D and batched operands).

    For ``Z = X @ W``: ``∂C/∂X = G @ Wᵀ`` and ``∂C/∂W = Xᵀ @ G``.
    """
    if not isinstance(a, Tensor):
        a = _coerce(a, b)
    elif not isinstance(b, Tensor):
        b = _coerce(b, a)
    a, b = _promote("matmul", a, b)
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"matmul: operands must be at least 1-D, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {sa} and {sb} are not aligned: {k_a} (last dimension of the first) "
            f"!= {k_b} ({'only' if len(sb) == 1 else 'second-to-last'} dimension of the second)"
        )
    try:
        return _apply("matmul", np.matmul, (a, b))
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of shapes {sa} and {sb} cannot be broadcast"
        ) from None


def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _grad_matmul(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, ...]:
    if x.ndim == 1 and y.ndim == 1:  # dot product
        return (lambda: g * y, lambda: g * x)
    if x.ndim == 1:  # (n,) @ (..., n, m) -> (..., m)
        return (
            lambda: (g[..., None, :] @ _swap(y))[..., 0, :],
            lambda: x[:, None] * g[..., None, :],
        )
    if y.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
        return (lambda: g[..., None] * y, lambda: (_swap(x) @ g[..., None])[..., 0])
    return (lambda: g @ _swap(y), lambda: _swap(x) @ g)


RULES["matmul"] = _grad_matmul


def _outer_or_matmul(x2: np.ndarray, g2: np.ndarray) -> np.ndarray:
    # NOTE: with one row, xᵀg is an outer product; OpenBLAS runs that K=1 GEMM ~4x slower than a
    # broadcast multiply, which is also exact (each entry is a single product either way).
    if x2.shape[0] == 1:
        return np.multiply(x2.T, g2)
    return x2.T @ g2


def _linear_grad_w(g: Any, out: Any, saved: Any, x: Any, w: Any, b: Any = None) -> Any:
    return _outer_or_matmul(x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]))


def _linear_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    return [
        ((r(4, 3), r(3, 2), r(2)), {}),
        ((r(4, 3), r(3, 2)), {}),
        ((r(2, 4, 3), r(3, 5), r(5)), {}),
        ((r(1, 3), r(3, 2), r(2)), {}),
        ((r(0, 3), r(3, 2), r(2)), {}),
    ]


def _torch_linear(x: Any, w: Any, b: Any = None) -> Any:
    out = x @ w
    return out if b is None else out + b


# NOTE: one primitive instead of matmul + add: one node, an in-place bias add, and the bias
# gradient as one column sum. ∂C/∂x = G Wᵀ, ∂C/∂W = xᵀ G, ∂C/∂b = Σ_rows G. The rule of an
# input runs only if that input needs a gradient (never G Wᵀ for the input data).
@primitive(
    "linear",
    kind="contraction",
    vjps=(
        lambda g, out, saved, x, w, b=None: g @ w.T,
        _linear_grad_w,
        lambda g, out, saved, x, w, b=None: g.reshape(-1, g.shape[-1]).sum(axis=0),
    ),
    out_capable=True,
    needed_by=((1,), (0,), ()),
    examples=_linear_examples,
    torch=_torch_linear,
)
def linear_p(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """``x @ w + b`` (the bias added in place into the product)."""
    res = np.matmul(x, w, out=out)
    if b is not None:
        res += b
    return res


def linear(x: Any, weight: Any, bias: Any = None) -> Tensor:
    """Affine map ``z = x @ W + b`` with ``W`` of shape ``(in_features, out_features)``.

    ``∂C/∂x = G Wᵀ``, ``∂C/∂W = xᵀ G``, ``∂C/∂b = Σ_rows G`` (see ``linear_p``).
    """
    if not isinstance(x, Tensor):
        x = _coerce(x, weight)
    sx, sw = _shape(x), _shape(weight)
    if len(sw) != 2:
        raise ValueError(f"linear: weight must be 2-D (in_features, out_features), got {sw}")
    if len(sx) < 1 or sx[-1] != sw[0]:
        raise ValueError(
            f"linear: input with last dimension {sw[0]} expected (weight shape {sw}), "
            f"got shape {sx}"
        )
    if bias is None:
        return apply(linear_p, x, weight)  # type: ignore[no-any-return]
    if _shape(bias) != (sw[1],):
        raise ValueError(f"linear: bias must have shape ({sw[1]},), got {_shape(bias)}")
    return apply(linear_p, x, weight, bias)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# shape and indexing
# ---------------------------------------------------------------------------------------------
def _shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(x: Any, *shape: Any) -> Tensor:
    """Same data, new shape (one dimension may be -1)."""
    x = _t(x)
    new = _shape_arg(shape)
    try:
        return _apply("reshape", lambda a, shape: a.reshape(shape), (x,), shape=new)
    except ValueError:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {x.shape} into {new}"
        ) from None


RULES["reshape"] = lambda g, out, x, shape: (g.reshape(x.shape),)


def transpose(x: Any, *axes: Any) -> Tensor:
    """Reorder the axes.

    - no axes: reverse them (NumPy's ``transpose()`` and ``.T``);
    - exactly two axes ``(a, b)``: swap them — PyTorch's ``transpose(dim0, dim1)`` and
      ``numpy.swapaxes``. On a 2-D tensor ``transpose(0, 1)`` is the matrix transpose;
    - a full permutation of three or more axes: ``numpy.transpose`` (same as :meth:`permute`).

    The gradient applies the inverse permutation.
    """
    x = _t(x)
    ax = _shape_arg(axes) if axes else None
    if ax is not None and len(ax) == 2:
        return swapaxes(x, ax[0], ax[1])
    if ax is not None and sorted(int(a) % builtins.max(x.ndim, 1) for a in ax) != list(
        range(x.ndim)
    ):
        raise ValueError(f"transpose: axes {ax} are not a permutation of a {x.ndim}-D tensor")
    return _apply("transpose", lambda a, axes: np.transpose(a, axes), (x,), axes=ax)


RULES["transpose"] = lambda g, out, x, axes: (
    np.transpose(g, None if axes is None else np.argsort([a % x.ndim for a in axes])),
)


def swapaxes(x: Any, axis0: int, axis1: int) -> Tensor:
    """Swap two axes (``numpy.swapaxes``, PyTorch's ``transpose(dim0, dim1)``)."""
    x = _t(x)
    n = x.ndim
    for a in (axis0, axis1):
        if not isinstance(a, (int, np.integer)) or not -n <= a < builtins.max(n, 1):
            raise ValueError(f"swapaxes: axis {a!r} is out of range for a {n}-D tensor")
    perm = list(range(n))
    i, j = int(axis0) % builtins.max(n, 1), int(axis1) % builtins.max(n, 1)
    if n == 0:
        return transpose(x)
    perm[i], perm[j] = perm[j], perm[i]
    return _apply("transpose", lambda a, axes: np.transpose(a, axes), (x,), axes=tuple(perm))


def permute(x: Any, *dims: Any) -> Tensor:
    """Reorder the axes by a full permutation (PyTorch's ``permute``, ``numpy.transpose``)."""
    x = _t(x)
    ax = _shape_arg(dims)
    if len(ax) != x.ndim or sorted(int(a) % builtins.max(x.ndim, 1) for a in ax) != list(
        range(x.ndim)
    ):
        raise ValueError(f"permute: dims {ax} are not a permutation of a {x.ndim}-D tensor")
    return _apply("transpose", lambda a, axes: np.transpose(a, axes), (x,), axes=ax)


def flatten(x: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Collapse the dimensions ``start_dim`` to ``end_dim`` (inclusive) into one (PyTorch's)."""
    x = _t(x)
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _norm_axis(start_dim, x.ndim)[0], _norm_axis(end_dim, x.ndim)[0]
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, *x.shape[:s], math.prod(x.shape[s : e + 1]), *x.shape[e + 1 :])


def _norm_index(index: Any) -> Any:
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    if isinstance(index, tuple):
        return tuple(_norm_index(i) for i in index)
    return index


def _advanced(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray) and p.dtype != np.bool_ for p in parts)


def getitem(x: Any, index: Any) -> Tensor:
    """``x[index]`` with slices, integers, integer arrays and boolean masks (NumPy rules)."""
    x = _t(x)
    index = _norm_index(index)
    try:
        return _apply("getitem", lambda a, index: a[index], (x,), index=index)
    except IndexError as exc:
        raise IndexError(
            f"index {index!r} is invalid for a tensor of shape {x.shape}: {exc}"
        ) from None


def _grad_getitem(g: Any, out: Any, x: Any, index: Any) -> tuple[Any, ...]:
    gx = np.zeros(x.shape, dtype=g.dtype)
    if _advanced(index):
        np.add.at(gx, index, g)  # repeated indices accumulate
    else:
        gx[index] = g
    return (gx,)


RULES["getitem"] = _grad_getitem


def _setitem(a: np.ndarray, v: Any, index: Any) -> np.ndarray:
    out = a.copy()
    out[index] = v
    return out


def setitem(x: Any, index: Any, value: Any) -> Tensor:
    """A copy of ``x`` with ``x[index] = value`` (the recorded form of ``t[index] = v``).

    ``∂C/∂x = g`` with zeros at ``index``; ``∂C/∂value = g[index]`` (summed over broadcasting).
    """
    x = _t(x)
    index = _norm_index(index)
    if _advanced(index):
        hits = np.zeros(x.shape, dtype=np.intp)
        np.add.at(hits, index, 1)
        if (hits > 1).any():
            raise ValueError(
                "t[index] = v with an index that repeats an element cannot be differentiated "
                "(which write wins is undefined); use distinct indices"
            )
    value = _coerce(value, x)
    try:
        return _apply("setitem", _setitem, (x, value), index=index)
    except (IndexError, ValueError) as exc:
        raise type(exc)(
            f"t[{index!r}] = value: cannot assign a value of shape {_shape(value)} into a tensor "
            f"of shape {x.shape}: {exc}"
        ) from None


def _grad_setitem(g: Any, out: Any, x: Any, v: Any, index: Any) -> tuple[Any, ...]:
    def gx() -> Any:
        gx = np.array(g, copy=True)
        gx[index] = 0
        return gx

    return (gx, lambda: g[index])


RULES["setitem"] = _grad_setitem


def round(x: Any, decimals: int = 0) -> Tensor:  # noqa: A001 - Python's and NumPy's name
    """Round to ``decimals`` digits (half to even, as NumPy and PyTorch); the gradient is 0."""
    return _apply("round", lambda a, decimals: np.round(a, decimals), (_t(x),), decimals=decimals)


RULES["round"] = lambda g, out, x, decimals: (np.zeros_like(g),)


def concatenate(tensors: Sequence[Any], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into pieces."""
    ts = _sequence_args("concatenate", tensors)
    axis = _alias("concatenate", "axis", axis, "dim", dim, 0)
    try:
        return _apply("concatenate", lambda *a, axis: np.concatenate(a, axis=axis), ts, axis=axis)
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(
            f"concatenate: shapes {shapes} do not fit along axis {axis}: {exc}"
        ) from None


def _grad_concatenate(g: Any, out: Any, *xs: Any, axis: int) -> tuple[Any, ...]:
    ends = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return tuple(np.split(g, ends, axis=axis))


RULES["concatenate"] = _grad_concatenate


def stack(tensors: Sequence[Any], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    ts = _sequence_args("stack", tensors)
    axis = _alias("stack", "axis", axis, "dim", dim, 0)
    try:
        return _apply("stack", lambda *a, axis: np.stack(a, axis=axis), ts, axis=axis)
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(f"stack: tensors must have equal shapes, got {shapes}: {exc}") from None


RULES["stack"] = lambda g, out, *xs, axis: tuple(np.take(g, i, axis=axis) for i in range(len(xs)))


def _split_grad(g: Any, out: Any, saved: Any, x: Any, *, sizes: Any, axis: int) -> Any:
    # NOTE: one array for the whole input gradient; a piece whose output received no gradient
    # is filled with zeros (slicing through getitem would allocate a zero array per piece).
    if all(gk is not None for gk in g):
        return np.concatenate(g, axis=axis)
    ref = next(gk for gk in g if gk is not None)
    gx = np.empty(x.shape, dtype=ref.dtype)
    index: list[Any] = [slice(None)] * x.ndim
    start = 0
    for gk, n in zip(g, sizes):
        index[axis] = slice(start, start + n)
        gx[tuple(index)] = 0 if gk is None else gk
        start += n
    return gx


def _split_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    return [
        ((r(6),), {"sizes": (2, 4), "axis": 0}),
        ((r(3, 8),), {"sizes": (2, 2, 2, 2), "axis": 1}),
        ((r(5, 2, 3),), {"sizes": (1, 4), "axis": 0}),
        ((r(4, 0),), {"sizes": (1, 3), "axis": 0}),
    ]


def _torch_split(x: Any, *, sizes: Any, axis: int) -> Any:
    return x.split(list(sizes), dim=axis)


@primitive(
    "split",
    kind="movement",
    n_outputs=None,
    vjps=(_split_grad,),
    reads_inputs=False,
    examples=_split_examples,
    torch=_torch_split,
)
def split_p(a: np.ndarray, *, sizes: tuple[int, ...], axis: int) -> tuple[np.ndarray, ...]:
    """Consecutive pieces of ``a`` along ``axis`` of lengths ``sizes`` (views)."""
    return tuple(np.split(a, np.cumsum(sizes)[:-1], axis=axis))


def split(
    x: Any, split_size_or_sections: Any, dim: int = 0, *, axis: int | None = None
) -> tuple[Tensor, ...]:
    """Split into consecutive pieces along ``dim`` — PyTorch's ``split``, one node.

    ``split_size_or_sections`` is the length of every piece (an int; the last piece may be
    shorter) or the list of lengths (summing to the dimension's length). Not NumPy's
    ``np.split``, whose integer means a number of equal parts: for that use :func:`chunk`.
    The pieces are the outputs of one primitive: backward assembles the input's gradient in
    one array (zeros for pieces that got no gradient), ``∂C/∂x = concat(∂C/∂pieces)``.

    Examples
    --------
    >>> import chainrule as cr
    >>> a, b = cr.ops.split(cr.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), [2, 3])
    >>> a.shape, b.shape
    ((2,), (3,))
    """
    x = _t(x)
    dim = _alias("split", "dim", dim, "axis", axis, 0)
    ax = _norm_axis(dim, x.ndim)[0] if x.ndim else None
    if ax is None:
        raise ValueError("split: cannot split a 0-d tensor")
    n = x.shape[ax]
    if isinstance(split_size_or_sections, (int, np.integer)) and not isinstance(
        split_size_or_sections, bool
    ):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be a positive integer, got {size}")
        sizes = tuple(builtins.min(size, n - s) for s in range(0, n, size)) or (0,)
    else:
        try:
            sizes = tuple(int(s) for s in split_size_or_sections)
        except TypeError:
            raise TypeError(
                "split: split_size_or_sections must be an int or a list of ints, got "
                f"{type(split_size_or_sections).__name__}"
            ) from None
        if builtins.sum(sizes) != n or builtins.any(s < 0 for s in sizes):
            raise ValueError(
                f"split: section lengths {list(sizes)} must be >= 0 and sum to the length "
                f"{n} of dimension {dim} (tensor shape {x.shape})"
            )
    return apply(split_p, x, sizes=sizes, axis=ax)  # type: ignore[no-any-return]


def chunk(x: Any, chunks: int, dim: int = 0, *, axis: int | None = None) -> tuple[Tensor, ...]:
    """Split into ``chunks`` pieces of length ``ceil(n / chunks)`` along ``dim`` (PyTorch's).

    As ``torch.chunk``, the last piece may be shorter and there may be fewer pieces than
    ``chunks`` when the length does not divide. One primitive (see :func:`split`): slicing
    the four gates of an LSTM this way makes one gradient array, not four zero-filled ones.
    """
    x = _t(x)
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive integer, got {chunks!r}")
    dim = _alias("chunk", "dim", dim, "axis", axis, 0)
    if x.ndim == 0:
        raise ValueError("chunk: cannot split a 0-d tensor")
    n = x.shape[_norm_axis(dim, x.ndim)[0]]
    return split(x, builtins.max(-(-n // int(chunks)), 1), dim)


def _sequence_args(op: str, tensors: Any) -> tuple[Tensor, ...]:
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, Sequence):
        raise TypeError(f"{op} expects a sequence of tensors, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError(f"{op} needs at least one tensor, got an empty sequence")
    ref = next((t for t in tensors if isinstance(t, Tensor)), None)
    ts = tuple(t if isinstance(t, Tensor) else _t(_coerce(t, ref)) for t in tensors)
    floats = [t.dtype for t in ts if t.dtype.kind == "f"]
    if floats and len(floats) < len(ts):  # integers join float tensors as floats (PyTorch)
        dt = np.result_type(*floats)
        ts = tuple(t if t.dtype.kind == "f" else Tensor._const(t.data.astype(dt)) for t in ts)
    return ts


# Which rules read which values, for the in-place check of backward() (tensor._check_inplace):
# a rule in READS_NO_INPUTS uses only its inputs' shapes and dtypes (changing an input in place
# after the op does not change its gradient); a rule in READS_OUT uses the forward output.
READS_NO_INPUTS = frozenset(
    {"add", "sub", "neg", "astype", "where", "sum", "mean", "reshape", "transpose", "getitem",
     "setitem", "concatenate", "stack", "round"}
)  # fmt: skip
# in these, input i's value is used only for the gradients of the inputs NEEDED_BY[op][i]
# (x·y, x@W, x@W + b): it matters only if one of those requires grad, as PyTorch saves it
NEEDED_BY: dict[str, tuple[tuple[int, ...], ...]] = {
    "mul": ((1,), (0,)),
    "matmul": ((1,), (0,)),
    "linear": ((1,), (0,), ()),
}
READS_OUT = frozenset(
    {"div", "pow", "maximum", "minimum", "exp", "sqrt", "tanh", "sigmoid", "relu", "elu", "max",
     "min", "logsumexp", "softmax", "log_softmax"}
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# methods and operators of Tensor
# ---------------------------------------------------------------------------------------------
def _argmax(
    x: Tensor, axis: Any = None, *, dim: Any = None, keepdim: bool | None = None
) -> np.ndarray:
    axis = _alias("argmax", "axis", axis, "dim", dim, None)
    return np.argmax(x.data, axis=axis, keepdims=bool(keepdim))  # type: ignore[no-any-return]


def _argmin(
    x: Tensor, axis: Any = None, *, dim: Any = None, keepdim: bool | None = None
) -> np.ndarray:
    axis = _alias("argmin", "axis", axis, "dim", dim, None)
    return np.argmin(x.data, axis=axis, keepdims=bool(keepdim))  # type: ignore[no-any-return]


def _rpow(x: Tensor, other: Any) -> Tensor:
    return pow(_coerce(other, x), x)


_METHODS: dict[str, Callable[..., Any]] = {
    "__add__": add,
    "__radd__": lambda x, o: add(o, x),
    "__sub__": sub,
    "__rsub__": lambda x, o: sub(o, x),
    "__mul__": mul,
    "__rmul__": lambda x, o: mul(o, x),
    "__truediv__": div,
    "__rtruediv__": lambda x, o: div(o, x),
    "__pow__": pow,
    "__rpow__": _rpow,
    "__matmul__": matmul,
    "__rmatmul__": lambda x, o: matmul(o, x),
    "__neg__": neg,
    "__pos__": lambda x: x,
    "__getitem__": getitem,
    "sum": sum,
    "mean": mean,
    "max": max,
    "min": min,
    "var": var,
    "reshape": reshape,
    "transpose": transpose,
    "swapaxes": swapaxes,
    "permute": permute,
    "flatten": flatten,
    "exp": exp,
    "log": log,
    "sqrt": sqrt,
    "abs": abs,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "clip": clip,
    "argmax": _argmax,
    "argmin": _argmin,
    "split": split,
    "chunk": chunk,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
del _name, _fn

check_registry()  # every registered primitive has its rules (an import-time check)

# in-place operators and PyTorch's names install themselves on Tensor
from . import _inplace as _inplace  # noqa: E402
from . import _torch_names as _torch_names  # noqa: E402
