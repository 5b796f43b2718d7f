"""Engine overhead of two source trees, side by side (an A/B run for engine refactors).

Times, in a fresh process per (tree, round), with the trees' order alternating between rounds:
forward + backward of small ops on (64, 64) float32 operands (bookkeeping dominates), and one
eager training step of an MLP 784-256-128-10 (ReLU, cross-entropy, batch 64, float32:
zero_grad, forward, loss, backward, SGD step). Prints medians over rounds and the ratio B/A
(> 1: B is slower).

    python benchmarks/bench_engine_ab.py --a /tmp/base/src --b src          # 7 rounds
    python benchmarks/bench_engine_ab.py --a src --b src --quick            # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
import chainrule as cr

number = int(sys.argv[1])
rng = np.random.default_rng(0)
a = cr.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
b = cr.tensor(rng.normal(size=(64, 64)).astype(np.float32), requires_grad=True)
model = cr.nn.Sequential(cr.nn.Linear(784, 256, rng=0), cr.nn.ReLU(), cr.nn.Linear(256, 128, rng=1),
                         cr.nn.ReLU(), cr.nn.Linear(128, 10, rng=2))
opt = cr.optim.SGD(model.parameters(), lr=0.01)
X = rng.normal(size=(64, 784)).astype(np.float32)
y = rng.integers(0, 10, 64)


def fb(f):
    def run():
        a.grad = b.grad = None
        f().sum().backward()
    return run


def step():
    opt.zero_grad()
    loss = cr.nn.functional.cross_entropy(model(X), y)
    loss.backward()
    opt.step()


cases = {
    "add (64,64)": fb(lambda: a + b),
    "mul (64,64)": fb(lambda: a * b),
    "matmul (64,64)": fb(lambda: a @ b),
    "tanh (64,64)": fb(lambda: cr.tanh(a)),
    "mlp step B=64": step,
}
out = {}
for name, fn in cases.items():
    for _ in range(max(number // 10, 2)):
        fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    out[name] = min(times)
print(json.dumps(out))
"""


def _run(src: str, number: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(number)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--a", required=True, help="source tree A (the directory holding chainrule/)"
    )
    parser.add_argument("--b", required=True, help="source tree B")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    rounds, number = (1, 3) if args.quick else (args.rounds, 200)
    samples: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    t0 = time.perf_counter()
    for r in range(rounds):
        order = [("A", args.a), ("B", args.b)]
        if r % 2:
            order.reverse()
        for label, src in order:
            for case, t in _run(src, number).items():
                samples[label].setdefault(case, []).append(t)
    results = {
        case: (statistics.median(samples["A"][case]), statistics.median(samples["B"][case]))
        for case in samples["A"]
    }
    print(f"{rounds} rounds, {time.perf_counter() - t0:.0f} s; medians of per-process minima")
    header = f"{'case':<18}{'A µs':>10}{'B µs':>10}{'B/A':>8}"
    print(header)
    print("-" * len(header))
    for case, (ta, tb) in results.items():
        print(f"{case:<18}{ta * 1e6:>10.1f}{tb * 1e6:>10.1f}{tb / ta:>8.3f}")
    return results


if __name__ == "__main__":
    main()
