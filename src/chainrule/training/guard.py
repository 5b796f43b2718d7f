"""The divergence guard of a training step: a non-finite loss, gradient or weight is found,
located (which parameter, which layer's output) and reported with advice; an update that
makes a weight non-finite is undone.

``DivergenceError`` is raised under ``on_nonfinite="raise"``; the mixin's methods belong to
:class:`~chainrule.training.trainer.Trainer` (kept apart so that the trainer module reads as
the loop and the step).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tensor import Tensor, no_grad
from .history import History
from .steps import all_finite, flat_buffers

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or weight (``on_nonfinite="raise"``).

    The model keeps its last finite weights; ``history`` holds the epochs so far.
    """

    def __init__(self, message: str, history: History | None = None) -> None:
        super().__init__(message)
        self.history = history


class _GuardMixin:
    """Finiteness checks, the guarded update and the divergence report of a :class:`Trainer`."""

    model: Any
    optimizer: Any
    on_nonfinite: str
    epoch: int
    batch: int
    _params: list[Any]
    _names: list[str]
    _snap: list[np.ndarray]
    _flat_now: list[tuple[np.ndarray, np.ndarray]] | None
    _last_finite: tuple[float, int, int]
    _divergence: str | None

    def _grads_finite(self) -> bool:
        flat = self._flat_now = flat_buffers(self.optimizer, self._params)
        if flat is not None:  # one pass per buffer instead of one per parameter
            return all(all_finite(g) for _, g in flat)
        return all(p.grad is None or bool(np.isfinite(p.grad).all()) for p in self._params)

    def _update(self, xb: np.ndarray) -> bool:
        """The optimizer's step; False (and the weights as they were) if it made one
        non-finite."""
        if self.on_nonfinite == "ignore":
            self.optimizer.step()
            return True
        # the layout found by _grads_finite for this very batch (clipping does not change it)
        flat = (
            self._flat_now
            if self._flat_now is not None
            else flat_buffers(self.optimizer, self._params)
        )
        targets = [p for p, _ in flat] if flat is not None else [p.data for p in self._params]
        if len(self._snap) != len(targets) or any(
            s.shape != t.shape or s.dtype != t.dtype for s, t in zip(self._snap, targets)
        ):
            self._snap = [np.empty_like(t) for t in targets]
        for s, t in zip(self._snap, targets):
            np.copyto(s, t)
        try:
            self.optimizer.step()
        except KeyboardInterrupt:
            self._restore_snapshot(targets)  # never leave a half-applied update
            raise
        if not all(all_finite(t) for t in targets):
            # find the parameter before restoring the snapshot: afterwards every weight is finite
            name = next(
                (n for n, p in zip(self._names, self._params) if not np.all(np.isfinite(p.data))),
                None,
            )
            self._restore_snapshot(targets)
            what = f"'{name}'" if name is not None else "a parameter"
            self._diverged(f"the optimizer's update made {what} non-finite", xb, "")
            return False
        return True

    def _restore_snapshot(self, targets: list[np.ndarray]) -> None:
        for s, t in zip(self._snap, targets):
            np.copyto(t, s)

    def _locate_nonfinite(self, xb: np.ndarray) -> str:
        """Where non-finite values first appear: a weight, or a layer's output (Sequential)."""
        for name, p in zip(self._names, self._params):
            if not np.all(np.isfinite(p.data)):
                return f"; parameter '{name}' holds NaN or infinite values"
        from ..nn.module import Sequential

        if not isinstance(self.model, Sequential):
            return ""
        h: Any = xb
        with no_grad(), np.errstate(all="ignore"):
            for k, layer in enumerate(self.model):
                h = layer(h)
                data = h.data if isinstance(h, Tensor) else np.asarray(h)
                if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
                    return (
                        f"; the first non-finite values appear in the output of layer {k} "
                        f"({layer!r})"
                    )
        return "; every layer's output is finite, so the loss itself overflowed"

    def _locate_in_backward(self) -> str:
        """A finite loss with a non-finite gradient: the backward pass made it."""
        return (
            "; the loss and every weight are finite, so the backward pass produced it: an "
            "operation whose derivative is infinite or undefined at its input (sqrt or a power "
            "below 1 at 0, log at 0, division by 0)"
        )

    def _diverged(self, what: str, xb: np.ndarray, where: str | None = None) -> None:
        """Note a divergence in the current step; :meth:`decide_stop` acts on it."""
        last, le, lb = self._last_finite
        lr = float(self.optimizer.param_groups[0]["lr"])
        bad_input = xb.dtype.kind == "f" and not np.all(np.isfinite(xb))
        in_backward = where is not None and where.startswith("; the loss and every weight")
        advice = (
            "the input batch itself contains NaN or infinite values: clean the data"
            if bad_input
            else "make the operation safe where its derivative blows up (e.g. sqrt(x + eps), "
            "log(x + eps), or clamp its input)"
            if in_backward
            else f"lower the learning rate (now {lr:g}), scale the inputs (standardise each "
            "feature), or clip gradients (clip_grad_norm=1.0 in fit, --clip-grad-norm 1 on the "
            "command line)"
        )
        last_txt = (
            f"last finite loss {last:.6g} at epoch {le}, batch {lb}"
            if not math.isnan(last)
            else "no finite loss before it"
        )
        if where is None:
            where = "" if bad_input else self._locate_nonfinite(xb)
        self._divergence = (
            f"training diverged at epoch {self.epoch}, batch {self.batch}: {what}{where} "
            f"({last_txt}). The model keeps its last finite weights. Try: {advice}."
        )
