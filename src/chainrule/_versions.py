"""Version counters of in-place changes (PyTorch's ``_version``).

In-place writes (:mod:`chainrule._inplace`, an optimizer step through :func:`mark_modified`)
bump them; ``backward()`` compares them with the epoch a node was recorded at
(:func:`chainrule._backward._check_inplace`). The names are re-exported by
:mod:`chainrule.tensor`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["mark_modified"]

# ----- in-place changes: version counters -----
# _EPOCH[0] counts in-place changes anywhere; a node records it when created (``_epoch``), a
# tensor changed in place records it in ``_mod`` and counts its own changes in ``_vers``. In
# backward(), only a node older than the last in-place change is checked (one int comparison
# per node otherwise): its inputs (and output) must not have been changed after it was made.
_EPOCH = [0]


def _mark_modified(tensors: Any) -> None:
    """Record an in-place change of each tensor (and of the tensor a ``detach()`` came from)."""
    _EPOCH[0] += 1
    e = _EPOCH[0]
    for t in tensors:
        while t is not None:
            t._vers = getattr(t, "_vers", 0) + 1
            t._mod = e
            t = getattr(t, "_base", None)


def mark_modified(tensors: Any) -> None:
    """Record that each of ``tensors`` was changed in place (e.g. by an optimizer step), so
    that a backward pass through a graph that saved its old value fails loudly."""
    _mark_modified(tensors)
