"""Step plans: the ways of running one training step's forward pass, loss and backward pass.

A :class:`StepPlan` takes a batch and leaves every trainable parameter's gradient in ``p.grad``
(and nothing in a frozen one's), returning the batch loss and the model's output; the
:class:`~chainrule.training.Trainer` does the rest of the step (the ``sync_gradients`` hook,
the finiteness checks, clipping, the optimizer's update) the same way for every plan.

- :class:`EagerPlan` — the autodiff engine: ``model(x)``, the loss module, ``zero_grad``,
  ``loss.backward()``. Runs any model and loss.
- :class:`~chainrule.training.fastpath.FusedMLPPlan` — plain MLPs (Linear layers and
  elementwise activations, a common loss) as a fixed sequence of NumPy calls into reused
  arrays, with the engine's formulas; it declines (``create`` returns None) anything else.
- :class:`~chainrule.training.split_step.SplitStepPlan` — convolutional networks on two or
  more cores: parts of each batch run at once in worker processes, one replica each, and the
  gradients are summed.

A new plan (a compiled step, say) must pass :func:`check_step_plan`, which compares it with
the eager plan: the same gradients, losses and outputs step after step and the same weights
after several optimizer steps (float64, to 1e-12), frozen parameters untouched, and dropout,
batch normalisation and sample weights either handled exactly or declined.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._random import use_generator
from ..nn.module import Module
from ..tensor import Tensor
from ._inputs import column_target

__all__ = ["EagerPlan", "StepPlan", "check_step_plan"]


class StepPlan:
    """One way of running forward, loss, ``zero_grad`` and backward for a batch.

    Subclasses implement :meth:`create` (None when the plan cannot run this model, loss and
    optimizer — the trainer then uses the next plan) and :meth:`run`. A plan never updates the
    parameters: the optimizer does, after the trainer's checks.

    Attributes
    ----------
    name : str
        Shown in messages and tests.
    reuses_output : bool
        True if the array :meth:`run` returns is overwritten by the next call (the trainer
        copies it when it keeps outputs for metrics).
    """

    name = "plan"
    reuses_output = False

    def __init__(self, model: Module, loss_fn: Any, optimizer: Any) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer

    @classmethod
    def create(cls, model: Module, loss_fn: Any, optimizer: Any) -> StepPlan | None:
        """The plan for this model, loss and optimizer, or None if it cannot run them."""
        return cls(model, loss_fn, optimizer)

    def usable(self) -> bool:
        """True if the plan can run right now (checked before every epoch: a forward hook
        added or a parameter moved out of the optimizer's flat buffers may rule it out)."""
        return True

    def close(self) -> None:
        """Release what the plan holds beyond a step (worker processes): the trainer calls it
        when a fit ends; a plan used again afterwards starts them again."""

    def check_targets(self, y: np.ndarray) -> None:
        """Refuse targets the plan would misread (called once per fit with all targets, and
        for every batch given to ``Trainer.train_step`` outside a fit)."""

    def run(self, xb: np.ndarray, yb: Any, wb: np.ndarray | None) -> tuple[float, np.ndarray]:
        """Forward pass, loss, ``zero_grad``, backward pass for one batch.

        Returns ``(loss, output)``: the batch loss as the loss module computes it (weighted by
        ``wb`` when given) and the model's raw output. Afterwards ``p.grad`` holds ``∂loss/∂p``
        for every parameter that requires grad and is None for a frozen one.
        """
        raise NotImplementedError


class EagerPlan(StepPlan):
    """The autodiff engine's step: ``out = model(x)``, ``loss = loss_fn(out, y[, w])``,
    ``optimizer.zero_grad()``, ``loss.backward()``. Runs any model and loss."""

    name = "eager"

    def run(self, xb: np.ndarray, yb: Any, wb: np.ndarray | None) -> tuple[float, np.ndarray]:
        out = self.model(xb)
        yb = column_target(self.loss_fn, out, yb)
        loss = self.loss_fn(out, yb, sample_weight=wb) if wb is not None else self.loss_fn(out, yb)
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"the loss must return a chainrule Tensor, got {type(loss).__name__}; build it "
                "from the model's output with chainrule operations"
            )
        value = loss.item()
        self.optimizer.zero_grad()
        loss.backward()
        return value, out.data if isinstance(out, Tensor) else np.asarray(out)


# ----- the optimizer's flat buffers, seen by the trainer -----
def flat_buffers(optimizer: Any, params: list[Any]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``[(parameters, gradients), ...]``: the buffers of the optimizer's parameter arena, if
    every one of ``params`` lives in them right now with its gradient there; else None."""
    arena = optimizer.arena
    if len(arena.params) != len(params) or not arena.ready():
        return None
    return arena.buffers  # type: ignore[no-any-return]


def all_finite(a: np.ndarray) -> bool:
    """True if every element of the flat buffer ``a`` is finite.

    ``a·a`` (one BLAS dot product, no temporary array) is finite exactly when every element
    is, unless the sum of squares overflows; only then is the elementwise test run.
    """
    if a.ndim == 1 and a.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(float(np.dot(a, a))):
                return True
    return bool(np.isfinite(a).all())


# ----- the contract every plan passes -----
def _cases() -> list[tuple[str, Callable[[], Any]]]:
    """(name, build) pairs; ``build()`` gives ``(model, loss, optimizer factory, x, y, w)``."""
    from .. import nn, optim

    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 5))
    labels = rng.integers(0, 3, size=23)
    values = rng.normal(size=(23, 2))
    flags = (rng.random((23, 1)) > 0.5).astype(np.float64)
    w = rng.uniform(0.1, 2.0, size=23)

    def mlp(sizes: list[int], act: str = "tanh") -> Module:
        return nn.mlp(sizes, act, rng=1).to(np.float64)

    def adam(m: Module) -> Any:
        return optim.Adam(m.parameters(), lr=0.01)

    def sgd(m: Module) -> Any:
        return optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def frozen() -> Any:
        m = mlp([5, 7, 6, 3], "relu")
        m[0].weight.requires_grad_(False)  # type: ignore[index]
        m[2].bias.requires_grad_(False)  # type: ignore[index]
        return m, nn.CrossEntropyLoss(), adam, x, labels, None

    def dropout_bn() -> Any:
        m = nn.Sequential(
            nn.Linear(5, 8, rng=2),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(8, 3, rng=3),
        ).to(np.float64)
        return m, nn.CrossEntropyLoss(), sgd, x, labels, None

    signals = rng.normal(size=(23, 2, 6))

    def conv() -> Any:
        m = nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1, bias=False, rng=4),  # a bias before batch norm has
            # a gradient of rounding noise alone, which Adam scales up to a step: not comparable
            nn.BatchNorm1d(4),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(12, 3, rng=5),
        ).to(np.float64)
        return m, nn.CrossEntropyLoss(), adam, signals, labels, None

    return [
        (
            "cross_entropy",
            lambda: (mlp([5, 7, 6, 3], "relu"), nn.CrossEntropyLoss(), adam, x, labels, None),
        ),
        (
            "cross_entropy_weighted",
            lambda: (mlp([5, 7, 3]), nn.CrossEntropyLoss(), adam, x, labels, w),
        ),
        ("mse", lambda: (mlp([5, 7, 2], "sigmoid"), nn.MSELoss(), sgd, x, values, None)),
        ("mse_weighted", lambda: (mlp([5, 7, 2], "leaky_relu"), nn.MSELoss(), sgd, x, values, w)),
        (
            "bce_with_logits_weighted",
            lambda: (mlp([5, 6, 1]), nn.BCEWithLogitsLoss(), adam, x, flags, w),
        ),
        ("frozen_parameters", frozen),
        ("dropout_batch_norm", dropout_bn),
        ("huber", lambda: (mlp([5, 4, 2]), nn.HuberLoss(), adam, x, values, None)),
        ("conv_batch_norm", conv),
    ]


def check_step_plan(
    plan_class: type[StepPlan], steps: int = 4, batch_size: int = 8, atol: float = 1e-12
) -> dict[str, str]:
    """Check a step plan against :class:`EagerPlan`; raise ``AssertionError`` on a difference.

    Over several models and losses (cross-entropy, MSE, BCE with logits, Huber; with and without
    sample weights; frozen parameters; dropout and batch normalisation; a small convolutional
    network with batch normalisation), in float64, each case
    runs ``steps`` optimizer steps on batches of ``batch_size`` twice — once with the eager
    plan, once with ``plan_class`` — from identical copies of the model and optimizer, with the
    same generator for the dropout masks, and requires after every step

    - the same loss and output, and ``p.grad`` equal for every trainable parameter, None for
      every frozen one: ``|a - b| ≤ atol·max(1, |b|)`` (``atol`` = 1e-12 by default);
    - after the last step, the same weights, batch-norm running statistics and optimizer
      state, and frozen parameters bitwise as they started.

    A plan may decline a case (``create`` returns None: the trainer then uses the eager plan),
    but must accept at least one. Returns ``{case: "passed" | "declined"}``.

    Examples
    --------
    >>> from chainrule.training.steps import EagerPlan, check_step_plan
    >>> from chainrule.training.fastpath import FusedMLPPlan
    >>> check_step_plan(FusedMLPPlan)["cross_entropy"]
    'passed'
    >>> set(check_step_plan(EagerPlan).values())
    {'passed'}
    """
    report: dict[str, str] = {}
    for name, build in _cases():
        model, loss_fn, make_opt, x, y, w = build()
        twin = copy.deepcopy(model)
        opt, twin_opt = make_opt(model), make_opt(twin)
        plan = plan_class.create(twin, loss_fn, twin_opt)
        if plan is None:
            report[name] = "declined"
            continue
        eager = EagerPlan(model, loss_fn, opt)
        start = {n: p.data.copy() for n, p in twin.named_parameters()}
        frozen = {n for n, p in twin.named_parameters() if not p.requires_grad}
        gens = np.random.default_rng(7), np.random.default_rng(7)
        opt.prepare()
        twin_opt.prepare()
        plan.check_targets(np.asarray(y))
        for k in range(steps):
            rows = slice(k * batch_size % len(x), k * batch_size % len(x) + batch_size)
            xb, yb = x[rows], y[rows]
            wb = None if w is None else w[rows]
            results = []
            for run, gen in ((eager, gens[0]), (plan, gens[1])):
                with use_generator(gen):
                    loss, out = run.run(xb, yb, wb)
                results.append((loss, np.array(out)))
            where = f"{plan_class.__name__}, case {name!r}, step {k}"
            _close(results[1][0], results[0][0], atol, f"{where}: loss")
            _close(results[1][1], results[0][1], atol, f"{where}: output")
            for (n, p), q in zip(model.named_parameters(), twin.parameters()):
                if n in frozen:
                    if q.grad is not None:
                        raise AssertionError(f"{where}: frozen parameter '{n}' got a gradient")
                    continue
                if q.grad is None or p.grad is None:
                    raise AssertionError(f"{where}: no gradient for '{n}'")
                _close(q.grad, p.grad, atol, f"{where}: gradient of '{n}'")
            opt.step()
            twin_opt.step()
        where = f"{plan_class.__name__}, case {name!r}, after {steps} steps"
        for (n, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
            _close(np.asarray(b), np.asarray(a), atol, f"{where}: '{n}'")
        for n, p in twin.named_parameters():
            if n in frozen and p.data.tobytes() != start[n].tobytes():
                raise AssertionError(f"{where}: frozen parameter '{n}' changed")
        for pa, pb in zip(model.parameters(), twin.parameters()):
            sa, sb = opt.state.get(id(pa), {}), twin_opt.state.get(id(pb), {})
            if set(sa) != set(sb):
                raise AssertionError(f"{where}: optimizer state keys {set(sb)} != {set(sa)}")
            for key, va in sa.items():
                if isinstance(va, np.ndarray):
                    _close(sb[key], va, atol, f"{where}: optimizer state {key!r}")
        plan.close()
        report[name] = "passed"
    if "passed" not in report.values():
        raise AssertionError(f"{plan_class.__name__} declined every case of check_step_plan")
    return report


def _close(got: Any, want: Any, atol: float, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, the eager plan's {want.shape}")
    err = np.abs(got - want)
    bound = atol * np.maximum(1.0, np.abs(want))  # absolute, relative for values above 1
    if not np.all(err <= bound):  # NaN fails too
        i = np.unravel_index(
            int(np.argmax(np.where(np.isnan(err), np.inf, err - bound))), err.shape
        )
        raise AssertionError(
            f"{what} differs at {tuple(int(v) for v in i)}: {got[i]!r} vs the eager plan's "
            f"{want[i]!r} (|difference| {err[i]:.3g})"
        )
