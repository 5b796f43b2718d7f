"""Issue 14, point 9: divergence inside the optimizer's update goes through ``on_nonfinite``."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.training.fit import DivergenceError


def _data(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    return (X * scale).astype(np.float32), y


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_infinite_lr_stops_with_the_parameter_named_and_weights_kept(optimizer: str) -> None:
    X, y = _data()
    model = cr.nn.mlp([3, 8, 2], "relu", rng=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    h = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer=optimizer,
        lr=float("inf"),
        epochs=3,
        verbose=0,
    )
    assert h.stop_reason == "diverged"
    assert "the optimizer's update made '0.weight' non-finite" in h.message
    assert "epoch 1, batch 0" in h.message
    after = model.state_dict()
    for k, v in before.items():  # the update was undone: the weights are the initial ones
        np.testing.assert_array_equal(after[k], v)


def test_infinite_lr_raise_policy_raises_divergence_error() -> None:
    X, y = _data()
    model = cr.nn.mlp([3, 8, 2], "tanh", rng=0)
    with pytest.raises(DivergenceError, match=r"update made '0\.weight' non-finite"):
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            lr=float("inf"),
            epochs=2,
            verbose=0,
            on_nonfinite="raise",
        )
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


def test_update_divergence_on_the_graph_path() -> None:
    # a model the fused step does not handle (Dropout(0) after BatchNorm) takes the graph path
    X, y = _data()
    model = cr.nn.Sequential(
        cr.nn.Linear(3, 4), cr.nn.BatchNorm1d(4), cr.nn.ReLU(), cr.nn.Linear(4, 2)
    )
    h = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer="sgd",
        lr=float("inf"),
        epochs=2,
        verbose=0,
    )
    assert h.stop_reason == "diverged"
    assert "update made '0.weight' non-finite" in h.message


def test_sgd_lr_100_on_huge_inputs_stops_cleanly() -> None:
    X, _ = _data(1e18)
    model = cr.nn.mlp([3, 8, 1], "relu", rng=0)
    h = cr.fit(
        model, X, X[:, :1].copy(), loss="mse", optimizer="sgd", lr=100.0, epochs=3, verbose=0
    )
    assert h.stop_reason == "diverged"
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
