"""The MPI processes and Horovod's building blocks of data-parallel training.

mpi4py is imported lazily (:func:`_mpi`); :func:`init` starts MPI once and makes a failing
process end the whole job. Then, as Horovod: :func:`rank`, :func:`size`, :func:`is_main`,
:func:`shard`, :func:`allreduce`, :func:`broadcast_parameters` (after :func:`check_same_model`),
:func:`broadcast_optimizer_state`, :func:`broadcast_object`, :func:`allreduce_gradients` and
:func:`DistributedOptimizer`. Users import them from :mod:`chainrule.distributed`; the trainer of
``fit(..., distributed=True)`` is in :mod:`chainrule.training.parallel`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..nn.module import Module
from ..optim.optimizers import Optimizer
from ..tensor import enable_grad

__all__ = [
    "INSTALL",
    "RUN_HINT",
    "DistributedOptimizer",
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

INSTALL = 'pip install "chainrule[distributed]"'
RUN_HINT = (
    "start the processes with mpiexec: `mpiexec -n 2 python -m mpi4py your_script.py`, or "
    "`chainrule train ... --workers 2`"
)
# set by the launchers of MPICH (Hydra), Open MPI, Intel MPI, Slurm's PMI(x) and MS-MPI
_MPIEXEC_VARS = (
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "MSMPI_RANK",
)

_STATE: dict[str, Any] = {"comm": None, "hooked": False}
_ABORT_GRACE = 0.5  # seconds between a failing process's last words and the abort


# ---------------------------------------------------------------------------------------------
# the processes
# ---------------------------------------------------------------------------------------------
def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"chainrule.distributed needs mpi4py and an MPI library ({exc}): {INSTALL} "
            "installs mpi4py and the mpich wheel, which brings mpiexec"
        ) from None
    return MPI


def launched_by_mpiexec() -> bool:
    """True if this process was started by ``mpiexec`` (or another MPI launcher)."""
    return any(v in os.environ for v in _MPIEXEC_VARS)


def init(comm: Any = None) -> None:
    """Start MPI (once) and make one failing process end the whole job.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        The processes to train with; default ``MPI.COMM_WORLD``.

    Notes
    -----
    Installs a ``sys.excepthook`` that, after the usual traceback, prints one line
    ``chainrule.distributed: rank R of N failed: <exception>`` and calls ``MPI_Abort``, so the
    other processes do not wait forever in a collective operation (what ``python -m mpi4py``
    does too). Idempotent, as Horovod's ``hvd.init()``.
    """
    MPI = _mpi()
    if comm is not None:
        _STATE["comm"] = comm
    elif _STATE["comm"] is None:
        _STATE["comm"] = MPI.COMM_WORLD
    directory = os.environ.get("CHAINRULE_RANK_DIR")  # set by `chainrule train --workers`
    if directory and os.path.isdir(directory):  # so that it can name a rank that was killed
        try:
            with open(os.path.join(directory, f"rank{_STATE['comm'].Get_rank()}"), "w") as fh:
                fh.write(str(os.getpid()))
        except OSError:
            pass
    if not _STATE["hooked"]:
        _STATE["hooked"] = True
        previous = sys.excepthook

        def hook(etype: Any, value: Any, tb: Any) -> None:
            previous(etype, value, tb)
            abort_job(1, f"{etype.__name__}: {value}")

        sys.excepthook = hook


def _comm() -> Any:
    if _STATE["comm"] is None:
        init()
    return _STATE["comm"]


def rank() -> int:
    """This process's number, 0 to ``size() - 1`` (0 is the main process)."""
    return int(_comm().Get_rank())


def size() -> int:
    """The number of processes."""
    return int(_comm().Get_size())


def is_main() -> bool:
    """True on rank 0: the process that prints progress and writes files."""
    return rank() == 0


def abort_job(status: int, why: str | None) -> None:
    """End every process of a running MPI job (nothing if MPI is not in use or runs alone).

    Prints one line naming this rank and ``why`` (unless ``why`` is None: already said), then
    ``MPI_Abort(status)``.
    """
    comm = _STATE["comm"]
    if comm is None or "mpi4py.MPI" not in sys.modules:
        return
    try:
        n, r = comm.Get_size(), comm.Get_rank()
    except Exception:  # MPI already finalised
        return
    if n <= 1:
        return
    if why is not None:
        why = " ".join(str(why).split())
        print(
            f"chainrule.distributed: rank {r} of {n} failed: {why}; ending the job", file=sys.stderr
        )
    sys.stdout.flush()
    sys.stderr.flush()
    # NOTE: mpiexec forwards each process's output through a pipe and stops forwarding once
    # an abort reaches it: without a moment for the line above (and the traceback) to be
    # read, it was lost in about one failing job in eight (two ranks failing together)
    time.sleep(_ABORT_GRACE)
    comm.Abort(int(status) or 1)


def where() -> str:
    """``"rank R of N: "`` while a job of several processes runs, else ``""`` (for messages)."""
    comm = _STATE["comm"]
    if comm is None or comm.Get_size() <= 1:
        return ""
    return f"rank {comm.Get_rank()} of {comm.Get_size()}: "


def _bounds(rows: int, parts: int, k: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of part ``k`` of ``parts`` (``np.array_split``'s sizes: the first
    ``rows % parts`` parts have one row more)."""
    base, extra = divmod(rows, parts)
    lo = k * base + min(k, extra)
    return lo, lo + base + (1 if k < extra else 0)


def shard(n_rows: int) -> slice:
    """This process's contiguous rows of ``n_rows``: ``X[cr.distributed.shard(len(X))]``.

    The sizes are ``np.array_split``'s (the first ``n_rows % size()`` ranks have one row more),
    so every row belongs to exactly one process. Slicing a memory-mapped ``.npy`` with it reads
    only those rows.

    Examples
    --------
    >>> import chainrule as cr
    >>> cr.training.collective._bounds(10, 3, 0), cr.training.parallel._bounds(10, 3, 2)
    ((0, 4), (7, 10))
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise ValueError(f"n_rows must be a non-negative int, got {n_rows!r}")
    lo, hi = _bounds(int(n_rows), size(), rank())
    return slice(lo, hi)


# ---------------------------------------------------------------------------------------------
# collective operations
# ---------------------------------------------------------------------------------------------
def _sum_inplace(buf: np.ndarray) -> np.ndarray:
    """``buf ← Σ_r buf_r`` over every process, in place (one ``Allreduce(IN_PLACE)``)."""
    comm = _comm()
    if comm.Get_size() > 1:
        comm.Allreduce(_mpi().IN_PLACE, buf)
    return buf


def allreduce(array: Any, op: str = "average") -> np.ndarray:
    """The sum or average of ``array`` over every process (a new array; Horovod's
    ``allreduce``, whose default is the average)."""
    if op not in ("average", "sum"):
        raise ValueError(f"op must be 'average' or 'sum', got {op!r}")
    out = np.array(getattr(array, "data", array), copy=True, order="C")
    if out.dtype.kind not in "fiu":
        raise TypeError(f"allreduce needs a numeric array, got dtype {out.dtype}")
    _sum_inplace(out)
    if op == "average":
        if out.dtype.kind != "f":
            raise TypeError(f"op='average' needs a float array, got dtype {out.dtype}")
        out /= size()
    return out


def _describe(model: Module) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(kind, name, shape, dtype) of every parameter then buffer, in the model's order."""
    rows = [
        ("parameter", n, tuple(p.data.shape), p.data.dtype.str) for n, p in model.named_parameters()
    ]
    rows += [
        ("buffer", n, tuple(np.shape(b)), np.asarray(b).dtype.str) for n, b in model.named_buffers()
    ]
    return rows


def _first_difference(mine: list[Any], root: list[Any], r: int, root_rank: int) -> str | None:
    def show(row: Any) -> str:
        kind, name, shape, dtype = row
        return f"{kind} '{name}' {shape} {np.dtype(dtype).name}"

    for i, (a, b) in enumerate(zip(mine, root)):
        if a != b:
            return f"entry {i} is {show(b)} on rank {root_rank} but {show(a)} on rank {r}"
    if len(mine) != len(root):
        return (
            f"rank {root_rank}'s model has {len(root)} parameters and buffers, rank {r}'s has "
            f"{len(mine)}"
        )
    return None


def check_same_model(model: Module, root_rank: int = 0) -> None:
    """Refuse, on every process, models whose parameters or buffers differ in name, order,
    shape or dtype from ``root_rank``'s (ValueError naming the first difference)."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a chainrule Module, got {type(model).__name__}")
    comm = _comm()
    described = comm.allgather(_describe(model))
    root = described[root_rank]
    for r, mine in enumerate(described):
        diff = _first_difference(mine, root, r, root_rank)
        if diff is not None:
            raise ValueError(
                f"the processes hold different models ({diff}); build the same model on every "
                "process"
            )


def _arrays_of(model: Module) -> list[tuple[str, np.ndarray]]:
    out = [(n, p.data) for n, p in model.named_parameters()]
    out += [(n, b) for n, b in model.named_buffers() if isinstance(b, np.ndarray)]
    return out


def _checksum(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _broadcast_arrays(arrays: list[np.ndarray], root_rank: int) -> None:
    """Overwrite ``arrays`` (in place) with ``root_rank``'s: one ``Bcast`` per dtype."""
    comm = _comm()
    by_dtype: dict[str, list[np.ndarray]] = {}
    for a in arrays:
        by_dtype.setdefault(a.dtype.str, []).append(a)
    for dtype in sorted(by_dtype):
        group = by_dtype[dtype]
        flat = np.concatenate([a.reshape(-1) for a in group]) if group else np.empty(0)
        comm.Bcast(flat, root=root_rank)
        start = 0
        for a in group:
            a[...] = flat[start : start + a.size].reshape(a.shape)
            start += a.size


def broadcast_parameters(model: Module, root_rank: int = 0) -> None:
    """Copy ``root_rank``'s weights and buffers into every process's model, then check them.

    The models are first compared (names, order, shapes and dtypes of every parameter and
    buffer: ValueError naming the first difference, on every process); then one ``Bcast`` per
    dtype sends the values, written in place; finally a SHA-256 checksum of every process's
    arrays is compared with the root's (RuntimeError if one differs). Horovod's
    ``broadcast_parameters(model.state_dict(), root_rank=0)``.
    """
    comm = _comm()
    if not 0 <= root_rank < comm.Get_size():
        raise ValueError(f"root_rank must be in [0, {comm.Get_size()}), got {root_rank}")
    check_same_model(model, root_rank)
    arrays = [a for _, a in _arrays_of(model)]
    _broadcast_arrays(arrays, root_rank)
    sums = comm.allgather(_checksum(arrays))
    bad = [r for r, s in enumerate(sums) if s != sums[root_rank]]
    if bad:
        raise RuntimeError(
            f"after broadcast_parameters the weights of rank(s) {bad} still differ from rank "
            f"{root_rank}'s (checksum mismatch)"
        )


def broadcast_object(obj: Any, root_rank: int = 0) -> Any:
    """``root_rank``'s ``obj`` on every process (pickled by mpi4py; Horovod's
    ``broadcast_object``). Every process must call it; it returns once the root has sent."""
    comm = _comm()
    if not 0 <= root_rank < comm.Get_size():
        raise ValueError(f"root_rank must be in [0, {comm.Get_size()}), got {root_rank}")
    return comm.bcast(obj if comm.Get_rank() == root_rank else None, root=root_rank)


def broadcast_optimizer_state(optimizer: Optimizer, root_rank: int = 0) -> None:
    """Give every process ``root_rank``'s optimizer state and hyperparameters (Horovod's
    name): after it, every process's ``optimizer.state_dict()`` equals the root's."""
    comm = _comm()
    state = comm.bcast(optimizer.state_dict() if comm.Get_rank() == root_rank else None, root_rank)
    optimizer.load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------
def _gradient_buffers(optimizer: Any) -> list[np.ndarray] | None:
    """The parameter arena's flat gradient buffers if every parameter's gradient lives in
    them now (one all-reduce per buffer then covers them all), else None."""
    arena = getattr(optimizer, "arena", None)
    if arena is None:
        return None
    arena.ensure()
    held = {id(p) for p in arena.params}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not arena.ready() or any(id(p) not in held for p in params):
        return None
    return list(arena.grad_buffers())


def allreduce_gradients(optimizer: Optimizer, op: str = "sum") -> int:
    """Sum (or average) every parameter's gradient over all processes, in place.

    One ``Allreduce(IN_PLACE)`` per flat gradient buffer (one per dtype and parameter group);
    if the gradients are not laid out in flat buffers (a user replaced one), they are packed
    into one buffer per dtype first. A parameter without a gradient takes part with zeros and
    receives the sum, as in Horovod. Returns the number of all-reduce calls.
    """
    if op not in ("average", "sum"):
        raise ValueError(f"op must be 'average' or 'sum', got {op!r}")
    n = size()
    buffers = _gradient_buffers(optimizer)
    calls = 0
    if buffers is not None:
        for g in buffers:
            _sum_inplace(g)
            calls += 1
            if op == "average" and n > 1:
                g /= n
        return calls
    params = [p for grp in optimizer.param_groups for p in grp["params"] if p.requires_grad]
    by_dtype: dict[str, list[Any]] = {}
    for p in params:
        by_dtype.setdefault(p.data.dtype.str, []).append(p)
    for dtype in sorted(by_dtype):
        group = by_dtype[dtype]
        flat = np.concatenate(
            [
                (np.zeros(p.data.size, p.data.dtype) if p.grad is None else p.grad.reshape(-1))
                for p in group
            ]
        )
        _sum_inplace(flat)
        calls += 1
        if op == "average" and n > 1:
            flat /= n
        start = 0
        for p in group:
            g = flat[start : start + p.data.size].reshape(p.data.shape)
            start += p.data.size
            if p.grad is None:
                p.grad = g.copy()
            else:
                p.grad[...] = g
    return calls


class _DistributedStep:
    """Mixed into the optimizer's own class by :func:`DistributedOptimizer`."""

    _allreduce_op: str
    _allreduce_on: bool

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if self._allreduce_on:
            allreduce_gradients(self, self._allreduce_op)  # type: ignore[arg-type]
        super().step()  # type: ignore[misc]
        return loss


def DistributedOptimizer(optimizer: Optimizer, op: str = "average") -> Optimizer:  # noqa: N802
    """``optimizer`` whose ``step()`` first all-reduces the gradients (Horovod's name).

    The result is an instance of the optimizer's own class (``isinstance`` holds, ``fit``
    accepts it) sharing its state: the same parameters, hyperparameters and moments. Before
    each update, the flat gradient buffer is summed over all processes with one
    ``Allreduce(IN_PLACE)`` per dtype and divided by ``size()`` (``op="average"``, Horovod's
    default: the right scale when every process takes a batch of the same size and the loss is
    a mean) or left as the sum (``op="sum"``: when each process's loss is already its share of
    the global loss).

    For the usual case prefer ``cr.fit(..., distributed=True)``, which weights each process's
    share by its number of samples (uneven batches, sample weights) and so equals one process.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a chainrule Optimizer, got {type(optimizer).__name__}")
    if op not in ("average", "sum"):
        raise ValueError(f"op must be 'average' or 'sum', got {op!r}")
    if isinstance(optimizer, _DistributedStep):
        raise ValueError("optimizer is already a DistributedOptimizer")
    init()
    base = type(optimizer)
    cls = type(f"Distributed{base.__name__}", (_DistributedStep, base), {})
    wrapped: Any = object.__new__(cls)
    wrapped.__dict__ = optimizer.__dict__  # one state: the same groups, moments and buffers
    wrapped._allreduce_op = op
    wrapped._allreduce_on = True
    return wrapped  # type: ignore[no-any-return]
