"""BLAS threads for small training steps.

OpenBLAS splits every matrix product above a tiny size across all cores. For the products of
a small network's step (the largest under ~2 million multiply-adds: a 64-100-10 net at batch
200, a 30-64-64 net at batch 32, a 784-256 layer at batch 8) the split gains nothing on an
idle machine — measured here, one thread ran those fits at 0.95–1.0× the time of two — and
when another program keeps one core busy, every product waits for the thread stuck behind it:
the digits fit then took 0.57 s with two threads and 0.22 s with one. So ``fit`` trains such
models with one BLAS thread (through threadpoolctl) and leaves larger ones alone, where two
threads are 1.2–1.5× faster. ``CHAINRULE_BLAS_THREADS=keep`` turns the policy off.

The size of a step is its largest layer's forward cost, asked of every layer
(:func:`chainrule.nn.cost.layer_flops`), so any layer that reports its ``flops`` (a
convolution as well as a Linear) counts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from ..nn.cost import layer_flops

__all__ = [
    "SMALL_STEP_MACS",
    "blas_threads_for",
    "is_small_step",
    "largest_layer_flops",
    "one_blas_thread",
]

SMALL_STEP_MACS = 2**21
_controller: Any = None


def largest_layer_flops(model: Any, input_shape: int | Sequence[int | None]) -> int | None:
    """Multiply-adds of the costliest layer's forward on one batch, or None if no layer
    reports a cost. ``input_shape`` is the batch's shape, or just the batch size (the layers'
    feature sizes are then taken as unknown)."""
    shape = (input_shape, None) if isinstance(input_shape, int) else tuple(input_shape)
    costs = layer_flops(model, shape)
    return max(costs.values()) if costs else None


def blas_threads_for(
    model: Any, input_shape: int | Sequence[int | None]
) -> contextlib.AbstractContextManager[Any]:
    """A context with one BLAS thread if ``model``'s step on batches of ``input_shape`` (or of
    that many rows) is small (its costliest layer under ``SMALL_STEP_MACS`` multiply-adds),
    else a no-op."""
    if os.environ.get("CHAINRULE_BLAS_THREADS", "auto") == "keep":
        return contextlib.nullcontext()
    return one_blas_thread(is_small_step(model, input_shape))


def is_small_step(model: Any, input_shape: int | Sequence[int | None]) -> bool:
    """Whether ``model``'s costliest layer on batches of ``input_shape`` is under
    ``SMALL_STEP_MACS`` multiply-adds (the walk over the layers that
    :func:`blas_threads_for` does; a caller that enters the context at every step asks once)."""
    largest = largest_layer_flops(model, input_shape)
    return largest is not None and largest < SMALL_STEP_MACS


def one_blas_thread(small: bool) -> contextlib.AbstractContextManager[Any]:
    """A context with one BLAS thread if ``small`` (see :func:`is_small_step`), else a no-op."""
    global _controller
    if not small or os.environ.get("CHAINRULE_BLAS_THREADS", "auto") == "keep":
        return contextlib.nullcontext()
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        return _controller.limit(limits=1, user_api="blas")  # type: ignore[no-any-return]
    except Exception:  # threadpoolctl missing or unable to see the BLAS: leave threads be
        return contextlib.nullcontext()
