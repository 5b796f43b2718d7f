"""The objects a :class:`~chainrule.training.trainer.Trainer` is given by name or in part: the
optimizer (a name from :data:`OPTIMIZERS`, or an Optimizer) and the callback list (None, one
Callback or several; a scheduler and a progress bar added as ``fit`` promises).
"""

from __future__ import annotations

from typing import Any

from ..optim import optimizers as optim_mod
from ..optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from .callbacks import Callback, LearningRateScheduler, ProgressBar

__all__ = ["OPTIMIZERS", "build_callbacks", "build_optimizer"]

OPTIMIZERS: dict[str, type[optim_mod.Optimizer]] = {
    "sgd": optim_mod.SGD,
    "gd": optim_mod.SGD,
    "adam": optim_mod.Adam,
    "adamw": optim_mod.AdamW,
    "rmsprop": optim_mod.RMSprop,
    "adagrad": optim_mod.Adagrad,
}


def build_optimizer(optimizer: Any, lr: float | None, params: list[Any]) -> Any:
    """``optimizer`` as an Optimizer over ``params``: a name builds one (with ``lr`` if given);
    an Optimizer is used as it is, its groups' learning rate set to ``lr`` if given."""
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose from {sorted(OPTIMIZERS)} or an Optimizer"
            )
        kwargs: dict[str, Any] = {} if lr is None else {"lr": lr}
        optimizer = OPTIMIZERS[optimizer](params, **kwargs)
    elif not isinstance(optimizer, optim_mod.Optimizer):
        raise TypeError(
            f"optimizer must be a chainrule Optimizer or a name, got {type(optimizer).__name__}"
        )
    elif lr is not None:
        for g in optimizer.param_groups:
            g["lr"] = lr
    return optimizer


def _callback_list(callbacks: Any) -> list[Any]:
    """``callbacks`` as a list: None means none (as in Keras), one Callback is a list of one."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        return list(callbacks)
    except TypeError:
        raise TypeError(
            "callbacks must be an iterable of Callback instances, a Callback or None, got "
            f"{type(callbacks).__name__}"
        ) from None


def build_callbacks(callbacks: Any, scheduler: Any, verbose: int) -> list[Any]:
    """The run's callbacks: the given ones (checked), a scheduler's callback first, and a
    progress bar last when ``verbose`` and none was given."""
    cbs = _callback_list(callbacks)
    for c in cbs:
        if not isinstance(c, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(c).__name__}")
    if scheduler is not None:
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(
                f"scheduler must be an lr_scheduler object, got {type(scheduler).__name__}"
            )
        cbs.insert(0, LearningRateScheduler(scheduler))
    if verbose and not any(isinstance(c, ProgressBar) for c in cbs):
        cbs.append(ProgressBar(verbose=verbose))
    return cbs
