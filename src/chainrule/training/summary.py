"""The end-of-fit summary: why training stopped, the best epoch, final numbers, plain advice."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .fit import Trainer

__all__ = ["input_scaling_advice", "summarize"]


def _numbers(logs: dict[str, list[float]], i: int) -> str:
    parts = []
    for k, v in logs.items():
        if k in ("lr", "time") or i >= len(v) or math.isnan(v[i]):
            continue
        parts.append(f"{k} {v[i]:.4g}")
    return ", ".join(parts)


def input_scaling_advice(X: Any, max_rows: int = 2_000) -> str | None:
    """A sentence if the features of ``X`` look unscaled (large means or spreads), else None."""
    try:
        sample = np.asarray(X[:max_rows], dtype=np.float32).reshape(min(len(X), max_rows), -1)
    except (TypeError, ValueError):
        return None
    if sample.size == 0:
        return None
    mean = sample.mean(axis=0)
    std = sample.std(axis=0)
    bad = np.flatnonzero((np.abs(mean) > 10) | (std > 10) | ((std > 0) & (std < 1e-2)))
    if bad.size == 0:
        return None
    j = int(bad[np.argmax(np.abs(mean[bad]) + std[bad])])
    return (
        f"The inputs look unscaled ({bad.size} of {sample.shape[1]} features; feature {j} has "
        f"mean {mean[j]:.3g} and standard deviation {std[j]:.3g}): standardise each feature "
        "(subtract the training mean, divide by the standard deviation)."
    )


def summarize(tr: Trainer) -> str:
    h = tr.history
    n = len(h.epoch)
    last = h.epoch[-1] if n else 0
    reason = tr.stop_reason
    if reason == "epochs":
        head = f"Trained {n} epoch{'s' if n != 1 else ''} (the epoch limit)."
    elif reason == "early_stopping":
        head = f"Stopped early after epoch {last}: {tr.stop_detail}."
    elif reason == "converged":
        head = f"Converged after epoch {last}: {tr.stop_detail}."
    elif reason == "diverged":
        head = f"Stopped: {tr.stop_detail}"
    elif reason == "interrupted":
        head = (
            f"Interrupted after {n} complete epoch{'s' if n != 1 else ''}; the history and the "
            "weights so far are kept."
        )
    else:
        head = f"Stopped by a callback after epoch {last}."
    lines = [head]
    if tr.best_epoch is not None:
        lines.append(
            f"Best epoch: {tr.best_epoch}"
            + (" (its weights were restored)." if tr.restored_best else ".")
        )
    if n:
        i = h.epoch.index(tr.best_epoch) if tr.restored_best and tr.best_epoch in h.epoch else n - 1
        lines.append(f"Final (epoch {h.epoch[i]}): {_numbers(h.history, i)}")
    advice = []
    losses = [v for v in h.history.get("loss", []) if not math.isnan(v)]
    if reason == "epochs" and len(losses) >= 3:
        k = max(2, len(losses) // 10)
        recent = losses[-k:]
        still_falling = recent[0] > 0 and (recent[0] - recent[-1]) / abs(recent[0]) > 0.05
        if still_falling and losses[-1] > 0.01 * losses[0]:
            advice.append(
                "The loss was still falling at the last epoch: training may not have converged; "
                "try more epochs or a larger learning rate."
            )
    if len(losses) >= 2 and losses[-1] >= 0.99 * losses[0] and reason != "diverged":
        advice.append(
            "The loss barely fell: try another learning rate and "
            "check that the targets fit the loss."
        )
    scaling = input_scaling_advice(tr._fit_inputs) if hasattr(tr, "_fit_inputs") else None
    if scaling:
        advice.append(scaling)
    lines.extend(advice)
    return "\n".join(lines)
