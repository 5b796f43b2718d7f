"""Convolutional training steps, chainrule vs PyTorch eager, side by side (issue 18).

Cases (float32, Adam, softmax cross-entropy, one training step = zero_grad, forward, loss,
backward, optimizer step):

- ``lenet``: LeNet-5 on 28×28 images, batch 64 — Conv2d(1,6,5,pad 2) ReLU MaxPool2d(2)
  Conv2d(6,16,5) ReLU MaxPool2d(2) Flatten Linear(400,120) ReLU Linear(120,84) ReLU
  Linear(84,10);
- ``conv1d``: the MNIST-1D paper's CNN on signals of length 40, batch 128 — Conv1d(1,25,5,
  stride 2, pad 1) ReLU Conv1d(25,25,3,2,1) ReLU Conv1d(25,25,3,2,1) ReLU Flatten
  Linear(125,10).

Systems: ``chainrule`` (the plain user loop: zero_grad, forward, loss, backward, step), ``fit``
(one step of ``cr.Trainer``'s loop — what ``cr.fit`` runs — with the step plan it chooses: for
LeNet-5 on 2 cores the split step, half of each batch in a worker process, gradients summed;
the MNIST-1D step is too small to split and runs eagerly; the RSS adds the worker's),
``torch`` (PyTorch eager, the same initial weights, ``torch.set_num_threads`` equal to
chainrule's BLAS threads) and ``gemm`` (the
matrix products alone of the same step in NumPy — the im2col-layout convolution GEMMs
forward, weight gradient and input gradient, and the dense layers': the floor of this
approach on this machine). Every (system, case) runs in a fresh process; rounds alternate
the systems; the table gives medians of the per-round medians, the ratio PyTorch time /
chainrule time (> 1: chainrule is faster), each process's peak RSS and every round's time;
below it, the ratio within each round (the two systems measured seconds apart, so
the machine's drift cancels) as a median and range.

    python benchmarks/bench_conv.py                 # full run (about a minute)
    python benchmarks/bench_conv.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CASES = {"lenet": (64, (1, 28, 28)), "conv1d": (128, (1, 40))}
SYSTEMS = ("chainrule", "fit", "torch", "gemm")


def _data(case: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    batch, shape = CASES[case]
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape)).astype(np.float32), rng.integers(0, 10, batch)


def chainrule_model(case: str) -> Any:
    import chainrule as cr

    nn = cr.nn
    if case == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2, rng=0), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, rng=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120, rng=2), nn.ReLU(), nn.Linear(120, 84, rng=3), nn.ReLU(),
            nn.Linear(84, 10, rng=4),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1, rng=0), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1, rng=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1, rng=2), nn.ReLU(), nn.Flatten(),
        nn.Linear(125, 10, rng=3),
    )  # fmt: skip


Batch = tuple[np.ndarray, np.ndarray]


def _chainrule_step(case: str, data: Batch | None = None) -> Callable[[], None]:
    import chainrule as cr

    model = chainrule_model(case)
    opt = cr.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _data(case) if data is None else data
    loss_fn = cr.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def _fit_step(case: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """One step of ``cr.Trainer``'s loop (what ``cr.fit`` and ``chainrule train`` run, the
    step plan chosen as they choose it: the split step over worker processes for LeNet-5 on
    2 cores), on shuffled batches of 16 batches' rows; and the function that ends the fit
    (its workers with it)."""
    import chainrule as cr

    batch, shape = CASES[case]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16 * batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 16 * batch)
    model = chainrule_model(case)
    trainer = cr.Trainer(model, "cross_entropy", cr.optim.Adam(model.parameters(), lr=1e-3),
                         seed=0, verbose=0)  # fmt: skip
    steps = trainer.steps(X, y, epochs=10**6, batch_size=batch)

    def step() -> None:
        next(steps)

    return step, steps.close


def torch_model(case: str) -> Any:
    """PyTorch's copy of :func:`chainrule_model` (the same initial weights)."""
    import torch

    ours = chainrule_model(case)
    layers: list[Any] = []
    for m in ours:
        name = type(m).__name__
        if name in ("Conv1d", "Conv2d"):
            cls = getattr(torch.nn, name)
            t = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            t.weight.data = torch.tensor(m.weight.data)
            t.bias.data = torch.tensor(m.bias.data)
        elif name == "Linear":
            t = torch.nn.Linear(m.in_features, m.out_features)
            t.weight.data = torch.tensor(m.weight.data.T.copy())
            t.bias.data = torch.tensor(m.bias.data)
        elif name == "MaxPool2d":
            t = torch.nn.MaxPool2d(m.kernel_size)
        else:
            t = getattr(torch.nn, name)()
        layers.append(t)
    return torch.nn.Sequential(*layers)


def _torch_step(case: str) -> Callable[[], None]:
    import torch

    model = torch_model(case)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xn, yn = _data(case)
    x, y = torch.tensor(xn), torch.tensor(yn)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def _gemm_step(case: str) -> Callable[[], None]:
    """The matrix products of one step with the shapes chainrule's kernels use."""
    rng = np.random.default_rng(0)
    batch = CASES[case][0]
    if case == "lenet":  # (out, in·k, N·P, input grad?) per conv; dense (in, out)
        convs = [(6, 25, batch * 784, False), (16, 150, batch * 100, True)]
        dense = [(400, 120), (120, 84), (84, 10)]
    else:
        convs = [(25, 5, batch * 19, False), (25, 75, batch * 10, True), (25, 75, batch * 5, True)]
        dense = [(125, 10)]

    def mat(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    work = []
    for o, k, p, gx in convs:
        w, cols, g = mat(o, k), mat(k, p), mat(o, p)
        work.append(lambda w=w, cols=cols: w @ cols)
        work.append(lambda g=g, cols=cols: g @ cols.T)
        if gx:
            work.append(lambda w=w, g=g: w.T @ g)
    for i, o in dense:
        x, w, g = mat(batch, i), mat(i, o), mat(batch, o)
        work += [lambda x=x, w=w: x @ w, lambda x=x, g=g: x.T @ g, lambda g=g, w=w: g @ w.T]

    def step() -> None:
        for f in work:
            f()

    return step


def worker(system: str, case: str, steps: int, threads: int, clock: str) -> dict[str, Any]:
    """Time ``steps`` training steps in this process; returns the median and peak RSS.

    ``clock="cpu"`` measures the process's CPU time instead of wall time: on a loaded
    machine (other jobs sharing the cores) it leaves out the time spent waiting for a core.
    """
    timer = time.process_time if clock == "cpu" else time.perf_counter
    from threadpoolctl import threadpool_limits

    end: Callable[[], None] = lambda: None
    os.environ["CHAINRULE_STEP_PROCESSES"] = str(threads)  # the fit's replicas: one per thread
    with threadpool_limits(threads):
        if system == "torch":
            import torch

            torch.set_num_threads(threads)
        if system == "fit":
            step, end = _fit_step(case)
        else:
            step = {"chainrule": _chainrule_step, "torch": _torch_step, "gemm": _gemm_step}[system](
                case
            )
        for _ in range(max(3, steps // 10)):
            step()
        times = []
        for _ in range(steps):
            t0 = timer()
            step()
            times.append(timer() - t0)
    end()  # a fit's worker processes end: their peak RSS counts too (the largest of them)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rss += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"ms": 1e3 * statistics.median(times), "rss_mb": rss}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps, one round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time (for a loaded machine)",
    )
    ap.add_argument("--cases", default="lenet,conv1d")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--worker", nargs=2, metavar=("SYSTEM", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.threads, args.clock)))
        return {}
    rounds, steps = (1, 5) if args.quick else (args.rounds, args.steps)
    cases, systems = args.cases.split(","), args.systems.split(",")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {s: [] for s in systems} for c in cases}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for _ in range(rounds):
        for case in cases:
            for system in systems:
                cmd = [sys.executable, __file__, "--worker", system, case, "--steps", str(steps),
                       "--threads", str(args.threads), "--clock", args.clock]  # fmt: skip
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                runs[case][system].append(json.loads(res.stdout.strip().splitlines()[-1]))
    results: dict[str, dict[str, Any]] = {}
    print(
        f"threads={args.threads}, rounds={rounds}, steps={steps}, clock={args.clock} "
        "(ms per step, median)"
    )
    print(
        f"{'case':8} {'system':10} {'ms':>8} {'peak RSS MB':>12} {'torch/this':>11}   [each round]"
    )
    for case in cases:
        res = {s: statistics.median(r["ms"] for r in runs[case][s]) for s in systems}
        rss = {s: max(r["rss_mb"] for r in runs[case][s]) for s in systems}
        results[case] = {**res, "rss_mb": rss}
        for s in systems:
            ratio = f"{res['torch'] / res[s]:.2f}" if "torch" in res else "-"
            rounds_ms = " ".join(f"{r['ms']:.1f}" for r in runs[case][s])
            print(f"{case:8} {s:10} {res[s]:8.2f} {rss[s]:12.0f} {ratio:>11}   [{rounds_ms}]")
        if "torch" in res and len(runs[case]["torch"]) > 1:  # each round's own ratio (drift)
            for s in systems:
                if s in ("torch", "gemm"):
                    continue
                per = [t["ms"] / c["ms"] for t, c in zip(runs[case]["torch"], runs[case][s])]
                results[case].setdefault("round_ratios", {})[s] = per
                print(
                    f"{case:8} torch/{s} per round: median {statistics.median(per):.2f} "
                    f"(range {min(per):.2f}-{max(per):.2f})"
                )
        if "gemm" in res and "chainrule" in res:
            eff = res["gemm"] / res["chainrule"]
            print(f"{case:8} GEMM share of chainrule's step (efficiency): {eff:.0%}")
    return results


if __name__ == "__main__":
    main()
