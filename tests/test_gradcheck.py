"""The gradient checker itself: it passes right rules and catches wrong ones precisely."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import chainrule as cr
from chainrule import ops


def test_gradcheck_catches_a_wrong_rule_and_names_input_and_position(monkeypatch):
    wrong = dataclasses.replace(ops.tanh_p, vjps=(lambda g, out, saved, x: g * (1 - out),))
    monkeypatch.setattr(ops.elementwise, "tanh_p", wrong)  # cr.tanh now records the wrong rule
    x = np.array([[0.1, 0.2], [0.3, -0.4]])
    with pytest.raises(
        cr.GradcheckError, match=r"input 1 .*position \(0, 0\).*analytical.*numerical"
    ):
        cr.gradcheck(lambda a, b: (a * cr.tanh(b)).sum(), x, x)
    assert cr.gradcheck(lambda b: cr.tanh(b).sum(), x, raise_exception=False) is False


def test_gradcheck_works_in_float64_even_for_float32_inputs():
    x = np.array([0.3, -0.2], dtype=np.float32)
    seen = []
    cr.gradcheck(lambda t: (seen.append(t.dtype), (t * t).sum())[1], x)
    assert all(d == np.float64 for d in seen)


def test_gradcheck_passes_integer_inputs_through():
    x = np.random.default_rng(0).normal(size=(4, 3))
    idx = np.array([0, 2, 2])
    assert cr.gradcheck(lambda t, i: t[i].sum(), x, idx)


def test_gradcheck_on_vector_output():
    x = np.random.default_rng(0).normal(size=(3, 2))
    assert cr.gradcheck(lambda t: cr.softmax(t, axis=0), x)


def test_grad_transform():
    g = cr.grad(lambda x: (x**3).sum())(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g, [3.0, 12.0])
    ga, gb = cr.grad(lambda a, b: (a * b).sum())(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_allclose(ga, [3.0, 4.0])
    np.testing.assert_allclose(gb, [1.0, 2.0])
    gb_only = cr.grad(lambda a, b: (a * b).sum(), argnums=1)(np.array([1.0]), np.array([5.0]))
    np.testing.assert_allclose(gb_only, [1.0])
    val, gv = cr.value_and_grad(lambda x: (x * x).sum())(np.array([3.0]))
    assert val == 9.0 and gv[0] == 6.0


def test_grad_keeps_dtype_and_rejects_non_scalar():
    g = cr.grad(lambda x: (x * x).sum())(np.ones(2, np.float32))
    assert g.dtype == np.float32
    with pytest.raises(ValueError, match="scalar"):
        cr.grad(lambda x: x * 2)(np.ones(2))
    with pytest.raises(TypeError, match="floating point"):
        cr.grad(lambda x: x.sum())(np.arange(3))
