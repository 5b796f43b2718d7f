"""When a training run stops: the one decision after every step and epoch
(:meth:`Trainer.decide_stop`), its agreement across processes (:meth:`Trainer.agree_stop`,
a hook) and scikit-learn's convergence rule (``tol``, ``n_iter_no_change``).

A mixin of :class:`~chainrule.training.trainer.Trainer` (it reads and sets the trainer's stop
state); kept apart so that the trainer module reads as the loop and the step.
"""

from __future__ import annotations

from typing import Any

from .guard import DivergenceError

__all__ = ["GO_ON", "STOP_AFTER_EPOCH", "STOP_NOW"]

# what decide_stop returns: go on, stop once this epoch is recorded, stop at once
GO_ON, STOP_AFTER_EPOCH, STOP_NOW = 0, 1, 2


class _StopMixin:
    """The stop decisions of a :class:`Trainer`."""

    model: Any
    history: Any
    on_nonfinite: str
    stop_training: bool
    stop_reason: str | None
    stop_detail: str
    tol: float | None
    n_iter_no_change: int
    _divergence: str | None
    _interrupted: bool
    _best_loss: float
    _no_improvement: int

    def decide_stop(self) -> int:
        """Whether training stops: the one place where the decision is taken.

        Called after every step and after every epoch. Stop requests come from a divergence
        (the last step's update was skipped), Ctrl-C, and ``stop_training`` — set by a
        callback (early stopping, yours) or by the ``tol``/``n_iter_no_change`` convergence
        test. Returns 0 (go on), 1 (stop once the current epoch is recorded: a callback or
        convergence asked) or 2 (stop at once, leaving the epoch unrecorded: divergence or
        Ctrl-C), after :meth:`agree_stop`. A divergence sets ``history.message`` and
        ``stop_reason="diverged"``, and raises :class:`DivergenceError` under
        ``on_nonfinite="raise"``.
        """
        if not self.stop_training and self.model.__dict__.get("stop_training") is True:
            self.stop_training = True  # Keras's habit: self.model.stop_training = True
        if self._divergence is not None or self._interrupted:
            flag = STOP_NOW
        elif self.stop_training:
            flag = STOP_AFTER_EPOCH
        else:
            flag = GO_ON
        mine = flag
        flag = self.agree_stop(flag)
        if flag != GO_ON:
            self.stop_training = True  # also when another process asked (agree_stop)
        if flag > mine:  # another process asked (data-parallel training): say so
            self.stop_reason = "peer"
            self.stop_detail = (
                "another process stopped the run (a divergence or Ctrl-C there)"
                if flag == STOP_NOW
                else "another process asked to stop after this epoch (early stopping or a "
                "callback there)"
            )
        elif flag == STOP_AFTER_EPOCH and self.stop_reason is None:
            self.stop_reason = "callback"  # stop_training set directly, not by the setter
            self.stop_detail = "stop_training was set"
        if flag == STOP_NOW and flag == mine:
            if self._divergence is not None:
                msg, self._divergence = self._divergence, None
                self.history.message = msg
                self.stop_reason = "diverged"
                self.stop_detail = msg
                if self.on_nonfinite == "raise":
                    raise DivergenceError(msg, self.history)
            elif self._interrupted:
                self.stop_reason = "interrupted"
                self.stop_detail = "interrupted by the user (Ctrl-C)"
        return flag

    def agree_stop(self, flag: int) -> int:
        """Hook: the stop decision all processes take (the largest of their ``flag``s in
        data-parallel training, so that none waits alone in the next all-reduce). One
        process: ``flag``."""
        return flag

    def _convergence(self, loss: float) -> None:
        if self.tol is None:
            return
        # scikit-learn's rule: count epochs whose loss is not below best - tol
        if loss > self._best_loss - self.tol:
            self._no_improvement += 1
        else:
            self._no_improvement = 0
        self._best_loss = min(self._best_loss, loss)
        if self._no_improvement > self.n_iter_no_change:
            self.stop_training = True
            self.stop_reason = "converged"
            self.stop_detail = (
                f"the training loss improved by less than tol={self.tol:g} for "
                f"{self.n_iter_no_change + 1} consecutive epochs"
            )
