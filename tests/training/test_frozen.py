"""Frozen parameters (requires_grad=False) stay frozen on every path of cr.fit (issue 15, 4)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.training.callbacks import Callback
from chainrule.training.fastpath import FastMLP

torch = pytest.importorskip("torch")


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, rng.integers(0, 3, n)


def model64(seed=0):
    return nn.mlp([3, 6, 5, 3], "tanh", rng=seed, dtype=np.float64)


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_fit_by_name_trains_a_partly_frozen_model_and_leaves_the_frozen_part(name):
    X, y = data()
    model = model64()
    model[0].weight.requires_grad = False
    model[2].bias.requires_grad = False
    before = snapshot(model)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=name, lr=0.05, epochs=3, verbose=0)
    after = model.state_dict()
    np.testing.assert_array_equal(after["0.weight"], before["0.weight"])
    np.testing.assert_array_equal(after["2.bias"], before["2.bias"])
    for k in ("0.bias", "2.weight", "4.weight", "4.bias"):
        assert not np.array_equal(after[k], before[k]), k


def test_frozen_after_the_optimizer_was_built_is_not_moved_by_momentum_or_decay():
    # the reproduction: a plain Sequential takes the fused path, whose flat buffers used to
    # receive a gradient for the frozen weight
    X, y = data()
    model = nn.mlp([3, 4, 3], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, verbose=0)
    model[0].weight.requires_grad = False
    w0 = model[0].weight.data.copy()
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, w0)
    assert model[0].weight.grad is None


def test_fused_step_writes_no_gradient_for_frozen_parameters_and_matches_the_engine():
    X, y = data(9)
    model = model64()
    model[2].weight.requires_grad = False
    model[0].weight.requires_grad = False
    model[0].bias.requires_grad = False
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    fast = FastMLP.create(model, nn.CrossEntropyLoss(), opt)
    assert fast is not None and fast.ready(opt)
    fast.step(X, y, None)
    fused = {n: (None if p.grad is None else p.grad.copy()) for n, p in model.named_parameters()}
    model.zero_grad()
    nn.CrossEntropyLoss()(model(X), y).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            np.testing.assert_allclose(fused[n], p.grad, rtol=1e-10, atol=1e-13)
        else:
            assert fused[n] is None and p.grad is None, n


def test_fused_path_with_an_optimizer_over_the_trainable_subset():
    X, y = data()
    model = model64()
    model[0].weight.requires_grad = False
    opt = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.prepare()
    assert FastMLP.create(model, nn.CrossEntropyLoss(), opt).ready(opt)
    w0 = model[0].weight.data.copy()
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, w0)


class FreezeAt(Callback):
    def __init__(self, epoch, param):
        self.epoch, self.param, self.value = epoch, param, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.param.requires_grad = False
            self.value = self.param.data.copy()


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_freezing_during_fit_stops_the_parameter_there(opt_name):
    X, y = data()
    model = nn.mlp([3, 4, 3], rng=0)
    opt = (
        optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        if opt_name == "sgd"
        else optim.AdamW(model.parameters(), lr=0.01)
    )
    cb = FreezeAt(3, model[2].weight)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=5, callbacks=[cb], verbose=0)
    np.testing.assert_array_equal(model[2].weight.data, cb.value)


def test_every_parameter_frozen_is_refused():
    X, y = data()
    model = nn.mlp([3, 4, 3], rng=0)
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="frozen"):
        cr.fit(model, X, y, loss="cross_entropy", epochs=1, verbose=0)


@pytest.mark.parametrize(
    "make_opt, make_torch",
    [
        (
            lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05),
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05),
        ),
        (
            lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.05),
            lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.05),
        ),
        (
            lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.05),
            lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05),
        ),
    ],
)
def test_partly_frozen_trajectory_matches_pytorch(make_opt, make_torch):
    """fit (fused path, full batch, no shuffle) = PyTorch's loop with the same frozen tensors."""
    X, y = data()
    model = model64()
    frozen = {"0.weight", "2.bias"}
    for n, p in model.named_parameters():
        p.requires_grad = n not in frozen
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(3, 6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 5),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 3),
    ).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in nn.to_torch_state_dict(model).items()})
    for n, p in tmodel.named_parameters():
        p.requires_grad_(n not in frozen)
    topt = make_torch(list(tmodel.parameters()))  # PyTorch accepts frozen tensors too
    opt = make_opt(list(model.parameters()))
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(6):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(Xt), yt).backward()
        topt.step()
    cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer=opt,
        epochs=6,
        batch_size=None,
        shuffle=False,
        verbose=0,
    )
    ours = nn.to_torch_state_dict(model)
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(ours[k], v.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
