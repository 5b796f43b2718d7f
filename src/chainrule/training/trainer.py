"""The trainer: one training run's state, its loop and its step.

``Trainer.fit`` (and :func:`chainrule.fit`) and the generator :meth:`Trainer.steps` drive the
same loop: for every epoch, for every batch, :meth:`Trainer.train_step` — Keras 3's override
point — then :meth:`Trainer.decide_stop`, the one place where training decides to stop.

One step (:meth:`Trainer.train_step`)::

    loss, output = plan.run(x, y, w)     # forward, loss, zero_grad, backward (a step plan)
    self.sync_gradients()                # hook: the gradient all-reduce of data-parallel runs
    finiteness of loss and gradients     # the divergence guard (on_nonfinite)
    clip_grad_norm                       # if asked
    optimizer.step()                     # guarded: a non-finite update is undone

The plan is the first of the fused MLP plan (:mod:`~chainrule.training.fastpath`), the split
step of convolutional networks over worker processes (:mod:`~chainrule.training.split_step`)
and the eager plan (:mod:`~chainrule.training.steps`) that can run the model.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import io as model_io
from .._random import as_generator
from .._validation import check_number
from ..nn.module import Module
from ..optim.clip import clip_grad_norm as _clip_grad_norm
from ..tensor import Tensor
from ._context import _ContextMixin
from ._rows import _DataMixin
from ._setup import OPTIMIZERS, build_callbacks, build_optimizer
from ._stop import GO_ON, STOP_AFTER_EPOCH, STOP_NOW, _StopMixin
from .callbacks import Callback, ModelCheckpoint
from .evaluation import compute_metrics, evaluate, resolve_loss, task_of
from .fastpath import FusedMLPPlan
from .guard import DivergenceError, _GuardMixin
from .history import History
from .metrics import get_metric
from .split_step import SplitStepPlan
from .steps import EagerPlan, StepPlan, all_finite

__all__ = ["OPTIMIZERS", "PLANS", "DivergenceError", "Trainer"]


# the step plans the trainer tries, in order; the last one runs every model
PLANS: tuple[type[StepPlan], ...] = (FusedMLPPlan, SplitStepPlan, EagerPlan)


@dataclass
class _Run:
    """The data of one fit, checked and split: what the epochs iterate over."""

    X: Any
    y: Any
    w: np.ndarray | None
    Xv: Any
    yv: Any
    wv: Any
    batch_size: int
    shuffle: bool
    start_epoch: int
    yielding: bool = True  # steps() yields every step's logs; fit() needs none
    steps_done: int = 0  # steps taken by this fit (the "step" of the logs steps() yields)
    small_step: bool | None = None  # one BLAS thread? (asked once per run, not per step)


class Trainer(_DataMixin, _GuardMixin, _StopMixin, _ContextMixin):
    """State, loop and step of one training run; see :func:`chainrule.fit` for the arguments.

    Everything the run keeps is created here; :meth:`fit` and :meth:`steps` fill it in.

    Parameters
    ----------
    model, loss, optimizer, lr, metrics, callbacks, scheduler, seed, verbose, on_nonfinite,
    clip_grad_norm, tol, n_iter_no_change
        As in :func:`chainrule.fit`.
    plan : StepPlan class or instance, optional
        How each step's forward and backward passes run (see :mod:`chainrule.training.steps`).
        None (default) takes the fused MLP plan when it can run the model, else the eager one.

    Attributes
    ----------
    model, optimizer, loss_fn, history, callbacks, rng
        The run's objects (``rng`` shuffles, splits and draws dropout masks).
    plan : StepPlan or None
        The plan of the current epoch (chosen again before every epoch).
    epoch, batch, iterations : int
        The current epoch (1-based), batch within it (0-based), and optimizer steps taken.
    stop_training : bool
        Set by a callback (or convergence) to stop once the current epoch is recorded.
    stop_reason, stop_detail
        Why training stopped: "epochs", "early_stopping", "converged", "diverged",
        "interrupted", "callback", "caller" (the consumer of :meth:`steps` stopped) or
        "peer" (another process of a data-parallel run decided; ``stop_detail`` says what).
        Reset at the start of every fit.
    fit_inputs, fit_targets : array or None
        The training inputs and targets of the current (or last) fit, after the validation
        split; None before the first.
    """

    def __init__(
        self,
        model: Module,
        loss: Any,
        optimizer: Any = "adam",
        *,
        lr: float | None = None,
        metrics: Sequence[Any] = (),
        callbacks: Iterable[Callback] | Callback | None = (),
        scheduler: Any = None,
        seed: Any = None,
        verbose: int = 1,
        on_nonfinite: str = "stop",
        clip_grad_norm: float | None = None,
        tol: float | None = None,
        n_iter_no_change: int = 10,
        plan: type[StepPlan] | StepPlan | None = None,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"model must be a chainrule Module, got {type(model).__name__}")
        if on_nonfinite not in ("stop", "raise", "ignore"):
            raise ValueError(
                f"on_nonfinite must be 'stop', 'raise' or 'ignore', got {on_nonfinite!r}"
            )
        if clip_grad_norm is not None:
            check_number("clip_grad_norm", clip_grad_norm, low=0, low_inclusive=False)
        if tol is not None:
            check_number("tol", tol, low=0)
        check_number("n_iter_no_change", n_iter_no_change, low=1, integer=True)
        check_number("verbose", verbose, low=0, integer=True)
        if plan is not None and not (
            isinstance(plan, StepPlan) or (isinstance(plan, type) and issubclass(plan, StepPlan))
        ):
            raise TypeError(
                f"plan must be a StepPlan class or instance or None, got {type(plan).__name__}"
            )
        self.model = model
        self.loss_fn = resolve_loss(loss)
        self.task = task_of(self.loss_fn)
        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters to train")
        if not any(p.requires_grad for p in params):
            raise ValueError(
                "every parameter of the model is frozen (requires_grad=False): there is nothing "
                "to train; unfreeze some with p.requires_grad_(True)"
            )
        self.dtype = params[0].dtype
        optimizer = build_optimizer(optimizer, lr, params)
        self.optimizer = optimizer
        self.metrics = [get_metric(m) for m in metrics]
        cbs = build_callbacks(callbacks, scheduler, verbose)
        self.callbacks = cbs
        self.rng = as_generator(seed, "seed")
        self.verbose = int(verbose)
        self.on_nonfinite = on_nonfinite
        self.clip = clip_grad_norm
        self.tol = tol
        self.n_iter_no_change = int(n_iter_no_change)
        # ----- the run's progress and outcome -----
        self.history = History()
        self.stop_training = False
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.best_epoch: int | None = None
        self.restored_best = False
        self.resumed = False
        self.epoch = 0
        self.epochs = 0
        self.batch = 0
        self.iterations = 0
        self.steps_per_epoch = 0
        self.fit_inputs: Any = None
        self.fit_targets: Any = None
        # ----- the step -----
        self.plan: StepPlan | None = None
        self._plan_given = plan
        self._plans: list[StepPlan] = []  # the candidates of this fit, in order of preference
        self._in_loop = False  # batches come from the loop (checked, converted) or a caller
        self._outputs: list[np.ndarray] = []  # this epoch's outputs, for training metrics
        self._snap: list[np.ndarray] = []  # the weights before the update (divergence guard)
        self._flat_now: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._params = params
        self._names = [n for n, _ in model.named_parameters()]
        self._modules: list[Module] = list(model.modules())
        # ----- stop decisions (decide_stop) -----
        self._best_loss = math.inf
        self._no_improvement = 0
        self._last_finite = (math.nan, 0, 0)
        self._divergence: str | None = None  # the message of a divergence not yet acted on
        self._interrupted = False
        self._finished = True
        # ----- data -----
        self._pending: list[str] = []
        self._xbuf: dict[tuple[int, ...], np.ndarray] = {}
        self._fd: tuple[str, int] | None = None  # the open file of a memory-mapped input

    # ----- checkpoints ------------------------------
    def request_checkpoint(self, path: str) -> None:
        """Write a checkpoint to ``path`` once the current epoch is completely handled."""
        self._pending.append(path)

    def save_checkpoint(self, path: str) -> None:
        """Write model, optimizer, schedule, generators, history and callbacks to ``path``."""
        from .checkpoint import training_state

        meta, tensors = training_state(self)
        model_io.write_model_file(
            path, self.model, extra={}, training=meta, training_tensors=tensors
        )

    def load_checkpoint(self, path: str) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (into this trainer's objects)."""
        from .checkpoint import restore_training_state

        restore_training_state(self, path)

    # ----- the loop ------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        epochs: int = 10,
        batch_size: int | None = 32,
        validation_data: tuple[Any, ...] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        sample_weight: Any = None,
        class_weight: Any = None,
        resume_from: str | None = None,
    ) -> History:
        """Train on ``(X, y)``; the arguments are those of :func:`chainrule.fit`."""
        run = self._begin(
            X, y, epochs, batch_size, validation_data, validation_split, shuffle,
            sample_weight, class_weight, resume_from,
        )  # fmt: skip
        run.yielding = False
        with self._step_context(run), self._private_grads():
            for _ in self._iterate(run):
                pass  # (yields nothing: the loop runs to its end in one go)
        return self.history

    def steps(
        self,
        X: Any,
        y: Any = None,
        *,
        epochs: int = 10,
        batch_size: int | None = 32,
        validation_data: tuple[Any, ...] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        sample_weight: Any = None,
        class_weight: Any = None,
        resume_from: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Train as :meth:`fit` does, one step at a time: a generator of each step's logs.

        The arguments are checked (and callbacks' ``on_train_begin`` run) at the call; each
        ``next()`` then runs one step and yields ``{"epoch", "batch", "step", "loss", "size",
        "lr", "epoch_end"}`` (the epoch from 1, the batch within it and the step over the
        whole run from 0, the batch loss, its number of samples, the learning rate the step
        used, and whether the step ended an epoch — its validation, callbacks, history and
        checkpoints have then run). Between steps the caller may change the optimizer's
        learning rate (``optimizer.param_groups[0]["lr"]``), read the weights or
        ``trainer.history``; the generator draws nothing from NumPy's or chainrule's default
        generators while the caller runs.

        The generator ends when :meth:`fit` would (``trainer.stop_reason`` says why); the
        caller stops it early by leaving the loop (or ``close()``): the epoch in progress is
        not recorded, as with Ctrl-C, and ``stop_reason`` is "caller". A step that diverges
        (``on_nonfinite="stop"``) is not yielded: the weights are the last finite ones.

        Examples
        --------
        >>> import numpy as np, chainrule as cr
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(64, 2)).astype(np.float32)
        >>> y = (X[:, 0] > 0).astype(np.int64)
        >>> trainer = cr.Trainer(cr.nn.mlp([2, 8, 2], rng=0), "cross_entropy", "sgd", lr=0.5,
        ...                      seed=0, verbose=0)
        >>> for logs in trainer.steps(X, y, epochs=3, batch_size=16):
        ...     if logs["step"] == 5:
        ...         trainer.optimizer.param_groups[0]["lr"] = 0.05  # between two steps
        ...     if logs["step"] == 9:
        ...         break
        >>> logs["epoch"], logs["batch"], logs["lr"]
        (3, 1, 0.05)
        >>> trainer.iterations, trainer.history.epoch, trainer.stop_reason
        (10, [1, 2], 'caller')
        """
        run = self._begin(
            X, y, epochs, batch_size, validation_data, validation_split, shuffle,
            sample_weight, class_weight, resume_from,
        )  # fmt: skip
        return self._one_at_a_time(run)

    def _one_at_a_time(self, run: _Run) -> Iterator[dict[str, Any]]:
        it = self._iterate(run)
        try:
            while True:
                with self._step_context(run):  # held during the step only, not between
                    logs = next(it, None)
                if logs is None:
                    return
                yield logs
        finally:
            it.close()

    def _begin(
        self,
        X: Any,
        y: Any,
        epochs: int,
        batch_size: int | None,
        validation_data: tuple[Any, ...] | None,
        validation_split: float,
        shuffle: bool,
        sample_weight: Any,
        class_weight: Any,
        resume_from: str | None,
    ) -> _Run:
        """Check and split the data, resume if asked, choose the plans, start the callbacks."""
        check_number("epochs", epochs, low=0, integer=True)
        X, y, w, Xv, yv, wv, batch_size = self._fit_data(
            X, y, batch_size, validation_data, validation_split, sample_weight, class_weight
        )
        n = len(X)
        bs = n if batch_size is None else min(int(batch_size), n)
        self.steps_per_epoch = math.ceil(n / bs)
        self.epochs = int(epochs)
        for c in self.callbacks:
            c.set_trainer(self)
        if resume_from is not None or any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            try:  # a checkpoint is a model file: find out now, not after the first epoch
                model_io.describe(self.model)
            except TypeError as exc:
                raise TypeError(f"checkpoints need a model file: {exc}") from None
        start_epoch = 1
        # a new run: its own outcome (a Trainer may fit again, e.g. with a lower lr after a
        # divergence) and the parameters' dtype now (the model may have moved, model.to())
        self.stop_reason, self.stop_detail = None, ""
        self.history = History()  # each fit returns its own record, as Keras (resume: reloaded)
        self.dtype = self._params[0].dtype
        if "stop_training" in self.model.__dict__:  # Keras's model.stop_training, reset per fit
            self.model.stop_training = False
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            self.resumed = True
            start_epoch = self.epoch + 1
        self.fit_inputs = X
        self.fit_targets = y
        self.stop_training = False
        self._divergence = None
        self._interrupted = False
        self.optimizer.prepare()
        self._plans = self._candidate_plans()
        for plan in self._plans:
            plan.check_targets(y)
        self._modules = list(self.model.modules())
        self._flat_now = None
        self._xbuf = {}
        self._fd = None
        self._snap = [np.empty_like(p.data) for p in self._params]
        self._finished = False
        for c in self.callbacks:
            c.on_train_begin({})
        return _Run(X, y, w, Xv, yv, wv, bs, shuffle, start_epoch)

    def _iterate(self, run: _Run) -> Generator[dict[str, Any], None, None]:
        """The epochs of one fit, yielding after every step; ends with :meth:`_finish`."""
        try:
            for epoch in range(run.start_epoch, self.epochs + 1):
                stop = yield from self._run_epoch(epoch, run)
                if stop != GO_ON:
                    break
            else:
                if self.stop_reason is None:
                    self.stop_reason = "epochs"
        except KeyboardInterrupt:
            self._interrupted = True
            self.decide_stop()
        except GeneratorExit:  # the caller of steps() stopped
            if self.stop_reason is None:
                self.stop_reason = "caller"
                self.stop_detail = "stopped by the caller between two steps"
            self._finish()
            raise
        except DivergenceError:
            self._finish()
            raise
        except BaseException:  # another error: the fit is not finished (no summary, no
            self._close_plans()  # on_train_end), but its worker processes end
            raise
        self._finish()

    def _close_plans(self) -> None:
        for plan in self._plans:
            plan.close()

    def _run_epoch(self, epoch: int, run: _Run) -> Generator[dict[str, Any], None, int]:
        """One epoch's steps (yielding after each); returns the stop decision."""
        self.epoch = epoch
        X, y, w, bs = run.X, run.y, run.w, run.batch_size
        n = len(X)
        opt = self.optimizer
        for m in self._modules:  # model.train() without walking the tree every epoch
            m.training = True
        lr0 = float(opt.param_groups[0]["lr"])
        logs: dict[str, Any] = {}
        for c in self.callbacks:
            c.on_epoch_begin(epoch, logs)
        t0 = time.perf_counter()
        order = self.rng.permutation(n) if run.shuffle else None
        total_loss, total_weight = 0.0, 0.0
        self._outputs.clear()
        self.plan = self._choose_plan()
        last = self.steps_per_epoch - 1
        self._in_loop = True
        try:
            for b, start in enumerate(range(0, n, bs)):
                self.batch = b
                idx = order[start : start + bs] if order is not None else slice(start, start + bs)
                idx = self.shard_batch(idx, n)
                xb = self._batch(X, idx)
                yb = y[idx]
                wb = None if w is None else w[idx]
                for c in self.callbacks:
                    c.on_batch_begin(b, logs)
                lr = float(opt.param_groups[0]["lr"]) if run.yielding else lr0
                batch_logs = self.train_step((xb, yb) if wb is None else (xb, yb, wb))
                if self._divergence is None:  # the step was taken
                    run.steps_done += 1
                    bw = float(len(yb)) if wb is None else float(np.sum(wb))
                    bw = batch_logs.get("weight", bw)  # the global batch's, data-parallel
                    total_loss += batch_logs["loss"] * bw
                    total_weight += bw
                    for c in self.callbacks:
                        c.on_batch_end(b, batch_logs)
                stop = self.decide_stop()
                if stop == STOP_NOW:  # the epoch is left unrecorded
                    return stop
                if not run.yielding:
                    if stop == STOP_AFTER_EPOCH:
                        break
                    continue
                step_logs = {
                    "epoch": epoch,
                    "batch": b,
                    "step": run.steps_done - 1,
                    "loss": batch_logs["loss"],
                    "size": batch_logs.get("size", len(yb)),
                    "lr": lr,
                    "epoch_end": stop == STOP_AFTER_EPOCH or b == last,
                }
                if step_logs["epoch_end"]:
                    break
                self._in_loop = False
                yield step_logs
                self._in_loop = True
        finally:
            self._in_loop = False
        logs["loss"] = total_loss / total_weight if total_weight > 0 else math.nan
        if self.metrics and self._outputs:
            outputs = self.gather_outputs(np.concatenate(self._outputs))
            seen = len(outputs)
            ys = y[order[:seen]] if order is not None else y[:seen]
            logs.update(compute_metrics(self.metrics, self.task, outputs, ys))
        self._outputs.clear()
        if run.Xv is not None:
            val = evaluate(
                self.model,
                run.Xv,
                run.yv,
                self.loss_fn,
                [m[0] for m in self.metrics] or (),
                batch_size=max(bs, 1024),
                sample_weight=run.wv,
                _metrics=self.metrics,
                _outputs=self.validation_outputs(run.Xv, max(bs, 1024)),
            )
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = lr0
        logs["time"] = time.perf_counter() - t0
        self._convergence(logs["loss"])
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)
        self.history.append(epoch, logs)
        for path in self._pending:
            self.save_checkpoint(path)
        self._pending.clear()
        stop = self.decide_stop()
        if run.yielding:
            yield step_logs
        return stop

    # ----- one step ------------------------------
    def train_step(self, batch: tuple[Any, ...]) -> dict[str, Any]:
        """One optimizer step on ``batch`` = ``(x, y)`` or ``(x, y, sample_weight)``.

        Keras 3's override point: the loop calls it for every batch, so a subclass that
        overrides it changes training (call ``super().train_step(batch)`` for the usual step).
        In order: the step plan's forward pass, loss, ``zero_grad`` and backward pass;
        :meth:`sync_gradients`; the divergence guard (a non-finite loss or gradient skips the
        update); gradient clipping; the optimizer's update (undone if it makes a weight
        non-finite); :meth:`record_output`.

        Returns the logs ``{"loss": batch loss, "size": batch rows}``. A skipped update is
        reported by the next :meth:`decide_stop` (which raises :class:`DivergenceError` under
        ``on_nonfinite="raise"``). Called outside :meth:`fit`, the batch is converted to the
        model's dtype and its targets are checked.
        """
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError(
                "batch must be a tuple (x, y) or (x, y, sample_weight), got "
                f"{type(batch).__name__}"
                + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        xb, yb = batch[0], batch[1]
        wb = batch[2] if len(batch) == 3 else None
        plan = self.plan
        if not self._in_loop:  # a caller's batch: convert and check it as the loop does
            self.dtype = self._params[0].dtype  # the parameters' dtype now (after model.to())
            xb = np.asarray(xb.data if isinstance(xb, Tensor) else xb)
            if xb.dtype != self.dtype:
                xb = xb.astype(self.dtype)
            yb = np.asarray(yb.data if isinstance(yb, Tensor) else yb)
            wb = None if wb is None else np.asarray(wb, dtype=np.float64)
            if len(yb) != len(xb) or (wb is not None and wb.shape != (len(xb),)):
                raise ValueError(
                    f"batch: x has {len(xb)} rows, so y must have {len(xb)} rows"
                    + ("" if wb is None else f" and sample_weight shape ({len(xb)},)")
                    + f"; got y of shape {yb.shape}"
                    + ("" if wb is None else f" and sample_weight of shape {wb.shape}")
                )
            if not self._plans:
                self.optimizer.prepare()
                self._plans = self._candidate_plans()
            plan = self.plan = self._choose_plan()
            plan.check_targets(yb)
        assert plan is not None  # chosen before every epoch
        lv, out = plan.run(xb, yb, wb)
        self.sync_gradients()
        logs = {"loss": lv, "size": len(yb)}
        if self.on_nonfinite != "ignore":
            if not math.isfinite(lv):
                self._diverged(f"the loss is {lv}", xb)
                return logs
            if not self._grads_finite():
                name = next(
                    n
                    for n, p in zip(self._names, self._params)
                    if p.grad is not None and not np.all(np.isfinite(p.grad))
                )
                bad_weight = any(not all_finite(p.data) for p in self._params)
                bad_input = xb.dtype.kind == "f" and not np.all(np.isfinite(xb))
                self._diverged(
                    f"the gradient of '{name}' is not finite",
                    xb,
                    None if bad_weight or bad_input else self._locate_in_backward(),
                )
                return logs
        if self.clip is not None:
            _clip_grad_norm(self._params, self.clip)
        if not self._update(xb):
            return logs
        self.iterations += 1
        self._last_finite = (lv, self.epoch, self.batch)
        if self._in_loop:
            self.record_output(out, copy=plan.reuses_output)
        return logs

    def sync_gradients(self) -> None:
        """Hook between the backward pass and the finiteness check: make the gradients every
        process's mean (the all-reduce of data-parallel training). One process: nothing."""

    def shard_batch(self, idx: Any, n: int) -> Any:
        """Hook: this process's rows of the batch ``idx`` (of a data set of ``n`` rows) in
        data-parallel training (:mod:`chainrule.distributed`). One process: all of them."""
        return idx

    def gather_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Hook: the epoch's outputs of every process, in the epoch's order. One process:
        ``outputs``."""
        return outputs

    def validation_outputs(self, X: Any, batch_size: int) -> np.ndarray | None:
        """Hook: the model's outputs for the validation inputs when computed otherwise than by
        :func:`~chainrule.training.evaluation.predict` (each process its rows); None: predict."""
        return None

    def record_output(self, output: np.ndarray, copy: bool = True) -> None:
        """Keep a batch's model output for the epoch's training metrics (nothing to keep
        without metrics); ``copy=False`` if the array is not overwritten later."""
        if self.metrics:
            self._outputs.append(np.array(output) if copy else output)

    def _candidate_plans(self) -> list[StepPlan]:
        """The plans that can run this model, loss and optimizer, in order of preference."""
        if isinstance(self._plan_given, type):
            plan = self._plan_given.create(self.model, self.loss_fn, self.optimizer)
            if plan is None:
                raise ValueError(
                    f"plan {self._plan_given.__name__} cannot run this model, loss and "
                    "optimizer; leave plan=None to choose one automatically"
                )
            return [plan]
        if isinstance(self._plan_given, StepPlan):
            return [self._plan_given]
        plans = (cls.create(self.model, self.loss_fn, self.optimizer) for cls in PLANS)
        return [p for p in plans if p is not None]

    def _choose_plan(self) -> StepPlan:
        """The first candidate plan that can run now (the last one always can)."""
        for plan in self._plans[:-1]:
            if plan.usable():
                return plan
        return self._plans[-1]

    # ----- the data and the rest ------------------------------
    def _finish(self) -> None:
        """End the fit once: close the input file, run ``on_train_end``, write the summary."""
        if self._finished:
            return
        self._finished = True
        self._close_plans()  # worker processes end with the fit
        if self._fd is not None:
            os.close(self._fd[1])
            self._fd = None
        for c in self.callbacks:
            c.on_train_end({})
        from .summary import summarize

        self.history.stop_reason = self.stop_reason
        self.history.best_epoch = self.best_epoch
        self.history.summary = summarize(self)
        if self.verbose:
            print(self.history.summary)
