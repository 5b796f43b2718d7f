"""One global batch split across processes: what Dropout and BatchNorm need to know about it.

Data-parallel training (:mod:`chainrule.distributed`) gives every process a contiguous part
``[start, stop)`` of each global batch of ``rows`` rows. Two layers must then see the whole
batch to compute what a single process would:

- :class:`~chainrule.nn.Dropout` draws its mask for the *global* batch, ``(rows, ...)``, and
  keeps its own rows, so every process consumes the generator exactly as one process does and
  the masks are the single-process masks, sliced;
- :class:`~chainrule.nn.BatchNorm1d` computes the batch mean and variance from sums over all
  processes (synchronised batch norm): ``μ = Σ_r Σ_{i∈r} x_i / n``,
  ``σ² = Σ_r Σ_{i∈r} (x_i - μ)² / n``, with :func:`allreduce_sum` in the graph so that the
  backward pass sums the gradients of those statistics across processes too.

The training loop sets the split with :func:`batch_split`; outside it (one process, or
prediction) the layers behave as always. This module knows nothing about MPI: the sum across
processes is a function the distributed module passes in.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .._primitive import Primitive, apply
from ..tensor import Tensor

__all__ = ["BatchSplit", "allreduce_sum", "batch_split", "current_split"]


class BatchSplit(NamedTuple):
    """This process's rows ``[start, stop)`` of a global batch of ``rows`` rows."""

    rows: int
    start: int
    stop: int
    allreduce: Callable[[np.ndarray], np.ndarray]  # the sum of an array over all processes


_SPLIT: contextvars.ContextVar[BatchSplit | None] = contextvars.ContextVar(
    "chainrule_batch_split", default=None
)


def current_split(local_rows: int) -> BatchSplit | None:
    """The split in force if this process's batch has ``local_rows`` rows, else None."""
    split = _SPLIT.get()
    if split is None or split.stop - split.start != local_rows:
        return None
    return split


@contextlib.contextmanager
def batch_split(split: BatchSplit | None) -> Iterator[None]:
    """Make ``split`` the global-batch split of the layers called inside the block."""
    token = _SPLIT.set(split)
    try:
        yield
    finally:
        _SPLIT.reset(token)


def _allreduce_forward(a: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return reduce(np.ascontiguousarray(a))


def _allreduce_vjp(g: Any, out: Any, saved: Any, x: Any, reduce: Any) -> np.ndarray:
    # y = Σ_r x_r is the same on every process and the total loss is Σ_r C_r, so
    # ∂C/∂x_r = Σ_s ∂C_s/∂y: the gradient is summed across processes as well
    return reduce(np.ascontiguousarray(g))


# NOTE: not in the registry: its attribute is a communicator's reduce, which the generic
# check_primitive suite cannot supply; tests/test_distributed.py checks it on 2 and 3 processes
allreduce_sum_p = Primitive(
    "allreduce_sum", _allreduce_forward, kind="reduction", vjps=(_allreduce_vjp,),
    reads_inputs=False,
)  # fmt: skip


def allreduce_sum(x: Tensor, split: BatchSplit) -> Tensor:
    """``Σ`` of ``x`` over the processes of ``split``, differentiable (sum forward and back)."""
    return apply(allreduce_sum_p, x, reduce=split.allreduce)  # type: ignore[return-value]


def dropout_keep(gen: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """The keep mask ``u >= p`` for a batch of ``shape``: drawn for the whole global batch and
    sliced to this process's rows when a split is in force (the single-process draws)."""
    split = current_split(shape[0]) if len(shape) else None
    if split is None:
        return gen.random(shape, dtype=np.float64) >= p  # type: ignore[no-any-return]
    full = gen.random((split.rows, *shape[1:]), dtype=np.float64)
    return full[split.start : split.stop] >= p  # type: ignore[no-any-return]


def batch_moments(x: Tensor, axes: tuple[int, ...]) -> tuple[Tensor, Tensor, int] | None:
    """Global batch mean and biased variance over ``axes`` (keepdims) and the global count,
    or None when no split is in force (the layer then uses its own batch)."""
    split = current_split(x.shape[0])
    if split is None:
        return None
    per_row = int(np.prod([x.shape[a] for a in axes if a != 0], dtype=np.int64))
    n = split.rows * per_row
    mean = allreduce_sum(x.sum(axis=axes, keepdims=True), split) / n
    d = x - mean
    var = allreduce_sum((d * d).sum(axis=axes, keepdims=True), split) / n
    return mean, var, n
