"""A whole network's gradient: every parameter packed into one vector, against finite
differences, for every activation × loss (scikit-learn's ``test_gradient``, generalised)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

ACTIVATIONS = ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softplus", "identity"]


def targets(kind, rng, n):
    return {
        "mse": (2, rng.normal(size=(n, 2)), nn.MSELoss(), None),
        "l1": (2, rng.normal(size=(n, 2)), nn.L1Loss(), None),
        "huber": (2, rng.normal(size=(n, 2)) * 2, nn.HuberLoss(delta=0.8), None),
        "bce": (1, rng.integers(0, 2, (n, 1)).astype(float), nn.BCELoss(), nn.Sigmoid()),
        "bce_logits": (3, rng.integers(0, 2, (n, 3)).astype(float), nn.BCEWithLogitsLoss(), None),
        "cross_entropy": (4, rng.integers(0, 4, n), nn.CrossEntropyLoss(), None),
        "cross_entropy_probs": (4, rng.dirichlet(np.ones(4), n), nn.CrossEntropyLoss(), None),
        "nll": (4, rng.integers(0, 4, n), nn.NLLLoss(), nn.LogSoftmax()),
        "weighted_mse": (2, rng.normal(size=(n, 2)), nn.MSELoss(), None),
    }[kind]


LOSSES = [
    "mse",
    "l1",
    "huber",
    "bce",
    "bce_logits",
    "cross_entropy",
    "cross_entropy_probs",
    "nll",
    "weighted_mse",
]


def flat_check(model, loss_fn, X, y, sample_weight=None, eps=1e-6):
    params = list(model.parameters())
    theta = np.concatenate([p.data.ravel() for p in params])

    def set_theta(v):
        k = 0
        for p in params:
            p.data[...] = v[k : k + p.size].reshape(p.shape)
            k += p.size

    def loss_at(v):
        set_theta(v)
        with cr.no_grad():
            return loss_fn(model(X), y, sample_weight=sample_weight).item()

    set_theta(theta)
    model.zero_grad()
    loss_fn(model(X), y, sample_weight=sample_weight).backward()
    analytical = np.concatenate([p.grad.ravel() for p in params])
    numerical = np.empty_like(theta)
    for i in range(theta.size):
        v = theta.copy()
        v[i] += eps
        up = loss_at(v)
        v[i] -= 2 * eps
        numerical[i] = (up - loss_at(v)) / (2 * eps)
    set_theta(theta)
    np.testing.assert_allclose(analytical, numerical, rtol=1e-5, atol=1e-8)
    assert np.abs(analytical).max() > 0  # the check is not vacuous


@pytest.mark.parametrize("loss_kind", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradient_every_activation_and_loss(activation, loss_kind):
    rng = np.random.default_rng(hash((activation, loss_kind)) % 2**32)
    n = 7
    out_dim, y, loss_fn, head = targets(loss_kind, rng, n)
    model = nn.mlp([3, 5, 4, out_dim], activation, rng=rng, dtype=np.float64)
    for layer in model:
        if isinstance(layer, nn.Linear):
            # non-zero biases: with zero biases a sample whose units are all dead has a
            # pre-activation of exactly 0, the ReLU kink, where differences are meaningless
            layer.bias.data[...] = rng.normal(scale=0.3, size=layer.bias.shape)
    if head is not None:
        model.append(head)
    X = rng.normal(size=(n, 3))
    sw = rng.uniform(0.1, 2.0, n) if loss_kind == "weighted_mse" else None
    flat_check(model, loss_fn, X, y, sample_weight=sw)


def test_mlp_with_batchnorm_gradient():
    rng = np.random.default_rng(0)
    model = nn.mlp([3, 6, 2], "tanh", batch_norm=True, rng=rng, dtype=np.float64)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    model[1].momentum = 0.0  # keep running statistics fixed while probing
    flat_check(model, nn.CrossEntropyLoss(), X, y)
