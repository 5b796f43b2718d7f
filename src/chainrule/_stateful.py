"""Primitives whose randomness and state are explicit: dropout's mask, batch norm's statistics.

A recorded or compiled training step replays primitives; a random draw or a buffer update done
as a Python side effect inside a layer would be frozen into the recording. So randomness and
state changes are data flowing through primitives:

- ``dropout``: the mask is an *input* (drawn by the layer from its generator and passed in),
  ``y = x ⊙ mask``; a replay takes a fresh mask as an input.
- ``batch_norm_running_stats``: the running-statistics update is a primitive of kind
  ``"state"`` whose *outputs* are the new running mean, variance and batch count; the layer
  writes them into its buffers in one declared place (``BatchNorm1d._update_running_stats``).

The numbers are those of the former inline code, bitwise (same operations, same order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._primitive import Case, apply, primitive
from .tensor import Tensor

__all__ = ["masked_dropout", "running_stats_update"]


# ----- dropout: the mask as an input -----------------------------------------------------------
def _dropout_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    def mask(shape: tuple[int, ...], p: float) -> np.ndarray:
        keep = rng.random(shape) >= p
        return (keep / (1 - p)).astype(dtype)

    x = rng.standard_normal((4, 5)).astype(dtype)
    x3 = rng.standard_normal((2, 3, 4)).astype(dtype)
    return [
        ((x, mask((4, 5), 0.5)), {}),
        ((x3, mask((2, 3, 1), 0.25)), {}),  # one draw per channel, broadcast (Dropout2d-style)
        ((np.zeros((0, 5), dtype), np.zeros((0, 5), dtype)), {}),
    ]


@primitive(
    "dropout",
    kind="random",
    vjps=(lambda g, out, saved, x, mask: g * mask, None),
    needed_by=((), (0,)),  # x's rule reads the mask only
    examples=_dropout_examples,
)
def _dropout(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.multiply(x, mask)  # type: ignore[no-any-return]


def masked_dropout(x: Any, mask: np.ndarray) -> Tensor:
    """``x ⊙ mask`` with the dropout mask as an explicit input: ``∂C/∂x = g ⊙ mask``.

    ``mask`` holds 0 (dropped) and ``1/(1-p)`` (kept) in ``x``'s dtype, of ``x``'s shape or
    broadcastable to it (one value per channel for spatial dropout). It is not differentiated.
    """
    return apply(_dropout, x, mask)  # type: ignore[no-any-return]


# ----- batch norm: the running statistics as a state update ------------------------------------
def _running_stats(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    momentum: float,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # r ← (1 - m)·r + m·x̄ ;  v ← (1 - m)·v + m·σ²·n/(n - 1) (the unbiased batch variance) ;
    # in exactly the former in-place order: r·(1 - m) first, then + m·x̄
    m = momentum
    unbiased = var * (n / (n - 1))
    new_mean = running_mean * (1 - m)
    new_mean += m * mean
    new_var = running_var * (1 - m)
    new_var += m * unbiased
    return new_mean, new_var, count + 1


def _running_stats_examples(rng: np.random.Generator, dtype: Any) -> list[Case]:
    c = 4
    return [
        (
            (
                rng.standard_normal(c).astype(dtype),
                rng.uniform(0.5, 2.0, c).astype(dtype),
                np.array(3, np.int64),
                rng.standard_normal(c).astype(dtype),
                rng.uniform(0.5, 2.0, c).astype(dtype),
            ),
            {"momentum": 0.1, "n": 8},
        )
    ]


def _zero_or(g: Any, scale: Any, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if g is None else g * scale


# The layer never differentiates its running statistics (they are buffers, not parameters);
# the rules exist so that check_primitive can verify the update's formula by finite
# differences: ∂r'/∂r = 1 - m, ∂r'/∂mean = m, ∂v'/∂v = 1 - m, ∂v'/∂var = m·n/(n - 1).
batch_norm_running_stats = primitive(
    "batch_norm_running_stats",
    kind="state",
    n_outputs=3,
    vjps=(
        lambda g, out, saved, r, v, c, mean, var, momentum, n: _zero_or(g[0], 1 - momentum, r),
        lambda g, out, saved, r, v, c, mean, var, momentum, n: _zero_or(g[1], 1 - momentum, v),
        None,  # the batch count is an integer
        lambda g, out, saved, r, v, c, mean, var, momentum, n: _zero_or(g[0], momentum, mean),
        lambda g, out, saved, r, v, c, mean, var, momentum, n: _zero_or(
            g[1], momentum * (n / (n - 1)), var
        ),
    ),
    examples=_running_stats_examples,
)(_running_stats)


def running_stats_update(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    momentum: float,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The new ``(running_mean, running_var, count)`` after a batch of ``n`` values per channel.

    ``r ← (1 - momentum)·r + momentum·mean`` and
    ``v ← (1 - momentum)·v + momentum·var·n/(n - 1)`` (PyTorch's rule: the running variance
    follows the unbiased batch variance), ``count ← count + 1``. ``mean`` and ``var`` are the
    batch's (biased) statistics per channel. Nothing is written: the caller stores the result.
    """
    outs = apply(
        batch_norm_running_stats,
        running_mean,
        running_var,
        count,
        mean,
        var,
        momentum=float(momentum),
        n=int(n),
    )
    return tuple(o.data for o in outs)  # type: ignore[return-value]
