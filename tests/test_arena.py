"""The parameter arena: flat (data, grad) buffers per dtype, views per parameter, rebuilds.

Checked here: views share memory with the buffers; one buffer pair per dtype; rebuilds after
``model.to()``, a replaced ``.data`` and a changed parameter list keep every value; optimizer
state follows the parameters' dtype after ``to()`` and training then continues as torch.optim
does in float64 (for every optimizer) and on the flat and fused paths; frozen and unreached
parameters are untouched; nobody outside the arena, the engine and the optimizers reads the
private fields the flat buffers used to be reached through.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.arena import ParameterArena, grad_home
from chainrule.training.fastpath import FastMLP

torch = pytest.importorskip("torch")


def backward_mse(model, X, y):
    nn.functional.mse_loss(model(X), y).backward()


# ----- layout ------------------------------------------------------------------------------


def test_views_share_memory_with_one_buffer_pair_in_parameter_order():
    model = nn.mlp([3, 4, 2], rng=0)
    params = list(model.parameters())
    arena = ParameterArena(params)
    assert arena.params == [] and arena.ensure() is True and arena.ensure() is False
    assert arena.params == params and len(arena.buffers) == 1
    data, grad = arena.buffers[0]
    assert data.dtype == grad.dtype == np.float32 and data.size == sum(p.size for p in params)
    start = 0
    for p in params:
        assert arena.location(p) == (0, start, start + p.size)
        assert p.data is arena.view(p) and p.data.base is data
        np.testing.assert_array_equal(data[start : start + p.size], p.data.ravel())
        start += p.size
    data[0] = 7.0  # the buffer is the parameters
    assert params[0].data.flat[0] == 7.0
    rng = np.random.default_rng(0)
    backward_mse(model, rng.normal(size=(5, 3)).astype(np.float32), np.zeros((5, 2), np.float32))
    assert arena.ready()
    for p in params:
        assert p.grad is arena.grad_view(p) and p.grad.base is grad
    np.testing.assert_array_equal(grad, np.concatenate([p.grad.ravel() for p in params]))


def test_one_contiguous_gradient_buffer_per_dtype_so_an_all_reduce_is_one_call_each():
    a = nn.Parameter(np.array([1.0, 2.0], np.float32))
    b = nn.Parameter(np.array([[3.0], [4.0]], np.float64))
    c = nn.Parameter(np.array([5.0], np.float32))
    arena = ParameterArena([a, b, c])
    arena.ensure()
    assert arena.dtypes == [np.float32, np.float64]
    assert [d.size for d in arena.data_buffers()] == [3, 2]
    assert arena.location(c) == (0, 2, 3) and arena.location(b) == (1, 0, 2)
    assert arena.segments([a, b, c]) == [(0, 0, 2, [a]), (1, 0, 2, [b]), (0, 2, 3, [c])]
    assert arena.segments([a, c, b]) == [(0, 0, 3, [a, c]), (1, 0, 2, [b])]
    ((a * a).sum() + (b * b).sum() + (c * c).sum()).backward()
    assert arena.ready()
    g32, g64 = arena.grad_buffers()
    np.testing.assert_array_equal(g32, [2.0, 4.0, 10.0])
    np.testing.assert_array_equal(g64, [6.0, 8.0])
    for g in arena.grad_buffers():  # what an all-reduce (average over 2 ranks) does
        g *= 0.5
    np.testing.assert_array_equal(a.grad, [1.0, 2.0])
    np.testing.assert_array_equal(b.grad, [[3.0], [4.0]])


def test_plain_tensors_and_duplicates_are_not_held():
    w = cr.tensor([1.0, 2.0], requires_grad=True)  # no gradient hook: stays where it is
    p = nn.Parameter([3.0])
    arena = ParameterArena([w, p, p])
    arena.ensure()
    assert arena.params == [p] and arena.view(w) is None and arena.location(w) is None
    opt = optim.SGD([w, p], lr=0.5)
    (w.sum() + 2 * p.sum()).backward()
    opt.step()
    np.testing.assert_array_equal(w.data, [0.5, 1.5])
    np.testing.assert_array_equal(p.data, [2.0])
    assert opt.arena.params == [p]


def test_zero_grad_and_ready():
    model = nn.mlp([3, 2], rng=0)
    arena = ParameterArena(model.parameters())
    arena.ensure()
    X, y = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    backward_mse(model, X, y)
    assert arena.ready() and np.any(arena.grad_buffers()[0] != 0)
    arena.zero_grad(set_to_none=False)  # torch's set_to_none=False: zeros, in place
    assert arena.ready() and not np.any(arena.grad_buffers()[0])
    arena.zero_grad()
    assert all(p.grad is None for p in model.parameters()) and not arena.ready()
    model[0].bias.requires_grad = False
    backward_mse(model, X, y)
    assert model[0].bias.grad is None and not arena.ready()  # one gradient is missing


# ----- rebuilds ----------------------------------------------------------------------------


def test_rebuild_after_to_keeps_values_and_moves_gradients_into_the_new_buffers():
    model = nn.mlp([3, 4, 2], rng=0)
    arena = ParameterArena(model.parameters())
    arena.ensure()
    before = [p.data.copy() for p in model.parameters()]
    version = arena.version
    model.to(np.float64)
    assert arena.stale() and arena.view(model[0].weight) is None
    assert grad_home(model[0].weight) is None  # the float32 view no longer fits
    X, y = np.ones((2, 3)), np.zeros((2, 2))
    backward_mse(model, X, y)  # gradients in fresh float64 arrays
    grads = [p.grad.copy() for p in model.parameters()]
    assert arena.ensure() is True and arena.version == version + 1
    assert arena.dtypes == [np.float64] and arena.ready()
    for p, w, g in zip(model.parameters(), before, grads):
        assert p.data.dtype == np.float64 and p.data is arena.view(p)
        np.testing.assert_array_equal(p.data, w.astype(np.float64))
        assert p.grad is arena.grad_view(p)
        np.testing.assert_array_equal(p.grad, g)
    assert grad_home(model[0].weight) is arena.grad_view(model[0].weight)


def test_rebuild_after_data_replaced_and_after_a_changed_list():
    a, b = nn.Parameter([1.0, 2.0]), nn.Parameter([3.0])
    arena = ParameterArena([a])
    arena.ensure()
    old_grad_view = arena.grad_view(a)
    a.data = np.array([5.0, 6.0], np.float32)  # replaced by the user
    assert arena.ensure() is True and a.data.base is arena.buffers[0][0]
    np.testing.assert_array_equal(a.data, [5.0, 6.0])
    assert arena.ensure([a, b]) is True and arena.params == [a, b]
    np.testing.assert_array_equal(arena.buffers[0][0], [5.0, 6.0, 3.0])
    assert arena.grad_view(a) is not old_grad_view
    held_b = arena.grad_view(b)
    assert arena.ensure([a]) is True and arena.params == [a]
    assert arena.view(b) is None and grad_home(b) is None  # b is free again
    (b * b).sum().backward()
    assert b.grad is not held_b and not np.shares_memory(b.grad, arena.buffers[0][1])


def test_a_deep_copy_is_in_no_arena():
    model = nn.mlp([3, 2], rng=0)
    opt = optim.Adam(model.parameters())
    opt.prepare()
    twin = copy.deepcopy(model)
    assert model[0].weight.data.base is opt.arena.buffers[0][0]  # the original is unchanged
    assert grad_home(model[0].weight) is not None and grad_home(twin[0].weight) is None
    backward_mse(twin, np.ones((2, 3), np.float32), np.ones((2, 2), np.float32))
    assert not np.any(opt.arena.buffers[0][1])  # the copy's gradients went elsewhere
    assert all(p.grad is None for p in model.parameters())


# ----- optimizer state follows the parameters' dtype after to() ----------------------------

OPTIMIZERS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
]


def to_torch_state(sd):
    return {
        i: {
            k: torch.tensor(float(v)) if k == "step" else torch.tensor(np.asarray(v, np.float64))
            for k, v in s.items()
        }
        for i, s in sd["state"].items()
    }


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
def test_state_follows_to_float64_and_training_continues_as_torch(name, kwargs):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 2))
    model = nn.mlp([5, 8, 2], "tanh", rng=3)  # float32
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    for _ in range(3):
        opt.zero_grad()
        backward_mse(model, X.astype(np.float32), y.astype(np.float32))
        opt.step()
    saved = opt.state_dict()  # float32 copies
    weights = [p.data.copy() for p in model.parameters()]
    model.to(np.float64)
    opt.prepare()
    # the moments are float64 now, their values kept, and they live in flat buffers again
    assert opt.arena.dtypes == [np.float64]
    for i, p in enumerate(model.parameters()):
        for k, v in opt.state[id(p)].items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float64, (k, v.dtype)
                np.testing.assert_array_equal(v, saved["state"][i][k].astype(np.float64))
    # torch starts its float64 run from the same weights and state
    tparams = [torch.tensor(w.astype(np.float64), requires_grad=True) for w in weights]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    tsd = topt.state_dict()
    tsd["state"] = to_torch_state(saved)
    topt.load_state_dict(tsd)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(5):
        opt.zero_grad()
        backward_mse(model, X, y)
        assert opt.arena.ready()  # every gradient in the float64 buffer: the flat path
        opt.step()
        topt.zero_grad()
        h = torch.tanh(Xt @ tparams[0] + tparams[1])
        torch.nn.functional.mse_loss(h @ tparams[2] + tparams[3], yt).backward()
        topt.step()
    for p, tp in zip(model.parameters(), tparams):
        assert p.data.dtype == np.float64 and p.data.base is opt.arena.buffers[0][0]
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    for i, p in enumerate(model.parameters()):
        for k, v in opt.state[id(p)].items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float64
                np.testing.assert_allclose(v, topt.state[tparams[i]][k].numpy(), rtol=1e-11)


def test_back_to_float32_the_state_follows_too():
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    model = nn.mlp([3, 4, 2], rng=0, dtype=np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    backward_mse(model, X, y)
    opt.step()
    buf = opt.state[id(model[0].weight)]["momentum_buffer"].copy()
    model.float()
    opt.zero_grad()
    backward_mse(model, X.astype(np.float32), y.astype(np.float32))
    opt.step()
    st = opt.state[id(model[0].weight)]
    assert opt.arena.dtypes == [np.float32] and st["momentum_buffer"].dtype == np.float32
    g = model[0].weight.grad
    np.testing.assert_array_equal(st["momentum_buffer"], buf.astype(np.float32) * 0.9 + g)


def test_an_empty_parameter_takes_no_room_and_breaks_nothing():
    a, e, b = nn.Parameter([1.0, 2.0]), nn.Parameter(np.zeros(0, np.float32)), nn.Parameter([3.0])
    opt = optim.Adam([a, e, b], lr=0.1)
    opt.zero_grad()
    ((a * a).sum() + e.sum() + (b * b).sum()).backward()
    opt.step()
    assert opt.arena.location(e) == (0, 2, 2) and opt.arena.location(b) == (0, 2, 3)
    assert e.data.shape == (0,) and opt.arena.ready()
    np.testing.assert_allclose(a.data, [0.9, 1.9], rtol=1e-6)
    np.testing.assert_allclose(b.data, [2.9], rtol=1e-6)


def test_fit_after_to_float64_continues_on_the_fused_path_with_converted_state(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = nn.mlp([6, 16, 3], rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16, verbose=0)
    weights, saved = model.state_dict(), opt.state_dict()
    model.to(np.float64)
    calls = []
    fused_step = FastMLP.step

    def counting(self, *args):
        calls.append(self.linears[0].weight.data.dtype)
        return fused_step(self, *args)

    monkeypatch.setattr(FastMLP, "step", counting)
    X64 = X.astype(np.float64)
    kw = dict(loss="cross_entropy", epochs=2, batch_size=16, verbose=0, seed=5)
    cr.fit(model, X64, y, optimizer=opt, **kw)
    assert calls and set(calls) == {np.dtype(np.float64)}  # the fused path, in float64
    assert opt.arena.dtypes == [np.float64]
    assert all(
        v.dtype == np.float64
        for s in opt.state.values()
        for v in s.values()
        if isinstance(v, np.ndarray)
    )
    # the same as a fresh float64 model and optimizer loaded with the converted values
    ref = nn.mlp([6, 16, 3], rng=0, dtype=np.float64)
    ref.load_state_dict({k: v.astype(np.float64) for k, v in weights.items()})
    ref_opt = optim.Adam(ref.parameters(), lr=0.01)
    ref_opt.load_state_dict(saved)  # casts the moments to the parameters' dtype
    cr.fit(ref, X64, y, optimizer=ref_opt, **kw)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert p.data.tobytes() == q.data.tobytes()


# ----- changed parameter lists ------------------------------------------------------------


def test_add_param_group_rebuilds_and_keeps_the_moments_as_torch():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    a = nn.mlp([3, 4, 1], rng=0, dtype=np.float64)
    b = nn.mlp([3, 1], rng=1, dtype=np.float64)
    ta = [torch.tensor(p.data.copy(), requires_grad=True) for p in a.parameters()]
    tb = [torch.tensor(p.data.copy(), requires_grad=True) for p in b.parameters()]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    opt = optim.Adam(a.parameters(), lr=0.01)
    topt = torch.optim.Adam(ta, lr=0.01)

    def step(with_b):
        opt.zero_grad()
        out = a(X) + b(X) if with_b else a(X)
        nn.functional.mse_loss(out, y).backward()
        opt.step()
        topt.zero_grad()
        tout = torch.relu(Xt @ ta[0] + ta[1]) @ ta[2] + ta[3]
        if with_b:
            tout = tout + Xt @ tb[0] + tb[1]
        torch.nn.functional.mse_loss(tout, yt).backward()
        topt.step()

    for _ in range(3):
        step(False)
    version = opt.arena.version
    opt.add_param_group({"params": b.parameters(), "lr": 0.05})
    topt.add_param_group({"params": tb, "lr": 0.05})
    for _ in range(3):
        step(True)
    assert opt.arena.version == version + 1 and len(opt.arena.params) == 6
    assert opt.arena.ready()
    for p, tp in zip([*a.parameters(), *b.parameters()], ta + tb):
        assert p.data.base is opt.arena.buffers[0][0]
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_load_state_dict_lays_the_state_out_again_and_continues_bitwise():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    model = nn.mlp([3, 5, 2], rng=0)
    opt = optim.RMSprop(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        backward_mse(model, X, y)
        opt.step()
    twin = nn.mlp([3, 5, 2], rng=9)
    twin.load_state_dict(model.state_dict())
    opt2 = optim.RMSprop(twin.parameters(), lr=0.01, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    opt2.prepare()
    w, bias = twin[0].weight, twin[0].bias
    for name in ("square_avg", "momentum_buffer"):  # one flat state buffer again
        assert opt2.state[id(w)][name].base is opt2.state[id(bias)][name].base is not None
    for _ in range(3):
        for m, o in ((model, opt), (twin, opt2)):
            o.zero_grad()
            backward_mse(m, X, y)
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert p.data.tobytes() == q.data.tobytes()


# ----- frozen and unreached parameters ------------------------------------------------------


def test_frozen_and_unreached_parameters_are_untouched_as_torch():
    rng = np.random.default_rng(4)
    vals = [rng.normal(size=s) for s in [(3, 2), (2,), (3,), (2, 2)]]
    ps = [nn.Parameter(v) for v in vals]  # float64
    ps[0].requires_grad = False
    tps = [torch.tensor(v, requires_grad=i != 0) for i, v in enumerate(vals)]
    opt = optim.Adam(ps, lr=0.1, weight_decay=0.1, amsgrad=True)
    topt = torch.optim.Adam(tps, lr=0.1, weight_decay=0.1, amsgrad=True)
    x = rng.normal(size=(4, 3))
    xt = torch.tensor(x)

    def loss(lib, w, use_b):
        h = (xt if lib is torch else x) @ w[0] + w[1]
        total = (h * h).sum() + (w[3] * w[3]).sum()
        return total + (w[2] * w[2]).sum() if use_b else total

    frozen = ps[0].data.copy()
    for use_b in (True, False, False, True, True):  # w[2] is not reached in steps 2 and 3
        opt.zero_grad()
        loss(cr, ps, use_b).backward()
        if not use_b:
            before = ps[2].data.copy()
        opt.step()
        if not use_b:
            np.testing.assert_array_equal(ps[2].data, before)  # no decay, no momentum
        topt.zero_grad()
        loss(torch, tps, use_b).backward()
        topt.step()
    np.testing.assert_array_equal(ps[0].data, frozen)
    assert ps[0].grad is None and id(ps[0]) not in opt.state
    assert opt.state[id(ps[2])]["step"] == 3 and opt.state[id(ps[1])]["step"] == 5
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_a_frozen_layer_leaves_the_rest_on_the_flat_path_bitwise():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16)

    def train(split_grads):
        model = nn.mlp([4, 8, 8, 3], "tanh", rng=1)
        model[2].weight.requires_grad = False
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), y).backward()
            if split_grads:  # gradients outside the arena: one parameter at a time
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad = p.grad.copy()
            opt.step()
        return model

    a, b = train(False), train(True)
    for p, q in zip(a.parameters(), b.parameters()):
        assert p.data.tobytes() == q.data.tobytes()
    frozen = nn.mlp([4, 8, 8, 3], "tanh", rng=1)[2].weight.data
    np.testing.assert_array_equal(a[2].weight.data, frozen)


def test_mixed_dtypes_in_one_group_each_step_in_their_own_dtype_as_torch():
    rng = np.random.default_rng(6)
    v32, v64 = rng.normal(size=5).astype(np.float32), rng.normal(size=4)
    p32, p64 = nn.Parameter(v32), nn.Parameter(v64)
    t32 = torch.tensor(v32, requires_grad=True)
    t64 = torch.tensor(v64, requires_grad=True)
    opt = optim.AdamW([p32, p64], lr=0.05)
    topt = torch.optim.AdamW([t32, t64], lr=0.05)
    for _ in range(4):
        opt.zero_grad()
        ((p32 * p32 * p32).sum() + (p64 * p64).sum()).backward()
        opt.step()
        topt.zero_grad()
        ((t32 * t32 * t32).sum() + (t64 * t64).sum()).backward()
        topt.step()
    assert opt.arena.dtypes == [np.float32, np.float64]
    assert opt.state[id(p32)]["exp_avg"].dtype == np.float32
    assert opt.state[id(p64)]["exp_avg"].dtype == np.float64
    np.testing.assert_allclose(p32.data, t32.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(p64.data, t64.detach().numpy(), rtol=1e-13)


# ----- nobody else reads the private fields --------------------------------------------------

PRIVATE = re.compile(r"_grad_buf|\._flat\b|_FlatGroup|\barena\._[a-z]")
# the arena sets the hook, nn.Parameter declares its slot, the optimizers own the arena
ALLOWED = {"arena.py", "nn/module.py", "optim/optimizers.py"}


def test_no_module_outside_the_arena_reads_its_private_fields():
    root = Path(cr.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    tests = Path(__file__).parent
    for path in sorted(tests.rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE.search(line):
                offenders.append(f"tests/{path.relative_to(tests).as_posix()}:{n}: {line.strip()}")
    assert not offenders, "private arena fields read outside it:\n" + "\n".join(offenders)
    # the one hook, called by the backward pass (split out of tensor.py)
    assert "grad_home(" in (root / "_backward.py").read_text(encoding="utf-8")


def test_parameter_arena_is_public():
    assert optim.ParameterArena is ParameterArena
    assert "ParameterArena" in optim.__all__
    opt = optim.SGD(nn.mlp([2, 1], rng=0).parameters(), lr=0.1)
    assert isinstance(opt.arena, optim.ParameterArena)


def test_state_dict_right_after_to_has_the_new_dtype():
    """A checkpoint written between model.to(float64) and the next step stores float64
    moments (the state follows the parameters as soon as it is read)."""
    model = cr.nn.mlp([3, 4, 2], rng=0)
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    cr.nn.CrossEntropyLoss()(model(np.ones((2, 3), np.float32)), np.array([0, 1])).backward()
    opt.step()
    model.to(np.float64)
    sd = opt.state_dict()
    arrays = [v for st in sd["state"].values() for v in st.values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.dtype == np.float64 for a in arrays)
