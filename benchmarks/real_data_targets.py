"""Accuracy targets on real data with the CLI's default settings (issue: bring your own data).

Protocol (as for scikit-learn's MLPClassifier/MLPRegressor comparisons): a 25 % stratified test
split, seeds 0-4, inputs standardised on the training rows, every other setting at the
``chainrule train`` default. Prints a table and writes ``benchmarks/results/real_data.{json,md}``.

    python benchmarks/real_data_targets.py            # all data sets, seeds 0-4
    python benchmarks/real_data_targets.py --quick    # seed 0 only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from chainrule.cli import TrainSettings, run_training

TARGETS = {
    "digits": ("accuracy", 0.97),
    "breast_cancer": ("accuracy", 0.96),
    "iris": ("accuracy", 0.95),
    "wine": ("accuracy", 0.97),
    "moons": ("accuracy", 0.96),
    "diabetes": ("r2", 0.40),
}


def run(seeds: list[int], names: list[str] | None = None) -> dict[str, dict[str, float]]:
    results = {}
    for name in names or list(TARGETS):
        metric, target = TARGETS[name]
        scores, seconds = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            res = run_training(TrainSettings(dataset=name, seed=seed, verbose=0, plots=False))
            seconds.append(time.perf_counter() - t0)
            scores.append(res.metrics["test"][metric])
        results[name] = {
            "metric": metric,
            "target": target,
            "mean": statistics.fmean(scores),
            "min": min(scores),
            "max": max(scores),
            "scores": scores,
            "seconds_per_run": statistics.fmean(seconds),
            "passed": statistics.fmean(scores) >= target,
        }
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| data set | metric | mean (seeds) | min | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['metric']} | {r['mean']:.4f} ({len(r['scores'])}) | {r['min']:.4f} | "
            f"≥ {r['target']} | {'yes' if r['passed'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--no-write", action="store_true", help="do not write results files")
    args = parser.parse_args(argv)
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    results = run(seeds)
    text = table(results)
    print(text)
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "real_data.json"), "w") as fh:
            json.dump(results, fh, indent=2)
        with open(os.path.join(out, "real_data.md"), "w") as fh:
            fh.write(text + "\n")
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
