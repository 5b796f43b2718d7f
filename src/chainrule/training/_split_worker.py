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
from multiprocessing.connection import Connection
from typing import Any

import numpy as np


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    with contextlib.suppress(EOFError, OSError):  # EOF: the plan is gone
        _serve(conn)
    sys.exit(0)


def _serve(conn: Connection) -> None:
    from .split_step import Region, worker_failure, worker_step

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
