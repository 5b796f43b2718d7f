"""Losses against their formulas and (when installed) torch.nn.functional in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]


def t(x, grad=False):
    return cr.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


# ----- formulas ----------------------------------------------------------------------------------


def test_mse_is_the_seeds_quadratic_cost():
    yhat, y = np.array([0.5, 2.0, -1.0]), np.array([1.0, 2.0, 1.0])
    assert F.mse_loss(t(yhat), y).item() == pytest.approx(np.mean((y - yhat) ** 2))
    assert nn.MSELoss(reduction="sum")(t(yhat), y).item() == pytest.approx(4.25)
    np.testing.assert_allclose(nn.MSELoss(reduction="none")(t(yhat), y).data, [0.25, 0, 4])


def test_log_loss_is_the_seeds_cross_entropy():
    p, y = np.array([0.9, 0.2, 0.6]), np.array([1.0, 0.0, 1.0])
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert F.binary_cross_entropy(t(p), y).item() == pytest.approx(ref, rel=1e-12)
    z = np.log(p / (1 - p))
    assert F.binary_cross_entropy_with_logits(t(z), y).item() == pytest.approx(ref, rel=1e-12)


def test_l1_and_huber():
    yhat, y = np.array([0.0, 3.0, -0.5]), np.array([0.2, 0.0, 0.5])
    assert F.l1_loss(t(yhat), y).item() == pytest.approx(np.mean(np.abs(yhat - y)))
    d = np.abs(yhat - y)
    ref = np.where(d <= 1.0, 0.5 * d**2, d - 0.5)
    np.testing.assert_allclose(F.huber_loss(t(yhat), y, reduction="none").data, ref)
    ref2 = np.where(d <= 0.5, 0.5 * d**2, 0.5 * (d - 0.25))
    np.testing.assert_allclose(nn.HuberLoss("none", delta=0.5)(t(yhat), y).data, ref2)


def test_cross_entropy_formula_and_fused_gradient():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    zt = t(z, grad=True)
    loss = F.cross_entropy(zt, y)
    assert loss.item() == pytest.approx(-logp[np.arange(5), y].mean(), rel=1e-12)
    assert loss.op == "div" and zt.grad is None
    loss.backward()
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(zt.grad, (np.exp(logp) - onehot) / 5, rtol=1e-12)  # (softmax - y)/n


def test_cross_entropy_with_probabilities_and_nll():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 4))
    q = rng.dirichlet(np.ones(4), size=3)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert F.cross_entropy(t(z), q).item() == pytest.approx(-(q * logp).sum(1).mean())
    y = np.array([1, 0, 3])
    assert F.nll_loss(t(logp), y).item() == pytest.approx(-logp[np.arange(3), y].mean())
    assert nn.NLLLoss()(nn.LogSoftmax()(t(z)), y).item() == pytest.approx(
        nn.CrossEntropyLoss()(t(z), y).item(), rel=1e-12
    )


def test_sample_weights_are_normalised_by_their_sum():
    yhat, y, w = np.array([1.0, 2.0, 4.0]), np.array([0.0, 0.0, 0.0]), np.array([1.0, 0.0, 3.0])
    assert F.mse_loss(t(yhat), y, sample_weight=w).item() == pytest.approx((1 + 48) / 4)
    assert F.mse_loss(t(yhat), y, reduction="sum", sample_weight=w).item() == pytest.approx(49)
    z, c = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0])
    per = F.cross_entropy(t(z), c, reduction="none").data
    assert F.cross_entropy(t(z), c, sample_weight=[1.0, 3.0]).item() == pytest.approx(
        (per[0] + 3 * per[1]) / 4
    )
    # multi-output: the per-sample loss is the mean over outputs
    yhat2 = np.array([[1.0, 3.0], [2.0, 2.0]])
    assert F.mse_loss(t(yhat2), np.zeros((2, 2)), sample_weight=[1.0, 1.0]).item() == pytest.approx(
        np.mean(yhat2**2)
    )


def test_shape_mismatch_that_broadcasting_would_hide_raises():
    with pytest.raises(ValueError, match=r"input shape \(4, 1\) and target shape \(4,\)"):
        F.mse_loss(t(np.zeros((4, 1))), np.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        nn.BCEWithLogitsLoss()(t(np.zeros(4)), np.zeros((4, 1)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction must be"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="target contains class 5, but the input has 3 classes"):
        F.cross_entropy(t(np.zeros((2, 3))), np.array([0, 5]))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\)"):
        F.mse_loss(t(np.zeros(2)), np.zeros(2), sample_weight=[1.0])
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        F.binary_cross_entropy(t([1.5]), [1.0])
    with pytest.raises(ValueError, match="must have shape"):
        F.cross_entropy(t(np.zeros((2, 3))), np.array([[0], [1]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_finite_at_extreme_logits_and_probabilities(dtype):
    z = cr.tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ce = F.cross_entropy(z, np.array([1, 0]))
        ce.backward()
    assert np.isfinite(ce.item()) and ce.item() == pytest.approx(2e4, rel=1e-6)
    assert np.all(np.isfinite(z.grad)) and ce.dtype == dtype
    zb = cr.tensor(np.array([1e4, -1e4, 0.0], dtype), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        bl = F.binary_cross_entropy_with_logits(zb, np.array([0.0, 1.0, 1.0], dtype))
        bl.backward()
    assert bl.item() == pytest.approx((2e4 + math.log(2)) / 3, rel=1e-6)
    assert np.all(np.isfinite(zb.grad))
    p = cr.tensor(np.array([0.0, 1.0, 0.0, 1.0], dtype), requires_grad=True)
    bce = F.binary_cross_entropy(p, np.array([0.0, 1.0, 1.0, 0.0], dtype), reduction="none")
    bce.sum().backward()
    assert np.all(np.isfinite(bce.data)) and np.all(np.isfinite(p.grad))
    assert bce.data[0] == 0 and bce.data[2] == pytest.approx(
        -max(-100, math.log(np.finfo(dtype).tiny)), rel=1e-4
    )


# ----- against PyTorch ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def both(x):
    return t(x, grad=True), torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)


def compare(c_loss, t_loss, c_in, t_in):
    np.testing.assert_allclose(c_loss.data, t_loss.detach().numpy(), rtol=1e-10, atol=1e-12)
    c_loss.sum().backward()
    t_loss.sum().backward()
    np.testing.assert_allclose(c_in.grad, t_in.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_torch(reduction):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)) * 2, rng.normal(size=(6, 3))
    for cf, tf in [
        (F.mse_loss, TF.mse_loss),
        (F.l1_loss, TF.l1_loss),
        (
            lambda a, b, reduction: F.huber_loss(a, b, reduction, delta=0.7),
            lambda a, b, reduction: TF.huber_loss(a, b, reduction=reduction, delta=0.7),
        ),
    ]:
        c, tt = both(x)
        compare(cf(c, y, reduction=reduction), tf(tt, torch.tensor(y), reduction=reduction), c, tt)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_losses_match_torch(reduction):
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(size=(5, 2)) * 3, [[40.0, -40.0], [700.0, -700.0]]])
    y = rng.integers(0, 2, size=z.shape).astype(float)
    y[3, 1] = 0.3  # soft label
    w = rng.uniform(0.5, 2.0, size=2)
    pw = np.array([2.0, 0.5])
    c, tt = both(z)
    compare(
        F.binary_cross_entropy_with_logits(c, y, weight=w, pos_weight=pw, reduction=reduction),
        TF.binary_cross_entropy_with_logits(
            tt,
            torch.tensor(y),
            weight=torch.tensor(w),
            pos_weight=torch.tensor(pw),
            reduction=reduction,
        ),
        c,
        tt,
    )
    p = 1 / (1 + np.exp(-z[:5]))
    c, tt = both(p)
    compare(
        F.binary_cross_entropy(c, y[:5], reduction=reduction),
        TF.binary_cross_entropy(tt, torch.tensor(y[:5]), reduction=reduction),
        c,
        tt,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignored", [False, True])  # no ignored target: the plain mean's path
def test_cross_entropy_matches_torch(reduction, smoothing, weighted, ignored):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(7, 4)) * 3
    z[0] = [800.0, 1.0, 1.0, 0.0]
    z[1] = [-431.0, 279.0, 427.0, 0.0]
    y = rng.integers(0, 4, size=7)
    if ignored:
        y[2] = -100
    w = rng.uniform(0.5, 2.0, size=4) if weighted else None
    tw = torch.tensor(w) if weighted else None
    c, tt = both(z)
    compare(
        F.cross_entropy(c, y, weight=w, reduction=reduction, label_smoothing=smoothing),
        TF.cross_entropy(
            tt, torch.tensor(y), weight=tw, reduction=reduction, label_smoothing=smoothing
        ),
        c,
        tt,
    )
    q = rng.dirichlet(np.ones(4), size=7)
    c, tt = both(z)
    compare(
        F.cross_entropy(c, q, weight=w, reduction=reduction, label_smoothing=smoothing),
        TF.cross_entropy(
            tt, torch.tensor(q), weight=tw, reduction=reduction, label_smoothing=smoothing
        ),
        c,
        tt,
    )
    logp = (
        z
        - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        - z.max(1, keepdims=True)
    )
    c, tt = both(logp)
    compare(
        F.nll_loss(c, y, weight=w, reduction=reduction),
        TF.nll_loss(tt, torch.tensor(y), weight=tw, reduction=reduction),
        c,
        tt,
    )


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient_as_torch():
    z = np.random.default_rng(5).normal(size=(3, 4))
    y = np.full(3, -100)
    c, tt = both(z)
    ours, theirs = F.cross_entropy(c, y), TF.cross_entropy(tt, torch.tensor(y))
    assert np.isnan(ours.item()) and bool(torch.isnan(theirs))
    ours.backward()
    theirs.backward()
    np.testing.assert_array_equal(c.grad, tt.grad.numpy())
