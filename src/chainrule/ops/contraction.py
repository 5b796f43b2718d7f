"""Contraction primitives: the matrix product and the affine map ``x @ W + b``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from .._primitive import Case, apply, primitive
from ..tensor import Tensor
from ._common import _coerce, _promote, _shape, torch_fn


def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


# For Z = X @ W: ∂C/∂X = G @ Wᵀ and ∂C/∂W = Xᵀ @ G, with NumPy's 1-D conventions.
def _matmul_grad_first(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    if x.ndim == 1 and y.ndim == 1:  # dot product
        return g * y
    if x.ndim == 1:  # (n,) @ (..., n, m) -> (..., m)
        return (g[..., None, :] @ _swap(y))[..., 0, :]
    if y.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
        return g[..., None] * y
    return g @ _swap(y)


def _matmul_grad_second(g: Any, out: Any, saved: Any, x: Any, y: Any) -> Any:
    if x.ndim == 1 and y.ndim == 1:
        return g * x
    if x.ndim == 1:
        return x[:, None] * g[..., None, :]
    if y.ndim == 1:
        return (_swap(x) @ g[..., None])[..., 0]
    return _swap(x) @ g


def _matmul_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    return [
        ((r(3, 4), r(4, 2)), {}),
        ((r(4), r(4)), {}),
        ((r(4), r(4, 2)), {}),
        ((r(3, 4), r(4)), {}),
        ((r(2, 3, 4), r(4, 5)), {}),
        ((r(4), r(2, 4, 3)), {}),
        ((r(2, 1, 3, 4), r(3, 4, 2)), {}),
        ((r(0, 4), r(4, 2)), {}),
    ]


# x's value matters only for W's gradient and the other way round (as PyTorch saves them)
matmul_p = primitive(
    "matmul",
    kind="contraction",
    vjps=(_matmul_grad_first, _matmul_grad_second),
    out_capable=True,
    needed_by=((1,), (0,)),
    examples=_matmul_examples,
    torch=torch_fn("matmul"),
)(np.matmul)


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
        return apply(matmul_p, a, b)  # type: ignore[no-any-return]
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of shapes {sa} and {sb} cannot be broadcast"
        ) from None


# NOTE: with one row, xᵀg is an outer product; OpenBLAS runs that K=1 GEMM ~4x slower than a
# broadcast multiply, which is also exact (each entry is a single product either way).
_outer_or_matmul = kernels.weight_grad


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
    """``x @ w + b`` (the bias added in place into the product: :func:`kernels.linear`)."""
    return kernels.linear(x, w, b, out=out)


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
