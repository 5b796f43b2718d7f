"""Explicit random generators: every random choice in chainrule goes through one of these."""

from __future__ import annotations

from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: Any, name: str = "rng") -> np.random.Generator:
    """Return a ``np.random.Generator`` for ``seed`` (never NumPy's global generator).

    An int or SeedSequence seeds a new PCG64 generator; a Generator is used as it is (shared);
    None draws fresh entropy from the operating system.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"{name} must be an int seed, a numpy.random.Generator or None, got {type(seed).__name__}"
    )
