"""PyTorch's names for what chainrule already does, beside the NumPy names (same semantics).

Functions: ``cat``, ``clamp``, ``std``, ``permute``, ``swapaxes``, ``unsqueeze``, ``squeeze``,
``zeros``, ``ones``, ``rand``, ``randn``. Methods: ``view``, ``permute``, ``unsqueeze``,
``squeeze``, ``clamp``, ``pow``, ``std``, ``float``, ``double``, ``dim``, ``numel``, and
``abs(t)`` / ``round(t)``. (``dim=``/``keepdim=`` are accepted by the reductions themselves.)

Where NumPy's and PyTorch's defaults differ, NumPy's are kept and the PyTorch spelling is
documented: ``var``/``std`` default to ``ddof=0`` (PyTorch: unbiased, ``correction=1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from ._random import as_generator, default_generator
from .ops import round  # noqa: A004 - Python's, NumPy's and PyTorch's name
from .tensor import Tensor

__all__ = [
    "cat",
    "clamp",
    "ones",
    "permute",
    "rand",
    "randn",
    "round",
    "squeeze",
    "std",
    "swapaxes",
    "unsqueeze",
    "zeros",
]


def _default_generator() -> np.random.Generator:
    """chainrule's default generator (seeded by ``cr.manual_seed``; never NumPy's global one)."""
    return default_generator()


def _size_arg(fn: str, size: tuple[Any, ...]) -> tuple[int, ...]:
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    for d in shape:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise ValueError(f"{fn}: sizes must be non-negative ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def _float_dtype(dtype: Any) -> np.dtype[Any]:
    return np.dtype(np.float32 if dtype is None else dtype)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of shape ``size`` (``cr.zeros(2, 3)`` or ``cr.zeros((2, 3))``).

    float32 unless ``dtype`` says otherwise, as every chainrule default.
    """
    arr = np.zeros(_size_arg("zeros", size), dtype=_float_dtype(dtype))
    return Tensor(arr, requires_grad=requires_grad)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    arr = np.ones(_size_arg("ones", size), dtype=_float_dtype(dtype))
    return Tensor(arr, requires_grad=requires_grad)


def _random(fn: str, size: tuple[Any, ...], generator: Any, dtype: Any) -> np.ndarray:
    shape = _size_arg(fn, size)
    dt = _float_dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"{fn}: dtype must be float32 or float64, got {dt}")
    gen = _default_generator() if generator is None else as_generator(generator, "generator")
    if fn == "randn":
        return gen.standard_normal(shape, dtype=dt)  # type: ignore[call-overload,no-any-return]
    return gen.random(shape, dtype=dt)  # type: ignore[call-overload,no-any-return]


def randn(
    *size: Any, generator: Any = None, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    """Samples of the standard normal distribution N(0, 1) in a tensor of shape ``size``.

    Parameters
    ----------
    *size : ints or one tuple
        The shape.
    generator : numpy.random.Generator, int seed or None
        Where the numbers come from; None uses chainrule's default generator (never NumPy's
        global one).
    dtype : float32 (default) or float64
    requires_grad : bool, default False
    """
    return Tensor(_random("randn", size, generator, dtype), requires_grad=requires_grad)


def rand(
    *size: Any, generator: Any = None, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    """Samples of the uniform distribution on [0, 1) in a tensor of shape ``size``.

    ``generator`` as in :func:`randn`.
    """
    return Tensor(_random("rand", size, generator, dtype), requires_grad=requires_grad)


def cat(tensors: Any, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along an existing dimension (PyTorch's ``cat``; :func:`concatenate`)."""
    return ops.concatenate(tensors, axis=dim if axis is None else axis)


def clamp(x: Any, min: Any = None, max: Any = None) -> Tensor:
    """Limit values to ``[min, max]`` (PyTorch's ``clamp``; :func:`clip`, bounds inclusive)."""
    return ops.clip(x, min, max)


def std(
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
    """Standard deviation ``sqrt(Σ(x - x̄)² / (n - ddof))``, as ``sqrt(var(x))``.

    ``ddof=0`` by default, as NumPy's ``std`` and chainrule's ``var``. PyTorch's ``std``
    defaults to the unbiased ``n - 1``: pass ``ddof=1``, ``correction=1`` or ``unbiased=True``.
    ``∂/∂x_i = (x_i - x̄) / ((n - ddof)·std)`` (not finite where std = 0, as in PyTorch).
    """
    v = ops.var(
        x,
        axis,
        keepdims,
        ddof,
        dim=dim,
        keepdim=keepdim,
        correction=correction,
        unbiased=unbiased,
    )
    return ops.sqrt(v)


def permute(x: Any, *dims: Any) -> Tensor:
    """Reorder the axes by a full permutation (see :func:`chainrule.ops.permute`)."""
    return ops.permute(x, *dims)


def swapaxes(x: Any, axis0: int, axis1: int) -> Tensor:
    """Swap two axes (``numpy.swapaxes``; PyTorch's ``transpose(dim0, dim1)``)."""
    return ops.swapaxes(x, axis0, axis1)


def unsqueeze(x: Any, dim: int) -> Tensor:
    """Insert a dimension of length 1 at ``dim`` (``-ndim - 1 ≤ dim ≤ ndim``), a reshape."""
    x = ops._t(x)
    n = x.ndim + 1
    if not isinstance(dim, (int, np.integer)) or not -n <= dim < n:
        raise ValueError(f"unsqueeze: dim {dim!r} is out of range for a {x.ndim}-D tensor")
    shape = list(x.shape)
    shape.insert(int(dim) % n, 1)
    return ops.reshape(x, *shape)


def squeeze(x: Any, dim: Any = None, *, axis: Any = None) -> Tensor:
    """Remove dimensions of length 1: all of them, or those in ``dim`` that have length 1.

    As PyTorch, a listed dimension that is not of length 1 is left alone (NumPy would raise).
    """
    x = ops._t(x)
    dim = axis if dim is None else dim
    if dim is None:
        keep = [d for d in x.shape if d != 1]
    else:
        drop = set(ops._norm_axis(tuple(dim) if isinstance(dim, list) else dim, x.ndim))
        keep = [d for i, d in enumerate(x.shape) if not (i in drop and d == 1)]
    return ops.reshape(x, *keep) if keep else ops.reshape(x, ())


def _view(x: Tensor, *shape: Any) -> Tensor:
    """Same data, new shape (PyTorch's ``view``; :meth:`reshape`)."""
    return ops.reshape(x, *shape)


def _float(x: Tensor) -> Tensor:
    """A float32 copy (PyTorch's ``float()``), differentiable between float dtypes."""
    return x if x.dtype == np.float32 else ops.astype(x, np.float32)


def _double(x: Tensor) -> Tensor:
    """A float64 copy (PyTorch's ``double()``), differentiable between float dtypes."""
    return x if x.dtype == np.float64 else ops.astype(x, np.float64)


def _round(x: Tensor, ndigits: int | None = None) -> Tensor:
    # round(t) is a tensor, as in PyTorch (half to even); the gradient is 0
    return ops.round(x, 0 if ndigits is None else ndigits)


def _pow(x: Tensor, exponent: Any) -> Tensor:
    """``x ** exponent`` (PyTorch's ``pow``)."""
    return ops.pow(x, exponent)


def _dim(x: Tensor) -> int:
    """The number of dimensions (PyTorch's ``dim()``; NumPy's ``ndim``)."""
    return x.ndim


def _numel(x: Tensor) -> int:
    """The number of elements (PyTorch's ``numel()``; NumPy's ``size``)."""
    return int(x.data.size)


_METHODS = {
    "view": _view,
    "unsqueeze": unsqueeze,
    "squeeze": squeeze,
    "clamp": clamp,
    "pow": _pow,
    "std": std,
    "float": _float,
    "double": _double,
    "dim": _dim,
    "numel": _numel,
    "__abs__": ops.abs,
    "__round__": _round,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
del _name, _fn
