"""Data-parallel training over MPI: the same results on 1 or N processes (Horovod's names).

Every process holds the whole model; each computes the gradient of its share of every batch
by backpropagation, one all-reduce sums the gradients, and every process takes the same step.
The transport is MPI through ``mpi4py`` (the ``distributed`` extra brings it with the ``mpich``
wheel, whose ``mpiexec`` lives in the environment)::

    pip install "chainrule[distributed]"
    mpiexec -n 4 python -m mpi4py train.py   # a script calling cr.fit(..., distributed=True)
    chainrule train --data big.csv --target y --workers 4

``python -m mpi4py`` turns an unhandled exception into ``MPI_Abort``; :func:`init` does the same
for scripts started without it, so one failing process ends the whole job instead of leaving
the others waiting in an all-reduce.

The building blocks, as in Horovod: :func:`init`, :func:`rank`, :func:`size`, :func:`is_main`,
:func:`broadcast_parameters` (rank 0's weights and buffers to every process, then checked),
:func:`broadcast_optimizer_state`, :func:`allreduce`, :class:`DistributedOptimizer` (its
``step()`` first all-reduces the flat gradient buffer: one ``Allreduce`` per step and dtype,
not one per parameter) and :func:`shard` (this process's rows). ``cr.fit(...,
distributed=True)`` uses all of them so that ``batch_size`` is the *global* batch and the run
equals the single-process run with the same seed to rounding error; see
``docs/distributed.md``.

mpi4py is imported only when one of these functions is called.
"""

from __future__ import annotations

from .training.parallel import (
    INSTALL,
    DistributedOptimizer,
    DistributedTrainer,
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

__all__ = [
    "INSTALL",
    "DistributedOptimizer",
    "DistributedTrainer",
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
