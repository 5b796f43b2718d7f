"""Explicit random generators: every random choice in chainrule goes through one of these.

chainrule keeps its own default generator (never NumPy's global one). Layers, initialisers and
data helpers called without ``rng=``/``seed=`` draw from it, so ``cr.manual_seed(0)`` at the top
of a script makes the whole script reproducible, as ``torch.manual_seed`` does. While
:func:`chainrule.fit` runs, dropout layers without a generator of their own draw from the run's
generator instead (the one ``fit(seed=...)`` creates), so the same seed gives the same masks.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence | None

# chainrule's default generator: seeded from the operating system's entropy at import, reseeded
# in place by manual_seed (so a layer created earlier follows the new seed too)
_DEFAULT = np.random.default_rng()
# the generator of the fit run in progress (None outside fit): drives generator-less dropout
_ACTIVE: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar(
    "chainrule_active_generator", default=None
)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed chainrule's default generator (never NumPy's global one) and return it.

    Every layer, initialiser, dropout mask, data split and ``fit`` run created without an
    explicit ``rng=`` or ``seed=`` draws from this generator, so the same seed at the top of a
    script gives the same weights, masks and shuffles — the role of ``torch.manual_seed``.

    Parameters
    ----------
    seed : int
        A non-negative integer.

    Examples
    --------
    >>> import chainrule as cr
    >>> _ = cr.manual_seed(0); a = cr.nn.Linear(3, 2).weight.data.copy()
    >>> _ = cr.manual_seed(0); b = cr.nn.Linear(3, 2).weight.data.copy()
    >>> bool((a == b).all())
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    _DEFAULT.bit_generator.state = np.random.PCG64(int(seed)).state
    return _DEFAULT


def default_generator() -> np.random.Generator:
    """chainrule's default generator (the one :func:`manual_seed` seeds)."""
    return _DEFAULT


def current_generator() -> np.random.Generator:
    """The generator a layer without its own draws from: the running fit's, else the default."""
    active = _ACTIVE.get()
    return _DEFAULT if active is None else active


@contextlib.contextmanager
def use_generator(gen: np.random.Generator) -> Iterator[None]:
    """Make ``gen`` the generator of generator-less dropout layers inside the block."""
    token = _ACTIVE.set(gen)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def as_generator(seed: Any, name: str = "rng") -> np.random.Generator:
    """Return a ``np.random.Generator`` for ``seed`` (never NumPy's global generator).

    An int or SeedSequence seeds a new PCG64 generator; a Generator is used as it is (shared);
    None gives a new generator seeded from chainrule's default generator (see
    :func:`manual_seed`), so unseeded runs are reproducible after ``cr.manual_seed``.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(_DEFAULT.integers(2**63))
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"{name} must be an int seed, a numpy.random.Generator or None, got {type(seed).__name__}"
    )
