"""Array kernels that write into preallocated outputs: the measured speed tricks, in one place.

Each function here computes an ordinary NumPy expression, but in the way that was measured to
be fastest on the machines chainrule is tuned for (see ``PERFORMANCE.md``), and where it says
so, into an ``out=`` array instead of a fresh temporary. The values are those of the plain
expression (bitwise: the same IEEE operations on the same operands), so a caller may switch
between the two freely. Engine floor: NumPy only, nothing of chainrule's above.

Used by the engine's primitives (``ops``), the fused MLP step (``training.fastpath``) and the
optimizers (``optim``). The optional numba-compiled optimizer updates live in
``chainrule.optim._kernels`` (they need the optimizer's state layout).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._numerics import sigmoid

__all__ = [
    "activate_",
    "activation_grad_",
    "add_scaled",
    "column_sums",
    "linear",
    "relu",
    "row_max",
    "weight_grad",
]

_ZERO_ROWS: dict[tuple[int, np.dtype[Any]], np.ndarray] = {}


def relu(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(a, 0)`` elementwise (into ``out`` if given), NaN kept (``maximum`` propagates it).

    Against a row of zeros instead of the scalar 0: NumPy's ``maximum`` takes its vectorised
    loop only when both operands advance, and is 2.5–4× slower against a scalar (measured on
    (128, 256) and (512, 256) float32 arrays). A contiguous array is taken as rows of up to
    4096 values when its last axis is shorter: the vectorised loop then runs over long rows
    (LeNet's first activation, (64, 6, 28, 28): 0.11 ms against rows of 28's 0.18 ms and the
    scalar's 0.35 ms). Same values either way.
    """
    if a.ndim == 0 or a.dtype.kind != "f":
        return np.maximum(a, 0, out=out)  # type: ignore[no-any-return]
    n = a.shape[-1]
    row = math.gcd(a.size, 4096)
    if row > n and row >= 256 and a.flags.c_contiguous and (out is None or out.flags.c_contiguous):
        flat = None if out is None else out.reshape(-1, row)
        res = np.maximum(a.reshape(-1, row), _zero_row(row, a.dtype), out=flat)
        return res.reshape(a.shape) if out is None else out
    if n < 16:
        return np.maximum(a, 0, out=out)  # type: ignore[no-any-return]
    return np.maximum(a, _zero_row(n, a.dtype), out=out)  # type: ignore[no-any-return]


def _zero_row(n: int, dtype: Any) -> np.ndarray:
    """A read-only row of ``n`` zeros of ``dtype`` (cached)."""
    key = (n, dtype)
    zeros = _ZERO_ROWS.get(key)
    if zeros is None:
        if len(_ZERO_ROWS) > 64:
            _ZERO_ROWS.clear()
        zeros = _ZERO_ROWS[key] = np.zeros(n, dtype)
        zeros.flags.writeable = False
    return zeros


def linear(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """``x @ w + b``: the GEMM writes ``out`` (a new array if None), the bias is added in place."""
    z = np.matmul(x, w, out=out) if out is not None else x @ w
    if b is not None:
        z += b
    return z  # type: ignore[no-any-return]


def weight_grad(x2: np.ndarray, g2: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x2ᵀ @ g2`` (a linear layer's weight gradient ``Aᵀδ``), into ``out`` if given.

    With one row, ``xᵀg`` is an outer product; OpenBLAS runs that K=1 GEMM ~4× slower than a
    broadcast multiply, which is also exact (each entry is a single product either way).
    """
    if x2.shape[0] == 1:
        return np.multiply(x2.T, g2, out=out)  # type: ignore[no-any-return]
    if out is None:
        return x2.T @ g2  # type: ignore[no-any-return]
    return np.matmul(x2.T, g2, out=out)  # type: ignore[no-any-return]


def column_sums(d: np.ndarray, ones: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``Σ_rows d`` (a bias gradient) as ``1ᵀd`` into ``out``; ``ones`` has ``d.shape[0]`` ones.

    One matrix-vector product, ~3× faster than ``np.sum(d, axis=0)`` for a (128, 256) float32
    ``d`` (measured).
    """
    return np.matmul(ones, d, out=out)  # type: ignore[no-any-return]


def row_max(a: np.ndarray) -> np.ndarray:
    """``a.max(axis=1, keepdims=True)`` of a 2-D array.

    For many rows and few columns, as a running maximum over the columns, which NumPy
    vectorises (2–3× faster for (512, 10), measured).
    """
    n, c = a.shape
    if n < 64 or c > 16 or c < 2:
        return a.max(axis=1, keepdims=True)  # type: ignore[no-any-return]
    m = np.maximum(a[:, 0], a[:, 1])
    for j in range(2, c):
        np.maximum(m, a[:, j], out=m)
    return m.reshape(n, 1)


def add_scaled(g: np.ndarray, p: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """``g + scale·p`` written into ``out`` (e.g. the L2 penalty's gradient ``g + λ·w``)."""
    np.multiply(p, scale, out=out)
    return np.add(g, out, out=out)  # type: ignore[no-any-return]


def activate_(kind: str, z: np.ndarray, negative_slope: float = 0.01) -> None:
    """Apply the activation ``kind`` to ``z`` in place (the engine's forward formulas).

    ``kind`` is one of ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"``, ``"identity"``.
    """
    if kind == "relu":
        relu(z, out=z)
    elif kind == "tanh":
        np.tanh(z, out=z)
    elif kind == "sigmoid":
        z[...] = sigmoid(z)
    elif kind == "leaky_relu":
        np.multiply(z, np.where(z > 0, 1, negative_slope).astype(z.dtype), out=z)
    elif kind != "identity":
        raise ValueError(f"activate_: unknown activation {kind!r}")


def activation_grad_(
    kind: str, a: np.ndarray, g: np.ndarray, tmp: np.ndarray, negative_slope: float = 0.01
) -> None:
    """``g ← g ⊙ f'(z)`` from the activation's output ``a = f(z)`` (the engine's rules).

    ``tmp`` is scratch of ``g``'s shape, so no temporary array is allocated:
    relu ``[a > 0]``, tanh ``1 - a²``, sigmoid ``a(1 - a)``, leaky_relu ``1 or slope``.
    """
    if kind == "identity":
        return
    if kind == "relu":
        g *= a > 0
    elif kind == "tanh":  # 1 - a²
        np.multiply(a, a, out=tmp)
        np.subtract(1, tmp, out=tmp)
        g *= tmp
    elif kind == "sigmoid":  # a(1 - a)
        np.subtract(1, a, out=tmp)
        tmp *= a
        g *= tmp
    elif kind == "leaky_relu":
        g *= np.where(a > 0, 1, negative_slope).astype(g.dtype)
    else:
        raise ValueError(f"activation_grad_: unknown activation {kind!r}")
