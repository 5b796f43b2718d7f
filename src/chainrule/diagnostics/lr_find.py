"""The learning-rate range test (Smith, 2017, https://arxiv.org/abs/1506.01186).

Train a *copy* of the model for a few hundred mini-batch steps while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``; record the (smoothed) loss at every step. The
loss falls fastest somewhere before it blows up: the suggestion is the rate at the steepest
descent of the smoothed curve, capped at a tenth of the rate where the loss was lowest.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._random import as_generator, use_generator
from .._validation import check_number
from ..nn.module import Module
from ..optim.clip import clip_grad_norm as _clip
from ..training.arguments import as_data, resolve_loss
from ..training.fit import OPTIMIZERS

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
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        i = int(np.nanargmin(np.where(np.isfinite(self.losses), self.losses, np.inf)))
        applied = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        return (
            f"learning-rate range test: {len(self.lrs)} steps with learning rates from "
            f"{self.lrs[0]:.1e} to {self.lrs[-1]:.1e}"
            f"{' (stopped when the loss diverged)' if self.stopped_early else ''}"
            + (f"; trained as configured ({applied})" if applied else "")
            + f".\nThe smoothed loss was lowest ({self.losses[i]:.4g}) at learning rate "
            f"{self.best_lr:.2e}; it fell fastest a little before that.\n"
            f"The suggested learning rate: {self.suggestion:.2e} (the steepest descent, at most a "
            "tenth of the rate with the lowest loss)."
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
    weight_decay: float = 0.0,
    clip_grad_norm: float | None = None,
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
    weight_decay : float
        Passed to the optimizer, as in training (the sweep must see the same objective).
    clip_grad_norm : float, optional
        Clip the gradients' global norm at every step, as ``fit(clip_grad_norm=)`` does.

    Dropout layers of ``model`` are active during the sweep (the copy is in training mode), so
    the sweep trains the same model as ``fit`` will: use the same architecture, dropout,
    batch size, weight decay and clipping as the training run.

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
    X = as_data("X", X)
    y = as_data("y", y)
    if len(X) != len(y):
        raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
    work = copy.deepcopy(model)
    work.train()
    params = list(work.parameters())
    dtype = params[0].dtype
    loss_fn = resolve_loss(loss)
    check_number("weight_decay", weight_decay, low=0)
    if clip_grad_norm is not None:
        check_number("clip_grad_norm", clip_grad_norm, low=0, low_inclusive=False)
    extra: dict[str, Any] = {"weight_decay": weight_decay} if weight_decay else {}
    opt = OPTIMIZERS[optimizer](params, lr=start_lr, **extra)  # type: ignore[call-arg]
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
            if clip_grad_norm is not None:
                _clip(params, clip_grad_norm)
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
    applied: dict[str, Any] = {"optimizer": optimizer, "batch size": batch_size}
    if weight_decay:
        applied["weight decay"] = weight_decay
    if clip_grad_norm is not None:
        applied["gradient clipping"] = clip_grad_norm
    n_drop = sum(1 for m in work.modules() if type(m).__name__.startswith("Dropout"))
    if n_drop:
        applied["dropout layers"] = n_drop
    return LRFinderResult(lr_arr, sm, rw, suggestion, best_lr, stopped, applied)
