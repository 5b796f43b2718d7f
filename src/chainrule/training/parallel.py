"""Data-parallel training over MPI: the trainer of ``fit(..., distributed=True)``.

:class:`DistributedTrainer` (also the one of ``accumulate_steps``) runs a step plan on this
process's share of every global batch (:class:`ReplicaPlan`, :class:`Replicas`) so that ``N``
processes equal one. The MPI plumbing and Horovod's building blocks are in
:mod:`chainrule.training.collective` and importable from here too; users import them from
:mod:`chainrule.distributed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss
from ..nn.losses import NLLLoss as _NLLLoss
from ..nn.module import Module
from ..optim.optimizers import Optimizer
from ._inputs import column_target
from .callbacks import Callback, CSVLogger, ProgressBar
from .collective import (  # noqa: F401 - importable from here as before the split
    _MPIEXEC_VARS,
    _STATE,
    INSTALL,
    RUN_HINT,
    DistributedOptimizer,
    _bounds,
    _comm,
    _DistributedStep,
    _gradient_buffers,
    _mpi,
    abort_job,
    allreduce,
    allreduce_gradients,
    broadcast_object,
    broadcast_optimizer_state,
    broadcast_parameters,
    check_same_model,
    init,
    is_main,
    launched_by_mpiexec,
    rank,
    shard,
    size,
    where,
)
from .split_step import SplitStepPlan
from .steps import EagerPlan, StepPlan
from .trainer import Trainer

__all__ = [
    "DistributedOptimizer",
    "DistributedTrainer",
    "ReplicaPlan",
    "Replicas",
    "abort_job",
    "allreduce",
    "allreduce_gradients",
    "broadcast_object",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "check_same_model",
    "init",
    "is_main",
    "launched_by_mpiexec",
    "rank",
    "shard",
    "size",
    "where",
]

# ---------------------------------------------------------------------------------------------
# what fit(distributed=True) uses
# ---------------------------------------------------------------------------------------------
_MEAN_LOSSES = (MSELoss, L1Loss, HuberLoss, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, _NLLLoss)


def _denominators(loss_fn: Any, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Each sample's share ``s_i d_i`` of a batch's mean-loss denominator ``Σ s_i d_i``:
    ``d_i = weight[y_i]`` (0 if ignored) for class-weighted cross-entropy/NLL, else 1."""
    n = len(y)
    d = np.ones(n, np.float64)
    # class indices: a vector, integers or integral floats (the loss checks them; a value it
    # will refuse is only kept from indexing out of range here)
    if isinstance(loss_fn, (CrossEntropyLoss, _NLLLoss)) and y.dtype.kind in "iuf" and y.ndim == 1:
        valid = y != loss_fn.ignore_index
        d = valid.astype(np.float64)
        if loss_fn.weight is not None:
            wc = np.asarray(getattr(loss_fn.weight, "data", loss_fn.weight), np.float64)
            with np.errstate(invalid="ignore"):
                idx = np.nan_to_num(np.where(valid, y, 0), nan=0.0, posinf=0.0, neginf=0.0)
            idx = np.clip(idx.astype(np.int64), 0, max(len(wc) - 1, 0))
            d = d * wc[idx]
    return d if w is None else d * w


class Share(NamedTuple):
    """This process's part of one global step: ``parts`` lists, per batch of the step, (its
    rows, this process's first and end row in the step, its loss scale ``W_r/W``, its loss
    denominator ``W_r``); ``rows`` and ``weight`` are the whole step's."""

    rows: int
    weight: float
    parts: list[tuple[int, int, int, float, float]]
    index: Any = None


class _Alone:
    """A communicator of one process (gradient accumulation without MPI)."""

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 1

    def allgather(self, value: Any) -> list[Any]:
        return [value]


class Replicas:
    """The processes of one ``fit(distributed=True)`` run, as the trainer sees them."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.is_main = self.rank == 0
        self.positions: list[np.ndarray] = []

    # ----- agreement -----
    def check_loss(self, loss_fn: Any) -> None:
        if not isinstance(loss_fn, _MEAN_LOSSES) or loss_fn.reduction not in ("mean", "sum"):
            raise ValueError(
                "fit(distributed=True) needs one of chainrule's loss modules with reduction "
                "'mean' or 'sum' (it weights each process's share of a batch by the loss's own "
                f"denominator), got {loss_fn!r}"
            )

    def check_same(self, what: str, value: Any) -> None:
        """Raise on every process if ``value`` is not the same on all of them."""
        values = self.comm.allgather(value)
        for r, v in enumerate(values):
            if v != values[0]:
                raise ValueError(
                    f"the processes were given different {what}: {values[0]!r} on rank 0, "
                    f"{v!r} on rank {r}; give every process the same data and arguments"
                )

    def check_data(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        digest = hashlib.sha256(np.ascontiguousarray(y).view(np.uint8).reshape(-1).data)
        if w is not None:
            digest.update(np.ascontiguousarray(w).view(np.uint8).reshape(-1).data)
        self.check_same(
            "training data (rows, row shape, target and weight checksum)",
            (len(X), tuple(X.shape[1:]), digest.hexdigest()[:16]),
        )

    # ----- one global step -----
    def share(
        self, idx: Any, n: int, micro: int, loss_fn: Any, y: np.ndarray, w: np.ndarray | None
    ) -> Share:
        """This process's part of the global step batch ``idx`` (rows of a set of ``n``), cut
        into batches of ``micro`` rows (gradient accumulation; one batch without it), each
        split over the processes by ``np.array_split``'s sizes."""
        rows_all = np.arange(n)[idx] if isinstance(idx, slice) else np.asarray(idx)
        total_rows = len(rows_all)
        yb = y[rows_all]
        wb = None if w is None else w[rows_all]
        bw = float(total_rows) if wb is None else float(np.sum(wb))
        if loss_fn.reduction == "sum":
            d = np.ones(total_rows, np.float64)
            total = 1.0
        else:
            d = _denominators(loss_fn, yb, wb)
            total = float(d.sum())
            if total <= 0:
                raise ValueError(
                    "a batch's sample weights sum to 0: the weighted mean loss is undefined"
                )
        parts: list[tuple[int, int, int, float, float]] = []
        local: list[np.ndarray] = []
        for start in range(0, max(total_rows, 1), micro):
            rows = min(micro, total_rows - start)
            lo, hi = _bounds(rows, self.size, self.rank)
            mine = float(d[start + lo : start + hi].sum())
            scale = 1.0 if loss_fn.reduction == "sum" else mine / total
            if loss_fn.reduction == "sum":
                mine = float(hi - lo)
            parts.append((rows, start + lo, start + hi, scale, mine))
            local.append(rows_all[start + lo : start + hi])
        mine_idx: Any = np.concatenate(local) if local else rows_all[:0]
        if isinstance(idx, slice) and len(parts) == 1:  # keep a slice (contiguous reads)
            base = idx.start or 0
            mine_idx = slice(base + parts[0][1], base + parts[0][2])
        return Share(total_rows, bw, parts, mine_idx)

    def batch_split(self, rows: int, lo: int, hi: int) -> Any:
        from ..nn.replicas import BatchSplit

        return BatchSplit(rows, lo, hi, self.sum_array)

    def sum_array(self, a: np.ndarray) -> np.ndarray:
        out = np.array(a, copy=True, order="C")
        if self.size > 1:
            self.comm.Allreduce(_mpi().IN_PLACE, out)
        return out

    def sum_scalar(self, v: float) -> float:
        buf = np.array([v], np.float64)
        if self.size > 1:
            self.comm.Allreduce(_mpi().IN_PLACE, buf)
        return float(buf[0])

    def max_int(self, v: int) -> int:
        """The largest of every process's ``v``."""
        return self.max_ints(v)[0]

    def max_ints(self, *values: int) -> list[int]:
        """The largest of every process's value, for each of ``values`` (one all-reduce)."""
        buf = np.array(values, np.int64)
        if self.size > 1:
            self.comm.Allreduce(_mpi().IN_PLACE, buf, op=_mpi().MAX)
        return [int(v) for v in buf]

    def scale_gradients(self, optimizer: Optimizer, scale: float) -> None:
        """Multiply every gradient by ``scale`` (a plan that computed the local mean's)."""
        if scale == 1.0:
            return
        buffers = _gradient_buffers(optimizer)
        if buffers is not None:
            for g in buffers:
                g *= scale
            return
        for grp in optimizer.param_groups:
            for p in grp["params"]:
                if p.grad is not None:
                    p.grad *= scale

    def reduce_gradients(self, optimizer: Optimizer) -> None:
        """Sum the gradients over the processes (one all-reduce per flat buffer)."""
        if self.size > 1:
            allreduce_gradients(optimizer, "sum")

    # ----- outputs in the global order -----
    def gather_rows(self, local: np.ndarray, positions: np.ndarray, total: int) -> np.ndarray:
        """Every process's rows ``local`` (at ``positions`` of the global order) as one array."""
        parts = self.comm.allgather((positions, local))
        out: np.ndarray | None = None
        for pos, arr in parts:
            if out is None:
                out = np.empty((total, *arr.shape[1:]), arr.dtype)
            out[pos] = arr
        assert out is not None
        return out

    def predict(
        self,
        model: Module,
        X: Any,
        batch_size: int,
        read: Callable[[Any, slice], np.ndarray] | None = None,
    ) -> np.ndarray:
        """The model's outputs for all of ``X``, each process predicting its own rows.

        ``read(X, rows)`` reads a slice of rows (the trainer's reader: a memory-mapped file is
        read with ``pread``, batch by batch, so its pages never stay in this process's memory).
        """
        from .evaluation import predict

        lo, hi = _bounds(len(X), self.size, self.rank)
        local = None
        if hi > lo:
            if read is None:
                local = predict(model, X[lo:hi], batch_size)
            else:
                step = max(int(batch_size), 1)
                local = np.concatenate(
                    [
                        predict(model, read(X, slice(s, min(s + step, hi))), None)
                        for s in range(lo, hi, step)
                    ]
                )
        parts = self.comm.allgather(local)
        return np.concatenate([p for p in parts if p is not None])


def _replicas(model: Module, loss_fn: Any) -> Replicas:
    """The processes of a ``fit(distributed=True)`` run, checked: installed, under mpiexec,
    the same model everywhere (then rank 0's weights broadcast)."""
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:  # say what to install (before MPI starts)
        raise ImportError(
            f"fit(distributed=True) needs mpi4py and an MPI library: {INSTALL} installs mpi4py "
            "and the mpich wheel, which brings mpiexec"
        )
    if not launched_by_mpiexec():
        raise RuntimeError(
            "fit(distributed=True) runs under an MPI launcher and this process was not started "
            f"by one: {RUN_HINT}"
        )
    init()
    rep = Replicas(_comm())
    rep.check_loss(loss_fn)
    broadcast_parameters(model)  # also refuses different models, naming the first difference
    return rep


def plain_optimizer(optimizer: Any) -> Any:
    """``optimizer`` without :class:`DistributedOptimizer`'s all-reduce (the distributed
    trainer does its own, weighted by each process's share), sharing its state."""
    if not isinstance(optimizer, _DistributedStep):
        return optimizer
    base = next(c for c in type(optimizer).__mro__[1:] if not issubclass(c, _DistributedStep))
    plain = object.__new__(base)
    plain.__dict__ = optimizer.__dict__
    return plain


class ReplicaPlan(StepPlan):
    """A step plan run on this process's rows of the global batch.

    The batch loss it returns is the global one, ``Σ_r (W_r/W)·C_r`` (``C_r`` this process's
    mean loss, ``W_r`` its part of the batch's loss denominator ``W``), the same number on
    every process; the gradients it leaves are this process's share ``(W_r/W)·∇C_r``, which
    :meth:`DistributedTrainer.sync_gradients` sums. Dropout and batch norm see the global batch
    (:func:`chainrule.nn.replicas.batch_split`). A process whose rows are empty or weigh
    nothing still runs the forward pass (dropout draws the same masks, batch norm takes part
    in its sums) and contributes a zero gradient.
    """

    name = "replica"

    def __init__(self, inner: StepPlan, trainer: DistributedTrainer) -> None:
        super().__init__(inner.model, inner.loss_fn, inner.optimizer)
        self.inner, self.trainer = inner, trainer
        self.name = f"replica({inner.name})"
        self.reuses_output = inner.reuses_output

    def usable(self) -> bool:
        return self.inner.usable()

    def check_targets(self, y: np.ndarray) -> None:
        self.inner.check_targets(y)

    def run(self, xb: np.ndarray, yb: Any, wb: np.ndarray | None) -> tuple[float, np.ndarray]:
        from ..nn.replicas import batch_split

        tr = self.trainer
        rep: Replicas = tr.replicas
        parts = tr.share.parts
        fused = not isinstance(self.inner, EagerPlan)
        acc: list[np.ndarray] | None = None  # the fused plan's gradients, summed over batches
        total, outs, offset = 0.0, [], 0
        for k, (rows, lo, hi, scale, mine) in enumerate(parts):
            sl = slice(offset, offset + hi - lo)
            offset += hi - lo
            x, t, w = xb[sl], yb[sl], None if wb is None else wb[sl]
            with batch_split(rep.batch_split(rows, lo - _start(parts, k), hi - _start(parts, k))):
                if fused and mine > 0:  # the fused MLP (no dropout, no batch norm)
                    lv, out = self.inner.run(x, t, w)
                    out = np.array(out) if len(parts) > 1 else out
                    rep.scale_gradients(self.optimizer, scale)  # its gradient is the local mean's
                else:
                    out_t = self.model(x)
                    t = column_target(self.loss_fn, out_t, t)  # as the eager plan does
                    if mine > 0:
                        loss = (
                            self.loss_fn(out_t, t, sample_weight=w)
                            if w is not None
                            else self.loss_fn(out_t, t)
                        )
                        lv = loss.item()
                    else:  # nothing to learn here, but the graph (and its all-reduces) must
                        loss, lv = out_t.sum(), 0.0  # run, and the gradients be zeros in place
                    if fused or k == 0:
                        self.optimizer.zero_grad()  # later batches add to the gradients
                    # the seed W_r/W makes this process's loss its share of the global one, so
                    # the sums in batch norm's backward pass are weighted rightly too
                    loss.backward(np.asarray(scale if mine > 0 else 0.0, loss.dtype))
                    out = out_t.data
                if fused and len(parts) > 1:
                    acc = _accumulate(self.optimizer, acc, last=k == len(parts) - 1)
            total += lv * scale if mine > 0 else 0.0
            outs.append(out)
        return rep.sum_scalar(total), outs[0] if len(outs) == 1 else np.concatenate(outs)


@contextlib.contextmanager
def _ctrl_c_as_request(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C (SIGINT; mpiexec passes it on to every process) requests a stop instead of
    raising: a KeyboardInterrupt would reach each process at another point of its step, one
    inside an all-reduce and another past it, and the processes would then wait for each other
    forever. The request is agreed after the step (:meth:`Trainer.decide_stop`), so every
    process stops after the same step, as one process does on Ctrl-C. A second Ctrl-C makes
    mpiexec end the job."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def request(signum: int, frame: Any) -> None:
        trainer._interrupted = True

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start(parts: list[tuple[int, int, int, float, float]], k: int) -> int:
    """Where batch ``k`` of a step starts (the batches before it are full)."""
    return sum(p[0] for p in parts[:k])


def _accumulate(optimizer: Any, acc: list[np.ndarray] | None, last: bool) -> list[np.ndarray]:
    """Add the gradients just computed to ``acc``; after the last batch, write the sum back."""
    buffers = _gradient_buffers(optimizer)
    grads = (
        buffers
        if buffers is not None
        else [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    )
    if acc is None:
        acc = [np.array(g) for g in grads]
    else:
        for a, g in zip(acc, grads):
            a += g
    if last:
        for a, g in zip(acc, grads):
            np.copyto(g, a)
    return acc


def _out_shape(plan: Any) -> tuple[int, ...]:
    linears = getattr(plan, "linears", None)
    return (linears[-1].out_features,) if linears else ()


class DistributedTrainer(Trainer):
    """The :class:`~chainrule.training.Trainer` of ``fit(..., distributed=True)``.

    Every process runs this trainer on the same data with the same arguments. Through the
    trainer's hooks: :meth:`shard_batch` keeps this process's contiguous rows of each global
    batch (``np.array_split``'s sizes); the step plan (:class:`ReplicaPlan`) weights its share
    of the loss; :meth:`sync_gradients` sums the gradients with one ``Allreduce(IN_PLACE)`` per
    flat gradient buffer; :meth:`agree_stop` takes the largest stop request of all processes;
    training metrics and validation gather every process's outputs, so the history is the
    single-process history on every process. Only rank 0 prints and writes checkpoints.

    ``accumulate_steps=k`` makes each optimizer step sum the gradients of ``k`` batches of
    ``batch_size`` rows (the loop's batch is then ``k·batch_size`` rows, cut into ``k``; one
    all-reduce per step). ``distributed=False`` runs that accumulation in one process, without
    MPI.
    """

    def __init__(
        self,
        model: Module,
        loss: Any,
        optimizer: Any = "adam",
        *,
        accumulate_steps: int = 1,
        micro_batch: int | None = None,
        distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        from .evaluation import resolve_loss

        loss = resolve_loss(loss)
        if distributed:
            self.replicas = _replicas(model, loss)
        else:
            self.replicas = Replicas(_Alone())
            self.replicas.check_loss(loss)
        self.accumulate_steps = int(accumulate_steps)
        self.micro_batch = micro_batch
        if not self.replicas.is_main:  # only rank 0 prints and writes files
            kwargs["verbose"] = 0
            cbs = kwargs.get("callbacks") or ()
            cbs = [cbs] if isinstance(cbs, Callback) else list(cbs)
            kwargs["callbacks"] = [c for c in cbs if not isinstance(c, (ProgressBar, CSVLogger))]
        super().__init__(model, loss, plain_optimizer(optimizer), **kwargs)
        self.share = Share(0, 0.0, [])
        self._positions: list[np.ndarray] = []
        self._offset = 0
        self._run_weights: np.ndarray | None = None
        self._peer_interrupted = False

    # ----- the data -----
    def _begin(self, X: Any, y: Any, *args: Any) -> Any:
        run = super()._begin(X, y, *args)
        self.replicas.check_data(run.X, run.y, run.w)
        self._run_weights = run.w
        return run

    def shard_batch(self, idx: Any, n: int) -> Any:
        rows = len(range(n)[idx]) if isinstance(idx, slice) else len(idx)
        micro = self.micro_batch or rows
        share = self.share = self.replicas.share(
            idx, n, micro, self.loss_fn, self.fit_targets, self._run_weights
        )
        if self.batch == 0:
            self._positions, self._offset = [], 0
        for _, lo, hi, _, _ in share.parts:
            self._positions.append(np.arange(self._offset + lo, self._offset + hi))
        self._offset += share.rows
        return share.index

    def gather_outputs(self, outputs: np.ndarray) -> np.ndarray:
        # every step of an epoch that gets its metrics was taken and recorded its output
        positions = np.concatenate(self._positions)
        return self.replicas.gather_rows(outputs, positions, self._offset)

    def validation_outputs(self, X: Any, batch_size: int) -> np.ndarray | None:
        return self.replicas.predict(self.model, X, batch_size, read=self._batch)

    # ----- the step -----
    def _candidate_plans(self) -> list[StepPlan]:
        # each process is already a replica: no split step inside one (its dropout and batch
        # norm would not see the processes' global batch)
        plans = [p for p in super()._candidate_plans() if not isinstance(p, SplitStepPlan)]
        return [ReplicaPlan(p, self) for p in plans or [EagerPlan(self.model, self.loss_fn,
                                                                  self.optimizer)]]  # fmt: skip

    def train_step(self, batch: tuple[Any, ...]) -> dict[str, Any]:
        if not self._in_loop:
            raise RuntimeError(
                "DistributedTrainer.train_step runs inside fit(distributed=True) only: each "
                "process needs its share of a global batch"
            )
        logs = super().train_step(batch)
        logs["size"], logs["weight"] = self.share.rows, self.share.weight
        return logs

    def sync_gradients(self) -> None:
        """Sum every process's share of the gradient: one ``Allreduce(IN_PLACE)`` per flat
        gradient buffer (per dtype)."""
        self.replicas.reduce_gradients(self.optimizer)

    def agree_stop(self, flag: int) -> int:
        flag, interrupted = self.replicas.max_ints(flag, int(self._interrupted))
        self._peer_interrupted = bool(interrupted)
        return flag

    def decide_stop(self) -> int:
        flag = super().decide_stop()
        if self._peer_interrupted and self.stop_reason == "peer":
            # mpiexec passes Ctrl-C on to every process, one a step later than another: the
            # run was interrupted here as well, and every process says so (and saves) alike
            self.stop_reason = "interrupted"
            self.stop_detail = "interrupted by the user (Ctrl-C)"
        return flag

    def _step_context(self, run: Any) -> contextlib.ExitStack:
        stack = super()._step_context(run)
        stack.enter_context(_ctrl_c_as_request(self))
        return stack

    # ----- files -----
    def save_checkpoint(self, path: str) -> None:
        if self.replicas.is_main:  # every process holds the same state: rank 0 writes it
            super().save_checkpoint(path)
