"""The programs tests/test_distributed.py runs under ``mpiexec -n N`` (and alone, as references).

``python distributed_worker.py SCENARIO OUT [options]``; rank 0 (or the only process) writes
its results to ``OUT`` (an ``.npz``), so the test compares files, never timings.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np


def _data(n: int = 103) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    w = rng.uniform(0.2, 2.0, size=n)
    return X, y, w


def _model(kind: str, seed: int = 1, width: int = 8) -> object:
    import chainrule as cr

    nn = cr.nn
    if kind == "mlp":  # the fused MLP plan
        layers = [nn.Linear(5, width, rng=seed), nn.Tanh(), nn.Linear(width, 3, rng=seed + 1)]
    else:  # dropout and batch norm: the engine's plan
        layers = [
            nn.Linear(5, width, rng=seed),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(width, 3, rng=seed + 1),
        ]
    return nn.Sequential(*layers).to(np.float64)


def _optimizer(model: object, name: str) -> object:
    import chainrule as cr

    params = model.parameters()  # type: ignore[attr-defined]
    if name == "adam":
        return cr.optim.Adam(params, lr=0.01)
    return cr.optim.SGD(params, lr=0.05, momentum=0.9)


def _save(out: str, model: object, history: object, X: np.ndarray) -> None:
    import chainrule as cr

    weights = np.concatenate([p.data.ravel() for p in model.parameters()])  # type: ignore[attr-defined]
    buffers = [np.asarray(b, np.float64).ravel() for _, b in model.named_buffers()]  # type: ignore[attr-defined]
    h = history.history  # type: ignore[attr-defined]
    np.savez(
        out,
        weights=weights,
        buffers=np.concatenate(buffers) if buffers else np.zeros(0),
        loss=np.asarray(h["loss"]),
        val_loss=np.asarray(h.get("val_loss", [])),
        accuracy=np.asarray(h.get("accuracy", [])),
        val_accuracy=np.asarray(h.get("val_accuracy", [])),
        predictions=cr.predict(model, X),
        stop_reason=str(history.stop_reason),  # type: ignore[attr-defined]
        epochs_run=len(h["loss"]),
    )


def train(args: argparse.Namespace) -> None:
    import chainrule as cr

    X, y, w = _data()
    model = _model(args.model)
    callbacks: list[object] = []
    if args.checkpoint:
        callbacks.append(cr.ModelCheckpoint(args.checkpoint))
    if args.fault:
        callbacks.append(_Fault(args.fault))
    if args.early_stopping:
        callbacks.append(cr.EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9))
    loss: object = "cross_entropy"
    target: np.ndarray = y
    if args.loss == "class_weighted":  # PyTorch's CrossEntropyLoss(weight=...)
        loss = cr.nn.CrossEntropyLoss(weight=np.array([0.5, 2.0, 1.3]))
    elif args.loss == "mse":  # regression on one-hot targets
        loss, target = "mse", np.eye(3)[y]
    history = cr.fit(
        model,
        X,
        target,
        loss=loss,
        optimizer=_optimizer(model, args.optimizer),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=0,
        verbose=0,
        sample_weight=None if args.no_sample_weight else w,
        class_weight=args.class_weight,
        validation_split=0.2,
        metrics=["accuracy"] if args.loss != "mse" else [],
        callbacks=callbacks,
        resume_from=args.resume,
        distributed=args.distributed,
        accumulate_steps=args.accumulate,
    )
    if not args.distributed or cr.distributed.is_main():
        _save(args.out, model, history, X)


class _Fault:
    """A callback that fails on rank 1 at the start of epoch 2 (made a Callback lazily)."""

    def __new__(cls, how: str) -> object:
        import chainrule as cr

        class Fault(cr.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
                if epoch == 2 and cr.distributed.rank() == 1:
                    if how == "raise":
                        raise RuntimeError("bad shard on purpose")
                    os.kill(os.getpid(), signal.SIGKILL)

        return Fault()


def broadcast(args: argparse.Namespace) -> None:
    import chainrule as cr

    r = cr.distributed.rank()
    model = _model("bn", seed=10 + r)  # a different model per rank
    for _, b in model.named_buffers():  # type: ignore[attr-defined]
        if b.dtype.kind == "f":
            b[...] = r + 1.0  # and different buffers
    before = np.concatenate([a.ravel().astype(np.float64) for a in model.state_dict().values()])  # type: ignore[attr-defined]
    cr.distributed.broadcast_parameters(model)
    after = np.concatenate([a.ravel().astype(np.float64) for a in model.state_dict().values()])  # type: ignore[attr-defined]
    comm = cr.training.parallel._comm()
    befores, afters = comm.gather(before), comm.gather(after)
    if r == 0:
        np.savez(args.out, before=np.stack(befores), after=np.stack(afters))


def mismatch(args: argparse.Namespace) -> None:
    import chainrule as cr

    r = cr.distributed.rank()
    how = args.fault or "shape"
    model = _model("mlp", width=8 if r == 0 or how != "shape" else 9)
    if r == 1 and how == "dtype":
        model = model.to(np.float32)  # type: ignore[attr-defined]
    if r == 1 and how == "order":  # the same layers, built in another order
        nn = cr.nn
        model = nn.Sequential(nn.Tanh(), nn.Linear(5, 8, rng=1), nn.Linear(8, 3, rng=2))
        model = model.to(np.float64)  # type: ignore[attr-defined]
    X, y, _ = _data()
    cr.fit(model, X, y, loss="cross_entropy", epochs=1, verbose=0, distributed=True)


def reduce_once(args: argparse.Namespace) -> None:
    """DistributedOptimizer: the averaged gradient, with one Allreduce per step."""
    from mpi4py import MPI

    import chainrule as cr

    class Counting:  # the world communicator, counting the all-reduces
        def __init__(self, comm: object) -> None:
            self.comm, self.allreduces = comm, 0

        def Allreduce(self, *a: object, **k: object) -> object:
            self.allreduces += 1
            return self.comm.Allreduce(*a, **k)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.comm, name)

    counting = Counting(MPI.COMM_WORLD)
    cr.distributed.init(counting)
    r, n = cr.distributed.rank(), cr.distributed.size()
    X, y, _ = _data()
    model = _model("mlp")
    opt = cr.distributed.DistributedOptimizer(cr.optim.SGD(model.parameters(), lr=0.1))  # type: ignore[attr-defined]
    rows = cr.distributed.shard(len(X))
    grads = []
    steps = 3
    for _ in range(steps):
        opt.zero_grad()
        loss = cr.nn.CrossEntropyLoss()(model(X[rows]), y[rows])  # type: ignore[operator]
        loss.backward()
        local = np.concatenate([p.grad.ravel() for p in model.parameters()])  # type: ignore[attr-defined]
        grads.append(MPI.COMM_WORLD.allgather(local))
        opt.step()
    reduced = np.concatenate([p.grad.ravel() for p in model.parameters()])  # type: ignore[attr-defined]
    if r == 0:
        np.savez(
            args.out,
            last_local=np.stack(grads[-1]),
            reduced=reduced,
            allreduces=counting.allreduces,
            steps=steps,
            size=n,
            is_optimizer=isinstance(opt, cr.optim.SGD),
        )


def rows_read(args: argparse.Namespace) -> None:
    """fit on a memory-mapped .npy: which rows does each process read?"""
    import chainrule as cr

    _, y, _ = _data(64)
    path = args.data
    mm = np.load(path, mmap_mode="r")
    row_bytes = mm[0].nbytes
    start = mm.offset
    seen: list[int] = []
    real = os.preadv

    def spy(fd: int, buffers: list[memoryview], offset: int) -> int:
        seen.append((offset - start) // row_bytes)
        return real(fd, buffers, offset)

    os.preadv = spy  # type: ignore[assignment]
    model = _model("mlp")
    cr.fit(
        model, mm, y, loss="cross_entropy", epochs=2, batch_size=10, seed=3, verbose=0,
        distributed=True,
    )  # fmt: skip
    comm = cr.training.parallel._comm()
    everyone = comm.gather(np.asarray(seen, np.int64))
    if comm.Get_rank() == 0:
        np.savez(args.out, **{f"rank{r}": s for r, s in enumerate(everyone)})


def nan_data(args: argparse.Namespace) -> None:
    """A NaN in one row of a memory-mapped X: the step whose batch holds it diverges."""
    import chainrule as cr

    X = np.load(args.data, mmap_mode="r")
    _, y, _ = _data(len(X))
    model = _model("mlp")
    history = cr.fit(
        model, X, y, loss="cross_entropy", optimizer=_optimizer(model, "sgd"), epochs=3,
        batch_size=10, seed=0, verbose=0, distributed=args.distributed,
    )  # fmt: skip
    if not args.distributed or cr.distributed.is_main():
        weights = np.concatenate([p.data.ravel() for p in model.parameters()])
        np.savez(
            args.out, weights=weights, loss=np.asarray(history.history.get("loss", [])),
            stop_reason=str(history.stop_reason), message=str(history.message),
        )  # fmt: skip


def peak_rss(args: argparse.Namespace) -> None:
    """fit on a (large) .npy, memory-mapped or loaded: every process's peak resident memory."""
    import resource

    import chainrule as cr

    mode = "r" if args.mode == "mmap" else None
    X = np.load(args.data, mmap_mode=mode)
    y = (np.arange(len(X)) % 2).astype(np.int64)
    val = None
    if args.val:
        Xv = np.load(args.val, mmap_mode=mode)
        val = (Xv, (np.arange(len(Xv)) % 2).astype(np.int64))
    model = cr.nn.mlp([X.shape[1], 8, 2], "relu", rng=0)
    cr.fit(
        model, X, y, loss="cross_entropy", optimizer="sgd", lr=0.01, epochs=1, batch_size=1024,
        seed=0, verbose=0, validation_data=val, distributed=args.distributed,
    )  # fmt: skip
    with open("/proc/self/status") as fh:  # VmHWM: this process's own peak resident memory
        hwm = int(fh.read().split("VmHWM:")[1].split()[0]) // 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    peaks = np.array([hwm, maxrss], np.int64)
    weights = np.concatenate([p.data.ravel() for p in model.parameters()])
    if args.distributed:
        comm = cr.training.parallel._comm()
        everyone = comm.gather(peaks)
        if comm.Get_rank() == 0:
            np.savez(args.out, peaks=np.stack(everyone), weights=weights)
    else:
        np.savez(args.out, peaks=peaks[None], weights=weights)


def cli_rss(args: argparse.Namespace) -> None:
    """`chainrule train ARGS` on every process (under mpiexec, as --workers runs it): each
    process's peak resident memory and how often it read the data file as a table."""
    import resource

    import chainrule as cr
    from chainrule import _run, cli

    reads = [0]
    real = _run._table_for  # the one reader, for single runs and for rank 0 of --workers

    def counting(settings: object) -> object:
        reads[0] += 1
        return real(settings)  # type: ignore[arg-type]

    _run._table_for = counting  # type: ignore[assignment]
    status = cli.main(args.cli.split())
    with open("/proc/self/status") as fh:
        hwm = int(fh.read().split("VmHWM:")[1].split()[0]) // 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    mine = np.array([hwm, maxrss, reads[0], status], np.int64)
    if cr.distributed.launched_by_mpiexec():
        everyone = cr.training.parallel._comm().gather(mine)
        if cr.distributed.is_main():
            np.savez(args.out, ranks=np.stack(everyone))
    else:
        np.savez(args.out, ranks=mine[None])


def steps(args: argparse.Namespace) -> None:
    """Trainer.steps(): one step at a time, the learning rate changed between two steps and
    the loop left at step 17 (the same decisions on every process: they read the same logs)."""
    import chainrule as cr

    X, y, w = _data()
    model = _model(args.model)
    make = cr.distributed.DistributedTrainer if args.distributed else cr.Trainer
    trainer = make(model, "cross_entropy", _optimizer(model, args.optimizer), seed=0, verbose=0,
                   metrics=["accuracy"])  # fmt: skip
    logs = []
    for log in trainer.steps(X, y, epochs=args.epochs, batch_size=args.batch_size,
                             sample_weight=w, validation_split=0.2):  # fmt: skip
        logs.append([log["epoch"], log["batch"], log["step"], log["loss"], log["size"],
                     log["lr"], float(log["epoch_end"])])  # fmt: skip
        if log["step"] == 5:
            trainer.optimizer.param_groups[0]["lr"] *= 0.5
        if log["step"] == 17:
            break
    if not args.distributed or cr.distributed.is_main():
        h = trainer.history.history
        np.savez(
            args.out, logs=np.array(logs), loss=np.asarray(h["loss"]),
            val_loss=np.asarray(h["val_loss"]), stop_reason=str(trainer.stop_reason),
            weights=np.concatenate([p.data.ravel() for p in model.parameters()]),
            buffers=np.concatenate([np.ravel(b) for _, b in model.named_buffers()]),
        )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("out")
    p.add_argument("--model", default="bn")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--checkpoint")
    p.add_argument("--resume")
    p.add_argument("--fault")
    p.add_argument("--early-stopping", action="store_true")
    p.add_argument("--data")
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--mode", default="mmap")
    p.add_argument("--val")
    p.add_argument("--cli", default="")
    p.add_argument("--loss", default="cross_entropy")
    p.add_argument("--class-weight", dest="class_weight")
    p.add_argument("--no-sample-weight", dest="no_sample_weight", action="store_true")
    args = p.parse_args()
    scenarios = {
        "train": train,
        "broadcast": broadcast,
        "mismatch": mismatch,
        "reduce_once": reduce_once,
        "rows_read": rows_read,
        "nan_data": nan_data,
        "peak_rss": peak_rss,
        "cli_rss": cli_rss,
        "steps": steps,
    }
    scenarios[args.scenario](args)


if __name__ == "__main__":
    sys.exit(main())
