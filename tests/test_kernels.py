"""chainrule.kernels: each out=-writing kernel equals its plain NumPy expression, bitwise."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels as K

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape",
    # the last two: contiguous arrays taken as long rows (a feature map batch, rows of 2048)
    [(), (3,), (4, 8), (5, 32), (2, 3, 20), (8, 2, 28, 28), (4, 16, 10, 10)],
)
def test_relu_equals_maximum_with_zero_into_out_and_keeps_nan(shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(dtype)
    if a.size:
        a.reshape(-1)[0] = np.nan
        a.reshape(-1)[-1] = -np.inf
    want = np.maximum(a, 0)
    np.testing.assert_array_equal(K.relu(a), want)
    out = np.empty_like(a)
    assert K.relu(a, out=out) is out
    np.testing.assert_array_equal(out, want)
    K.relu(a, out=a)  # in place
    np.testing.assert_array_equal(a, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7])
def test_linear_weight_grad_and_column_sums_equal_the_plain_products(n, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 5)).astype(dtype)
    w = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    d = rng.standard_normal((n, 3)).astype(dtype)
    z = np.empty((n, 3), dtype)
    assert K.linear(x, w, b, out=z) is z
    np.testing.assert_array_equal(z, x @ w + b)
    np.testing.assert_array_equal(K.linear(x, w), x @ w)
    gw = np.empty((5, 3), dtype)
    assert K.weight_grad(x, d, out=gw) is gw
    # each entry of x.T @ d with one row is a single product: the outer product is exact
    np.testing.assert_allclose(gw, x.T @ d, rtol=1e-6 if dtype == np.float32 else 1e-15)
    if n == 1:
        np.testing.assert_array_equal(gw, np.outer(x[0], d[0]))
    np.testing.assert_array_equal(K.weight_grad(x, d), gw)
    gb = np.empty(3, dtype)
    K.column_sums(d, np.ones(n, dtype), out=gb)
    np.testing.assert_allclose(gb, d.sum(axis=0), rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("shape", [(10, 3), (100, 2), (100, 10), (100, 40), (200, 1)])
def test_row_max_equals_max_over_columns(shape):
    a = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(K.row_max(a), a.max(axis=1, keepdims=True))


def test_add_scaled_writes_g_plus_scale_p():
    rng = np.random.default_rng(3)
    g, p = rng.standard_normal(9), rng.standard_normal(9)
    out = np.empty(9)
    assert K.add_scaled(g, p, 0.25, out) is out
    np.testing.assert_array_equal(out, g + p * 0.25)


ACTS = {
    "relu": (cr.relu, {}),
    "tanh": (cr.tanh, {}),
    "sigmoid": (cr.sigmoid, {}),
    "leaky_relu": (lambda t: cr.leaky_relu(t, 0.2), {"negative_slope": 0.2}),
    "identity": (lambda t: t * 1.0, {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(ACTS))
def test_activation_kernels_equal_the_engine_forward_and_backward(kind, dtype):
    fn, kw = ACTS[kind]
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((6, 20)) * 3).astype(dtype)
    g = rng.standard_normal((6, 20)).astype(dtype)
    t = cr.tensor(z.copy(), requires_grad=True)
    y = fn(t)
    y.backward(g)
    a = z.copy()
    K.activate_(kind, a, **kw)
    np.testing.assert_array_equal(a, y.data)
    gg = g.copy()
    K.activation_grad_(kind, a, gg, np.empty_like(gg), **kw)
    np.testing.assert_allclose(gg, t.grad, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        K.activate_("swish", np.zeros(3))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        K.activation_grad_("swish", np.zeros(3), np.zeros(3), np.zeros(3))
