"""chainrule.sklearn against scikit-learn's own MLP: same data, hyperparameters and seeds.

For digits, breast cancer, iris, wine (MLPClassifier) and diabetes (MLPRegressor): a 25 %
stratified test split per seed, inputs standardised on the training rows and given as float32
to both, default hyperparameters with ``random_state=seed``. Reports the mean test score
(accuracy or R²) and the median fit time of each over seeds × repeats (the two alternate
which goes first; one warm-up fit each beforehand), and the speed-up. Results go to
benchmarks/results/sklearn_parity.{json,md}.

    python benchmarks/sklearn_parity.py [--seeds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkC
from sklearn.neural_network import MLPRegressor as SkR

from chainrule.sklearn import MLPClassifier as CrC
from chainrule.sklearn import MLPRegressor as CrR

SETS = {
    "digits": (datasets.load_digits, True),
    "breast_cancer": (datasets.load_breast_cancer, True),
    "iris": (datasets.load_iris, True),
    "wine": (datasets.load_wine, True),
    "diabetes": (datasets.load_diabetes, False),
}


def run(seeds: int, repeats: int = 3) -> dict[str, dict[str, float]]:
    out = {}
    X0, y0 = datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():  # warm-up: first-call imports and caches out of the timing
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in (SkC, CrC):
            cls(random_state=0, max_iter=5).fit(X0.astype(np.float32), y0)
    for name, (loader, classify) in SETS.items():
        X, y = loader(return_X_y=True)
        scores = {"scikit-learn": [], "chainrule": []}
        times = {"scikit-learn": [], "chainrule": []}
        for seed in range(seeds):
            Xtr, Xte, ytr, yte = train_test_split(
                X, y, test_size=0.25, random_state=seed, stratify=y if classify else None
            )
            mean, std = Xtr.mean(0), Xtr.std(0) + 1e-8
            Xtr = ((Xtr - mean) / std).astype(np.float32)
            Xte = ((Xte - mean) / std).astype(np.float32)
            pair = [
                ("scikit-learn", SkC if classify else SkR),
                ("chainrule", CrC if classify else CrR),
            ]
            for rep in range(repeats):  # the order alternates: neither always goes first
                for label, cls in pair if (seed + rep) % 2 == 0 else pair[::-1]:
                    est = cls(random_state=seed)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        t = time.perf_counter()
                        est.fit(Xtr, ytr)
                        times[label].append(time.perf_counter() - t)
                    if rep == 0:  # same seed, same fit: score it once
                        scores[label].append(est.score(Xte, yte))
        sk, cr = statistics.fmean(scores["scikit-learn"]), statistics.fmean(scores["chainrule"])
        tsk, tcr = statistics.median(times["scikit-learn"]), statistics.median(times["chainrule"])
        out[name] = {
            "metric": "accuracy" if classify else "r2",
            "sklearn_score": sk,
            "chainrule_score": cr,
            "sklearn_fit_s": tsk,
            "chainrule_fit_s": tcr,
            "speedup": tsk / tcr,
        }
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| data set | metric | scikit-learn | chainrule | fit s (sklearn) | fit s (chainrule) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['metric']} | {r['sklearn_score']:.4f} | {r['chainrule_score']:.4f} | "
            f"{r['sklearn_fit_s']:.2f} | {r['chainrule_fit_s']:.2f} | {r['speedup']:.1f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per seed and system")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.seeds, args.repeats)
    text = table(results)
    print(text)
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "sklearn_parity.json"), "w") as fh:
            json.dump(results, fh, indent=2)
        with open(os.path.join(out, "sklearn_parity.md"), "w") as fh:
            fh.write(text + "\n")
    return results


if __name__ == "__main__":
    main()
