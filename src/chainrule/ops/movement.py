"""Movement primitives: reshape, transpose, indexing, joining and splitting.

Their rules move the gradient back (the inverse permutation, a scatter into zeros, the pieces
of a concatenation) and read only the inputs' shapes, never their values.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._primitive import Case, apply, primitive
from ..tensor import Tensor
from ._common import (
    _advanced,
    _alias,
    _coerce,
    _norm_axis,
    _norm_index,
    _sequence_args,
    _shape,
    _shape_arg,
    _t,
)


def _r(rng: np.random.Generator, dtype: Any, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


@primitive(
    "reshape",
    kind="movement",
    vjps=(lambda g, out, saved, x, shape: g.reshape(x.shape),),
    reads_inputs=False,
    examples=lambda rng, dtype: [
        ((_r(rng, dtype, 3, 4),), {"shape": (4, 3)}),
        ((_r(rng, dtype, 3, 4),), {"shape": (-1,)}),
        ((_r(rng, dtype, 2, 3, 2),), {"shape": (6, 2)}),
        ((_r(rng, dtype),), {"shape": (1, 1)}),
        ((_r(rng, dtype, 0, 3),), {"shape": (3, 0)}),
    ],
    torch=lambda x, shape: x.reshape(shape),
)
def reshape_p(a: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` with a new shape (a view when possible)."""
    return a.reshape(shape)


def _transpose_grad(g: Any, out: Any, saved: Any, x: Any, axes: Any) -> Any:
    return np.transpose(g, None if axes is None else np.argsort([a % x.ndim for a in axes]))


@primitive(
    "transpose",
    kind="movement",
    vjps=(_transpose_grad,),
    reads_inputs=False,
    examples=lambda rng, dtype: [
        ((_r(rng, dtype, 3, 4),), {"axes": None}),
        ((_r(rng, dtype, 2, 3, 4),), {"axes": (2, 0, 1)}),
        ((_r(rng, dtype, 2, 3, 4),), {"axes": (0, -1, 1)}),
        ((_r(rng, dtype, 0, 3),), {"axes": (1, 0)}),
    ],
    torch=lambda x, axes: x.permute(*(range(x.ndim - 1, -1, -1) if axes is None else axes)),
)
def transpose_p(a: np.ndarray, *, axes: tuple[int, ...] | None) -> np.ndarray:
    """``a`` with its axes permuted (reversed for ``axes=None``)."""
    return np.transpose(a, axes)


def _getitem_grad(g: Any, out: Any, saved: Any, x: Any, index: Any) -> Any:
    gx = np.zeros(x.shape, dtype=g.dtype)
    if _advanced(index):
        np.add.at(gx, index, g)  # repeated indices accumulate
    else:
        gx[index] = g
    return gx


def _getitem_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    x = _r(rng, dtype, 4, 3)
    return [
        ((x,), {"index": (slice(1, 3),)}),
        ((x,), {"index": (1, slice(None, None, 2))}),
        ((x,), {"index": np.array([0, 2, 2, 3])}),  # a repeated row: gradients add up
        ((x,), {"index": (np.array([0, 1, 3]), np.array([2, 0, 2]))}),
        ((x,), {"index": x > 0}),
        ((_r(rng, dtype, 0, 3),), {"index": (slice(None), 1)}),
    ]


@primitive(
    "getitem",
    kind="movement",
    vjps=(_getitem_grad,),
    reads_inputs=False,
    examples=_getitem_examples,
    torch=lambda x, index: x[_torch_index(index)],
)
def getitem_p(a: np.ndarray, *, index: Any) -> np.ndarray:
    """``a[index]`` (NumPy's basic and advanced indexing)."""
    return a[index]  # type: ignore[no-any-return]


def _torch_index(index: Any) -> Any:
    import torch

    if isinstance(index, tuple):
        return tuple(_torch_index(i) for i in index)
    return torch.from_numpy(index) if isinstance(index, np.ndarray) else index


def _setitem_grad_x(g: Any, out: Any, saved: Any, x: Any, v: Any, index: Any) -> Any:
    gx = np.array(g, copy=True)
    gx[index] = 0  # the overwritten entries do not reach the output
    return gx


def _setitem_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    return [
        ((_r(rng, dtype, 4, 3), _r(rng, dtype, 2, 3)), {"index": (slice(1, 3),)}),
        ((_r(rng, dtype, 4, 3), _r(rng, dtype, 3)), {"index": (slice(1, 3),)}),  # broadcast
        ((_r(rng, dtype, 4, 3), _r(rng, dtype, 3)), {"index": (np.array([0, 2, 3]), 1)}),
    ]


def _torch_setitem(x: Any, v: Any, index: Any) -> Any:
    y = x.clone()
    y[_torch_index(index)] = v
    return y


@primitive(
    "setitem",
    kind="movement",
    vjps=(_setitem_grad_x, lambda g, out, saved, x, v, index: g[index]),
    reads_inputs=False,
    examples=_setitem_examples,
    torch=_torch_setitem,
)
def setitem_p(a: np.ndarray, v: Any, *, index: Any) -> np.ndarray:
    """A copy of ``a`` with ``a[index] = v``."""
    out = a.copy()
    out[index] = v
    return out


def _concatenate_grad(i: int, g: Any, out: Any, saved: Any, *xs: Any, axis: int) -> Any:
    start = builtins.sum(x.shape[axis] for x in xs[:i])
    index: list[Any] = [slice(None)] * g.ndim
    index[axis] = slice(start, start + xs[i].shape[axis])
    return g[tuple(index)]


@primitive(
    "concatenate",
    kind="movement",
    vjp_argnum=_concatenate_grad,
    reads_inputs=False,
    examples=lambda rng, dtype: [
        ((_r(rng, dtype, 2, 3), _r(rng, dtype, 4, 3)), {"axis": 0}),
        ((_r(rng, dtype, 2, 3), _r(rng, dtype, 2, 1), _r(rng, dtype, 2, 2)), {"axis": 1}),
        ((_r(rng, dtype, 2, 3), _r(rng, dtype, 2, 2)), {"axis": -1}),
        ((_r(rng, dtype, 0, 3), _r(rng, dtype, 2, 3)), {"axis": 0}),
    ],
    torch=lambda *xs, axis: __import__("torch").cat(xs, dim=axis),
)
def concatenate_p(*arrays: np.ndarray, axis: int) -> np.ndarray:
    """The arrays joined along ``axis``."""
    return np.concatenate(arrays, axis=axis)


@primitive(
    "stack",
    kind="movement",
    vjp_argnum=lambda i, g, out, saved, *xs, axis: np.take(g, i, axis=axis),
    reads_inputs=False,
    examples=lambda rng, dtype: [
        ((_r(rng, dtype, 2, 3), _r(rng, dtype, 2, 3)), {"axis": 0}),
        ((_r(rng, dtype, 2, 3), _r(rng, dtype, 2, 3), _r(rng, dtype, 2, 3)), {"axis": -1}),
        ((_r(rng, dtype), _r(rng, dtype)), {"axis": 0}),
        ((_r(rng, dtype, 0, 3),), {"axis": 1}),
    ],
    torch=lambda *xs, axis: __import__("torch").stack(xs, dim=axis),
)
def stack_p(*arrays: np.ndarray, axis: int) -> np.ndarray:
    """The arrays (of one shape) joined along a new ``axis``."""
    return np.stack(arrays, axis=axis)


def reshape(x: Any, *shape: Any) -> Tensor:
    """Same data, new shape (one dimension may be -1)."""
    x = _t(x)
    new = _shape_arg(shape)
    try:
        return apply(reshape_p, x, shape=new)  # type: ignore[no-any-return]
    except ValueError:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {x.shape} into {new}"
        ) from None


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
    return apply(transpose_p, x, axes=ax)  # type: ignore[no-any-return]


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
    return apply(transpose_p, x, axes=tuple(perm))  # type: ignore[no-any-return]


def permute(x: Any, *dims: Any) -> Tensor:
    """Reorder the axes by a full permutation (PyTorch's ``permute``, ``numpy.transpose``)."""
    x = _t(x)
    ax = _shape_arg(dims)
    if len(ax) != x.ndim or sorted(int(a) % builtins.max(x.ndim, 1) for a in ax) != list(
        range(x.ndim)
    ):
        raise ValueError(f"permute: dims {ax} are not a permutation of a {x.ndim}-D tensor")
    return apply(transpose_p, x, axes=ax)  # type: ignore[no-any-return]


def flatten(x: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Collapse the dimensions ``start_dim`` to ``end_dim`` (inclusive) into one (PyTorch's)."""
    x = _t(x)
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _norm_axis(start_dim, x.ndim)[0], _norm_axis(end_dim, x.ndim)[0]
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, *x.shape[:s], math.prod(x.shape[s : e + 1]), *x.shape[e + 1 :])


def getitem(x: Any, index: Any) -> Tensor:
    """``x[index]`` with slices, integers, integer arrays and boolean masks (NumPy rules)."""
    x = _t(x)
    index = _norm_index(index)
    try:
        return apply(getitem_p, x, index=index)  # type: ignore[no-any-return]
    except IndexError as exc:
        raise IndexError(
            f"index {index!r} is invalid for a tensor of shape {x.shape}: {exc}"
        ) from None


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
        return apply(setitem_p, x, value, index=index)  # type: ignore[no-any-return]
    except (IndexError, ValueError) as exc:
        raise type(exc)(
            f"t[{index!r}] = value: cannot assign a value of shape {_shape(value)} into a tensor "
            f"of shape {x.shape}: {exc}"
        ) from None


def concatenate(tensors: Sequence[Any], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into pieces."""
    ts = _sequence_args("concatenate", tensors)
    axis = _alias("concatenate", "axis", axis, "dim", dim, 0)
    try:
        return apply(concatenate_p, *ts, axis=axis)  # type: ignore[no-any-return]
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(
            f"concatenate: shapes {shapes} do not fit along axis {axis}: {exc}"
        ) from None


def stack(tensors: Sequence[Any], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    ts = _sequence_args("stack", tensors)
    axis = _alias("stack", "axis", axis, "dim", dim, 0)
    try:
        return apply(stack_p, *ts, axis=axis)  # type: ignore[no-any-return]
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(f"stack: tensors must have equal shapes, got {shapes}: {exc}") from None


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
