"""Issue 15, engine and tensor level: what a PyTorch user writes, with PyTorch as the oracle.

In-place updates and version counters (1), transpose/permute/swapaxes (2), integer-float
promotion (7), clip at its bounds (8), PyTorch's names (9), higher-order gradients (10).
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(15)


def _both(x: np.ndarray, requires_grad: bool = True) -> tuple[cr.Tensor, object]:
    """The same float64 leaf in chainrule and in torch."""
    return (
        cr.tensor(x.copy(), requires_grad=requires_grad),
        torch.tensor(x.copy(), requires_grad=requires_grad),
    )


def _raises(fn) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn()
    except RuntimeError:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# 1. in-place updates
# ---------------------------------------------------------------------------------------------
def _data():
    r = np.random.default_rng(0)
    x = r.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    return x, y


def test_hand_written_sgd_loop_updates_the_parameters_in_place():
    # the reproduction: the loss stayed at 4.1769 because `-=` rebound the loop variable
    x, y = _data()
    model = cr.nn.Linear(3, 1, rng=0)
    params = list(model.parameters())
    ids = [id(p) for p in params]
    lr = 0.1
    losses = []
    for _ in range(5):
        before = [p.data.copy() for p in params]
        loss = cr.nn.functional.mse_loss(model(cr.tensor(x)), cr.tensor(y))
        for p in params:
            p.grad = None
        loss.backward()
        grads = [p.grad.copy() for p in params]
        with cr.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        for p, b, g in zip(params, before, grads):  # exactly the hand step w - lr * g
            np.testing.assert_array_equal(p.data, b - np.float32(lr) * g)
            assert p.dtype == np.float32 and p.requires_grad and p.is_leaf
        losses.append(loss.item())
    assert [id(p) for p in model.parameters()] == ids
    assert losses[-1] < 0.5 * losses[0]


def test_in_place_scaling_keeps_the_parameter_registered():
    m = cr.nn.Linear(3, 2, rng=0)
    w = m.weight
    before = w.data.copy()
    with cr.no_grad():
        m.weight *= 0.5
    assert m.weight is w and isinstance(m.weight, cr.nn.Parameter)
    assert dict(m.named_parameters())["weight"] is w
    np.testing.assert_array_equal(m.state_dict()["weight"], before * np.float32(0.5))
    assert w._version == 1


def test_leaf_that_requires_grad_refuses_in_place_outside_no_grad_like_torch():
    for op in ("+=", "-=", "*=", "/=", "setitem"):
        ours, theirs = _both(np.array([1.0, 2.0]))
        for t in (ours, theirs):
            with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
                if op == "setitem":
                    t[0] = 5.0
                else:
                    exec(f"t {op} 2.0")
        if op == "-=":  # the issue's `w -= lr * w.grad` keeps w a leaf with gradients
            assert ours.requires_grad and ours.is_leaf


def test_item_assignment():
    t = cr.tensor([1.0, 2.0, 3.0])
    t[0] = 5
    np.testing.assert_array_equal(t.data, [5.0, 2.0, 3.0])
    m = cr.tensor(np.zeros((3, 2)))
    m[1:, 0] = cr.tensor([7.0, 8.0], dtype=np.float64)
    m[np.array([0, 2]), 1] = 4.0
    np.testing.assert_array_equal(m.data, [[0, 4], [7, 0], [8, 4]])
    assert t._version == 1 and m._version == 2
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.no_grad():
        w[1] = 0.0
    np.testing.assert_array_equal(w.data, [1.0, 0.0])
    with pytest.raises(IndexError, match="shape"):
        t[5] = 1.0


def test_in_place_on_graph_tensors_is_recorded_like_torch():
    x0, w0 = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))

    def run(lib, x, w):  # type: ignore[no-untyped-def]
        y = x * 2
        y += w  # add_ on a non-leaf
        y *= w  # mul_: the gradient needs y's old value
        y -= x
        y /= 1.5 + w * w
        z = x * 2.0
        z[0] = y[1] * 3  # item assignment of a graph value into a graph tensor
        z[:, 1] = 0.0
        return y.sum() + (lib.exp(z) * z).sum()

    x, tx = _both(x0)
    w, tw = _both(w0)
    run(cr, x, w).backward()
    run(torch, tx, tw).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-12)


def test_constant_combined_in_place_with_a_tensor_that_requires_grad_joins_the_graph():
    w, tw = _both(np.array([1.0, -2.0, 3.0]))
    acc, tacc = cr.tensor(np.zeros(3)), torch.zeros(3, dtype=torch.float64)
    for _ in range(3):
        acc += w * w
        tacc += tw * tw
    assert acc.requires_grad and not acc.is_leaf
    acc.sum().backward()
    tacc.sum().backward()
    np.testing.assert_allclose(w.grad, tw.grad.numpy())


CASES = {
    # name: (chainrule/torch program taking (lib, leaf a, leaf b); returns a scalar)
    "exp output changed": lambda lib, ng, a, b: _change(ng, lambda: lib.exp(a), "y"),
    "mul input changed": lambda lib, ng, a, b: _change_input(ng, a, b, "mul"),
    "add input changed": lambda lib, ng, a, b: _change_input(ng, a, b, "add"),
    "sigmoid output changed": lambda lib, ng, a, b: _change(ng, lambda: lib.sigmoid(a), "y"),
    "sum input changed": lambda lib, ng, a, b: _change_input(ng, a, b, "sum"),
}


def _change(ng, make, _):  # type: ignore[no-untyped-def]
    y = make()
    with ng():
        y += 1.0
    return y.sum()


def _change_input(ng, a, b, op):  # type: ignore[no-untyped-def]
    c = a * 1.0  # a non-leaf copy that we may change in place
    out = {"mul": lambda: c * b, "add": lambda: c + b, "sum": lambda: c.sum() * b}[op]()
    with ng():
        c += 1.0
    return out.sum()


@pytest.mark.parametrize("case", sorted(CASES))
def test_version_check_raises_exactly_when_torch_does(case):
    a0, b0 = RNG.normal(size=3), RNG.normal(size=3)
    a, ta = _both(a0)
    b, tb = _both(b0)
    loss = CASES[case](cr, cr.no_grad, a, b)
    tloss = CASES[case](torch, torch.no_grad, ta, tb)
    torch_raises = _raises(tloss.backward)
    if torch_raises:
        with pytest.raises(RuntimeError, match="modified by an in-place operation after it"):
            loss.backward()
    else:
        loss.backward()
        np.testing.assert_allclose(a.grad, ta.grad.numpy())
        np.testing.assert_allclose(b.grad, tb.grad.numpy())


def test_leaf_changed_under_no_grad_after_use_raises_like_torch():
    for lib in (cr, torch):
        w = (cr.tensor if lib is cr else torch.tensor)([1.0, 2.0], requires_grad=True)
        loss = (w * w).sum()
        with lib.no_grad():
            w -= 0.1
        with pytest.raises(RuntimeError, match=r"modified by an in-?place operation"):
            loss.backward()
    # a detached alias shares the version counter (PyTorch does the same)
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    d = w.detach()
    d += 1.0
    assert w._version == 1 and w.data[0] == 2.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


def test_versions_count_like_torch():
    t, tt = cr.tensor(np.zeros(3)), torch.zeros(3, dtype=torch.float64)
    for obj in (t, tt):
        obj += 1
        obj *= 2
        obj[0] = 3.0
        obj -= 1
    assert t._version == tt._version == 4
    np.testing.assert_array_equal(t.data, tt.numpy())


def _stale_step(lib, layers, x):  # type: ignore[no-untyped-def]
    """backward() through a graph built before an optimizer step: raises or not."""
    if lib is cr:
        model = cr.nn.Sequential(*[cr.nn.Linear(3, 3, rng=k) for k in range(layers)])
        opt = cr.optim.SGD(model.parameters(), lr=0.1)
        inp = cr.tensor(x)
    else:
        model = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(layers)])
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        inp = torch.tensor(x)
    loss = (model(inp) ** 2).mean()
    loss.backward(retain_graph=True)
    opt.step()
    return _raises(loss.backward)


def test_optimizer_step_invalidates_a_stale_graph_like_torch():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    # one layer: the weight's value is not needed (the input needs no gradient), no error;
    # two layers: the second weight is needed for the first layer's gradient -> error
    for layers in (1, 2):
        assert _stale_step(cr, layers, x) == _stale_step(torch, layers, x) == (layers == 2)
    m = cr.nn.Linear(3, 2, rng=0)
    opt = cr.optim.SGD(m.parameters(), lr=0.1)
    for step in range(3):  # the usual loop (new graph every step) is unaffected
        opt.zero_grad()
        (m(cr.tensor(x)) ** 2).mean().backward()
        opt.step()
        assert m.weight._version == step + 1


def test_rebinding_a_tensor_that_was_already_used_is_refused_loudly():
    # chainrule records `y += 1` by making the object y the new node: a node built from the old
    # y earlier would then read the new one, so backward() refuses (PyTorch can keep both).
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = y * 3
    y += 1
    with pytest.raises(RuntimeError, match="modified by an in-place operation after it"):
        z.sum().backward()


def test_in_place_errors_name_the_problem():
    i = cr.tensor(np.arange(3))
    with pytest.raises(TypeError, match="int64"):
        i /= 2
    t = cr.tensor(np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        t += np.ones((2, 3))
    with pytest.raises(ValueError, match="repeats"):
        a = cr.tensor([1.0, 2.0], requires_grad=True) * 1
        a[np.array([0, 0])] = cr.tensor([1.0, 2.0], requires_grad=True)


def test_in_place_keeps_the_tensor_dtype():
    t = cr.tensor(np.zeros(3, np.float32))
    t += np.ones(3, np.float64)
    t *= cr.tensor(np.full(3, 2.0))
    assert t.dtype == np.float32
    w = cr.tensor(np.ones(3, np.float64), requires_grad=True)
    u = cr.tensor(np.zeros(3, np.float32))
    u += w  # recorded: the float64 result is cast back to float32, differentiably
    assert u.dtype == np.float32
    u.sum().backward()
    np.testing.assert_array_equal(w.grad, np.ones(3))


# ---------------------------------------------------------------------------------------------
# 2. transpose, permute, swapaxes
# ---------------------------------------------------------------------------------------------
def test_transpose_with_two_axes_swaps_them_like_torch():
    x2 = RNG.normal(size=(2, 3))
    np.testing.assert_array_equal(cr.tensor(x2).transpose(0, 1).data, x2.T)
    np.testing.assert_array_equal(cr.tensor(x2).transpose(1, 0).data, x2.T)
    x3 = RNG.normal(size=(2, 3, 4))
    for a, b in [(0, 1), (0, 2), (1, 2), (-1, 0), (2, 2)]:
        np.testing.assert_array_equal(
            cr.tensor(x3).transpose(a, b).data, torch.tensor(x3).transpose(a, b).numpy()
        )
        np.testing.assert_array_equal(cr.swapaxes(cr.tensor(x3), a, b).data, np.swapaxes(x3, a, b))
    # a full permutation of >= 3 axes keeps NumPy's meaning; no axes reverses
    np.testing.assert_array_equal(cr.tensor(x3).transpose(2, 0, 1).data, x3.transpose(2, 0, 1))
    np.testing.assert_array_equal(cr.tensor(x3).transpose().data, x3.transpose())
    np.testing.assert_array_equal(
        cr.tensor(x3).permute(2, 0, 1).data, torch.tensor(x3).permute(2, 0, 1).numpy()
    )
    np.testing.assert_array_equal(cr.permute(cr.tensor(x3), (1, 2, 0)).data, x3.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="permutation"):
        cr.tensor(x3).permute(0, 1)


def test_transpose_permute_swapaxes_gradients_against_torch():
    x0 = RNG.normal(size=(2, 3, 4))
    wt = RNG.normal(size=(4, 3, 2))
    for f in (
        lambda t: t.transpose(0, 2),
        lambda t: t.permute(2, 1, 0),
        lambda t: t.swapaxes(0, -1),
    ):
        x, tx = _both(x0)
        (f(x) * cr.tensor(wt)).sum().backward()
        (f(tx) * torch.tensor(wt)).sum().backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy())
        cr.gradcheck(lambda t, f=f: (f(t) * cr.tensor(wt)).sum(), x0)


# ---------------------------------------------------------------------------------------------
# 7. integer with float
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**", "max", "min", "@"])
def test_integer_with_float32_gives_float32_like_torch(op):
    i_np = np.arange(1, 7).reshape(2, 3)
    f_np = RNG.uniform(0.5, 2.0, size=(3, 3) if op == "@" else (2, 3)).astype(np.float32)
    fns = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b,
        "**": lambda a, b: a**b,
        "max": lambda a, b: (cr.maximum if isinstance(a, cr.Tensor) else torch.maximum)(a, b),
        "min": lambda a, b: (cr.minimum if isinstance(a, cr.Tensor) else torch.minimum)(a, b),
        "@": lambda a, b: a @ b,
    }
    fn = fns[op]
    i, f = cr.tensor(i_np), cr.tensor(f_np)
    ti, tf = torch.tensor(i_np), torch.tensor(f_np)
    for a, b, ta, tb in ((i, f, ti, tf), (f, i, tf, ti)) if op != "@" else ((i, f, ti, tf),):
        # torch's matmul refuses mixed dtypes; its result after the promotion of the others
        out, tout = fn(a, b), fn(ta, tb) if op != "@" else ti.float() @ tf
        assert out.dtype == np.float32 and tout.dtype == torch.float32
        np.testing.assert_allclose(out.data, tout.numpy(), rtol=1e-6)
    # integer tensor with float32 leaf that requires grad: float32 gradients
    w = cr.tensor(f_np, requires_grad=True)
    fn(i, w).sum().backward() if op != "**" else fn(w, i).sum().backward()
    assert w.grad.dtype == np.float32


def test_integer_tensor_with_python_numbers_like_torch():
    i_np = np.arange(1, 4)
    i, ti = cr.tensor(i_np), torch.tensor(i_np)
    for fn in (lambda a: a * 2.5, lambda a: a / 2, lambda a: 1.5 - a, lambda a: a / a):
        assert fn(i).dtype == np.float32 and fn(ti).dtype == torch.float32
        np.testing.assert_allclose(fn(i).data, fn(ti).numpy())
    for fn in (lambda a: a + 1, lambda a: a * 2, lambda a: a - a):
        assert fn(i).dtype == np.int64 and fn(ti).dtype == torch.int64
    f = cr.tensor(np.ones(3, np.float32))
    ti, tf = torch.tensor(i_np), torch.ones(3)
    assert cr.where(i.data > 1, i, f).dtype == np.float32
    assert torch.where(ti > 1, ti, tf).dtype == torch.float32
    assert cr.concatenate([i, f]).dtype == np.float32 == cr.stack([f, i]).data.dtype
    assert torch.cat([ti, tf]).dtype == torch.float32
    # float64 with float32 tensors: float64, as PyTorch and NumPy
    d = cr.tensor(np.ones(3)) + cr.tensor(np.ones(3, np.float32))
    assert d.dtype == np.float64
    assert (torch.ones(3, dtype=torch.float64) + torch.ones(3)).dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# 8. clip at its bounds
# ---------------------------------------------------------------------------------------------
def test_clip_gradient_at_the_bounds_matches_torch_clamp():
    x0 = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, 1.5])
    for lo, hi in ((-1.0, 1.0), (None, 0.0), (-0.5, None)):
        x, tx = _both(x0)
        cr.clip(x, lo, hi).sum().backward()
        torch.clamp(tx, lo, hi).sum().backward()
        np.testing.assert_array_equal(x.grad, tx.grad.numpy())
        x2, _ = _both(x0)
        x2.clamp(min=lo, max=hi).sum().backward()
        np.testing.assert_array_equal(x2.grad, tx.grad.numpy())
        np.testing.assert_array_equal(cr.clamp(x0, lo, hi).data, np.clip(x0, lo, hi))


# ---------------------------------------------------------------------------------------------
# 9. PyTorch's names
# ---------------------------------------------------------------------------------------------
REDUCTIONS = ["sum", "mean", "var", "logsumexp"]


@pytest.mark.parametrize("name", REDUCTIONS)
def test_dim_and_keepdim_like_torch(name):
    x0 = RNG.normal(size=(3, 4))
    for dim, keep in ((0, False), (1, True), (-1, False), ((0, 1), True)):
        ours = getattr(cr, name)(cr.tensor(x0), dim=dim, keepdim=keep)
        if name == "var":
            theirs = torch.var(torch.tensor(x0), dim=dim, keepdim=keep, unbiased=False)
        else:
            theirs = getattr(torch, name)(torch.tensor(x0), dim=dim, keepdim=keep)
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12)
        method = getattr(cr.tensor(x0), name) if name != "logsumexp" else None
        if method is not None:
            np.testing.assert_allclose(method(dim=dim, keepdim=keep).data, theirs.numpy())
    with pytest.raises(TypeError, match="both axis=0 and dim=1"):
        getattr(cr, name)(cr.tensor(x0), axis=0, dim=1)
    with pytest.raises(TypeError, match="keepdim"):
        getattr(cr, name)(cr.tensor(x0), keepdims=True, keepdim=True)


def test_dim_for_max_min_softmax_cat_stack_argmax_like_torch():
    x0 = RNG.normal(size=(3, 4))
    x, tx = cr.tensor(x0), torch.tensor(x0)
    for f in ("max", "min"):
        ours, theirs = getattr(x, f)(dim=1), getattr(tx, f)(dim=1)
        values, _ = ours  # PyTorch's (values, indices)
        np.testing.assert_array_equal(values.data, theirs.values.numpy())
        np.testing.assert_array_equal(ours.indices, theirs.indices.numpy())
        np.testing.assert_array_equal(getattr(x, f)(axis=1).data, theirs.values.numpy())
    np.testing.assert_allclose(cr.softmax(x, dim=0).data, torch.softmax(tx, dim=0).numpy())
    np.testing.assert_allclose(cr.log_softmax(x, dim=0).data, torch.log_softmax(tx, dim=0).numpy())
    np.testing.assert_array_equal(cr.cat([x, x], dim=1).data, torch.cat([tx, tx], dim=1).numpy())
    np.testing.assert_array_equal(cr.cat([x, x]).data, torch.cat([tx, tx]).numpy())
    np.testing.assert_array_equal(
        cr.concatenate([x, x], dim=1).data, torch.cat([tx, tx], dim=1).numpy()
    )
    np.testing.assert_array_equal(cr.stack([x, x], dim=2).data, torch.stack([tx, tx], 2).numpy())
    np.testing.assert_array_equal(x.argmax(dim=1), tx.argmax(dim=1).numpy())
    np.testing.assert_array_equal(x.argmin(dim=0, keepdim=True), tx.argmin(0, keepdim=True))


def test_shape_methods_like_torch():
    x0 = RNG.normal(size=(2, 1, 3, 1))
    x, tx = _both(x0)
    checks = [
        (lambda t: t.view(3, 2), lambda t: t.view(3, 2)),
        (lambda t: t.view(-1), lambda t: t.view(-1)),
        (lambda t: t.unsqueeze(0), lambda t: t.unsqueeze(0)),
        (lambda t: t.unsqueeze(-1), lambda t: t.unsqueeze(-1)),
        (lambda t: t.squeeze(), lambda t: t.squeeze()),
        (lambda t: t.squeeze(1), lambda t: t.squeeze(1)),
        (lambda t: t.squeeze(0), lambda t: t.squeeze(0)),  # not of length 1: unchanged
        (lambda t: t.flatten(), lambda t: t.flatten()),
        (lambda t: t.flatten(1), lambda t: t.flatten(1)),
        (lambda t: t.flatten(1, 2), lambda t: t.flatten(1, 2)),
        (lambda t: t.pow(3), lambda t: t.pow(3)),
        (lambda t: abs(t), lambda t: abs(t)),
        (lambda t: t.std(), lambda t: t.std(unbiased=False)),
        (lambda t: t.std(dim=2, unbiased=True), lambda t: t.std(dim=2, unbiased=True)),
        (lambda t: cr.std(t, axis=0, ddof=1), lambda t: torch.std(t, dim=0, correction=1)),
        (lambda t: t.clamp(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5)),
    ]
    wt = None
    for ours_f, theirs_f in checks:
        x.grad, tx.grad = None, None
        ours, theirs = ours_f(x), theirs_f(tx)
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12)
        wt = RNG.normal(size=ours.shape)
        (ours * cr.tensor(wt)).sum().backward()
        (theirs * torch.tensor(wt)).sum().backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10)
    assert x.dim() == tx.dim() == 4 and x.numel() == tx.numel() == 6


def test_std_default_is_numpys_population_std():
    x0 = RNG.normal(size=(5,))
    np.testing.assert_allclose(cr.std(cr.tensor(x0)).data, np.std(x0))
    np.testing.assert_allclose(cr.tensor(x0).var().data, np.var(x0))
    np.testing.assert_allclose(cr.tensor(x0).var(unbiased=True).data, np.var(x0, ddof=1))


def test_size_is_numpys_int_and_torchs_call():
    x, tx = cr.tensor(np.zeros((2, 3))), torch.zeros(2, 3)
    assert x.size == 6 and isinstance(x.size, int) and x.size + 1 == 7
    assert np.zeros(x.size).shape == (6,)
    assert x.size() == tuple(tx.size()) == (2, 3)
    assert x.size(1) == tx.size(1) == 3 and x.size(-2) == tx.size(-2) == 2
    with pytest.raises(IndexError, match="out of range"):
        x.size(2)
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(x.size)) == copy.deepcopy(x.size) == 6


def test_float_and_double():
    x = cr.tensor(np.ones(3), requires_grad=True)
    f = x.float()
    assert f.dtype == np.float32 and x.float().double().dtype == np.float64
    (f * 2).sum().backward()
    assert x.grad.dtype == np.float64 and np.all(x.grad == 2)
    i = cr.tensor(np.arange(3))
    assert i.float().dtype == np.float32 and i.double().dtype == np.float64


def test_zeros_ones_rand_randn():
    z, o = cr.zeros(2, 3), cr.ones((2, 3), dtype=np.float64, requires_grad=True)
    assert z.shape == (2, 3) and z.dtype == np.float32 and not z.data.any()
    assert o.dtype == np.float64 and o.requires_grad and np.all(o.data == 1)
    a = cr.randn(1000, 3, generator=0)
    b = cr.randn((1000, 3), generator=np.random.default_rng(0))
    np.testing.assert_array_equal(a.data, b.data)
    assert a.dtype == np.float32 and abs(float(a.data.mean())) < 0.1
    assert 0.9 < float(a.data.std()) < 1.1
    u = cr.rand(1000, generator=1, dtype=np.float64)
    assert u.dtype == np.float64 and u.data.min() >= 0 and u.data.max() < 1
    state = np.random.get_state()[1].copy()
    cr.randn(3)
    cr.rand(3)  # chainrule's own default generator: NumPy's global one is untouched
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    with pytest.raises(ValueError, match="non-negative"):
        cr.zeros(-1, 2)


def test_no_grad_as_decorator_with_and_without_call():
    w = cr.tensor([1.0], requires_grad=True)

    @cr.no_grad()
    def f(t):  # type: ignore[no-untyped-def]
        return t * 2

    @cr.no_grad
    def g(t):  # type: ignore[no-untyped-def]
        return t * 2

    assert not f(w).requires_grad and not g(w).requires_grad
    assert g.__name__ == "g" and cr.is_grad_enabled()
    with cr.no_grad():
        with cr.enable_grad():
            assert (w * 2).requires_grad
        assert not (w * 2).requires_grad
    assert (w * 2).requires_grad


def test_format_abs_round_like_torch():
    loss, tloss = cr.tensor(0.123456), torch.tensor(0.123456)
    assert format(loss, ".4f") == format(tloss, ".4f") == "0.1235"
    assert f"{loss:.2e}" == f"{tloss:.2e}"
    assert f"{cr.tensor([1.5])}" == str(cr.tensor([1.5]))
    assert f"{cr.tensor(1.5)}" == f"{torch.tensor(1.5)}" == "1.5"
    with pytest.raises(TypeError, match="one-element"):
        format(cr.tensor([1.0, 2.0]), ".3f")
    x0 = np.array([-1.5, -0.5, 0.5, 1.5, 2.5, 0.26])
    x, tx = _both(x0)
    np.testing.assert_array_equal(abs(x).data, abs(tx).detach().numpy())
    np.testing.assert_array_equal(round(x).data, torch.round(tx).detach().numpy())
    round(x).sum().backward()
    torch.round(tx).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())  # zero, as PyTorch
    np.testing.assert_array_equal(round(x, 1).data, np.round(x0, 1))


# ---------------------------------------------------------------------------------------------
# 10. higher-order gradients
# ---------------------------------------------------------------------------------------------
def test_higher_order_gradients_say_not_supported_yet():
    f = lambda x: (x * x * x).sum()
    with pytest.raises(NotImplementedError, match="not supported yet"):
        cr.grad(cr.grad(f))(np.array([1.0, 2.0]))
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="not supported yet"):
        f(w).backward(create_graph=True)
    # first-order gradients still work, also inside a function given to cr.grad
    np.testing.assert_allclose(cr.grad(f)(np.array([1.0, 2.0])), [3.0, 12.0])
    inner = cr.grad(f)
    np.testing.assert_allclose(
        cr.grad(lambda x: (x * cr.tensor(inner(np.array([1.0, 1.0])))).sum())(np.ones(2)),
        [3.0, 3.0],
    )
