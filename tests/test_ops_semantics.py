"""Exact values at the kinks and the documented semantics of each primitive."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr


def grad_of(fn, x):
    t = cr.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    fn(t).sum().backward()
    return t.grad


def test_relu_and_abs_have_zero_gradient_at_zero():
    np.testing.assert_array_equal(grad_of(cr.relu, [-1.0, 0.0, 2.0]), [0, 0, 1])
    np.testing.assert_array_equal(grad_of(cr.abs, [-1.0, 0.0, 2.0]), [-1, 0, 1])


def test_leaky_relu_elu_values_and_slopes():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(cr.leaky_relu(cr.tensor(x)).data, [-0.02, 0.0, 3.0])
    np.testing.assert_allclose(grad_of(lambda t: cr.leaky_relu(t, 0.2), x), [0.2, 0.2, 1.0])
    np.testing.assert_allclose(cr.elu(cr.tensor(x), alpha=2.0).data, [2 * math.expm1(-2), 0, 3])
    np.testing.assert_allclose(grad_of(lambda t: cr.elu(t, 2.0), x), [2 * math.exp(-2), 2.0, 1.0])


def test_gelu_matches_its_definitions():
    x = np.linspace(-4, 4, 17)
    exact = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    np.testing.assert_allclose(cr.gelu(cr.tensor(x)).data, exact, rtol=1e-14, atol=1e-15)
    c = math.sqrt(2 / math.pi)
    approx = 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(cr.gelu(cr.tensor(x), approximate="tanh").data, approx, rtol=1e-14)
    with pytest.raises(ValueError, match="approximate"):
        cr.gelu(cr.tensor(x), approximate="fast")


def test_softplus_beta():
    x = np.array([-3.0, 0.0, 0.5, 30.0])
    beta = 2.0
    np.testing.assert_allclose(
        cr.softplus(cr.tensor(x), beta=beta).data, np.log1p(np.exp(beta * x)) / beta, rtol=1e-14
    )
    np.testing.assert_allclose(
        grad_of(lambda t: cr.softplus(t, beta), x), 1 / (1 + np.exp(-beta * x))
    )


def test_var_ddof():
    x = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(cr.tensor(x).var(axis=1).data, x.var(axis=1))
    np.testing.assert_allclose(cr.var(cr.tensor(x), axis=1, ddof=1).data, x.var(axis=1, ddof=1))
    np.testing.assert_allclose(cr.var(cr.tensor(x)).data, x.var())


def test_max_min_share_gradient_among_ties():
    x = [3.0, 1.0, 3.0, 3.0]
    np.testing.assert_allclose(grad_of(lambda t: t.max(), x), [1 / 3, 0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(grad_of(lambda t: t.min(), [1.0, 1.0, 2.0]), [0.5, 0.5, 0])
    m = [[1.0, 1.0], [0.0, 2.0]]
    np.testing.assert_allclose(grad_of(lambda t: t.max(axis=1), m), [[0.5, 0.5], [0, 1]])


def test_clip_passes_gradient_inside_and_at_the_bounds():
    # bounds inclusive, as torch.clamp (issue 15, point 8)
    x = [-2.0, -1.0, 0.0, 1.0, 2.0]
    np.testing.assert_array_equal(grad_of(lambda t: cr.clip(t, -1.0, 1.0), x), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(grad_of(lambda t: cr.clip(t, lo=0.0), x), [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="lo and hi"):
        cr.clip(cr.tensor(x))


def test_maximum_minimum_route_gradient_to_chosen_operand():
    a = cr.tensor([1.0, 5.0, 2.0], requires_grad=True)
    b = cr.tensor([3.0, 4.0, 2.0], requires_grad=True)
    cr.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0, 1, 0.5])  # ties split evenly, as PyTorch
    np.testing.assert_allclose(b.grad, [1, 0, 0.5])
    a.grad = b.grad = None
    cr.minimum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [1, 0, 0.5])
    np.testing.assert_allclose(b.grad, [0, 1, 0.5])


def test_maximum_with_scalar():
    a = cr.tensor([-1.0, 2.0], requires_grad=True)
    cr.maximum(a, 0.0).sum().backward()
    np.testing.assert_allclose(a.grad, [0, 1])


def test_where_routes_gradient():
    a = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = cr.tensor([4.0, 5.0, 6.0], requires_grad=True)
    cond = np.array([True, False, True])
    out = cr.where(cond, a, b)
    np.testing.assert_allclose(out.data, [1, 5, 3])
    (out * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(a.grad, [1, 0, 3])
    np.testing.assert_allclose(b.grad, [0, 2, 0])
    assert cr.where(cond, a, 0.0).dtype == np.float32


def test_pow_gradient_at_zero_base():
    np.testing.assert_allclose(grad_of(lambda t: t**2, [0.0, 1.5]), [0.0, 3.0])
    b = cr.tensor([0.0, 2.0], dtype=np.float64, requires_grad=True)
    e = cr.tensor([2.0, 3.0], dtype=np.float64, requires_grad=True)
    (b**e).sum().backward()
    np.testing.assert_allclose(e.grad, [0.0, 8 * math.log(2)])


def test_empty_max_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        cr.tensor(np.zeros((0, 3))).max(axis=0)


def test_bad_axis_is_a_clear_error():
    with pytest.raises(ValueError, match="axis"):
        cr.tensor(np.zeros((2, 3))).sum(axis=2)


def test_bad_reshape_and_transpose_errors():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\)"):
        cr.tensor(np.zeros((2, 3))).reshape(4, 2)
    with pytest.raises(ValueError, match="permutation"):
        cr.tensor(np.zeros((2, 3, 4))).transpose(0, 0, 1)
    with pytest.raises(ValueError, match="out of range"):  # two axes: a swap (issue 15)
        cr.tensor(np.zeros((2, 3))).transpose(0, 2)


def test_concatenate_and_stack_errors():
    with pytest.raises(ValueError, match="concatenate"):
        cr.concatenate([cr.tensor(np.zeros((2, 3))), cr.tensor(np.zeros((2, 4)))])
    with pytest.raises(ValueError, match="stack"):
        cr.stack([cr.tensor(np.zeros(2)), cr.tensor(np.zeros(3))])
    with pytest.raises(ValueError, match="at least one"):
        cr.stack([])
