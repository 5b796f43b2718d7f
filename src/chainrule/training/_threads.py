"""BLAS threads for small training steps.

OpenBLAS splits every matrix product above a tiny size across all cores. For the products of
a small network's step (the largest under ~2 million multiply-adds: a 64-100-10 net at batch
200, a 30-64-64 net at batch 32, a 784-256 layer at batch 8) the split gains nothing on an
idle machine — measured here, one thread ran those fits at 0.95–1.0× the time of two — and
when another program keeps one core busy, every product waits for the thread stuck behind it:
the digits fit then took 0.57 s with two threads and 0.22 s with one. So ``fit`` trains such
models with one BLAS thread (through threadpoolctl) and leaves larger ones alone, where two
threads are 1.2–1.5× faster. ``CHAINRULE_BLAS_THREADS=keep`` turns the policy off.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

__all__ = ["SMALL_STEP_MACS", "blas_threads_for"]

SMALL_STEP_MACS = 2**21
_controller: Any = None


def _largest_product(model: Any, batch_size: int) -> int | None:
    """Multiply-adds of the largest forward product of one step, or None if unknown."""
    from ..nn.layers import Linear

    sizes = [
        batch_size * m.in_features * m.out_features
        for m in model.modules()
        if isinstance(m, Linear)
    ]
    return max(sizes) if sizes else None


def blas_threads_for(model: Any, batch_size: int) -> contextlib.AbstractContextManager[Any]:
    """A context with one BLAS thread if ``model``'s step is small, else a no-op."""
    global _controller
    if os.environ.get("CHAINRULE_BLAS_THREADS", "auto") == "keep":
        return contextlib.nullcontext()
    largest = _largest_product(model, batch_size)
    if largest is None or largest >= SMALL_STEP_MACS:
        return contextlib.nullcontext()
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        return _controller.limit(limits=1, user_api="blas")  # type: ignore[no-any-return]
    except Exception:  # threadpoolctl missing or unable to see the BLAS: leave threads be
        return contextlib.nullcontext()
