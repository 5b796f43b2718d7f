"""A worker process of :class:`~chainrule.training.split_step.SplitStepPlan`.

Started by the plan with ``python -c`` (never by ``multiprocessing``: a user's script is not
imported again), one BLAS thread, and one end of a socket. It receives the model and the loss
once, maps the shared block where its parameters are read and its gradients written, and then
runs its rows of every step until the socket closes (the plan closed, or its process ended).
Ctrl-C is the main process's to handle: the worker ignores SIGINT.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .._random import use_generator
from ..nn.module import Module
from ..nn.replicas import BatchSplit
from .split_step import run_part


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    with contextlib.suppress(EOFError, OSError):  # EOF: the plan is gone
        _serve(conn)
    sys.exit(0)


def _serve(conn: Connection) -> None:
    from .split_step import Region

    _, setup = conn.recv()
    try:
        model, loss_fn = pickle.loads(setup["model"])
        region = Region(setup["nbytes"], setup["region"])
        total, dtype = setup["total"], np.dtype(setup["dtype"])
        values = region.array(0, (total,), dtype)
        grad_block = region.array(total * dtype.itemsize, (total,), dtype)
        params = list(model.parameters())
        grads = []
        for p, off in zip(params, setup["offsets"]):
            view = values[off : off + p.data.size].reshape(p.data.shape)
            p.data = view  # read from the block the main process fills before every step
            grads.append(grad_block[off : off + p.data.size].reshape(p.data.shape))
        modules = list(model.modules())
    except BaseException as exc:  # reported to the main process
        worker_failure(conn, exc)
        return
    conn.send(("ready",))
    data: Any = None
    generators: dict[str, np.random.Generator] = {}
    while True:
        _, msg = conn.recv()
        try:
            if msg["data"] is not None:
                data = np.frombuffer(Region(msg["data_nbytes"], msg["data"]).map, np.uint8)
            worker_step(conn, model, loss_fn, modules, params, grads, data, msg, generators)
        except BaseException as exc:  # reported to the main process
            worker_failure(conn, exc)


def worker_step(
    conn: Connection,
    model: Module,
    loss_fn: Any,
    modules: list[Module],
    params: list[Any],
    grads: list[np.ndarray],
    data: np.ndarray,
    msg: dict[str, Any],
    generators: dict[str, np.random.Generator],
) -> None:
    """This worker's part of one step: the model made the main process's model (parameters
    are in the shared block already; modes, ``requires_grad``, buffers and generator states
    come with the message), its rows run, its gradients written to the block."""
    for p, rg in zip(params, msg["requires_grad"]):
        p.requires_grad = rg
        p.grad = None
    for m, mode in zip(modules, msg["modes"]):
        m.training = mode
    for i, state in msg["rngs"]:
        modules[i].rng.bit_generator.state = state  # type: ignore[union-attr]
    if msg["buffers"] is not None:
        for (_, b), value in zip(model.named_buffers(), msg["buffers"]):
            np.copyto(b, value)
    kind, state = msg["gen"]
    gen = generators.get(kind)
    if gen is None:
        gen = generators[kind] = np.random.Generator(getattr(np.random, kind)())
    gen.bit_generator.state = state
    start, stop, shape, dtype = msg["x"]
    x = data[: stop * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize]
    x = np.frombuffer(x, np.dtype(dtype)).reshape(stop, *shape)[start:]

    def allreduce(a: np.ndarray) -> np.ndarray:
        conn.send(("sum", np.ascontiguousarray(a)))
        _, total = conn.recv()
        return total  # type: ignore[no-any-return]

    split = BatchSplit(msg["n"], msg["lo"], msg["hi"], allreduce)
    with use_generator(gen):
        value, out = run_part(model, loss_fn, None, x, msg["y"], msg["w"], msg["scale"],
                              msg["weighs"], split)  # fmt: skip
    flags = []
    for p, g in zip(params, grads):
        has = p.grad is not None
        if has:
            g[...] = p.grad
        flags.append(has)
    conn.send(("done", value, np.array(out), flags))


def worker_failure(conn: Connection, exc: BaseException) -> None:
    """Send a worker's exception (or its text, if it cannot be pickled) and traceback."""
    text = traceback.format_exc()
    try:
        pickle.dumps(exc)
    except Exception:  # an exception that does not pickle: its text
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    conn.send(("error", exc, text))
