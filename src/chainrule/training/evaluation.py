"""Predictions and scores of a trained model, and the names of losses.

:func:`predict`, :func:`predict_proba` and :func:`evaluate` run a model in eval mode without a
graph; :func:`compute_metrics` turns raw outputs into what each metric expects. The training
loop (:mod:`chainrule.training.trainer`) evaluates the validation set with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._numerics import sigmoid, softmax
from .._validation import check_number
from ..nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from ..nn.module import Module
from ..tensor import Tensor, no_grad
from ._inputs import (
    as_data,
    batches_to_arrays,
    check_finite,
    column_target,
    is_batches,
    single_output,
)
from .metrics import get_metric

__all__ = [
    "LOSSES",
    "compute_metrics",
    "evaluate",
    "outputs_to",
    "predict",
    "predict_proba",
    "resolve_loss",
    "task_of",
]

LOSSES: dict[str, Callable[[], Module]] = {
    "mse": MSELoss,
    "mean_squared_error": MSELoss,
    "l1": L1Loss,
    "mae": L1Loss,
    "huber": HuberLoss,
    "bce": BCELoss,
    "binary_crossentropy": BCELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "cross_entropy": CrossEntropyLoss,
    "categorical_crossentropy": CrossEntropyLoss,
    "sparse_categorical_crossentropy": CrossEntropyLoss,
    "nll": NLLLoss,
}


def resolve_loss(loss: Any) -> Any:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(
                f"unknown loss {loss!r}; choose from {sorted(LOSSES)} or a loss module"
            )
        return LOSSES[loss]()
    if not callable(loss):
        raise TypeError(
            f"loss must be a loss module, a callable or a name, got {type(loss).__name__}"
        )
    return loss


def task_of(loss_fn: Any) -> str:
    # the loss declares what the outputs are (nn.losses: ``task``); any other callable: values
    task = getattr(loss_fn, "task", "regression")
    return task if isinstance(task, str) else "regression"


def outputs_to(kind: str, task: str, out: np.ndarray) -> np.ndarray:
    """Turn raw model outputs into what a metric of ``kind`` expects."""
    if kind == "value" or task == "regression":
        return out
    if task == "multiclass":
        if kind == "label":
            return out.argmax(axis=1)
        return softmax(out, axis=1)
    if task == "multiclass_logprob":
        return out.argmax(axis=1) if kind == "label" else np.exp(out)
    if task == "binary_logits":
        if kind == "label":
            return (out > 0).astype(np.int64)
        return sigmoid(out.astype(np.float64))
    return (out > 0.5).astype(np.int64) if kind == "label" else out


def compute_metrics(
    metrics: Sequence[tuple[str, Callable[..., float], str]], task: str, out: np.ndarray, y: Any
) -> dict[str, float]:
    """Evaluate resolved metrics on raw model outputs ``out`` against targets ``y``."""
    res = {}
    y = np.asarray(y)
    for name, fn, kind in metrics:
        pred = outputs_to(kind, task, out)
        yy = y
        if kind == "label" and task in ("binary_logits", "binary_proba"):
            yy = (y > 0.5).astype(np.int64)
        if kind != "proba" and pred.ndim > yy.ndim and pred.size == yy.size:
            pred = pred.reshape(yy.shape)
        res[name] = float(fn(yy, pred))
    return res


def predict(model: Module, X: Any, batch_size: int | None = 4096) -> np.ndarray:
    """The model's raw outputs for ``X`` (logits for a classifier: see :func:`predict_proba`),
    in eval mode, batch by batch, without building a graph.

    The model's train/eval mode is restored afterwards. NaN or infinite inputs are refused.
    ``X`` may also be an iterable of batches (``x`` or ``(x, y)``: the targets are ignored).
    """
    if is_batches(X):  # a DataLoader, a generator, a list of (x, y): predict on the x's
        X = batches_to_arrays(X, "predict")[0]
    X = as_data("X", X, purpose="predict")
    check_finite("X", X, "predicting")
    if batch_size is not None:
        check_number("batch_size", batch_size, low=1, integer=True)
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    # eval mode for the call; afterwards each sub-module gets its own mode back (model.train(
    # was) would unfreeze a BatchNorm the user froze with model[1].eval())
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        outs = []
        n = len(X)
        bs = n if batch_size is None else int(batch_size)
        with no_grad():
            for start in range(0, n, bs):
                xb = X[start : start + bs]
                if xb.dtype != dtype:
                    xb = xb.astype(dtype)
                outs.append(single_output(model(xb), "predict"))
        return np.concatenate(outs) if len(outs) > 1 else outs[0]
    finally:
        for m, training in modes:
            m.training = training


def predict_proba(model: Module, X: Any, batch_size: int | None = 4096) -> np.ndarray:
    """Class probabilities from a model that outputs logits.

    ``softmax(z)_k = exp(z_k) / Σ_j exp(z_j)`` over the last axis when the model has several
    outputs (multi-class, trained with cross-entropy); ``σ(z) = 1 / (1 + exp(-z))`` when it
    has one (binary, trained with ``BCEWithLogitsLoss``) — the probability of class 1, shape
    ``(n, 1)``. Computed stably (no overflow for logits of any size), in the output's dtype.
    For a multi-label model (several independent sigmoid outputs) apply
    ``cr.sigmoid(cr.predict(model, X)).numpy()`` instead (stable: ``1 / (1 + np.exp(-z))`` would
    overflow, with a warning, for large negative logits).

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> model = cr.nn.mlp([2, 3], rng=0)
    >>> p = cr.predict_proba(model, np.zeros((4, 2), np.float32))
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1))
    ((4, 3), True)
    """
    z = predict(model, X, batch_size)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    if z.ndim >= 2 and z.shape[-1] > 1:
        return softmax(z, axis=-1)
    return sigmoid(z)


def evaluate(
    model: Module,
    X: Any,
    y: Any,
    loss: Any = None,
    metrics: Sequence[Any] = (),
    batch_size: int | None = 4096,
    sample_weight: Any = None,
    _metrics: Any = None,
    _outputs: np.ndarray | None = None,
) -> dict[str, float]:
    """Loss (the sample-weighted mean over all of ``X``) and metrics, in eval mode.

    ``loss`` also says what the outputs are (logits for ``"cross_entropy"``, log-probabilities
    for ``"nll"``, ...), which metrics of probabilities need. Without it, class-label metrics
    (``"accuracy"``, ``"precision"``, ``"recall"``, ``"f1"``) still work for integer labels
    and one output per class (the predicted class is the largest output, whatever the
    outputs are); anything else that needs to know asks for ``loss=``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> model = cr.nn.mlp([2, 3], rng=0)
    >>> X, y = np.zeros((4, 2), np.float32), np.array([0, 1, 2, 0])
    >>> sorted(cr.evaluate(model, X, y, loss="cross_entropy", metrics=["accuracy"]))
    ['accuracy', 'loss']
    """
    X = as_data("X", X, purpose="evaluate")
    y = as_data("y", y, purpose="evaluate")
    if len(X) != len(y):
        raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
    if loss is None and not metrics and _metrics is None:
        raise ValueError(
            "evaluate has nothing to compute: give loss= (e.g. 'cross_entropy' or 'mse') "
            "and/or metrics= (e.g. ['accuracy'])"
        )
    out = predict(model, X, batch_size) if _outputs is None else _outputs
    res: dict[str, float] = {}
    loss_fn = resolve_loss(loss) if loss is not None else None
    if loss_fn is not None:
        y_loss = column_target(loss_fn, out, np.asarray(y))
        with no_grad():
            if sample_weight is not None:
                res["loss"] = float(
                    loss_fn(Tensor._const(out), y_loss, sample_weight=sample_weight).item()
                )
            else:
                res["loss"] = float(loss_fn(Tensor._const(out), y_loss).item())
    resolved = _metrics if _metrics is not None else [get_metric(m) for m in metrics]
    task = task_of(loss_fn) if loss_fn is not None else _task_without_loss(resolved, out, y)
    res.update(compute_metrics(resolved, task, out, y))
    return res


def _task_without_loss(
    metrics: Sequence[tuple[str, Callable[..., float], str]], out: np.ndarray, y: np.ndarray
) -> str:
    """What the outputs are, for :func:`evaluate` called without a loss.

    Integer labels with one output per class: the label metrics take the largest output
    (the same class for logits, probabilities or log-probabilities). A metric of
    probabilities, or a label metric on one output per sample (a logit above 0 or a
    probability above 0.5?), would be a guess: it asks for ``loss=``. Otherwise the metrics
    compare the outputs as they are.
    """
    from .metrics import METRICS

    labels = y.ndim == 1 and y.dtype.kind in "biu"
    one_output = out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)
    for name, fn, kind in metrics:
        named_label = kind == "label" and METRICS.get(name, (None, ""))[0] is fn
        if kind == "proba" or (named_label and labels and one_output):
            raise ValueError(
                f"evaluate: metric {name!r} needs to know what the model's outputs are "
                f"(logits, probabilities, log-probabilities; outputs of shape {out.shape}): "
                "give loss= (e.g. 'cross_entropy' for class logits, 'nll' for "
                "log-probabilities, 'bce_with_logits' for one binary logit)"
            )
    if labels and out.ndim == 2 and out.shape[1] > 1:
        return "multiclass"
    return "regression"
