"""Primitives as records: the registry, nodes holding records, saved values, several outputs,
and rules called only for the inputs that need them (issue 17, point 1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import chainrule as cr
from chainrule import ops
from chainrule._primitive import (
    KINDS,
    PRIMITIVES,
    Primitive,
    apply,
    check_registry,
    defprimitive,
    registered,
)
from chainrule.ops import contraction

torch = pytest.importorskip("torch")

# ----- the registry ------------------------------------------------------------------------

EXPECTED = {
    "abs", "add", "astype", "binary_cross_entropy", "clip", "concatenate", "div", "elu", "exp",
    "gelu", "getitem", "leaky_relu", "linear", "log", "log_softmax", "logsumexp", "matmul",
    "max", "maximum", "mean", "min", "minimum", "mul", "neg", "pow", "relu", "reshape", "round",
    "setitem", "sigmoid", "softmax", "softmax_cross_entropy", "softplus", "split", "sqrt",
    "stack", "sub", "sum", "tanh", "transpose", "var", "where",
}  # fmt: skip


def test_every_engine_primitive_is_registered_with_its_rules():
    assert set(PRIMITIVES) >= EXPECTED
    check_registry()  # raises if one has no rules or the wrong number of them
    for name, prim in PRIMITIVES.items():
        assert prim.name == name and prim.kind in KINDS
        assert getattr(prim.forward, "__name__", "<lambda>") != "<lambda>", name
        assert prim.vjps or prim.vjp_argnum is not None, name
        assert any(r is not None for r in prim.vjps) or prim.vjp_argnum is not None, name
        assert prim.examples is not None, f"{name} has no examples for check_primitive"


def test_kinds_are_the_documented_ones():
    kinds = {name: PRIMITIVES[name].kind for name in EXPECTED}
    assert kinds["add"] == kinds["relu"] == kinds["where"] == "elementwise"
    assert kinds["sum"] == kinds["var"] == kinds["logsumexp"] == "reduction"
    assert kinds["reshape"] == kinds["getitem"] == kinds["split"] == "movement"
    assert kinds["matmul"] == kinds["linear"] == "contraction"
    assert kinds["softmax_cross_entropy"] == kinds["log_softmax"] == "fused"


def test_check_registry_catches_a_primitive_without_rules_or_with_the_wrong_number():
    def _two(a, b):
        return a + b

    with pytest.raises(TypeError, match="'norules' has no backward rules"):
        check_registry([Primitive("norules", _two)])
    with pytest.raises(TypeError, match=r"'onerule': its forward takes 2 array input\(s\) but 1"):
        check_registry([Primitive("onerule", _two, vjps=(lambda g, out, saved, a, b: g,))])
    with pytest.raises(TypeError, match="out_capable but takes no out="):
        check_registry(
            [Primitive("noout", _two, vjps=(None, None), out_capable=True)]  # type: ignore[arg-type]
        )


def test_a_record_refuses_anonymous_forwards_unknown_kinds_and_duplicate_names():
    with pytest.raises(TypeError, match="forward must be a named function"):
        Primitive("anon", lambda a: a, vjps=(None,))
    with pytest.raises(ValueError, match="kind must be one of"):
        Primitive("weird", np.exp, vjps=(None,), kind="magic")
    with pytest.raises(ValueError, match="'exp' is already registered"):
        defprimitive("exp", np.exp, vjps=(lambda g, out, saved, x: g * out,))
    assert PRIMITIVES["exp"] is ops.exp_p


def test_registered_adds_a_toy_primitive_only_inside_the_block():
    def _cube(a):
        return a * a * a

    cube_p = Primitive("cube_toy", _cube, vjps=(lambda g, out, saved, x: 3 * g * x * x,))
    with registered(cube_p):
        assert PRIMITIVES["cube_toy"] is cube_p
        check_registry()
    assert "cube_toy" not in PRIMITIVES
    assert "cube" not in PRIMITIVES  # the module docstring's example does not register


# ----- a node holds its record -------------------------------------------------------------


def test_a_node_holds_its_primitive_record_not_a_name():
    x = cr.tensor([0.2, 0.7], requires_grad=True)
    y = cr.tensor([0.0, 1.0])
    loss = cr.nn.functional.binary_cross_entropy(cr.sigmoid(x), y, reduction="none")
    assert loss.primitive is ops.binary_cross_entropy_p is PRIMITIVES["binary_cross_entropy"]
    assert loss.op == "binary_cross_entropy"  # the name of the record the node holds
    assert loss.inputs[0].primitive is ops.sigmoid_p
    assert cr.exp(x).primitive is PRIMITIVES["exp"] and x.primitive is None
    # swapaxes and permute are the transpose primitive with other axes
    m = cr.tensor(np.ones((2, 3, 4)), requires_grad=True)
    assert m.swapaxes(0, 2).primitive is m.permute(2, 0, 1).primitive is ops.transpose_p


# ----- saved values reach the rules ----------------------------------------------------------


def test_saved_values_reach_the_rules():
    seen = []

    def _square_saving(a):
        return a * a, {"twice": 2 * a}

    def rule(g, out, saved, x):
        seen.append(saved)
        return g * saved["twice"]

    sq = Primitive("square_toy", _square_saving, vjps=(rule,), saves=True)
    x = cr.tensor([1.0, -3.0], requires_grad=True, dtype=np.float64)
    apply(sq, x).sum().backward()
    assert seen and np.array_equal(seen[0]["twice"], [2.0, -6.0])
    np.testing.assert_array_equal(x.grad, [2.0, -6.0])  # d(x²)/dx = 2x


def test_var_saves_its_centred_values_and_is_bitwise_numpys_var():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.normal(3.0, 2.0, size=(5, 7)).astype(dtype)
        for axis in (None, 0, 1, (0, 1)):
            for keepdims in (False, True):
                for ddof in (0, 1):
                    x = cr.tensor(a, requires_grad=True)
                    v = cr.var(x, axis=axis, keepdims=keepdims, ddof=ddof)
                    expected = np.var(a, axis=axis, keepdims=keepdims, ddof=ddof)
                    assert v.dtype == dtype and v.shape == np.shape(expected)
                    np.testing.assert_array_equal(v.data, expected)
                    np.testing.assert_array_equal(v._saved, a - a.mean(axis=axis, keepdims=True))
    # the saved values give the rule 2(x - x̄)/(n - ddof), checked against finite differences
    assert cr.gradcheck(lambda t: cr.var(t, axis=0, ddof=1).sum(), rng.normal(size=(4, 3)))


def test_softmax_cross_entropy_saves_its_log_softmax_and_the_rule_uses_it():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 3))
    y = rng.dirichlet(np.ones(3), size=4)
    zt = cr.tensor(z, requires_grad=True)
    loss = ops.softmax_cross_entropy(zt, y, axis=1)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss._saved, logp, rtol=0, atol=1e-15)
    loss.sum().backward()
    np.testing.assert_allclose(zt.grad, np.exp(logp) - y, rtol=0, atol=1e-15)  # softmax - y
    assert loss._saved is None  # released with the graph


def test_linear_saves_nothing_extra():
    layer = cr.nn.Linear(3, 2, rng=0)
    out = layer(np.ones((4, 3), np.float32))
    assert out.primitive is ops.linear_p and out._saved is None and not ops.linear_p.saves


# ----- only the rules that are needed run ----------------------------------------------------


def _counting(prim: Primitive) -> tuple[Primitive, list[int]]:
    calls = [0] * len(prim.vjps)

    def wrap(i, rule):
        def counted(*args, **kwargs):
            calls[i] += 1
            return rule(*args, **kwargs)

        return counted

    vjps = tuple(wrap(i, r) for i, r in enumerate(prim.vjps))
    return dataclasses.replace(prim, vjps=vjps), calls


def test_the_weight_rule_of_linear_runs_but_the_data_rule_of_the_first_layer_never(monkeypatch):
    counted, calls = _counting(ops.linear_p)
    monkeypatch.setattr(contraction, "linear_p", counted)
    model = cr.nn.mlp([5, 4, 3], rng=0)
    X = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    loss = cr.nn.functional.cross_entropy(model(X), np.arange(8) % 3)
    loss.backward()
    # two layers: both weight and bias rules ran twice; the input rule only for layer 2,
    # whose input (the hidden activations) requires grad — never G·Wᵀ for the data X
    assert calls == [1, 2, 2]
    assert all(p.grad is not None for p in model.parameters())


def test_a_frozen_weight_gets_no_rule_call(monkeypatch):
    counted, calls = _counting(ops.mul_p)
    monkeypatch.setattr(ops.elementwise, "mul_p", counted)
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    w = cr.tensor([3.0, 4.0])  # a constant: its rule (g·x) is not called
    (x * w).sum().backward()
    assert calls == [1, 0]
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ----- several outputs ----------------------------------------------------------------------


def test_chunk_gradients_match_torch_and_finite_differences_with_an_unused_piece():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 8))
    x = cr.tensor(a, requires_grad=True)
    i, f, g, o = x.chunk(4, dim=1)  # LSTM-style gates; f gets no gradient
    assert {t.primitive for t in (i, f, g, o)} == {ops.split_p}
    loss = (cr.sigmoid(i) * cr.tanh(g)).sum() + (o * o * 3).sum()
    loss.backward()
    xt = torch.tensor(a, requires_grad=True)
    it, _ft, gt, ot = xt.chunk(4, dim=1)
    (torch.sigmoid(it) * torch.tanh(gt)).sum().add((ot * ot * 3).sum()).backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=0, atol=2e-12)
    np.testing.assert_array_equal(x.grad[:, 2:4], 0.0)  # the unused piece: exact zeros

    def fn(t):
        p, _, q, r = t.chunk(4, dim=1)
        return (cr.sigmoid(p) * cr.tanh(q)).sum() + (r * r * 3).sum()

    assert cr.gradcheck(fn, a)


def test_split_sizes_and_pieces_used_twice_or_retained():
    a = np.arange(10.0).reshape(5, 2)
    x = cr.tensor(a, requires_grad=True)
    p, q = ops.split(x, [2, 3], dim=0)
    assert p.shape == (2, 2) and q.shape == (3, 2)
    q.retain_grad()
    (p.sum() * 2 + (q * q).sum() + q.sum()).backward()
    np.testing.assert_array_equal(x.grad[:2], 2.0)
    np.testing.assert_array_equal(x.grad[2:], 2 * a[2:] + 1)
    np.testing.assert_array_equal(q.grad, 2 * a[2:] + 1)
    xt = torch.tensor(a, requires_grad=True)
    pt, qt = xt.split([2, 3], dim=0)
    (pt.sum() * 2 + (qt * qt).sum() + qt.sum()).backward()
    np.testing.assert_array_equal(x.grad, xt.grad.numpy())
    # an int is the length of every piece, as torch.split (not np.split's count of parts)
    assert [t.shape for t in cr.tensor(np.ones(7)).split(3)] == [(3,), (3,), (1,)]
    assert [t.shape for t in cr.tensor(np.ones(7)).chunk(3)] == [(3,), (3,), (1,)]
    with pytest.raises(ValueError, match=r"section lengths \[2, 2\] must .* sum to the length 5"):
        ops.split(x, [2, 2])
    with pytest.raises(ValueError, match="chunks must be a positive integer, got 0"):
        x.chunk(0)


def test_a_multi_output_primitive_with_saved_values_against_finite_differences():
    def _sincos(a):
        s, c = np.sin(a), np.cos(a)
        return (s, c), (s, c)

    def rule(g, out, saved, x):
        gs, gc = g
        s, c = saved
        grad = np.zeros_like(x)
        if gs is not None:
            grad = grad + gs * c  # d sin = cos
        if gc is not None:
            grad = grad - gc * s  # d cos = -sin
        return grad

    sincos = Primitive("sincos_toy", _sincos, vjps=(rule,), n_outputs=2, saves=True)
    a = np.array([0.3, -1.2, 2.0])
    assert cr.gradcheck(lambda t: (apply(sincos, t)[0] * apply(sincos, t)[1] * 2).sum(), a)
    assert cr.gradcheck(lambda t: apply(sincos, t)[1].sum(), a)  # one output only


def test_an_in_place_change_of_a_piece_keeps_the_gradient_right():
    a = np.linspace(-1, 1, 6)
    x = cr.tensor(a, requires_grad=True)
    p, q = x.chunk(2)
    p += 1.0  # recorded: p now stands for p + 1; the old piece keeps its place in the node
    ((p * p).sum() + 3 * q.sum()).backward()
    xt = torch.tensor(a, requires_grad=True)
    pt, qt = xt.chunk(2)
    pt = pt + 1.0
    ((pt * pt).sum() + 3 * qt.sum()).backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=0, atol=1e-15)


def test_a_released_multi_output_node_refuses_a_second_backward_and_draws():
    x = cr.tensor(np.ones((4, 2)), requires_grad=True)
    p, q = x.chunk(2)
    loss = (p * q).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"backward through the graph a second time \(op 'sum'"):
        loss.backward()
    assert "split" in cr.draw_graph(loss)
    y = cr.tensor(np.ones((4, 2)), requires_grad=True)
    p, q = y.chunk(2)
    loss = (p * q).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(y.grad, 2.0)


# ----- the in-place check reads the record ---------------------------------------------------


def test_the_in_place_check_reads_reads_out_from_the_record():
    def _twice(a):
        return 2 * a

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    for reads_out, raises in ((True, True), (False, False)):
        prim = Primitive(
            "twice_toy", _twice, vjps=(lambda g, out, saved, x: 2 * g,), reads_out=reads_out
        )
        y = apply(prim, x)
        z = (y * 1.0).sum()
        with cr.no_grad():
            y += 1.0  # changes the output of the node after it was used
        x.grad = None
        if raises:
            with pytest.raises(
                RuntimeError, match=r"output of 'twice_toy'.*modified by an in-place"
            ):
                z.backward()
        else:
            z.backward()
            np.testing.assert_array_equal(x.grad, [2.0, 2.0])
