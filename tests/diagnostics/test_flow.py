"""Gradient flow: the classic vanishing-gradient observation, reproduced and flagged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    ds = cr.datasets.load("digits")
    X = ((ds.X - ds.X.mean(0)) / (ds.X.std(0) + 1e-8)).astype(np.float32)
    return X, ds.y


def run(X, y, activation, scheme, epochs=2):
    model = nn.mlp([64] + [64] * 6 + [10], activation, init_scheme=scheme, rng=0)
    flow = cr.GradientFlow()
    cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer="sgd",
        lr=0.1,
        epochs=epochs,
        verbose=0,
        seed=0,
        callbacks=[flow],
    )
    return flow


def test_naive_sigmoid_gradients_vanish_toward_the_input_and_are_flagged(digits):
    flow = run(*digits, "sigmoid", "default")  # Glorot & Bengio's "standard" U(±1/√n)
    g = [flow.records[n]["grad_rms"][0] for n in flow.layers]
    # shrinking toward the input, layer by layer
    assert all(a < b for a, b in itertools.pairwise(g))
    assert g[0] / g[-1] < 1e-4  # by orders of magnitude
    assert any(w.startswith("Vanishing gradients") for w in flow.warnings)


@pytest.mark.parametrize("activation,scheme", [("sigmoid", "glorot"), ("relu", "he")])
def test_glorot_sigmoid_and_he_relu_are_not_flagged(digits, activation, scheme):
    flow = run(*digits, activation, scheme)
    assert flow.gradient_ratio(0) > 1e-2  # ten times above the warning threshold (1e-3)
    assert not any(w.startswith("Vanishing") for w in flow.warnings), flow.warnings


def test_records_and_plot(digits, tmp_path):
    X, y = digits
    flow = run(X[:300], y[:300], "relu", "he", epochs=3)
    rec = flow.records[flow.layers[0]]
    for q in ("grad_rms", "weight_rms", "update_ratio", "act_mean", "act_std", "dead_fraction"):
        assert len(rec[q]) == 3 and np.all(np.isfinite(rec[q])), q
    assert 0 < rec["update_ratio"][-1] < 1
    pytest.importorskip("matplotlib")
    flow.plot().savefig(tmp_path / "flow.png")
    assert (tmp_path / "flow.png").read_bytes()[:4] == b"\x89PNG"


def test_dead_relus_are_reported():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    model = nn.mlp([5, 32, 2], "relu", rng=0)
    model[0].bias.data[...] = -50.0  # every unit starts (and stays) dead
    flow = cr.GradientFlow()
    cr.fit(model, X, y, loss="cross_entropy", epochs=2, verbose=0, callbacks=[flow])
    assert flow.records["0"]["dead_fraction"][-1] == 1.0
    assert any("dead" in w for w in flow.warnings)


def test_unscaled_inputs_are_reported():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(100, 3)) * 500 + 1000).astype(np.float32)
    y = rng.integers(0, 2, 100)
    flow = cr.GradientFlow()
    cr.fit(
        nn.mlp([3, 8, 2], "tanh", rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=1,
        verbose=0,
        callbacks=[flow],
    )
    assert any("unscaled" in w for w in flow.warnings)
