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
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        F._check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error ``(1/n) Σ (ŷ - y)²`` (the seeds' quadratic cost).

    Shape
    -----
    input and target: the same shape ``(n, ...)``; output: scalar, or that shape with "none".
    """

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.mse_loss(input, target, self.reduction, sample_weight)


class L1Loss(_Loss):
    """Mean absolute error ``(1/n) Σ |ŷ - y|``."""

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.l1_loss(input, target, self.reduction, sample_weight)


class HuberLoss(_Loss):
    """Huber loss with threshold ``delta``: quadratic near 0, linear beyond."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        F.check_number("delta", delta, low=0, low_inclusive=False)
        self.delta = float(delta)

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.huber_loss(input, target, self.reduction, self.delta, sample_weight)


class BCELoss(_Loss):
    """Binary log loss on probabilities ``-(y log p + (1-y) log(1-p))`` (logs clamped)."""

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, self.reduction, sample_weight)


class BCEWithLogitsLoss(_Loss):
    """Binary log loss on logits, exact for any logit (log-sum-exp form); ``pos_weight``."""

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input: Any, target: Any, sample_weight: Any = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight, sample_weight
        )


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits; targets are class indices or class probabilities.

    Shape
    -----
    input: ``(n, C)`` logits; target: ``(n,)`` integers in ``[0, C)`` or ``(n, C)``
    probabilities; output: scalar, or ``(n,)`` with "none".
    """

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
    """Negative log-likelihood of log-probabilities (pair it with LogSoftmax)."""

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
