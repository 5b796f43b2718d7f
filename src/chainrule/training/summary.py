"""The end-of-fit summary: why training stopped, the best epoch, final numbers, plain advice."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .fit import Trainer

__all__ = [
    "CLIP_ADVICE",
    "input_scaling_advice",
    "summarize",
    "target_scaling_advice",
    "trivial_loss",
]

# Advice a user can type in both faces: Python's fit() and the command line.
CLIP_ADVICE = "clip gradients (clip_grad_norm=1.0 in fit, --clip-grad-norm 1 on the command line)"


def _numbers(logs: dict[str, list[float]], i: int) -> str:
    parts = []
    for k, v in logs.items():
        if k in ("lr", "time") or i >= len(v) or math.isnan(v[i]):
            continue
        parts.append(f"{k} {v[i]:.4g}")
    return ", ".join(parts)


def input_scaling_advice(X: Any, max_rows: int = 2_000) -> str | None:
    """A sentence if the features of ``X`` look unscaled (large means or spreads), else None.

    Images ``(N, C, H, W)`` are judged per channel, over all samples and pixels, as they are
    normalised (a blank border pixel is not an unscaled feature)."""
    try:
        sample = np.asarray(X[:max_rows], dtype=np.float32)
        rows = min(len(X), max_rows)
        images = sample.ndim == 4
        if images:  # (N, C, H, W) -> one column per channel
            sample = sample.transpose(0, 2, 3, 1).reshape(-1, sample.shape[1])
        else:
            sample = sample.reshape(rows, -1)
    except (TypeError, ValueError):
        return None
    if sample.size == 0:
        return None
    what, fix = ("channels", "channel") if images else ("features", "feature")
    mean = sample.mean(axis=0)
    std = sample.std(axis=0)
    bad = np.flatnonzero((np.abs(mean) > 10) | (std > 10) | ((std > 0) & (std < 1e-2)))
    if bad.size == 0:
        return None
    j = int(bad[np.argmax(np.abs(mean[bad]) + std[bad])])
    return (
        f"The inputs look unscaled ({bad.size} of {sample.shape[1]} {what}; {fix} {j} has "
        f"mean {mean[j]:.3g} and standard deviation {std[j]:.3g}): standardise each {fix} "
        "(subtract the training mean, divide by the standard deviation)."
    )


def trivial_loss(loss_fn: Any, y: Any, max_rows: int = 200_000) -> tuple[float, str] | None:
    """The loss of the best constant prediction for targets ``y``, with what that predictor is.

    The yardstick against which a training loss is "large" or "no better than chance":

    - cross-entropy on class indices: the entropy of the class frequencies,
      ``-Σ_k p_k ln p_k`` (``ln K`` for K balanced classes) — predicting the frequencies;
    - binary cross-entropy: ``-(p ln p + (1-p) ln(1-p))`` per output, averaged;
    - mean squared error: the targets' variance (mean over outputs) — predicting the mean;
    - mean absolute error: the mean absolute deviation from the median.

    Returns None for other losses or targets (class probabilities, weights, ...). Big
    targets are judged on a strided sample of ``max_rows`` rows.
    """
    from ..nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss

    try:
        t = np.asarray(y[:: max(1, len(y) // max_rows)])  # a strided sample of big data
    except (TypeError, ValueError):
        return None
    if t.size == 0 or getattr(loss_fn, "reduction", "mean") != "mean":
        return None
    if isinstance(loss_fn, CrossEntropyLoss) and t.ndim == 1 and t.dtype.kind in "iu":
        if getattr(loss_fn, "weight", None) is not None:
            return None
        if getattr(loss_fn, "label_smoothing", 0.0):
            return None
        p = np.bincount(t) / t.size
        p = p[p > 0]
        return float(-(p * np.log(p)).sum()), "predicting the class frequencies"
    if isinstance(loss_fn, (BCELoss, BCEWithLogitsLoss)):
        p = np.clip(t.astype(np.float64).reshape(len(t), -1).mean(axis=0), 1e-12, 1 - 1e-12)
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        return float(h.mean()), "predicting the positive rate"
    if t.dtype.kind not in "fiu":
        return None
    t2 = t.astype(np.float64).reshape(len(t), -1)
    if isinstance(loss_fn, MSELoss):
        return float(t2.var(axis=0).mean()), "predicting the mean target"
    if isinstance(loss_fn, L1Loss):
        return float(np.abs(t2 - np.median(t2, axis=0)).mean()), "predicting the median target"
    return None


def target_scaling_advice(loss_fn: Any, y: Any, max_rows: int = 200_000) -> str | None:
    """A sentence if regression targets look unscaled (standard deviation or mean above 10)."""
    from ..nn.losses import HuberLoss, L1Loss, MSELoss

    if not isinstance(loss_fn, (MSELoss, L1Loss, HuberLoss)):
        return None
    try:
        t = np.asarray(y[:: max(1, len(y) // max_rows)], dtype=np.float64)
        t = t.reshape(len(t), -1)
    except (TypeError, ValueError):
        return None
    if t.size == 0:
        return None
    mean, std = t.mean(axis=0), t.std(axis=0)
    j = int(np.argmax(np.abs(mean) + std))
    if not (abs(mean[j]) > 10 or std[j] > 10):
        return None
    return (
        f"The targets are unscaled (mean {mean[j]:.3g}, standard deviation {std[j]:.3g}): the "
        "loss and the gradients are large because of the targets' scale, not because training "
        "is unstable. Standardise the targets (subtract their mean, divide by their standard "
        "deviation; predict, then undo it) — chainrule train and the scikit-learn estimators "
        "do this for you."
    )


def _loss_yardstick(tr: Trainer) -> tuple[float, str] | None:
    y = tr.fit_targets
    if y is None:
        return None
    try:
        return trivial_loss(tr.loss_fn, y)
    except Exception:  # a yardstick is optional, never a reason to fail a fit
        return None


def _lower_lr(tr: Trainer) -> str:
    try:
        lr = float(tr.optimizer.param_groups[0]["lr"]) / 10
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return ""
    return f" (e.g. lr={lr:g} in fit, --lr {lr:g} on the command line)"


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
    elif reason == "caller":
        head = (
            f"Stopped by the caller after {n} complete epoch{'s' if n != 1 else ''}; the history "
            "and the weights so far are kept."
        )
    elif reason == "peer":
        head = f"Stopped after epoch {last}: {tr.stop_detail}."
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
    yard = _loss_yardstick(tr)
    worse_than_trivial = bool(yard and losses and losses[-1] >= 0.98 * yard[0])
    if yard and losses and reason == "diverged" and worse_than_trivial:
        advice.append(
            f"The kept weights are no better than chance: their training loss {losses[-1]:.4g} "
            f"is not below {yard[0]:.4g}, the loss of {yard[1]}. Do not use this model; retrain "
            f"with a lower learning rate{_lower_lr(tr)}."
        )
    elif yard and losses and worse_than_trivial:
        advice.append(
            f"The final training loss {losses[-1]:.4g} is not below {yard[0]:.4g}, the loss of "
            f"{yard[1]}: the model has learned nothing useful yet."
        )
    if yard and losses and losses[0] > 10 * yard[0] and reason != "diverged":
        advice.append(
            f"The first epoch's loss {losses[0]:.4g} is {losses[0] / yard[0]:.0f} times the loss "
            f"of {yard[1]} ({yard[0]:.3g}): the outputs started far too large — usually "
            "initial weights too large for the depth, or unscaled inputs or targets."
        )
    if reason == "epochs" and len(losses) >= 3 and not (yard and losses[0] > 10 * yard[0]):
        k = max(2, len(losses) // 10)
        recent = losses[-k:]
        still_falling = recent[0] > 0 and (recent[0] - recent[-1]) / abs(recent[0]) > 0.05
        if still_falling and losses[-1] > 0.01 * losses[0]:
            advice.append(
                "The loss was still falling at the last epoch: training may not have converged; "
                "try more epochs (epochs= in fit, --epochs on the command line) or a larger "
                "learning rate (lr=, --lr)."
            )
    if (
        len(losses) >= 2
        and losses[-1] >= 0.99 * losses[0]
        and reason != "diverged"
        and not worse_than_trivial
    ):
        advice.append(
            "The loss barely fell: try another learning rate (lr= in fit, --lr on the command "
            "line; chainrule lr-find suggests one) and check that the targets fit the loss."
        )
    scaling = input_scaling_advice(tr.fit_inputs) if tr.fit_inputs is not None else None
    if scaling:
        advice.append(scaling)
    y = tr.fit_targets
    targets = target_scaling_advice(tr.loss_fn, y) if y is not None else None
    if targets:
        advice.append(targets)
    lines.extend(advice)
    return "\n".join(lines)
