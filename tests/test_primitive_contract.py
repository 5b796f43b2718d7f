"""A user's own primitive: refused at registration without its rules, checked for rules that
write into their arguments, and re-registered from a re-run notebook cell."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule._primitive import PRIMITIVES, Primitive, apply, primitive
from chainrule.testing import PrimitiveCheckError, check_primitive


def _examples(rng, dtype):
    return [((rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)), {})]


@pytest.fixture
def clean_registry():
    before = dict(PRIMITIVES)
    yield
    PRIMITIVES.clear()
    PRIMITIVES.update(before)


def test_missing_rules_are_refused_at_registration(clean_registry):
    with pytest.raises(TypeError, match=r"'u_norule' has no backward rules"):

        @primitive("u_norule", kind="elementwise", examples=_examples)
        def norule(x, y):
            return x * y

    with pytest.raises(TypeError, match=r"takes 2 array input\(s\) but 1 rule\(s\)"):

        @primitive("u_onerule", kind="elementwise", vjps=(lambda g, o, s, x, y: g * y,))
        def onerule(x, y):
            return x * y

    assert "u_norule" not in PRIMITIVES and "u_onerule" not in PRIMITIVES


def test_check_primitive_refuses_an_unregistered_record_without_rules():
    def mul(x, y):
        return x * y

    with pytest.raises(PrimitiveCheckError, match="no backward rules"):
        check_primitive(Primitive("u_mul", mul, examples=_examples))


def test_a_rule_that_writes_into_g_is_caught():
    """Such a rule corrupts the gradient of the other branch that shares g (as the engine
    would show: below, w's gradient is doubled)."""

    def sq(x):
        return x * x

    def bad_rule(g, out, saved, x):
        g *= 2
        g *= x
        return g

    prim = Primitive(
        "u_sq_inplace", sq, vjps=(bad_rule,), examples=lambda r, d: [((r.random(3).astype(d),), {})]
    )
    with pytest.raises(PrimitiveCheckError, match="writes into one of its arguments"):
        check_primitive(prim, oracle=False)
    # what it would do in a graph: z = (sq(x) + w) * c shares ∂C/∂z·c between both branches
    x = cr.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    w = cr.tensor(np.zeros(3), requires_grad=True)
    ((apply(prim, x) + w) * 1.0).sum().backward()
    assert not np.allclose(w.grad, 1.0)  # the corruption the check prevents


def test_a_rule_that_writes_into_its_input_is_named_as_such():
    def sq(x):
        return x * x

    def bad_rule(g, out, saved, x):
        x *= 2
        return g * x

    prim = Primitive(
        "u_sq_inplace_x",
        sq,
        vjps=(bad_rule,),
        examples=lambda r, d: [((r.random(3).astype(d),), {})],
    )
    with pytest.raises(PrimitiveCheckError, match="writes into one of its arguments"):
        check_primitive(prim, oracle=False)


def test_rerunning_a_definition_replaces_it_but_a_clash_is_refused(clean_registry):
    def define(factor):
        @primitive("u_cube_cell", kind="elementwise", vjps=(lambda g, o, s, x: factor * g * x * x,))
        def cube(x):
            return x * x * x

        return cube

    builtin_exp = PRIMITIVES["exp"]
    first = define(3)
    second = define(3)  # the same cell run again
    assert PRIMITIVES["u_cube_cell"] is second and second is not first

    with pytest.raises(ValueError, match="already registered"):

        @primitive("exp", kind="elementwise", vjps=(lambda g, o, s, x: g * o,))
        def my_exp(x):
            return np.exp(x)

    assert PRIMITIVES["exp"] is builtin_exp  # the library's record is kept


def test_a_non_differentiable_argument_says_so():
    def pick(x, idx):
        return x[idx.astype(int)]

    prim = Primitive("u_pick", pick, vjps=(lambda g, o, s, x, idx: np.zeros_like(x), None))
    x = cr.tensor(np.ones(3), requires_grad=True)
    idx = cr.tensor(np.array([0.0, 2.0]), requires_grad=True)
    with pytest.raises(
        NotImplementedError, match=r"'u_pick' is not differentiable with respect to argument 1"
    ):
        apply(prim, x, idx).sum().backward()
