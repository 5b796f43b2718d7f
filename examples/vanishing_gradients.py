"""Reproduce Glorot & Bengio's (2010) vanishing-gradient observation.

Three networks with 6 hidden layers of 64 units learn scikit-learn's digits with plain SGD:
a sigmoid network with the "standard" initialisation U(±1/√n), the same with Glorot's normalised
initialisation (scaled for the sigmoid's slope of 1/4), and a ReLU network with He
initialisation. The GradientFlow callback records each layer's gradient: with the standard
initialisation it shrinks by orders of magnitude toward the input, and the callback says so.

Run:  python examples/vanishing_gradients.py [output.png]
"""

from __future__ import annotations

import sys

import numpy as np

import chainrule as cr


def main(
    path: str | None = "vanishing_gradients.png", epochs: int = 3
) -> dict[str, cr.GradientFlow]:
    ds = cr.datasets.load("digits")
    X = ((ds.X - ds.X.mean(0)) / (ds.X.std(0) + 1e-8)).astype(np.float32)
    runs = {
        "sigmoid, standard init U(±1/√n)": ("sigmoid", "default"),
        "sigmoid, Glorot init": ("sigmoid", "glorot"),
        "ReLU, He init": ("relu", "he"),
    }
    flows = {}
    for label, (activation, scheme) in runs.items():
        model = cr.nn.mlp([64] + [64] * 6 + [10], activation, init_scheme=scheme, rng=0)
        flow = cr.GradientFlow()
        h = cr.fit(
            model,
            X,
            ds.y,
            loss="cross_entropy",
            optimizer="sgd",
            lr=0.1,
            epochs=epochs,
            seed=0,
            verbose=0,
            metrics=["accuracy"],
            callbacks=[flow],
        )
        flows[label] = flow
        rms = [flow.records[n]["grad_rms"][0] for n in flow.layers]
        print(f"{label}: training accuracy {h['accuracy'][-1]:.1%}")
        print("  gradient RMS per layer (input -> output): " + " ".join(f"{r:.1e}" for r in rms))
        print(f"  first/last = {flow.gradient_ratio(0):.1e}")
        for w in flow.warnings:
            print(f"  warning: {w[:110]}...")
    if path:
        from chainrule.plots import require_matplotlib

        Figure = require_matplotlib()
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.subplots()
        for label, flow in flows.items():
            rms = [flow.records[n]["grad_rms"][0] for n in flow.layers]
            ax.semilogy(range(1, len(rms) + 1), rms, "o-", label=label)
        ax.set_xlabel("layer (1 = next to the input)")
        ax.set_ylabel("gradient RMS of the weights (first epoch)")
        ax.set_title("vanishing gradients in a deep sigmoid network")
        ax.legend(fontsize=8)
        fig.savefig(path, dpi=100)
        print(f"wrote {path}")
    return flows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "vanishing_gradients.png")
