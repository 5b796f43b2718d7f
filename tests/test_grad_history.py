"""Gradients a user keeps are never overwritten by later steps (PyTorch's ``zero_grad`` contract).

A learner's habit: keep every step's ``p.grad`` in a list. With ``zero_grad()``
(``set_to_none=True``, the default of ``Optimizer.zero_grad``, ``Module.zero_grad`` and
``ParameterArena.zero_grad``) the next backward pass gives each parameter a *new* array, so
what was kept keeps its values; with ``set_to_none=False`` the same array is zeroed in place
and accumulated into, and without ``zero_grad`` the gradients add up (``+=``). Checked on the
plain loop (engine + the optimizers' flat layout), in float32 and float64, with nested modules
and a frozen parameter, against PyTorch's gradient at the very weights of each step; and inside
``cr.fit`` / ``Trainer`` (the fused MLP plan and the eager plan, ``Trainer.steps``,
``Trainer.train_step``, gradient accumulation) with a callback that keeps ``p.grad`` after
every batch.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.arena import ParameterArena
from chainrule.training.steps import EagerPlan

torch = pytest.importorskip("torch")

TOL = {np.float32: 1e-6, np.float64: 1e-12}


def assert_close(got, want, rel):
    """``‖got − want‖ ≤ rel · ‖want‖`` (elementwise ulps of tiny entries do not matter)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err, scale = np.linalg.norm(got - want), np.linalg.norm(want)
    assert err <= rel * max(scale, 1e-30), f"relative error {err / max(scale, 1e-30):.3g} > {rel}"


# ----- the plain loop: engine + optimizer, against torch -----------------------------------


class Block(nn.Module):
    """A nested module: Linear then tanh, inside the Sequential below."""

    def __init__(self, n_in, n_out, rng):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out, rng=rng)

    def forward(self, x):
        return self.lin(x).tanh()


def nested_model(dtype):
    model = nn.Sequential(
        Block(3, 5, rng=0),
        nn.Sequential(nn.Linear(5, 4, rng=1), nn.ReLU()),
        nn.Linear(4, 2, rng=2),
    ).to(dtype)
    model[1][0].bias.requires_grad = False  # a frozen parameter: no gradient, never moved
    return model


def torch_grads(weights, x):
    """∂/∂θ of mean((f(x))²) for the nested model, at ``weights``, in their dtype."""
    ts = [torch.tensor(w, requires_grad=True) for w in weights]
    w0, b0, w1, b1, w2, b2 = ts
    h = torch.tanh(torch.tensor(x) @ w0 + b0)
    h = torch.relu(h @ w1 + b1)
    loss = ((h @ w2 + b2) ** 2).mean()
    loss.backward()
    return [t.grad.numpy() for t in ts]


OPTIMIZERS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adam", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS)
def test_kept_gradients_keep_their_values_and_are_each_steps_torch_gradient(name, kw, dtype):
    model = nested_model(dtype)
    params = list(model.parameters())
    opt = getattr(optim, name)(params, **kw)
    x = np.linspace(-1, 1, 12).reshape(4, 3).astype(dtype)
    kept, copies, weights = [], [], []
    for i in range(5):
        opt.zero_grad()  # set_to_none=True, PyTorch's default
        weights.append([p.data.copy() for p in params])
        loss = (model(x * (i + 1)) ** 2).mean()
        loss.backward()
        kept.append([p.grad for p in params])
        copies.append([None if p.grad is None else p.grad.copy() for p in params])
        opt.step()
    for step, (ks, cs, ws) in enumerate(zip(kept, copies, weights)):
        want = torch_grads(ws, x * (step + 1))
        assert ks[3] is None  # the frozen bias
        del ks[3], cs[3], want[3]
        for j, (k, c) in enumerate(zip(ks, cs)):
            assert k.dtype == dtype
            np.testing.assert_array_equal(k, c, err_msg=f"step {step}, parameter {j} changed")
        # the step's whole gradient, as one vector, is torch's at the same weights
        flat = np.concatenate([k.ravel() for k in ks])
        assert_close(flat, np.concatenate([w.ravel() for w in want]), TOL[dtype])
    # every step's gradient is its own array; the frozen bias never moved
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            assert not np.shares_memory(kept[a][0], kept[b][0])
    np.testing.assert_array_equal(params[3].data, nested_model(dtype)[1][0].bias.data)


def test_the_learners_loop_from_the_issue():
    m = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))
    opt = optim.SGD(m.parameters(), lr=0.1)
    x = np.ones((4, 3), np.float32)
    h, c = [], []
    for i in range(4):
        opt.zero_grad()
        loss = (m(x * (i + 1)) ** 2).mean()
        loss.backward()
        h.append(m[0].weight.grad)
        c.append(m[0].weight.grad.copy())
        opt.step()
    assert [np.array_equal(a, b) for a, b in zip(h, c)] == [True] * 4


def test_gradients_stay_in_one_flat_buffer_per_dtype_step_after_step():
    # the fix must not scatter the gradients: the flat update and the all-reduce still see one
    # buffer per dtype, a fresh one per step
    p32 = nn.Parameter(np.array([1.0, 2.0], np.float32))
    p64 = nn.Parameter(np.array([3.0], np.float64))
    q32 = nn.Parameter(np.array([[4.0]], np.float32))
    opt = optim.SGD([p32, p64, q32], lr=0.5)
    opt.prepare()
    seen = []
    for _ in range(3):
        opt.zero_grad()
        ((p32 * p32).sum() + (p64 * p64 * p64).sum() + (q32 * p32[0]).sum()).backward()
        assert opt.arena.ready()
        g32, g64 = opt.arena.grad_buffers()
        assert p32.grad.base is g32 and q32.grad.base is g32 and p64.grad.base is g64
        seen.append(
            (p32.grad, p64.grad, q32.grad, p32.data.copy(), p64.data.copy(), q32.data[0, 0])
        )
        opt.step()
    assert len({id(s[0].base) for s in seen}) == 3  # a new float32 buffer at every step
    for g32, g64, gq, w32, w64, wq in seen:  # each kept gradient is its step's, by hand:
        np.testing.assert_array_equal(g32, 2 * w32 + np.array([wq, 0], np.float32))
        np.testing.assert_array_equal(g64, 3 * w64 * w64)
        np.testing.assert_array_equal(gq, [[w32[0]]])


# ----- zero_grad: the three of them, both modes ------------------------------------------


def _loss(model, x):
    return (model(x) ** 2).sum()


def _zero(kind, model, opt, arena, set_to_none):
    if kind == "module":
        model.zero_grad(set_to_none=set_to_none)
    elif kind == "optimizer":
        opt.zero_grad(set_to_none=set_to_none)
    else:
        arena.zero_grad(set_to_none=set_to_none)


@pytest.mark.parametrize("kind", ["module", "optimizer", "arena"])
def test_zero_grad_set_to_none_gives_a_new_array_and_leaves_the_old_one_alone(kind):
    model = nn.mlp([3, 4, 2], rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    opt.prepare()  # the gradients go to the optimizer's arena from the first step
    arena = opt.arena
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    _loss(model, x).backward()
    before = [p.grad for p in model.parameters()]
    saved = [g.copy() for g in before]
    opt.step()
    _zero(kind, model, opt, arena, True)
    assert all(p.grad is None for p in model.parameters())
    _loss(model, 2 * x).backward()
    for p, b, s in zip(model.parameters(), before, saved):
        assert p.grad is not b and not np.shares_memory(p.grad, b)
        np.testing.assert_array_equal(b, s)
    fresh = copy.deepcopy(model)  # the same weights, no arena: the engine's own arrays
    fresh.zero_grad()
    _loss(fresh, 2 * x).backward()
    for p, q in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


@pytest.mark.parametrize("kind", ["module", "optimizer", "arena"])
def test_zero_grad_set_to_none_false_zeroes_in_place_and_accumulates_into_the_same_array(kind):
    model = nn.mlp([3, 4, 2], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    arena = opt.arena
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    _loss(model, x).backward()
    before = [p.grad for p in model.parameters()]
    _zero(kind, model, opt, arena, False)
    for p, b in zip(model.parameters(), before):
        assert p.grad is b and not np.any(b)  # the same object, zeroed (PyTorch)
    _loss(model, 2 * x).backward()
    fresh = copy.deepcopy(model)
    fresh.zero_grad()
    _loss(fresh, 2 * x).backward()
    for p, b, q in zip(model.parameters(), before, fresh.parameters()):
        assert p.grad is b  # accumulated into: a kept reference sees the new values
        np.testing.assert_array_equal(b, q.grad)
    # a .grad that is None stays None
    model[0].bias.grad = None
    _zero(kind, model, opt, arena, False)
    assert model[0].bias.grad is None


def test_zero_grad_in_place_does_not_touch_a_gradient_released_before():
    # set_to_none=True, then set_to_none=False: the first released the arrays (a user may
    # hold them); zeroing "in place" must not reach them
    model = nn.mlp([3, 2], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.prepare()
    _loss(model, np.ones((2, 3), np.float32)).backward()
    kept = [p.grad for p in model.parameters()]
    saved = [g.copy() for g in kept]
    opt.zero_grad()
    model[0].weight.grad = np.ones_like(model[0].weight.data)  # one gradient set by hand
    opt.arena.zero_grad(set_to_none=False)
    for g, s in zip(kept, saved):
        np.testing.assert_array_equal(g, s)
    assert not np.any(model[0].weight.grad) and model[0].bias.grad is None


def test_tensor_zero_grad_and_grad_set_to_none_by_hand_also_give_fresh_arrays():
    model = nn.mlp([3, 4, 2], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = np.ones((2, 3), np.float32)
    kept = []
    for i in range(3):
        for j, p in enumerate(model.parameters()):
            if j % 2:
                p.zero_grad()
            else:
                p.grad = None
        _loss(model, x * (i + 1)).backward()
        kept.append([(p.grad, p.grad.copy()) for p in model.parameters()])
        opt.step()
    for step in kept:
        for g, c in step:
            np.testing.assert_array_equal(g, c)


# ----- accumulation ----------------------------------------------------------------------


def test_accumulation_without_zero_grad_adds_up_and_earlier_steps_stay_kept():
    model = nn.mlp([3, 4, 2], "tanh", rng=0).to(np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x1 = np.linspace(-1, 1, 6).reshape(2, 3)
    x2 = np.linspace(0, 2, 6).reshape(2, 3)

    def grads_at(x):
        twin = copy.deepcopy(model)
        _loss(twin, x).backward()
        return [p.grad for p in twin.parameters()]

    opt.prepare()  # the gradients go to the optimizer's flat buffers from the first step
    opt.zero_grad()
    _loss(model, x1).backward()
    step1 = [p.grad for p in model.parameters()]
    saved1 = [g.copy() for g in step1]
    opt.step()
    opt.zero_grad()
    g1, g2 = grads_at(x1), grads_at(x2)  # at the weights after the first step
    _loss(model, x1).backward()
    first = [p.grad for p in model.parameters()]
    _loss(model, x2).backward()  # no zero_grad: added into the same arrays
    for p, f, a, b in zip(model.parameters(), first, g1, g2):
        assert p.grad is f
        np.testing.assert_allclose(p.grad, a + b, rtol=1e-14, atol=1e-15)
    for g, s in zip(step1, saved1):  # the step before the zero_grad is untouched
        np.testing.assert_array_equal(g, s)
    w = [p.data.copy() for p in model.parameters()]
    opt.step()
    for p, w0, a, b in zip(model.parameters(), w, g1, g2):
        np.testing.assert_allclose(p.data, w0 - 0.1 * (a + b), rtol=1e-14, atol=1e-15)


def test_some_gradients_released_others_accumulated_then_one_step():
    # bias of layer 0 released by hand, the rest accumulated: the released one is fresh, the
    # others keep their arrays, and the optimizer's step uses each one's value
    model = nn.mlp([3, 4, 2], rng=0).to(np.float64)
    opt = optim.Adam(model.parameters(), lr=0.1)
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    twin, topt = copy.deepcopy(model), None
    topt = optim.Adam(twin.parameters(), lr=0.1)
    for m, o in ((model, opt), (twin, topt)):
        o.zero_grad()
        _loss(m, x).backward()
        o.step()
    _loss(model, x).backward()
    kept_bias = model[0].bias.grad
    saved_bias = kept_bias.copy()
    others = [p.grad for p in model.parameters()]
    model[0].bias.grad = None
    _loss(model, 2 * x).backward()
    assert model[0].bias.grad is not kept_bias
    np.testing.assert_array_equal(kept_bias, saved_bias)
    for j, (p, o) in enumerate(zip(model.parameters(), others)):
        assert (p.grad is o) == (j != 1)
    # the same gradients built on the twin with fresh arrays: the steps agree bitwise
    want = [p.grad.copy() for p in model.parameters()]
    for p, g in zip(twin.parameters(), want):
        p.grad = g.copy()
    opt.step()
    topt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_an_arena_of_its_own_behaves_as_the_optimizers():
    model = nn.mlp([3, 2], rng=0)
    arena = ParameterArena(model.parameters())
    arena.ensure()
    x = np.ones((2, 3), np.float32)
    kept = []
    for i in range(3):
        arena.zero_grad()
        _loss(model, x * (i + 1)).backward()
        assert arena.ready()
        kept.append([(p.grad, p.grad.copy()) for p in model.parameters()])
    for step in kept:
        for g, c in step:
            np.testing.assert_array_equal(g, c)


# ----- cr.fit and the Trainer: a callback keeps p.grad after every batch -----------------


def make_data(n=40):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    return X, y


class KeepGrads(cr.callbacks.Callback):
    """Keeps, for every batch: the weights before it, each p.grad after it and a copy."""

    def __init__(self):
        self.weights, self.kept, self.copies, self.plans = [], [], [], []

    def on_batch_begin(self, batch, logs=None):
        self.weights.append([p.data.astype(np.float64) for p in self.model.parameters()])

    def on_batch_end(self, batch, logs=None):
        self.kept.append([p.grad for p in self.model.parameters()])
        self.copies.append([p.grad.copy() for p in self.model.parameters()])
        self.plans.append(self.trainer.plan.name)


def torch_ce_grads(weights, x, y):
    """∂/∂θ of the mean cross-entropy of Linear-ReLU-Linear at ``weights``."""
    ts = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in weights]
    w0, b0, w1, b1 = ts
    z = torch.relu(torch.tensor(x, dtype=torch.float64) @ w0 + b0) @ w1 + b1
    torch.nn.functional.cross_entropy(z, torch.tensor(y)).backward()
    return [t.grad.numpy() for t in ts]


def check_kept(cb, X, y, batch_size, dtype, accumulate=1):
    assert len(cb.kept) > 3
    per_epoch = -(-len(X) // (batch_size * accumulate))
    for i, (ks, cs, ws) in enumerate(zip(cb.kept, cb.copies, cb.weights)):
        b = i % per_epoch
        rows = slice(b * batch_size * accumulate, (b + 1) * batch_size * accumulate)
        want = torch_ce_grads(ws, X[rows].astype(dtype), y[rows])
        for k, c, w in zip(ks, cs, want):
            np.testing.assert_array_equal(k, c, err_msg=f"batch {i}: the kept gradient changed")
            assert_close(k, w, TOL[dtype])


def mlp(dtype):
    return nn.Sequential(nn.Linear(5, 6, rng=0), nn.ReLU(), nn.Linear(6, 3, rng=1)).to(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_with_the_fused_plan_keeps_every_batchs_gradient(optimizer, dtype):
    X, y = make_data()
    cb = KeepGrads()
    cr.fit(
        mlp(dtype),
        X.astype(dtype),
        y,
        loss="cross_entropy",
        optimizer=optimizer,
        lr=0.1,
        epochs=2,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[cb],
    )
    assert set(cb.plans) == {"fused_mlp"}  # a Dense MLP with softmax CE runs fused
    check_kept(cb, X, y, 8, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trainer_with_the_eager_plan_keeps_every_batchs_gradient(dtype):
    X, y = make_data()
    cb = KeepGrads()
    tr = cr.Trainer(
        mlp(dtype), "cross_entropy", "adam", lr=0.1, verbose=0, callbacks=[cb], plan=EagerPlan
    )
    tr.fit(X.astype(dtype), y, epochs=2, batch_size=8, shuffle=False)
    assert set(cb.plans) == {"eager"}
    check_kept(cb, X, y, 8, dtype)


def test_fit_with_gradient_accumulation_keeps_every_steps_gradient():
    X, y = make_data()
    cb = KeepGrads()
    cr.fit(
        mlp(np.float64),
        X,
        y,
        loss="cross_entropy",
        optimizer="sgd",
        lr=0.1,
        epochs=2,
        batch_size=4,
        accumulate_steps=2,
        shuffle=False,
        verbose=0,
        callbacks=[cb],
    )
    check_kept(cb, X, y, 4, np.float64, accumulate=2)


def test_trainer_steps_and_train_step_hand_out_gradients_that_stay():
    X, y = make_data()
    tr = cr.Trainer(mlp(np.float64), "cross_entropy", "sgd", lr=0.1, verbose=0, seed=0)
    params = list(tr.model.parameters())
    kept, copies, weights = [], [], []
    weights.append([p.data.copy() for p in params])
    batches = []
    for logs in tr.steps(X, y, epochs=2, batch_size=8, shuffle=False):
        batches.append(logs["batch"])
        kept.append([p.grad for p in params])
        copies.append([p.grad.copy() for p in params])
        weights.append([p.data.copy() for p in params])
    assert tr.plan.name == "fused_mlp"
    assert batches == [0, 1, 2, 3, 4] * 2
    for b, ks, cs, ws in zip(batches, kept, copies, weights):
        want = torch_ce_grads(ws, X[b * 8 : (b + 1) * 8], y[b * 8 : (b + 1) * 8])
        for k, c, w in zip(ks, cs, want):
            np.testing.assert_array_equal(k, c)
            assert_close(k, w, 1e-12)
    # Trainer.train_step, one batch at a time from outside a fit
    kept, copies = [], []
    for b in range(4):
        ws = [p.data.copy() for p in params]
        tr.train_step((X[b * 8 : (b + 1) * 8], y[b * 8 : (b + 1) * 8]))
        kept.append([p.grad for p in params])
        copies.append([p.grad.copy() for p in params])
        want = torch_ce_grads(ws, X[b * 8 : (b + 1) * 8], y[b * 8 : (b + 1) * 8])
        for k, w in zip(kept[-1], want):
            assert_close(k, w, 1e-12)
    for ks, cs in zip(kept, copies):
        for k, c in zip(ks, cs):
            np.testing.assert_array_equal(k, c)


def test_a_gradient_kept_after_fit_survives_the_next_fit():
    X, y = make_data()
    model = mlp(np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=8, verbose=0)
    kept = [p.grad for p in model.parameters()]
    saved = [g.copy() for g in kept]
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=8, verbose=0)
    for g, s in zip(kept, saved):
        np.testing.assert_array_equal(g, s)


def test_a_pickled_or_copied_optimizer_writes_no_gradient_of_the_original():
    # the parameters' hook refers to its arena weakly; a copy gets a hook of its own
    model = nn.mlp([3, 2], rng=0)
    opt = optim.Adam(model.parameters(), lr=0.1)
    x = np.ones((2, 3), np.float32)
    _loss(model, x).backward()
    opt.step()
    kept = [p.grad for p in model.parameters()]
    saved = [g.copy() for g in kept]
    for twin, topt in (pickle.loads(pickle.dumps((model, opt))), copy.deepcopy((model, opt))):
        for _ in range(2):
            topt.zero_grad()
            _loss(twin, 3 * x).backward()
            topt.step()
    for p, g, s in zip(model.parameters(), kept, saved):
        assert p.grad is g
        np.testing.assert_array_equal(g, s)


def test_a_layer_used_twice_gets_the_sum_of_its_two_gradients_in_fit():
    # the fused step writes each layer's gradient once; a Linear used twice needs the sum of
    # both uses (the engine's +=), so the fused plan declines it and the weights match torch
    X, y = make_data(16)
    lin = nn.Linear(5, 5, rng=0)
    model = nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(5, 3, rng=1)).to(np.float64)
    w0, b0, w1, b1 = (torch.tensor(p.data.copy(), requires_grad=True) for p in model.parameters())
    tr = cr.Trainer(model, "cross_entropy", "sgd", lr=0.1, verbose=0)
    tr.fit(X, y, epochs=1, batch_size=16, shuffle=False)
    assert tr.plan.name == "eager"
    h = torch.tanh(torch.tanh(torch.tensor(X) @ w0 + b0) @ w0 + b0)
    torch.nn.functional.cross_entropy(h @ w1 + b1, torch.tensor(y)).backward()
    for p, t in zip(model.parameters(), (w0, b0, w1, b1)):
        np.testing.assert_allclose(p.data, (t - 0.1 * t.grad).detach().numpy(), rtol=1e-12)
