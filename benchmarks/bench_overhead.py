"""Per-op bookkeeping of the engine, side by side with PyTorch eager.

Times forward + backward of small ops on (64, 64) operands and one training step of a
3-layer MLP (784-256-128-10, batch 32, tanh, softmax cross-entropy written with log_softmax),
alternating the systems round by round and reporting medians and ratios.

    python benchmarks/bench_overhead.py            # full run (a few seconds)
    python benchmarks/bench_overhead.py --quick    # smoke run (CI)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np

import chainrule as cr


def _time(fn: Callable[[], object], number: int) -> float:
    """Seconds per call (best of the calls made in one batch)."""
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def chainrule_cases(rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    a = cr.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
    b = cr.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
    X = rng.normal(size=(32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    sizes = [784, 256, 128, 10]
    params = []
    for i, o in itertools.pairwise(sizes):
        params += [
            cr.tensor(
                rng.normal(scale=(1 / i) ** 0.5, size=(i, o)).astype(np.float32), requires_grad=True
            ),
            cr.tensor(np.zeros(o, np.float32), requires_grad=True),
        ]

    def step() -> None:
        h = X
        for k in range(0, 4, 2):
            h = cr.tanh(cr.linear(h, params[k], params[k + 1]))
        logp = cr.log_softmax(cr.linear(h, params[4], params[5]), axis=1)
        loss = -logp[np.arange(32), y].mean()
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data -= 0.01 * p.grad

    def fb(f: Callable[[], cr.Tensor]) -> Callable[[], None]:
        def run() -> None:
            a.grad = b.grad = None
            f().sum().backward()

        return run

    return {
        "add (64,64)": fb(lambda: a + b),
        "matmul (64,64)": fb(lambda: a @ b),
        "tanh (64,64)": fb(lambda: cr.tanh(a)),
        "mlp step B=32": step,
    }


def torch_cases(rng: np.random.Generator) -> dict[str, Callable[[], object]] | None:
    try:
        import torch
    except ImportError:
        return None
    a = torch.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
    b = torch.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
    X = torch.tensor(rng.normal(size=(32, 784)).astype(np.float32))
    y = torch.tensor(rng.integers(0, 10, 32))
    sizes = [784, 256, 128, 10]
    params = []
    for i, o in itertools.pairwise(sizes):
        params += [
            torch.tensor(
                rng.normal(scale=(1 / i) ** 0.5, size=(i, o)).astype(np.float32), requires_grad=True
            ),
            torch.zeros(o, requires_grad=True),
        ]

    def step() -> None:
        h = X
        for k in range(0, 4, 2):
            h = torch.tanh(torch.addmm(params[k + 1], h, params[k]))
        logp = torch.log_softmax(torch.addmm(params[5], h, params[4]), dim=1)
        loss = -logp[torch.arange(32), y].mean()
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 0.01 * p.grad

    def fb(f: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            a.grad = b.grad = None
            f().sum().backward()

        return run

    return {
        "add (64,64)": fb(lambda: a + b),
        "matmul (64,64)": fb(lambda: a @ b),
        "tanh (64,64)": fb(lambda: torch.tanh(a)),
        "mlp step B=32": step,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rounds, number = (1, 3) if args.quick else (args.rounds, 300)
    rng = np.random.default_rng(0)
    systems = {"chainrule": chainrule_cases(rng)}
    t = torch_cases(rng)
    if t is not None:
        systems["torch"] = t
    samples: dict[str, dict[str, list[float]]] = {
        case: {s: [] for s in systems} for case in systems["chainrule"]
    }
    for _ in range(rounds):
        for case in samples:
            for name, cases in systems.items():  # alternate systems inside each round
                samples[case][name].append(_time(cases[case], number))
    results = {
        case: {s: statistics.median(v) for s, v in per.items()} for case, per in samples.items()
    }
    header = f"{'case':<18}{'chainrule µs':>14}{'torch µs':>12}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    for case, r in results.items():
        c = r["chainrule"] * 1e6
        line = f"{case:<18}{c:>14.1f}"
        if "torch" in r:
            line += f"{r['torch'] * 1e6:>12.1f}{r['torch'] / r['chainrule']:>9.2f}x"
        print(line)
    return results


if __name__ == "__main__":
    main()
