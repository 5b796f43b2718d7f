"""A step plan that splits each batch across processes: one replica of the model per core.

NumPy runs everything but the matrix products on one core, and OpenBLAS splits a mid-sized
product poorly across two. A convolutional network's step is mostly such work (im2col copies,
pooling, ReLU, many mid-sized products): on a 2-core machine LeNet-5's step at batch 64 ran at
0.92-0.95x PyTorch's with the cores shared by OpenBLAS alone. Two halves of the batch stepped
at once in two *threads* gained little (each half's Python work waits for the GIL: a half
step took 12.6 ms beside the other instead of 10.0 ms alone); in two *processes* a half step
took 10.3 ms beside the other. So :class:`SplitStepPlan` runs part of every batch in worker
processes, exactly:

- replica ``r`` takes rows ``[lo_r, hi_r)`` of the batch (``np.array_split``'s sizes); replica
  0 is the model itself, in this process; the others are copies in worker processes (started
  at the first split step, one BLAS thread each), whose parameters are read from a shared
  memory block that this process fills with the model's values before every step, with its
  buffers, its sub-modules' train/eval modes and its parameters' ``requires_grad``;
- each replica's loss is seeded with its share ``W_r/W`` of the batch's loss denominator (the
  mean loss of the whole batch is ``Σ_r (W_r/W)·C_r``, class weights, ignored targets and
  sample weights included), so the gradients, summed in replica order into the model's, are
  the batch's; the optimizer then updates the model once, in this process;
- dropout and batch normalisation see the whole batch, as in data-parallel training
  (:mod:`chainrule.nn.replicas`): every replica draws the batch's dropout masks from the
  model's generator state (this process's generator advances once, as in one process) and
  keeps its rows; batch norm's mean and variance are sums over the replicas, forward and
  backward (each worker sends its sums here and receives the total).

The result equals the eager step's up to the order of floating-point sums (as PyTorch's results
depend on its number of threads), and it passes :func:`~chainrule.training.steps.
check_step_plan`; the same run on the same machine gives the same numbers (a resumed fit
included). A model that cannot be copied to a worker (an attribute that does not pickle) runs
in this process, with a warning. A batch whose loss denominator is 0 (every target ignored,
every sample weight 0) runs in this process, which says so as one process does.

The trainer chooses the plan only where it was measured to pay: a model with a convolution,
built of chainrule's own layers (no forward hook) in float32, a mean or sum loss of
chainrule's own classes, at least two cores, and batches whose forward pass costs at least
``SPLIT_STEP_MACS`` multiply-adds (others run eagerly). Starting the workers costs about 0.3 s
once per fit. ``CHAINRULE_STEP_PROCESSES`` sets the number of replicas (``1`` turns the plan
off). A worker that fails raises its exception here (with its traceback in a note); one that
dies is reported with its exit code.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import warnings
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .._random import current_generator
from ..nn.module import Module
from ..nn.replicas import BatchSplit, batch_split
from ..tensor import Tensor
from ._inputs import column_target
from .steps import EagerPlan, StepPlan

__all__ = ["SPLIT_STEP_MACS", "SplitStepPlan", "step_processes"]

#: the smallest batch (forward multiply-adds of every layer) the trainer splits: LeNet-5 at
#: batch 64 (27 million) gained; the MNIST-1D CNN at batch 128 (4 million) lost in threads
SPLIT_STEP_MACS = 10_000_000


def step_processes() -> int:
    """Replicas a split step uses: ``CHAINRULE_STEP_PROCESSES`` if set (a positive integer,
    or ``auto``), else the cores this process may run on, at most 4."""
    value = os.environ.get("CHAINRULE_STEP_PROCESSES", "auto").strip().lower()
    if value not in ("", "auto"):
        try:
            n = int(value)
        except ValueError:
            raise ValueError(
                f"CHAINRULE_STEP_PROCESSES must be 'auto' or a positive integer, got {value!r}"
            ) from None
        if n < 1:
            raise ValueError(f"CHAINRULE_STEP_PROCESSES must be at least 1, got {n}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


# ---------------------------------------------------------------------------------------------
# shared memory: a mapped file, unlinked as soon as every process has mapped it
# ---------------------------------------------------------------------------------------------
class Region:
    """A block of memory shared with the workers: a mapped file in ``/dev/shm`` where there is
    one with room, else in the temporary directory. :meth:`unlink` removes the file once every
    process has mapped it: the memory lives as long as a mapping does, and no file is left
    behind.

    The file's blocks are allocated when it is made (``posix_fallocate``): a full ``/dev/shm``
    (64 MB in a default Docker container) raises OSError here instead of killing the process
    with SIGBUS when a page is first written.
    """

    def __init__(self, nbytes: int, path: str | None = None) -> None:
        self.nbytes = max(int(nbytes), 1)
        if path is None:
            shm = "/dev/shm"
            places = [shm] if os.path.isdir(shm) and os.access(shm, os.W_OK) else []
            error: OSError | None = None
            for where in [*places, None]:  # None: the temporary directory
                fd, path = tempfile.mkstemp(prefix="chainrule-step-", dir=where)
                try:
                    os.ftruncate(fd, self.nbytes)
                    if hasattr(os, "posix_fallocate"):
                        os.posix_fallocate(fd, 0, self.nbytes)
                    self.map = mmap.mmap(fd, self.nbytes)
                    break
                except OSError as exc:  # no room there
                    error = exc
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                finally:
                    os.close(fd)
            else:
                raise OSError(
                    f"no room for {self.nbytes} bytes of shared memory in /dev/shm or "
                    f"{tempfile.gettempdir()}: {error}"
                )
        else:
            fd = os.open(path, os.O_RDWR)
            try:
                self.map = mmap.mmap(fd, self.nbytes)
            finally:
                os.close(fd)
        self.path = path

    def array(self, offset: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A view of the block: ``shape`` values of ``dtype`` from byte ``offset``."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.map, dt, count, offset).reshape(shape)

    def unlink(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _layout(params: list[Any]) -> tuple[list[int], int]:
    """Each parameter's first element in the flat block, and the elements in all."""
    offsets, total = [], 0
    for p in params:
        offsets.append(total)
        total += p.data.size
    return offsets, total


# ---------------------------------------------------------------------------------------------
# one replica's part of a step (here and in the workers)
# ---------------------------------------------------------------------------------------------
def run_part(
    model: Module,
    loss_fn: Any,
    optimizer: Any,
    x: np.ndarray,
    y: Any,
    w: np.ndarray | None,
    scale: float,
    weighs: bool,
    split: BatchSplit,
) -> tuple[float, np.ndarray]:
    """Forward, loss and backward of one replica on its rows, as the eager plan runs them,
    with the loss seeded by the replica's share ``scale``; returns (its share of the batch
    loss, its output). ``optimizer`` zeroes the model's gradients (a worker's are cleared
    before); rows that weigh nothing still run the graph (batch norm's sums) and give zero
    gradients."""
    with batch_split(split):
        out = model(x)
        t = column_target(loss_fn, out, y)
        if weighs:
            loss = loss_fn(out, t, sample_weight=w) if w is not None else loss_fn(out, t)
            if not isinstance(loss, Tensor):
                raise TypeError(
                    f"the loss must return a chainrule Tensor, got {type(loss).__name__}"
                )
            value = loss.item() * scale
        else:
            loss, value = out.sum(), 0.0
        if optimizer is not None:
            optimizer.zero_grad()
        loss.backward(np.asarray(scale if weighs else 0.0, loss.dtype))
    return value, out.data


def _ours(model: Module) -> bool:
    """Every sub-module is one of chainrule's layers: a copy in another process computes what
    the model computes (their forward keeps no state outside their buffers)."""
    return all(type(m).__module__.startswith("chainrule.nn.") for m in model.modules())


def _has_conv(model: Module) -> bool:
    from ..nn.conv import Conv1d, Conv2d

    return any(isinstance(m, (Conv1d, Conv2d)) for m in model.modules())


def _dtype(model: Module) -> str | None:
    """The one dtype of the model's parameters, or None (none, or several)."""
    dtypes = {p.data.dtype.name for p in model.parameters()}
    return dtypes.pop() if len(dtypes) == 1 else None


class WorkerError(RuntimeError):
    """A worker process of :class:`SplitStepPlan` ended or could not be started."""


class _Worker:
    """One worker process and its connection (see :mod:`chainrule.training._split_worker`)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the chainrule this process runs
        code = (  # Ctrl-C is the training process's, from the worker's first line on
            "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            f"import sys; sys.path.insert(0, {root!r}); "
            "from chainrule.training._split_worker import main; "
            f"main({theirs.fileno()})"
        )
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"  # one core each: the replicas are the parallelism
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.send(("setup", setup))

    def send(self, message: Any) -> None:
        try:
            self.conn.send(message)
        except OSError:
            self._ended()

    def recv(self) -> Any:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self._ended()

    def expect(self, kind: str, what: str) -> tuple[Any, ...]:
        """The worker's next message, which must be ``kind`` (``what`` it is, for the message
        otherwise); its exception if it sends one."""
        message = self.recv()
        if message[0] == "error":
            _raise_from_worker(message, self.proc.pid)
        if message[0] != kind:
            raise WorkerError(
                f"a worker process of the split training step sent {message[0]!r} where {what} "
                "was due (the replicas ran different graphs)"
            )
        return message  # type: ignore[no-any-return]

    def _ended(self) -> NoReturn:
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(2)
        raise WorkerError(
            f"a worker process of the split training step (pid {self.proc.pid}) ended "
            f"unexpectedly (exit code {code}); set CHAINRULE_STEP_PROCESSES=1 to train in one "
            "process"
        ) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()  # the worker ends at the end of its input
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _close_all(workers: list[_Worker]) -> None:
    for w in workers:
        w.close()


def _raise_from_worker(message: tuple[Any, ...], pid: int) -> None:
    _, exc, text = message
    if not isinstance(exc, BaseException):
        exc = RuntimeError(str(exc))
    note = f"raised in a worker process of the split training step (pid {pid}):\n{text}"
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    raise exc


class SplitStepPlan(StepPlan):
    """Forward and backward on parts of each batch at once, in this process and in worker
    processes, one replica each; the gradients summed into the model's (see the module
    docstring).

    Parameters
    ----------
    model, loss_fn, optimizer
        As for every :class:`~chainrule.training.steps.StepPlan`.
    processes : int, optional
        Replicas, this process included; default :func:`step_processes`.

    Attributes
    ----------
    min_macs : int
        A batch whose forward pass costs fewer multiply-adds (summed over the layers,
        :func:`chainrule.nn.cost.layer_flops`) runs in this process alone (the eager plan);
        ``SPLIT_STEP_MACS`` by default.
    min_rows : int
        Rows per replica below which a batch runs in this process alone (8).
    conv_only : bool
        :meth:`create` declines a model without a convolution (True: where it was measured).
    dtypes : tuple of str or None
        The parameter dtypes :meth:`create` accepts (``("float32",)``: in float64 LeNet-5's
        step took 33 ms split against 24 ms in one process with two BLAS threads; None: any).
        A subclass may change these four (the tests split float64 MLP steps of 8 rows).
    """

    name = "split"
    min_macs = SPLIT_STEP_MACS
    min_rows = 8
    conv_only = True
    dtypes: tuple[str, ...] | None = ("float32",)

    def __init__(
        self, model: Module, loss_fn: Any, optimizer: Any, processes: int | None = None
    ) -> None:
        super().__init__(model, loss_fn, optimizer)
        self.processes = step_processes() if processes is None else int(processes)
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.name = f"split({self.processes})"
        self._eager = EagerPlan(model, loss_fn, optimizer)
        self._workers: list[_Worker] = []
        self._finalizer: Any = None
        self._signature: Any = None
        self._pays: dict[tuple[int, ...], bool] = {}
        self._data: Region | None = None
        self.off: str | None = None  # why every step runs in this process (see _turn_off)

    # ----- choosing it -----
    @classmethod
    def create(cls, model: Module, loss_fn: Any, optimizer: Any) -> SplitStepPlan | None:
        """The plan, or None where it does not apply (one core, a layer that is not
        chainrule's, parameters of several dtypes, a loss that is not a mean or sum of
        chainrule's) or was not measured to pay (no convolution, with ``conv_only``; a dtype
        not in ``dtypes``)."""
        from .parallel import _MEAN_LOSSES

        n = step_processes()
        dtype = _dtype(model)
        if n < 2 or not _ours(model) or dtype is None:
            return None
        if cls.conv_only and not _has_conv(model):
            return None
        if cls.dtypes is not None and dtype not in cls.dtypes:
            return None
        if not isinstance(loss_fn, _MEAN_LOSSES) or loss_fn.reduction not in ("mean", "sum"):
            return None
        if not type(loss_fn).__module__.startswith("chainrule.nn."):  # a user's subclass
            return None
        return cls(model, loss_fn, optimizer, n)

    def usable(self) -> bool:
        """No forward hook watches the model (the copies would not call it). Also checked
        here, once per epoch: whether the model's modules, parameters or buffers changed since
        the workers copied it (they then start again with a new copy). Within an epoch a step
        checks only its parameters' shapes and dtypes: like the trainer, which keeps the
        parameter list of the fit, the plan takes the model's structure as fixed during an
        epoch."""
        if self.off:
            return False
        modules = list(self.model.modules())
        if any(m.__dict__.get("_forward_hooks") for m in modules):
            return False
        if self._workers and self._structure() != self._signature:
            self.close()
        return True

    def check_targets(self, y: np.ndarray) -> None:
        self._eager.check_targets(y)

    def splits(self, shape: tuple[int, ...]) -> bool:
        """Whether a batch of ``shape`` is split (else this process runs it alone): enough
        rows for every replica and a forward pass of at least ``min_macs``."""
        pays = self._pays.get(shape)
        if pays is None:
            from ..nn.cost import layer_flops

            pays = self.processes > 1 and shape[0] >= self.processes * self.min_rows
            if pays and self.min_macs > 0:
                pays = sum(layer_flops(self.model, shape).values()) >= self.min_macs
            self._pays[shape] = pays
        return pays

    # ----- the workers -----
    def _structure(self) -> Any:
        return (
            tuple(map(id, self.model.modules())),
            tuple((id(p), p.data.dtype, p.data.shape) for p in self.model.parameters()),
            tuple((n, b.dtype, b.shape) for n, b in self.model.named_buffers()),
        )

    def _start(self) -> None:
        """Start the workers with copies of the model as it is now (again after the model's
        modules, parameters or buffers changed, or a failed step)."""
        self.close()
        self._signature = self._structure()
        self._pays.clear()
        params = list(self.model.parameters())
        self._params = params
        self._shapes = [p.data.shape for p in params]
        self._buffer_homes = [  # read at every step: a buffer may be replaced, not only written
            (m, name) for m in self.model.modules() for name in getattr(m, "_buffer_names", ())
        ]
        self._offsets, total = _layout(params)
        dtype = params[0].data.dtype if params else np.dtype(np.float32)
        self._dtype = dtype
        self._modules = list(self.model.modules())
        self._rngs = {  # the layers with a generator of their own (dropout's rng=...)
            i: m.rng  # type: ignore[attr-defined]
            for i, m in enumerate(self._modules)
            if isinstance(getattr(m, "rng", None), np.random.Generator)
        }
        try:
            blob = pickle.dumps((self.model, self.loss_fn), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an attribute set on the model (a lambda, an open file)
            self._turn_off(f"the model cannot be copied to a worker process ({exc})")
            return
        regions: list[Region] = []
        self._shared: list[tuple[np.ndarray, np.ndarray]] = []  # (parameters, gradients)
        workers: list[_Worker] = []
        try:
            for _ in range(self.processes - 1):
                try:
                    region = Region(2 * total * dtype.itemsize)
                except OSError as exc:
                    _close_all(workers)
                    self._turn_off(str(exc))
                    return
                regions.append(region)
                self._shared.append(
                    (region.array(0, (total,), dtype), region.array(total * dtype.itemsize,
                                                                    (total,), dtype))
                )  # fmt: skip
                setup = {"model": blob, "region": region.path, "nbytes": region.nbytes,
                         "offsets": self._offsets, "total": total, "dtype": dtype.str}  # fmt: skip
                workers.append(_Worker(setup))
            for w in workers:
                message = w.recv()
                if message[0] == "error":  # it could not rebuild the model (or not map)
                    _close_all(workers)
                    self._turn_off(
                        "a worker process could not copy the model "
                        f"({type(message[1]).__name__}: {message[1]})"
                    )
                    return
        except BaseException:
            _close_all(workers)
            raise
        finally:
            for region in regions:  # mapped by both sides now (or failed): no file stays
                region.unlink()
        self._workers = workers
        self._finalizer = weakref.finalize(self, _close_all, list(workers))

    def _turn_off(self, why: str) -> None:
        """Run every step in this process from now on (the same numbers, one core), and say
        why once."""
        self.off = why
        warnings.warn(
            f"chainrule: the split training step is off, so this fit runs on one core: {why}",
            RuntimeWarning,
            stacklevel=4,
        )

    def close(self) -> None:
        """End the worker processes (the next split step starts them again)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._workers = []
        if self._data is not None:
            self._data.unlink()
            self._data = None

    def _data_view(self, x: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Where the workers' rows go, and the path of a new block to map (None: the one
        they have); a block grows to the largest part seen, with room to spare."""
        need = x.nbytes
        path = None
        if self._data is None or self._data.nbytes < need:
            self._data = Region(max(need * 2, 1 << 16))
            path = self._data.path
        return self._data.array(0, x.shape, x.dtype), path

    # ----- one step -----
    def run(self, xb: np.ndarray, yb: Any, wb: np.ndarray | None) -> tuple[float, np.ndarray]:
        if self.off or not self.splits(tuple(xb.shape)):
            return self._eager.run(xb, yb, wb)
        if not self._workers or any(
            p.data.shape != shape or p.data.dtype != self._dtype
            for p, shape in zip(self._params, self._shapes)
        ):
            self._start()
            if self.off:
                return self._eager.run(xb, yb, wb)
        from ._threads import one_blas_thread

        try:
            with one_blas_thread(True):  # the cores are the replicas'
                return self._split_run(xb, yb, wb)
        except BaseException:
            self.close()  # a worker may be waiting mid-step: start afresh next time
            raise

    def _split_run(
        self, xb: np.ndarray, yb: Any, wb: np.ndarray | None
    ) -> tuple[float, np.ndarray]:
        from .collective import _bounds
        from .parallel import _denominators

        n, k = len(xb), self.processes
        sums = self.loss_fn.reduction == "sum"
        if sums:
            shares, total = np.ones(n, np.float64), 1.0
        else:
            shares = _denominators(self.loss_fn, np.asarray(yb), wb)
            total = float(shares.sum())
            if not total > 0:  # nothing weighs: the loss is undefined (NaN or an error)
                return self._eager.run(xb, yb, wb)  # as one process says it
        gen = current_generator()
        common = {
            "n": n,
            "gen": (type(gen.bit_generator).__name__, gen.bit_generator.state),
            "rngs": [(i, g.bit_generator.state) for i, g in self._rngs.items()],
            "modes": [m.training for m in self._modules],
            "requires_grad": [p.requires_grad for p in self._params],
            "buffers": [getattr(m, name) for m, name in self._buffer_homes] or None,
        }
        parts = []
        for r in range(k):
            lo, hi = _bounds(n, k, r)
            mine = float(shares[lo:hi].sum())
            scale = 1.0 if sums else mine / total  # total > 0: checked above
            parts.append((lo, hi, scale, mine > 0))
        # every worker's rows (one block: the workers read their own part) and parameters
        lo1 = parts[1][0]
        try:
            data, path = self._data_view(xb[lo1:])
        except OSError as exc:  # no room for the rows: one process from now on
            self.close()
            self._turn_off(str(exc))
            return self._eager.run(xb, yb, wb)
        np.copyto(data, xb[lo1:])
        for r, worker in enumerate(self._workers, start=1):
            values, _ = self._shared[r - 1]
            for p, off in zip(self._params, self._offsets):
                values[off : off + p.data.size] = p.data.reshape(-1)
            lo, hi, scale, weighs = parts[r]
            worker.send(("step", {
                **common, "lo": lo, "hi": hi, "scale": scale, "weighs": weighs,
                "data": path, "data_nbytes": self._data.nbytes,  # type: ignore[union-attr]
                "x": (lo - lo1, hi - lo1, xb.shape[1:], xb.dtype.str),
                "y": yb[lo:hi], "w": None if wb is None else wb[lo:hi],
            }))  # fmt: skip
        lo, hi, scale, weighs = parts[0]
        split = BatchSplit(n, lo, hi, self._allreduce)
        value, out = run_part(self.model, self.loss_fn, self.optimizer, xb[lo:hi], yb[lo:hi],
                              None if wb is None else wb[lo:hi], scale, weighs, split)  # fmt: skip
        outs = [out]
        for r, worker in enumerate(self._workers, start=1):
            _, part_value, part_out, flags = worker.expect("done", "its step's end")
            value += part_value
            outs.append(part_out)
            _, grads = self._shared[r - 1]
            for p, off, has in zip(self._params, self._offsets, flags):
                if not has:
                    continue
                g = grads[off : off + p.data.size].reshape(p.data.shape)
                if p.grad is None:  # not reached in this process's graph
                    p.grad = np.array(g)
                else:
                    p.grad += g
        if path is not None:  # every worker has mapped the new block
            self._data.unlink()  # type: ignore[union-attr]
        return value, np.concatenate(outs)

    def _allreduce(self, a: np.ndarray) -> np.ndarray:
        """Batch norm's sums: this process's array plus every worker's, in replica order; the
        total is sent back to each worker."""
        total = np.array(a, copy=True)
        for worker in self._workers:
            total += worker.expect("sum", "a batch-norm sum")[1]
        for worker in self._workers:
            worker.send(("total", total))
        return total
