"""Loss modules (PyTorch names). Each wraps the function of the same name in
:mod:`chainrule.nn.functional`; call them as ``loss(input, target, sample_weight=None)``."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from . import functional as F
from .module import Module

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
]


class _Loss(Module):
    # What the model's outputs are, for turning them into predictions and metrics (``fit``'s
    # accuracy, ``predict_proba``): "regression" (values), "multiclass" (logits),
    # "multiclass_logprob" (log-probabilities), "binary_logits", "binary_proba".
    task = "regression"

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        F._check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error ``C = (1/n) Σ (ŷ - y)²``, ``n`` = number of entries of ``ŷ``.

    The mean runs over every entry (samples × outputs), as in PyTorch and Keras, and there is
    no ½: ``∂C/∂ŷ = 2(ŷ - y)/n``. The textbook quadratic cost ``½ Σ (ŷ - y)²`` (whose
    derivative is ``ŷ - y``) is ``n/2`` times smaller in value and gradient; write it as a
    function, ``lambda out, y: 0.5 * ((out - y) ** 2).sum()``, to reproduce textbook numbers.
    ``reduction="sum"`` gives ``Σ (ŷ - y)²`` and ``"none"`` the squared errors themselves.

    Shape
    -----
    input and target: the same shape ``(n, ...)``; output: scalar, or that shape with "none".

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> y_hat = cr.tensor(np.array([[0.75, 0.77]]), requires_grad=True)
    >>> loss = cr.nn.MSELoss()(y_hat, np.array([[0.01, 0.99]]))   # (0.74² + 0.22²) / 2
    >>> round(loss.item(), 4)
    0.298
    >>> loss.backward()
    >>> y_hat.grad                                                 # 2(ŷ - y)/n, n = 2
    array([[ 0.74, -0.22]])
    """

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.mse_loss(input, target, self.reduction, sample_weight)


class L1Loss(_Loss):
    """Mean absolute error ``C = (1/n) Σ |ŷ - y|``, ``n`` = number of entries of ``ŷ``.

    ``∂C/∂ŷ = sign(ŷ - y)/n`` (0 where ``ŷ = y``); ``reduction="sum"`` drops the ``1/n``.
    """

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.l1_loss(input, target, self.reduction, sample_weight)


class HuberLoss(_Loss):
    """Huber loss ``C = (1/n) Σ h(ŷ - y)``: ``h(d) = ½d²`` for ``|d| ≤ δ``, ``δ(|d| - ½δ)`` beyond.

    ``n`` = number of entries; ``δ`` = ``delta`` (PyTorch's definition).
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        F.check_number("delta", delta, low=0, low_inclusive=False)
        self.delta = float(delta)

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.huber_loss(input, target, self.reduction, self.delta, sample_weight)


class BCELoss(_Loss):
    """Binary log loss on probabilities ``C = (1/n) Σ -(y log p + (1-y) log(1-p))``.

    ``n`` = number of entries; the logs are clamped (p = 0 or 1 gives a large finite loss).
    """

    task = "binary_proba"

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, self.reduction, sample_weight)


class BCEWithLogitsLoss(_Loss):
    """Binary log loss on logits ``C = (1/n) Σ -(y log σ(z) + (1-y) log(1-σ(z)))``.

    Computed in log-sum-exp form, exact for any logit; ``∂C/∂z = (σ(z) - y)/n`` with ``n`` the
    number of entries. ``pos_weight`` weights the positive examples.
    """

    task = "binary_logits"

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight, sample_weight
        )


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits ``C = (1/n) Σ_samples -log softmax(z)_y``.

    ``n`` = number of samples (not entries); ``∂C/∂z = (softmax(z) - onehot(y))/n``. Targets
    are class indices or class probabilities (then ``-Σ_k y_k log softmax(z)_k``). With class
    ``weight``, ``"mean"`` divides by the summed weights of the targets' classes, as PyTorch.

    Shape
    -----
    input: ``(n, C)`` logits; target: ``(n,)`` integers in ``[0, C)`` or ``(n, C)``
    probabilities; output: scalar, or ``(n,)`` with "none".
    """

    task = "multiclass"

    def __init__(
        self,
        weight: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction)
        F.check_number("label_smoothing", label_smoothing, low=0, high=1)
        self.weight = weight
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = ignore_index

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            self.weight,
            self.reduction,
            self.label_smoothing,
            self.ignore_index,
            sample_weight,
        )


class NLLLoss(_Loss):
    """Negative log-likelihood ``C = (1/n) Σ_samples -logp[i, y_i]`` of log-probabilities.

    Pair it with LogSoftmax; ``n`` = number of samples (with class ``weight``, their sum).
    """

    task = "multiclass_logprob"

    def __init__(
        self, weight: Any = None, reduction: str = "mean", ignore_index: int = -100
    ) -> None:
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.nll_loss(
            input, target, self.weight, self.reduction, self.ignore_index, sample_weight
        )
