"""The learning-rate range test (Smith, 2017, https://arxiv.org/abs/1506.01186).

Train a *copy* of the model for a few hundred mini-batch steps while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``; record the (smoothed) loss at every step. The
loss falls fastest somewhere before it blows up: the suggestion is the rate at the steepest
descent of the smoothed curve, capped at a tenth of the rate where the loss was lowest.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._random import as_generator, use_generator
from .._validation import check_number
from ..nn.module import Module
from ..training.fit import OPTIMIZERS, _as_data, _resolve_loss

__all__ = ["LRFinderResult", "lr_find"]


@dataclass
class LRFinderResult:
    """Learning rates tried, the smoothed loss at each, and the suggestion."""

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    best_lr: float
    stopped_early: bool

    def __str__(self) -> str:
        return (
            f"learning-rate range test: {len(self.lrs)} steps from {self.lrs[0]:.1e} to "
            f"{self.lrs[-1]:.1e}{' (stopped when the loss diverged)' if self.stopped_early else ''}; "
            f"lowest loss at {self.best_lr:.2e}; suggested learning rate: {self.suggestion:.2e}"
        )

    def plot(self) -> Any:
        """Loss against learning rate (log scale), with the suggestion marked."""
        from ..plots import require_matplotlib

        Figure = require_matplotlib()
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        ax.plot(self.lrs, self.raw_losses, color="0.75", lw=0.8, label="loss")
        ax.plot(self.lrs, self.losses, label="smoothed loss")
        ax.axvline(
            self.suggestion, color="C3", linestyle="--", label=f"suggested {self.suggestion:.1e}"
        )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        finite = self.losses[np.isfinite(self.losses)]
        if finite.size:
            ax.set_ylim(
                top=min(float(finite[0]) * 1.5, float(finite.max())) if finite[0] > 0 else None
            )
        ax.legend()
        return fig


def lr_find(
    model: Module,
    X: Any,
    y: Any,
    loss: Any,
    optimizer: str = "adam",
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    num_steps: int = 200,
    batch_size: int = 32,
    smoothing: float = 0.9,
    diverge_factor: float = 4.0,
    seed: Any = 0,
) -> LRFinderResult:
    """Sweep the learning rate exponentially on a copy of ``model``; suggest a value.

    Parameters
    ----------
    model : Module
        Left untouched: the test trains a deep copy.
    X, y : array_like
        Training data (mini-batches are drawn with ``seed``).
    loss : loss module or name
    optimizer : str
        sgd, adam, adamw, rmsprop or adagrad.
    start_lr, end_lr : float
        The sweep's range; ``lr_t = start·(end/start)^(t/(num_steps-1))``.
    num_steps : int
        Steps of the sweep (a few hundred).
    smoothing : float
        Exponential smoothing of the loss (bias-corrected), as fast.ai.
    diverge_factor : float
        Stop once the smoothed loss exceeds this multiple of its minimum.

    Returns
    -------
    LRFinderResult
        ``suggestion`` (steepest descent, at most a tenth of the best rate), ``plot()``.
    """
    check_number("start_lr", start_lr, low=0, low_inclusive=False)
    check_number("end_lr", end_lr, low=start_lr, low_inclusive=False)
    check_number("num_steps", num_steps, low=5, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("smoothing", smoothing, low=0, high=1, high_inclusive=False)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    X = _as_data("X", X)
    y = _as_data("y", y)
    if len(X) != len(y):
        raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
    work = copy.deepcopy(model)
    work.train()
    params = list(work.parameters())
    dtype = params[0].dtype
    loss_fn = _resolve_loss(loss)
    opt = OPTIMIZERS[optimizer](params, lr=start_lr)  # type: ignore[call-arg]
    rng = as_generator(seed, "seed")
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    raw: list[float] = []
    smooth: list[float] = []
    avg, best = 0.0, math.inf
    order = rng.permutation(len(X))
    pos = 0
    stopped = False
    # dropout layers without a generator of their own follow ``seed`` here too, as in fit
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), use_generator(rng):
        for t, lr in enumerate(lrs):
            if pos + batch_size > len(order):
                order, pos = rng.permutation(len(X)), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            opt.param_groups[0]["lr"] = float(lr)
            value = loss_fn(work(X[idx].astype(dtype)), y[idx])
            lv = value.item()
            avg = smoothing * avg + (1 - smoothing) * lv
            s = avg / (1 - smoothing ** (t + 1))
            raw.append(lv)
            smooth.append(s)
            if not math.isfinite(s) or (t > 10 and s > diverge_factor * best):
                stopped = True
                break
            best = min(best, s)
            opt.zero_grad()
            value.backward()
            opt.step()
    n = len(smooth)
    lr_arr, sm, rw = lrs[:n], np.asarray(smooth), np.asarray(raw)
    finite = np.isfinite(sm)
    i_best = int(np.nanargmin(np.where(finite, sm, np.inf)))
    best_lr = float(lr_arr[i_best])
    # steepest descent of the smoothed loss against log(lr), before the minimum
    lo = max(1, n // 10)
    if i_best - lo > 2:
        slope = np.gradient(sm[lo : i_best + 1], np.log(lr_arr[lo : i_best + 1]))
        steep = float(lr_arr[lo + int(np.argmin(slope))])
    else:
        steep = best_lr / 10
    suggestion = min(steep, best_lr / 10) if steep > 0 else best_lr / 10
    return LRFinderResult(lr_arr, sm, rw, suggestion, best_lr, stopped)
