"""Optimizers: single steps by hand, 100-step trajectories against torch.optim, state dicts."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim


def quad_param(value, dtype=np.float32):
    return nn.Parameter(np.asarray(value, dtype=dtype))


def set_grad(p, g):
    p.grad = np.asarray(g, dtype=p.dtype)


# ----- single steps with obvious answers ------


def test_sgd_step_is_w_minus_lr_grad():
    w = quad_param([1.0, -2.0])
    set_grad(w, [0.5, 1.0])
    optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.data, [0.95, -2.1], rtol=1e-6)


def test_sgd_momentum_by_hand():
    w = quad_param([0.0], np.float64)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    set_grad(w, [1.0])
    opt.step()  # b = 1, w = -0.1
    set_grad(w, [1.0])
    opt.step()  # b = 0.9 + 1 = 1.9, w = -0.1 - 0.19 = -0.29
    np.testing.assert_allclose(w.data, [-0.29])
    w2 = quad_param([0.0], np.float64)
    opt = optim.SGD([w2], lr=0.1, momentum=0.9, nesterov=True)
    set_grad(w2, [1.0])
    opt.step()  # b = 1, g = 1 + 0.9 = 1.9, w = -0.19
    np.testing.assert_allclose(w2.data, [-0.19])


def test_adam_first_step_moves_each_weight_by_lr():
    w = quad_param([1.0, -3.0, 0.5])
    set_grad(w, [1e-3, -50.0, 7.0])
    optim.Adam([w], lr=0.01).step()
    np.testing.assert_allclose(w.data, [0.99, -2.99, 0.49], rtol=1e-5)


def test_adamw_decouples_weight_decay():
    w = quad_param([2.0], np.float64)
    set_grad(w, [0.0])
    optim.AdamW([w], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(w.data, [2.0 * (1 - 0.05)])  # zero gradient: only the decay


def test_rmsprop_and_adagrad_first_steps():
    w = quad_param([0.0], np.float64)
    set_grad(w, [2.0])
    optim.RMSprop([w], lr=0.01, alpha=0.9, eps=0.0).step()  # v = 0.1·4, step = 0.01·2/√0.4
    np.testing.assert_allclose(w.data, [-0.01 * 2 / np.sqrt(0.4)])
    w = quad_param([0.0], np.float64)
    set_grad(w, [2.0])
    optim.Adagrad([w], lr=0.1, eps=0.0).step()  # s = 4, step = 0.1·2/2
    np.testing.assert_allclose(w.data, [-0.1])


def test_full_batch_gradient_descent_converges_on_least_squares():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    true_w = np.array([[1.0], [-2.0], [0.5]])
    y = X @ true_w
    w = nn.Parameter(np.zeros((3, 1)))
    opt = optim.GD([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        ((cr.tensor(X) @ w - y) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(w.data, true_w, atol=1e-6)


def test_state_stays_in_parameter_dtype():
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad):
        w = quad_param(np.ones(4))
        kwargs = {"momentum": 0.9} if cls in (optim.SGD, optim.RMSprop) else {}
        opt = cls([w], lr=0.01, **kwargs)
        for _ in range(3):
            set_grad(w, np.full(4, 0.3))
            opt.step()
        assert w.dtype == np.float32
        for v in opt.state[id(w)].values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32, cls


def test_skips_parameters_without_gradient_and_zero_grad():
    a, b = quad_param([1.0]), quad_param([1.0])
    opt = optim.Adam([a, b], lr=0.1)
    set_grad(a, [1.0])
    opt.step()
    assert b.data[0] == 1.0 and a.data[0] != 1.0
    opt.zero_grad()
    assert a.grad is None


def test_parameter_groups_have_their_own_lr():
    a, b = quad_param([0.0]), quad_param([0.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    set_grad(a, [1.0])
    set_grad(b, [1.0])
    opt.step()
    assert a.data[0] == pytest.approx(-0.1) and b.data[0] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: optim.SGD(p, lr=-1), r"lr must be > 0, got -1"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"betas\[1\] must be < 1"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "momentum must be >= 0"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov"),
        (lambda p: optim.Adam(p, weight_decay=-1), "weight_decay must be >= 0"),
        (lambda p: optim.RMSprop(p, alpha=2), "alpha must be <= 1"),
        (lambda p: optim.Adam([], lr=0.1), "empty parameter list"),
        (lambda p: optim.SGD([{"params": p, "lrr": 0.1}], lr=0.1), "unknown hyperparameter"),
    ],
)
def test_argument_validation(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make([quad_param([1.0])])


def test_state_dict_restores_training_exactly():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))

    def run(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(X), y).backward()
            opt.step()

    model = nn.mlp([3, 4, 1], "tanh", rng=1, dtype=np.float64)
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    run(model, opt, 5)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    run(model, opt, 5)
    reference = model.state_dict()
    model2 = nn.mlp([3, 4, 1], "tanh", rng=99, dtype=np.float64)
    model2.load_state_dict(saved_model)
    opt2 = optim.Adam(model2.parameters(), lr=0.5)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["lr"] == 0.01
    run(model2, opt2, 5)
    for k, v in reference.items():
        assert v.tobytes() == model2.state_dict()[k].tobytes()  # bitwise
    with pytest.raises(ValueError, match="parameter groups"):
        opt2.load_state_dict({"state": {}, "param_groups": []})


# ----- trajectories against torch.optim ------

torch = pytest.importorskip("torch")

CONFIGS = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "centered": True}),
    ("Adagrad", {"lr": 0.1}),
    (
        "Adagrad",
        {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1},
    ),
]


@pytest.mark.parametrize(
    "name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]
)
def test_hundred_step_trajectory_matches_torch(name, kwargs):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(32, 5)), rng.normal(size=(32, 2))
    model = nn.mlp([5, 8, 2], "tanh", rng=3, dtype=np.float64)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in model.parameters()]
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        topt.zero_grad()
        h = torch.tanh(Xt @ tparams[0] + tparams[1])
        torch.nn.functional.mse_loss(h @ tparams[2] + tparams[3], yt).backward()
        topt.step()
    for p, tp in zip(model.parameters(), tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01),
        lambda p: optim.AdamW(p, lr=0.01),
        lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
        lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.01),
    ],
)
def test_flat_buffer_path_is_bitwise_equal_to_the_per_parameter_path(make):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 300)).astype(np.float32)
    y = rng.integers(0, 3, 16)

    def train(flat: bool):
        model = nn.mlp([300, 512, 3], "tanh", rng=1)  # > 150 000 parameters
        opt = make(model.parameters())
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), y).backward()
            if not flat:  # gradients outside the flat buffer force the per-parameter path
                for p in model.parameters():
                    p.grad = p.grad.copy()
            opt.step()
        if flat:
            assert opt.arena.ready()
            assert model[0].weight.data.base is opt.arena.buffers[0][0]
        return b"".join(p.data.tobytes() for p in model.parameters()), opt.state_dict()

    a, sa = train(True)
    b, sb = train(False)
    assert a == b
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            if isinstance(v, np.ndarray):
                assert v.tobytes() == sb["state"][k][name].tobytes()


def test_optimizer_survives_parameters_replaced_after_flattening():
    model = nn.mlp([3, 4, 1], rng=0)
    opt = optim.Adam(model.parameters(), lr=0.1)
    X, y = np.ones((2, 3), np.float32), np.zeros((2, 1), np.float32)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        opt.step()
    model.load_state_dict({k: v * 0 for k, v in model.state_dict().items()})  # in place
    opt2 = optim.SGD(model.parameters(), lr=0.1)  # re-flattens the same parameters
    for o in (opt, opt2):
        o.zero_grad()
        nn.functional.mse_loss(model(X), y + 1).backward()
        before = model[0].bias.data.copy()
        o.step()
        assert not np.array_equal(before, model[0].bias.data)
