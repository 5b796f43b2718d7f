"""The context a Trainer's steps run in: one BLAS thread for small steps, the generator of
dropout layers, quiet floating-point warnings (:meth:`_step_context`), and, for a fit in which
no code of the user's runs between steps, gradient buffers written again step after step
(:meth:`_private_grads`).

A mixin of :class:`~chainrule.training.trainer.Trainer`; kept apart so that the trainer module
reads as the loop and the step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from .._random import use_generator

__all__: list[str] = []


class _ContextMixin:
    """The step context of a :class:`Trainer`."""

    model: Any
    optimizer: Any
    callbacks: list[Any]
    rng: np.random.Generator
    on_nonfinite: str

    def _step_context(self, run: Any) -> contextlib.ExitStack:
        """BLAS threads, the generator of dropout layers, and quiet floating-point warnings."""
        from ._threads import is_small_step, one_blas_thread

        stack = contextlib.ExitStack()
        # small steps: one BLAS thread (steps() enters this at every step: the layers are
        # walked once per run)
        if run.small_step is None:
            run.small_step = is_small_step(self.model, (run.batch_size, *run.X.shape[1:]))
        stack.enter_context(one_blas_thread(run.small_step))
        stack.enter_context(use_generator(self.rng))  # dropout without its own generator
        if self.on_nonfinite != "ignore":
            # the divergence guard reports non-finite values itself: NumPy's overflow and
            # invalid-value warnings would only repeat it, batch after batch
            stack.enter_context(np.errstate(over="ignore", invalid="ignore", divide="ignore"))
        return stack

    def _private_grads(self) -> contextlib.AbstractContextManager[Any]:
        """For a fit in which no code of the user's runs between two steps (no callbacks but
        the library's, ``train_step``/``sync_gradients`` not overridden outside it), the
        optimizer's arena writes every step's gradients into the same buffers (see
        :meth:`~chainrule.arena.ParameterArena.private_steps`): a gradient kept by the user
        before or after the fit is still never overwritten. Otherwise a no-op: each step then
        hands out fresh gradient arrays, which a callback may keep."""
        arena = getattr(self.optimizer, "arena", None)
        ours = all(
            type(c).__module__.startswith("chainrule.") and not getattr(c, "runs_user_code", False)
            for c in self.callbacks
        ) and all(
            getattr(type(self), m).__module__.startswith("chainrule.")
            for m in ("train_step", "sync_gradients", "decide_stop", "agree_stop")
        )
        if arena is None or not ours:
            return contextlib.nullcontext()
        return arena.private_steps()  # type: ignore[no-any-return]
