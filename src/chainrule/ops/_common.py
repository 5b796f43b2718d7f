"""What every primitive module shares: operand coercion, axes, broadcasting, test inputs.

Not public: the primitives live in the sibling modules (``elementwise``, ``reduction``,
``movement``, ``contraction``, ``fused``).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._numerics import LOG_TINY, exp_nonpositive
from .._primitive import Case, Primitive, apply
from ..tensor import Tensor, tensor

_SCALARS = (bool, int, float)


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


def _binary(prim: Primitive, a: Any, b: Any) -> Tensor:
    """Apply a binary elementwise primitive after NumPy-broadcast checks and dtype promotion."""
    op = prim.name
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
        return apply(prim, a, b)  # type: ignore[no-any-return]
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


# stable exponentials live in the one numerics module (exp of a ≤ 0, subnormals flushed to 0)
_LOG_TINY = LOG_TINY
_exp_nonneg_underflow = exp_nonpositive


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


def _shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


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


# ---------------------------------------------------------------------------------------------
# test inputs for the check_primitive suite (``Primitive.examples``)
# ---------------------------------------------------------------------------------------------
UNARY_SHAPES: tuple[tuple[int, ...], ...] = ((), (3,), (3, 2), (0, 3))
BINARY_SHAPES: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((3, 2), (3, 2)),
    ((3, 1), (1, 4)),
    ((1, 2), (3, 2)),
    ((), (3,)),
    ((0, 3), (3,)),
)
Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in [0.5, 2] (the domain of log, sqrt, a divisor, a base of pow)."""
    return rng.uniform(0.5, 2.0, shape)


def away_from(*kinks: float, gap: float = 0.1) -> Sampler:
    """Normal values at least ``gap`` from every kink (relu at 0, clip at its bounds)."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        x = rng.standard_normal(shape)
        for k in kinks:
            near = np.abs(x - k) < gap
            x = np.where(near, k + np.where(x >= k, gap, -gap) * 2, x)
        return x

    return sample


def unary_cases(
    rng: np.random.Generator, dtype: Any, sample: Sampler = normal, /, **attrs: Any
) -> list[Case]:
    """One case per shape of ``UNARY_SHAPES`` (including the empty ``(0, 3)``)."""
    return [((np.asarray(sample(rng, s), dtype=dtype),), dict(attrs)) for s in UNARY_SHAPES]


def binary_cases(
    rng: np.random.Generator, dtype: Any, sample_a: Sampler = normal, sample_b: Sampler = normal
) -> list[Case]:
    """One case per broadcasting pair of ``BINARY_SHAPES``."""
    return [
        (
            (
                np.asarray(sample_a(rng, sa), dtype=dtype),
                np.asarray(sample_b(rng, sb), dtype=dtype),
            ),
            {},
        )
        for sa, sb in BINARY_SHAPES
    ]


def reduction_cases(
    rng: np.random.Generator, dtype: Any, sample: Sampler = normal, empty: bool = True
) -> list[Case]:
    """A (3, 4) input reduced over every axis choice, with and without ``keepdims``."""
    cases: list[Case] = []
    for axis in (None, 0, 1, -1, (0, 1)):
        for keepdims in (False, True):
            cases.append(
                ((sample(rng, (3, 4)).astype(dtype),), {"axis": axis, "keepdims": keepdims})
            )
    cases.append(((np.asarray(sample(rng, ()), dtype=dtype),), {"axis": None, "keepdims": False}))
    if empty:
        x = np.asarray(sample(rng, (0, 3)), dtype=dtype)
        cases.append(((x,), {"axis": 1, "keepdims": False}))
    return cases


def torch_fn(name: str) -> Callable[..., Any]:
    """The PyTorch function ``torch.<name>`` (imported when called: torch is optional)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        import torch

        return getattr(torch, name)(*args, **kwargs)

    call.__name__ = f"torch_{name}"
    return call
