"""The fused MLP step computes the engine's gradients (float64, every activation x loss)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.training.fastpath import FastMLP


def make(activation, out_dim, seed=0):
    model = nn.mlp([5, 7, 6, out_dim], activation, rng=seed, dtype=np.float64)
    for layer in model:
        if isinstance(layer, nn.Linear):
            layer.bias.data[...] = np.random.default_rng(seed).normal(
                scale=0.3, size=layer.bias.shape
            )
    return model


LOSSES = {
    "cross_entropy": (3, lambda r, n: r.integers(0, 3, n), nn.CrossEntropyLoss),
    "mse": (2, lambda r, n: r.normal(size=(n, 2)), nn.MSELoss),
    "bce_logits": (2, lambda r, n: r.integers(0, 2, (n, 2)).astype(float), nn.BCEWithLogitsLoss),
    # one output: the fused step skips the per-row mean (a row of one element)
    "bce_logits_1": (1, lambda r, n: r.integers(0, 2, (n, 1)).astype(float), nn.BCEWithLogitsLoss),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("n", [1, 9])
def test_fused_step_equals_engine(activation, loss_name, weighted, n):
    rng = np.random.default_rng(1)
    out_dim, target, loss_cls = LOSSES[loss_name]
    X, y = rng.normal(size=(n, 5)), target(rng, n)
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    model = make(activation, out_dim)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    fast = FastMLP.create(model, loss_cls(), opt)
    assert fast is not None and fast.ready(opt)
    lv = fast.step(X, y, w)
    fused = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    loss = loss_cls()(model(X), y, sample_weight=w) if w is not None else loss_cls()(model(X), y)
    loss.backward()
    assert lv == pytest.approx(loss.item(), rel=1e-12)
    for g, p in zip(fused, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-13)


def test_fit_uses_the_fused_step_only_where_it_applies():
    assert (
        FastMLP.create(
            nn.mlp([3, 4, 2], dropout=0.5, rng=0),
            nn.CrossEntropyLoss(),
            optim.Adam(nn.mlp([3, 4, 2], rng=0).parameters()),
        )
        is None
    )
    m = nn.mlp([3, 4, 2], rng=0)
    assert (
        FastMLP.create(m, nn.CrossEntropyLoss(label_smoothing=0.1), optim.Adam(m.parameters()))
        is None
    )
    assert FastMLP.create(m, nn.HuberLoss(), optim.Adam(m.parameters())) is None
    assert FastMLP.create(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters())) is not None


def test_fit_trajectory_matches_the_engine_path():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)

    def train(fused: bool):
        model = make("tanh", 3)
        cb = [] if fused else [cr.training.LambdaCallback()]
        if not fused:  # a forward hook forces the engine path
            model[1].register_forward_hook(lambda mod, i, o: None)
        h = cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            optimizer="adam",
            lr=0.01,
            epochs=5,
            batch_size=16,
            seed=0,
            verbose=0,
            callbacks=cb,
        )
        return model, h

    a, ha = train(True)
    b, hb = train(False)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-10)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "kind,target", [("multiclass", "int"), ("squared", "float"), ("binary", "bin")]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_step_with_scikit_learns_penalized_loss(kind, target, weighted):
    from chainrule.sklearn import _PenalizedLoss

    rng = np.random.default_rng(3)
    n = 11
    out_dim = 3 if kind == "multiclass" else 2
    X = rng.normal(size=(n, 5))
    y = {
        "int": rng.integers(0, 3, n),
        "float": rng.normal(size=(n, 2)),
        "bin": rng.integers(0, 2, (n, 2)).astype(float),
    }[target]
    w = rng.uniform(0.5, 2, n) if weighted else None
    model = make("relu", out_dim)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    loss = _PenalizedLoss(kind, weights, alpha=0.3)
    opt = optim.Adam(model.parameters())
    opt.prepare()
    fast = FastMLP.create(model, loss, opt)
    lv = fast.step(X, y, w)
    fused = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    ref = loss(model(X), y, sample_weight=w)
    ref.backward()
    assert lv == pytest.approx(ref.item(), rel=1e-12)
    for g, p in zip(fused, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-13)


def test_fused_step_follows_replaced_parameter_data():
    """The step reuses the gradients' arena views between steps; after the parameters' arrays
    are replaced (here by ``model.to(float32)``, before the optimizer has re-laid its arena)
    it must not write into the old float64 views."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    model = make("tanh", 3)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    fast = FastMLP.create(model, nn.CrossEntropyLoss(), opt)
    assert fast is not None and fast.ready(opt)
    fast.step(X, y, None)
    opt.step()
    model.to(np.float32)
    X32 = X.astype(np.float32)
    fast.step(X32, y, None)
    fused = [p.grad.copy() for p in model.parameters()]
    assert all(g.dtype == np.float32 for g in fused)
    model.zero_grad()
    nn.CrossEntropyLoss()(model(X32), y).backward()
    for g, p in zip(fused, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-5, atol=1e-6)
    before = [p.data.copy() for p in model.parameters()]
    for p, g in zip(model.parameters(), fused):
        p.grad = g
    opt.step()  # the optimizer re-lays its arena in float32 and moves the new weights
    for p, b, g in zip(model.parameters(), before, fused):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, b - np.float32(0.1) * g, rtol=1e-6)
    # after the rebuild the step writes into the new views again
    fast.step(X32, y, None)
    assert all(opt.arena.grad_view(p) is p.grad for p in model.parameters())
