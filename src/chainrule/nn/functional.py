"""Losses and activations as functions (the classes in ``cr.nn`` wrap these).

Every loss takes ``(input, target)`` — predictions first, PyTorch's order — a ``reduction`` of
``"mean"`` (default), ``"sum"`` or ``"none"``, and optional per-sample weights
``sample_weight`` of shape ``(n,)``. Under ``"mean"`` a weighted loss is normalised by the sum
of the weights: ``Σ_i s_i l_i / Σ_i s_i``, where ``l_i`` is sample i's loss (the mean of its
elements for multi-output losses). Predictions and targets must have the same shape where
broadcasting would hide a mistake (``(n, 1)`` against ``(n,)`` raises).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._validation import check_number
from ..ops import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    logsumexp,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from ..tensor import Tensor, as_array
from .conv_ops import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    max_pool1d,
    max_pool2d,
)

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "elu",
    "gelu",
    "huber_loss",
    "l1_loss",
    "leaky_relu",
    "linear",
    "log_loss",
    "log_softmax",
    "logsumexp",
    "max_pool1d",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
]

linear = ops.linear
_REDUCTIONS = ("mean", "sum", "none")


def dropout(x: Any, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Inverted dropout as a function (see :class:`chainrule.nn.Dropout`)."""
    from .layers import Dropout

    layer = Dropout(p, rng=rng)
    layer.training = training
    return layer(x)


# ----- argument checks -------------------------------------------------------------------------
def _pred(x: Any, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else Tensor._const(as_array(x))
    if t.dtype.kind != "f":
        t = Tensor._const(t.data.astype(np.float32))
    return t


def _float_target(target: Any, pred: Tensor, fn: str) -> Any:
    """A float target of exactly the prediction's shape, in the prediction's dtype."""
    if isinstance(target, Tensor):
        y: Any = target
        shape = target.shape
        if target.dtype != pred.dtype:
            y = target.astype(pred.dtype)
    else:
        arr = as_array(target)
        shape = arr.shape
        y = arr.astype(pred.dtype, copy=False)
    if shape != pred.shape:
        raise ValueError(
            f"{fn}: input shape {pred.shape} and target shape {shape} differ; broadcasting them "
            "would compare every prediction with every target (reshape one of them)"
        )
    return y


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _sample_weight(sample_weight: Any, n: int, dtype: np.dtype[Any]) -> np.ndarray:
    w = np.asarray(sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},) (one per sample), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w.astype(dtype, copy=False)


def _reduce(elem: Tensor, reduction: str, sample_weight: Any) -> Tensor:
    """Reduce elementwise losses ``(n, ...)`` with optional per-sample weights."""
    _check_reduction(reduction)
    if sample_weight is None:
        if reduction == "none":
            return elem
        return elem.sum() if reduction == "sum" else elem.mean()
    if elem.ndim == 0:
        raise ValueError("sample_weight needs losses with a batch dimension, got a scalar")
    w = _sample_weight(sample_weight, elem.shape[0], elem.dtype)
    wb = w.reshape((-1,) + (1,) * (elem.ndim - 1))
    if reduction == "none":
        return elem * wb
    if reduction == "sum":
        return (elem * wb).sum()
    per_sample = elem.mean(axis=tuple(range(1, elem.ndim))) if elem.ndim > 1 else elem
    total = w.sum()
    if total <= 0:
        raise ValueError("sample_weight sums to 0: the weighted mean is undefined")
    return (per_sample * w).sum() / total


def _class_weighted_mean(per: Tensor, denom: np.ndarray, sample_weight: Any) -> Tensor:
    """``Σ s_i l_i / Σ s_i d_i``: PyTorch's mean for class-weighted losses (``d_i = w_{y_i}``,
    0 for ignored samples), with optional sample weights ``s_i``; NaN if nothing counts."""
    n = per.shape[0]
    s = (
        np.ones(n, per.dtype)
        if sample_weight is None
        else _sample_weight(sample_weight, n, per.dtype)
    )
    total = float((s * denom).sum())
    weighted = (per * s).sum()
    # nothing counts: the mean is NaN (0/0), its gradient 0 (every weight is 0), as PyTorch
    return weighted / total if total > 0 else weighted * 0.0 + np.nan


# ----- regression losses -----------------------------------------------------------------------
def mse_loss(input: Any, target: Any, reduction: str = "mean", sample_weight: Any = None) -> Tensor:
    """Mean squared error ``(1/n) Σ (ŷ - y)²``.

    Examples
    --------
    >>> import chainrule as cr
    >>> cr.nn.functional.mse_loss(cr.tensor([1.0, 2.0]), cr.tensor([0.0, 4.0])).item()
    2.5
    """
    x = _pred(input, "mse_loss")
    d = x - _float_target(target, x, "mse_loss")
    return _reduce(d * d, reduction, sample_weight)


def l1_loss(input: Any, target: Any, reduction: str = "mean", sample_weight: Any = None) -> Tensor:
    """Mean absolute error ``(1/n) Σ |ŷ - y|``."""
    x = _pred(input, "l1_loss")
    return _reduce(ops.abs(x - _float_target(target, x, "l1_loss")), reduction, sample_weight)


def huber_loss(
    input: Any,
    target: Any,
    reduction: str = "mean",
    delta: float = 1.0,
    sample_weight: Any = None,
) -> Tensor:
    """Huber loss: ``½d²`` for ``|d| ≤ δ``, ``δ(|d| - ½δ)`` beyond (d = ŷ - y), as PyTorch."""
    check_number("delta", delta, low=0, low_inclusive=False)
    x = _pred(input, "huber_loss")
    a = ops.abs(x - _float_target(target, x, "huber_loss"))
    small = a.data <= delta
    elem = ops.where(small, 0.5 * a * a, delta * (a - 0.5 * delta))
    return _reduce(elem, reduction, sample_weight)


# ----- binary classification -------------------------------------------------------------------
def _check_probabilities(p: Tensor, fn: str) -> None:
    d = p.data
    if d.size and (np.nanmin(d) < 0 or np.nanmax(d) > 1):
        raise ValueError(
            f"{fn} expects probabilities in [0, 1], got values in [{np.nanmin(d):g}, "
            f"{np.nanmax(d):g}]; for logits use binary_cross_entropy_with_logits"
        )


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    sample_weight: Any = None,
) -> Tensor:
    """Log loss on probabilities ``-(y log p + (1-y) log(1-p))``.

    The logs are clamped at ``max(-100, log(tiny))`` (dtype-aware), so p = 0 or 1 gives a large
    finite loss and never NaN. ``weight`` rescales each element (broadcast), as PyTorch.
    Prefer :func:`binary_cross_entropy_with_logits` on logits: it is exact.
    """
    p = _pred(input, "binary_cross_entropy")
    _check_probabilities(p, "binary_cross_entropy")
    elem = ops.binary_cross_entropy_elementwise(p, _float_target(target, p, "binary_cross_entropy"))
    if weight is not None:
        elem = elem * as_array(weight).astype(p.dtype)
    return _reduce(elem, reduction, sample_weight)


log_loss = binary_cross_entropy


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    sample_weight: Any = None,
) -> Tensor:
    """Log loss on logits z, in log-sum-exp form: ``(1 - y)·z + (1 + (w₊ - 1)·y)·softplus(-z)``.

    Equal to ``-(w₊·y·log σ(z) + (1-y)·log(1-σ(z)))`` and finite for any z. ``pos_weight``
    (w₊, broadcast over the last dimension) weights the positive examples; ``weight``
    rescales each element.
    """
    z = _pred(input, "binary_cross_entropy_with_logits")
    y = _float_target(target, z, "binary_cross_entropy_with_logits")
    if pos_weight is None:
        elem = (1 - y) * z + ops.softplus(-z)
    else:
        pw = as_array(pos_weight).astype(z.dtype)
        elem = (1 - y) * z + (1 + (pw - 1) * y) * ops.softplus(-z)
    if weight is not None:
        elem = elem * as_array(weight).astype(z.dtype)
    return _reduce(elem, reduction, sample_weight)


# ----- multi-class classification --------------------------------------------------------------
def _class_targets(target: Any, n: int, c: int, fn: str, ignore_index: int) -> np.ndarray | None:
    """Integer class indices ``(n,)``, or None when the target is a probability matrix."""
    arr = np.asarray(target.data if isinstance(target, Tensor) else target)
    if arr.dtype.kind == "f" and arr.shape == (n, c):
        return None
    if arr.dtype.kind == "f" and arr.ndim == 1:
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{fn}: class targets must be integers, got non-integral values")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{fn}: target must be integer class indices of shape ({n},) or class "
            f"probabilities of shape ({n}, {c}), got dtype {arr.dtype} and shape {arr.shape}"
        )
    if arr.shape != (n,):
        raise ValueError(
            f"{fn}: target must have shape ({n},) for input of shape ({n}, {c}), got {arr.shape}"
        )
    valid = arr != ignore_index
    bad = valid & ((arr < 0) | (arr >= c))
    if np.any(bad):
        raise ValueError(
            f"{fn}: target contains class {int(arr[bad][0])}, but the input has {c} classes "
            f"(valid: 0 to {c - 1})"
        )
    return arr


def _logits_2d(input: Any, fn: str) -> Tensor:
    z = _pred(input, fn)
    if z.ndim != 2:
        raise ValueError(f"{fn}: input must have shape (n_samples, n_classes), got {z.shape}")
    return z


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    sample_weight: Any = None,
) -> Tensor:
    """Softmax cross-entropy on logits ``-Σ_k y_k log softmax(z)_k``.

    ``target`` is either integer class indices ``(n,)`` or class probabilities ``(n, C)``.
    ``weight`` (per class), ``label_smoothing`` (ε: the target becomes ``(1-ε)y + ε/C``) and
    ``ignore_index`` follow PyTorch: with class indices, ``"mean"`` divides by the summed
    weights of the targets' classes; with probabilities, by the number of samples. One fused
    primitive computes the loss; its gradient is ``(softmax(z) - y)/n``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> z = cr.tensor(np.array([[2.0, 0.0, 0.0]]))
    >>> round(cr.nn.functional.cross_entropy(z, np.array([0])).item(), 6)
    0.239545
    """
    _check_reduction(reduction)
    check_number("label_smoothing", label_smoothing, low=0, high=1)
    z = _logits_2d(input, "cross_entropy")
    n, c = z.shape
    idx = _class_targets(target, n, c, "cross_entropy", ignore_index)
    w = None
    if weight is not None:
        w = as_array(weight).astype(z.dtype)
        if w.shape != (c,):
            raise ValueError(f"cross_entropy: weight must have shape ({c},), got {w.shape}")
    eps = float(label_smoothing)
    if idx is None:
        y = _float_target(target, z, "cross_entropy")
        if eps:
            y = y * (1 - eps) + eps / c
        if w is not None:
            y = y * w
        per = ops.softmax_cross_entropy(z, y, axis=1)
        if reduction == "mean" and sample_weight is None:
            return per.sum() / n if n else per.sum()
        return _reduce(per, reduction, sample_weight)
    valid = idx != ignore_index
    safe = np.where(valid, idx, 0)
    Y = np.zeros((n, c), z.dtype)
    Y[np.arange(n), safe] = (1 - eps) * valid
    if eps:
        Y += (eps / c) * valid[:, None]
    denom = valid.astype(z.dtype)
    if w is not None:  # Y_ik = w_k·((1-ε)·onehot_ik + ε/C)
        Y *= w
        denom = denom * w[safe]
    per = ops.softmax_cross_entropy(z, Y, axis=1)
    if reduction == "mean":
        if w is None and sample_weight is None and n and valid.all():
            return per.sum() / n  # every sample counts once: the plain mean
        return _class_weighted_mean(per, denom, sample_weight)
    return _reduce(per, reduction, sample_weight)


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    sample_weight: Any = None,
) -> Tensor:
    """Negative log-likelihood ``-w_{y_i}·logp[i, y_i]`` of log-probabilities (e.g. log_softmax).

    Under ``"mean"`` divided by the summed class weights of the targets, as PyTorch.
    """
    _check_reduction(reduction)
    logp = _logits_2d(input, "nll_loss")
    n, c = logp.shape
    idx = _class_targets(target, n, c, "nll_loss", ignore_index)
    if idx is None:
        raise TypeError("nll_loss: target must be integer class indices")
    valid = idx != ignore_index
    safe = np.where(valid, idx, 0)
    wc = np.ones(c, logp.dtype) if weight is None else as_array(weight).astype(logp.dtype)
    if wc.shape != (c,):
        raise ValueError(f"nll_loss: weight must have shape ({c},), got {wc.shape}")
    coef = wc[safe] * valid
    per = -logp[np.arange(n), safe] * coef
    if reduction == "mean":
        return _class_weighted_mean(per, coef, sample_weight)
    return _reduce(per, reduction, sample_weight)
