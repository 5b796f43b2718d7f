"""Learning-rate schedules (PyTorch's names and formulas).

A scheduler sets ``group["lr"]`` of its optimizer's groups. Call ``step()`` once per epoch (or
per batch, for OneCycleLR and warm-up), after ``optimizer.step()``. Schedules other than
ReduceLROnPlateau are closed-form in the step count, which makes them composable:
``LinearWarmup(opt, 5, then=CosineAnnealingLR(opt, T_max=95))``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from .._validation import check_number
from .optimizers import Optimizer

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearWarmup",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
]


class LRScheduler:
    """Base class: ``lr_at(epoch)`` gives each group's learning rate at step ``epoch``.

    Creating a scheduler applies the rate of step 0, as PyTorch does.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a chainrule Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]
        self.step()

    def lr_at(self, epoch: int) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step and set the optimizer's learning rates."""
        self.last_epoch += 1
        lrs = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (nested schedulers by their own state dicts)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k == "optimizer":
                continue
            out[k] = v.state_dict() if isinstance(v, LRScheduler) else v
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            current = getattr(self, k, None)
            if isinstance(current, LRScheduler):
                current.load_state_dict(v)
            else:
                setattr(self, k, v)


class StepLR(LRScheduler):
    """``lr = base · γ^⌊epoch / step_size⌋``."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        check_number("step_size", step_size, low=1, integer=True)
        check_number("gamma", gamma, low=0, low_inclusive=False)
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [b * self.gamma ** (epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base · γ^(number of milestones ≤ epoch)``."""

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        ms = sorted(int(m) for m in milestones)
        if any(m < 0 for m in ms):
            raise ValueError(f"milestones must be non-negative, got {list(milestones)}")
        check_number("gamma", gamma, low=0, low_inclusive=False)
        self.milestones, self.gamma = ms, float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [
            b * self.gamma ** bisect.bisect_right(self.milestones, epoch) for b in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    """``lr = base · γ^epoch``."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        check_number("gamma", gamma, low=0, low_inclusive=False)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [b * self.gamma**epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = η_min + (base - η_min)(1 + cos(π·epoch/T_max))/2`` (Loshchilov & Hutter, SGDR).

    The closed form; after ``T_max`` it continues the cosine (rising again), as PyTorch's.
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        check_number("T_max", T_max, low=1, integer=True)
        check_number("eta_min", eta_min, low=0)
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Linear warm-up over ``warmup_steps``, then another schedule (or the base rate).

    ``lr = base · (f + (1 - f)·epoch/warmup_steps)`` for ``epoch < warmup_steps`` with
    ``f = start_factor`` (PyTorch's LinearLR); from then on ``then.lr_at(epoch - warmup_steps)``.

    Examples
    --------
    >>> import chainrule as cr
    >>> opt = cr.optim.SGD([cr.nn.Parameter([0.0])], lr=1.0)
    >>> sched = cr.optim.lr_scheduler.LinearWarmup(
    ...     opt, 2, start_factor=0.5, then=cr.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(opt.param_groups[0]["lr"]); sched.step()
    >>> lrs
    [0.5, 0.75, 1.0, 0.5]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        start_factor: float = 1.0 / 3,
        then: LRScheduler | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_number("warmup_steps", warmup_steps, low=1, integer=True)
        check_number("start_factor", start_factor, low=0, high=1, low_inclusive=False)
        if then is not None and then.optimizer is not optimizer:
            raise ValueError("then must schedule the same optimizer as the warm-up")
        self.warmup_steps, self.start_factor, self.then = (
            int(warmup_steps),
            float(start_factor),
            then,
        )
        if then is not None:  # the warm-up ramps to the rates the next schedule starts from
            for group, b in zip(optimizer.param_groups, then.base_lrs):
                group["initial_lr"] = b
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        if epoch < self.warmup_steps:
            f = self.start_factor + (1 - self.start_factor) * epoch / self.warmup_steps
            return [b * f for b in self.base_lrs]
        if self.then is not None:
            self.then.last_epoch = epoch - self.warmup_steps
            return self.then.lr_at(epoch - self.warmup_steps)
        return list(self.base_lrs)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018, https://arxiv.org/abs/1708.07120), per batch.

    The rate rises from ``max_lr/div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps`` and anneals to ``max_lr/(div_factor·final_div_factor)``; momentum (or
    Adam's β1) cycles inversely between ``max_momentum`` and ``base_momentum``. PyTorch's
    phases and formulas (``three_phase`` included).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("give total_steps, or both epochs and steps_per_epoch")
            check_number("epochs", epochs, low=1, integer=True)
            check_number("steps_per_epoch", steps_per_epoch, low=1, integer=True)
            total_steps = int(epochs) * int(steps_per_epoch)
        check_number("total_steps", total_steps, low=1, integer=True)
        check_number("pct_start", pct_start, low=0, high=1)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = int(total_steps)
        self.anneal_strategy = anneal_strategy
        groups = optimizer.param_groups
        max_lrs: list[float] = (
            [float(v) for v in max_lr]
            if isinstance(max_lr, (list, tuple))
            else [float(max_lr)] * len(groups)  # type: ignore[arg-type]
        )
        if len(max_lrs) != len(groups):
            raise ValueError(f"max_lr has {len(max_lrs)} values for {len(groups)} groups")
        for group, m in zip(groups, max_lrs):
            check_number("max_lr", m, low=0, low_inclusive=False)
            m = float(m)
            group["initial_lr"] = m / div_factor
            group["max_lr"] = m
            group["min_lr"] = group["initial_lr"] / final_div_factor
        t = float(pct_start * self.total_steps)
        if three_phase:
            self.phases = [
                (t - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (2 * t - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self.phases = [
                (t - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            for group in groups:
                if "momentum" not in group and "betas" not in group:
                    raise ValueError(
                        "cycle_momentum=True needs an optimizer with momentum or betas; pass "
                        "cycle_momentum=False"
                    )
                group["max_momentum"] = max_momentum
                group["base_momentum"] = base_momentum
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _values(self, epoch: int) -> list[tuple[float, float | None]]:
        if epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR stepped {epoch} times, more than total_steps={self.total_steps}"
            )
        out = []
        for group in self.optimizer.param_groups:
            start = 0.0
            lr, mom = 0.0, None
            for i, (end, lr0, lr1, m0, m1) in enumerate(self.phases):
                if epoch <= end or i == len(self.phases) - 1:
                    pct = (epoch - start) / (end - start) if end != start else 1.0
                    lr = self._anneal(group[lr0], group[lr1], pct)
                    if self.cycle_momentum:
                        mom = self._anneal(group[m0], group[m1], pct)
                    break
                start = end
            out.append((lr, mom))
        return out

    def lr_at(self, epoch: int) -> list[float]:
        return [lr for lr, _ in self._values(epoch)]

    def step(self) -> None:
        super().step()
        if self.cycle_momentum:
            for group, (_, mom) in zip(self.optimizer.param_groups, self._values(self.last_epoch)):
                if "betas" in group:
                    group["betas"] = (mom, group["betas"][1])
                else:
                    group["momentum"] = mom


class ReduceLROnPlateau:
    """Multiply the rate by ``factor`` when a metric has stopped improving for ``patience`` steps.

    ``step(metric)`` once per epoch with the monitored value (e.g. validation loss). Improvement
    means ``metric < best·(1 - threshold)`` (mode "min", threshold_mode "rel"), or the analogues
    for "max" and "abs"; after a reduction, ``cooldown`` epochs pass before counting again.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        check_number("factor", factor, low=0, high=1, low_inclusive=False, high_inclusive=False)
        check_number("patience", patience, low=0, integer=True)
        check_number("cooldown", cooldown, low=0, integer=True)
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        self.min_lrs = (
            [float(v) for v in min_lr] if isinstance(min_lr, (list, tuple)) else [float(min_lr)] * n  # type: ignore[arg-type]
        )
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.eps = int(cooldown), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def _is_better(self, a: float) -> bool:
        if self.mode == "min":
            ref = (
                self.best * (1 - self.threshold)
                if self.threshold_mode == "rel"
                else (self.best - self.threshold)
            )
            return a < ref
        ref = (
            self.best * (1 + self.threshold)
            if self.threshold_mode == "rel"
            else (self.best + self.threshold)
        )
        return a > ref

    def step(self, metrics: float) -> None:
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, lo in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, lo)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
