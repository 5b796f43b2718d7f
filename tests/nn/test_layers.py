"""Layers: Linear's layout and checks, Dropout, BatchNorm1d, Flatten, activations, mlp."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def test_linear_computes_x_w_plus_b_with_in_out_layout():
    layer = nn.Linear(3, 2, rng=0)
    assert layer.weight.shape == (3, 2) and layer.bias.shape == (2,)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data + layer.bias.data, rtol=1e-6)
    layer(x).sum().backward()
    # ∂C/∂w_ij = Σ_samples x_i  (the input that weight i->j multiplies)
    np.testing.assert_allclose(layer.weight.grad, np.repeat(x.sum(0)[:, None], 2, 1))


def test_linear_wrong_width_message():
    layer = nn.Linear(784, 256, rng=0)
    with pytest.raises(
        ValueError,
        match=r"Linear\(784, 256\) expected input with last dimension 784, got shape \(32, 100\)",
    ):
        layer(np.zeros((32, 100), np.float32))


def test_linear_argument_validation():
    with pytest.raises(ValueError, match="in_features must be a positive int, got 0"):
        nn.Linear(0, 3)
    with pytest.raises(TypeError, match="out_features"):
        nn.Linear(3, 2.5)


def test_linear_default_init_bound_and_determinism():
    a, b = nn.Linear(100, 50, rng=3), nn.Linear(100, 50, rng=3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert np.abs(a.weight.data).max() <= 0.1
    assert a.weight.dtype == np.float32
    assert not np.array_equal(a.weight.data, nn.Linear(100, 50, rng=4).weight.data)


def test_linear_casts_float64_input_to_its_dtype():
    assert nn.Linear(2, 2, rng=0)(np.ones((1, 2))).dtype == np.float32
    assert nn.Linear(2, 2, rng=0, dtype=np.float64)(np.ones((1, 2), np.float32)).dtype == np.float64


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.25, rng=0)
    x = np.ones((400, 250), np.float32)
    out = drop(x).data
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)  # inverted scaling
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved
    drop.eval()
    np.testing.assert_array_equal(drop(x).data, x)
    assert nn.Dropout(1.0, rng=0)(x).data.sum() == 0
    with pytest.raises(ValueError, match="p must be <= 1"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_same_mask():
    drop = nn.Dropout(0.5, rng=1)
    x = cr.tensor(np.ones((5, 4)), dtype=np.float32, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)


def test_dropout_is_reproducible_and_leaves_global_rng_alone():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = nn.Dropout(0.5, rng=7)(np.ones((10, 10), np.float32)).data
    b = nn.Dropout(0.5, rng=7)(np.ones((10, 10), np.float32)).data
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_batchnorm_training_normalises_and_updates_running_stats():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(64, 5)).astype(np.float32)
    bn = nn.BatchNorm1d(5)
    y = bn(x).data
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), 1, atol=1e-3)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)
    bn.eval()
    ref = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)
    np.testing.assert_allclose(bn(x).data, ref, rtol=1e-5, atol=1e-5)
    assert "running_mean" in bn.state_dict() and "num_batches_tracked" in bn.state_dict()


def test_batchnorm_gradcheck_and_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3))
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    w = rng.normal(size=(6, 3))

    def f(t, gamma, beta):
        bn.weight.data, bn.bias.data = gamma.data, beta.data
        mean = t.mean(axis=0, keepdims=True)
        var = t.var(axis=0, keepdims=True)
        return (((t - mean) / cr.sqrt(var + 1e-5)) * gamma + beta) * w

    assert cr.gradcheck(f, x, rng.normal(size=3), rng.normal(size=3))
    # the layer's own graph gives the same gradient as the formula
    xt = cr.tensor(x, requires_grad=True)
    (bn(xt) * w).sum().backward()
    xr = cr.tensor(x, requires_grad=True)
    f(xr, cr.tensor(bn.weight.data), cr.tensor(bn.bias.data)).sum().backward()
    np.testing.assert_allclose(xt.grad, xr.grad, rtol=1e-10)
    with pytest.raises(ValueError, match="more than one value"):
        nn.BatchNorm1d(3)(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expected"):
        nn.BatchNorm1d(3)(np.ones((4, 2)))


def test_flatten_identity_and_activation_modules():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity()(x) is x
    v = cr.tensor(np.array([-1.0, 0.5]))
    np.testing.assert_allclose(nn.ReLU()(v).data, [0, 0.5])
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(v).data, [-0.2, 0.5])
    np.testing.assert_allclose(nn.Tanh()(v).data, np.tanh([-1.0, 0.5]))
    np.testing.assert_allclose(nn.Sigmoid()(v).data, 1 / (1 + np.exp([1.0, -0.5])))
    np.testing.assert_allclose(nn.Softmax(dim=0)(v).data.sum(), 1.0)
    np.testing.assert_allclose(np.exp(nn.LogSoftmax()(v).data).sum(), 1.0)
    assert nn.ELU(2.0)(v).data[0] == pytest.approx(2 * np.expm1(-1))
    assert nn.GELU("tanh")(v).shape == (2,)
    assert nn.Softplus(2.0)(v).data[1] == pytest.approx(np.log1p(np.exp(1.0)) / 2)


def test_mlp_builder_picks_initialisation_by_activation():
    relu = nn.mlp([200, 100, 10], "relu", rng=0)
    tanh = nn.mlp([200, 100, 10], "tanh", rng=0)
    he_bound = np.sqrt(6 / 200)
    glorot_bound = np.sqrt(6 / 300)
    assert np.abs(relu[0].weight.data).max() <= he_bound
    assert np.abs(relu[0].weight.data).max() > 0.95 * he_bound
    assert np.abs(tanh[0].weight.data).max() <= glorot_bound
    assert np.abs(tanh[0].weight.data).max() > 0.95 * glorot_bound
    assert np.all(relu[0].bias.data == 0)
    a, b = nn.mlp([5, 8, 2], "relu", rng=11), nn.mlp([5, 8, 2], "relu", rng=11)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert pa.data.tobytes() == pb.data.tobytes()  # bitwise identical


def test_mlp_validation():
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.mlp([2, 3, 1], "swishy")
    with pytest.raises(ValueError, match="at least an input and an output"):
        nn.mlp([2])
    with pytest.raises(ValueError, match="widths\\[1\\]"):
        nn.mlp([2, 0, 1])


def test_batchnorm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    bn = nn.BatchNorm1d(4, momentum=0.2, dtype=np.float64)
    tbn = torch.nn.BatchNorm1d(4, momentum=0.2, dtype=torch.float64)
    for _ in range(3):
        x = rng.normal(2.0, 3.0, size=(10, 4))
        w = rng.normal(size=(10, 4))
        xc = cr.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        (bn(xc) * w).sum().backward()
        (tbn(xt) * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(xc.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=1e-10)
        bn.zero_grad()
        tbn.zero_grad()
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-12)
    bn.eval()
    tbn.eval()
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(bn(x).data, tbn(torch.tensor(x)).detach().numpy(), rtol=1e-10)
