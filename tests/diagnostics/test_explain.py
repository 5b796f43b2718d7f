"""cr.explain: the chain rule's factors multiply to the engine's gradient (float64, 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

ACTIVATIONS = ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softplus", "identity"]


def setup(loss_kind, rng, n=7):
    if loss_kind == "mse":
        return 2, rng.normal(size=(n, 2)), nn.MSELoss(), None
    if loss_kind == "bce_logits":
        return 2, rng.integers(0, 2, (n, 2)).astype(float), nn.BCEWithLogitsLoss(), None
    if loss_kind == "bce":
        return 1, rng.integers(0, 2, (n, 1)).astype(float), nn.BCELoss(), nn.Sigmoid()
    if loss_kind == "nll":
        return 3, rng.integers(0, 3, n), nn.NLLLoss(), nn.LogSoftmax()
    return 3, rng.integers(0, 3, n), nn.CrossEntropyLoss(), None


@pytest.mark.parametrize("loss_kind", ["mse", "cross_entropy", "bce_logits", "bce", "nll"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_factors_multiply_to_the_engine_gradient(activation, loss_kind):
    rng = np.random.default_rng(0)
    out_dim, y, loss_fn, head = setup(loss_kind, rng)
    model = nn.mlp([3, 5, 4, out_dim], activation, rng=1, dtype=np.float64)
    if head is not None:
        model.append(head)
    X = rng.normal(size=(7, 3))
    for weight, (i, j) in [
        ("0.weight", (2, 3)),
        ("2.weight", (1, 0)),
        ("4.weight", (3, out_dim - 1)),
    ]:
        if activation == "identity":
            weight = {"0.weight": "0.weight", "2.weight": "2.weight", "4.weight": "4.weight"}[
                weight
            ]
        e = cr.explain(model, X, y, loss_fn, weight, (i, j), lr=0.1)
        # the engine's gradient, computed independently
        model.zero_grad()
        loss_fn(model(X), y).backward()
        layer = int(weight.split(".")[0])
        truth = model[layer].weight.grad[i, j]
        assert e.total == pytest.approx(truth, rel=1e-10, abs=1e-14)
        assert e.engine_grad == pytest.approx(truth, rel=1e-10, abs=1e-14)
        np.testing.assert_allclose(e.per_sample, e.dC_da * e.da_dz * e.dz_dw, rtol=1e-12)
        assert e.backprop_error < 1e-12  # ∂C/∂a_j = Σ_k δ_k w_jk, sample by sample
        assert e.is_output == (layer == 4)
        assert e.updated == pytest.approx(e.value - 0.1 * e.total)
        text = str(e)
        assert "∂C/∂a_j" in text and "engine gradient" in text


def test_explain_by_hand_on_the_seed_example():
    # the 2-2-1 sigmoid network of tests/test_worked_example.py
    model = nn.Sequential(
        nn.Linear(2, 2, dtype=np.float64),
        nn.Sigmoid(),
        nn.Linear(2, 1, dtype=np.float64),
        nn.Sigmoid(),
    )
    model[0].weight.data[...] = [[0.15, 0.25], [0.20, 0.30]]
    model[0].bias.data[...] = 0.35
    model[2].weight.data[...] = [[0.40], [0.45]]
    model[2].bias.data[...] = 0.60
    e = cr.explain(
        model, np.array([[0.05, 0.10]]), np.array([[0.01]]), nn.MSELoss(), "2.weight[1,0]"
    )
    assert e.dC_da[0] == pytest.approx(1.482730139, rel=1e-8)
    assert e.da_dz[0] == pytest.approx(0.186815602, rel=1e-8)
    assert e.dz_dw[0] == pytest.approx(0.596884378, rel=1e-8)
    assert e.total == pytest.approx(0.165335256, rel=1e-8)


def test_explain_argument_errors():
    model = nn.mlp([3, 4, 2], rng=0)
    X, y = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(
        ValueError, match=r"not a Linear layer's weight; the weights are: 0\.weight, 2\.weight"
    ):
        cr.explain(model, X, y, nn.CrossEntropyLoss(), "1.weight[0,0]")
    with pytest.raises(ValueError, match=r"outside 2.weight of shape \(4, 2\)"):
        cr.explain(model, X, y, nn.CrossEntropyLoss(), "2.weight[4,0]")
    with pytest.raises(ValueError, match="must look like"):
        cr.explain(model, X, y, nn.CrossEntropyLoss(), "2.weight[x]")
    with pytest.raises(TypeError, match="Sequential"):
        cr.explain(nn.Linear(3, 2), X, y, nn.CrossEntropyLoss(), "weight[0,0]")
