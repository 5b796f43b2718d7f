"""softmax, log_softmax, logsumexp, sigmoid, softplus stay finite and exact for |x| up to 1e4."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr

DTYPES = [np.float32, np.float64]
LOGITS = [
    [800.0, 1.0, 1.0],
    [-431.0, 279.0, 427.0],
    [1e4, -1e4, 0.0],
    [-1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4],
    [0.0, 0.0, 0.0],
]


def ref_logsumexp(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logits", LOGITS, ids=str)
def test_softmax_family_is_finite_and_exact(logits, dtype):
    x = np.array(logits, dtype=dtype)
    lse = ref_logsumexp(logits)
    ref_log_sm = np.array([v - lse for v in logits])
    with np.errstate(under="ignore"):
        ref_sm = np.exp(ref_log_sm)
    with np.errstate(all="raise"):
        t = cr.tensor(x, requires_grad=True)
        sm = cr.softmax(t)
        lsm = cr.log_softmax(t)
        l = cr.logsumexp(t)
        assert sm.dtype == lsm.dtype == l.dtype == dtype
        assert np.all(np.isfinite(lsm.data)) and np.isfinite(l.data)
        np.testing.assert_allclose(l.data, lse, rtol=1e-6)
        np.testing.assert_allclose(lsm.data, ref_log_sm, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sm.data, ref_sm, rtol=1e-6, atol=1e-37)
        assert sm.data.sum() == pytest.approx(1.0, rel=1e-6)
        (lsm * np.array([1.0, -2.0, 0.5], dtype)).sum().backward()
        assert np.all(np.isfinite(t.grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_softplus_at_extremes(dtype):
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=dtype)
    with np.errstate(all="raise"):
        s = cr.sigmoid(cr.tensor(x)).data
        sp = cr.softplus(cr.tensor(x)).data
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(sp))
    ref_s = [1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in x.astype(float)]
    np.testing.assert_allclose(s, ref_s, rtol=1e-6, atol=1e-37)
    ref_sp = [max(v, 0) + math.log1p(math.exp(-abs(v))) for v in x.astype(float)]
    # values below the smallest normal number (3.7e-44 in float32) are returned as exact 0
    np.testing.assert_allclose(sp, ref_sp, rtol=1e-6, atol=float(np.finfo(dtype).tiny))
    assert s[0] == 0.0 and s[-1] == 1.0 and sp[-1] == 1e4 and sp[0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_at_extremes_are_finite(dtype):
    x = np.array([[-1e4, 0.0, 1e4], [800.0, 1.0, 1.0]], dtype=dtype)
    for fn in (
        cr.sigmoid,
        cr.softplus,
        lambda t: cr.logsumexp(t, axis=1),
        cr.softmax,
        cr.log_softmax,
        cr.tanh,
        cr.gelu,
        cr.elu,
    ):
        t = cr.tensor(x, requires_grad=True)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            fn(t).sum().backward()
        assert np.all(np.isfinite(t.grad))


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    with np.errstate(all="raise"):
        out = cr.logsumexp(cr.tensor(np.full(3, -np.inf)))
    assert out.item() == -np.inf


def test_batched_softmax_rows_sum_to_one():
    x = np.array([[800.0, 1.0, 1.0], [-431.0, 279.0, 427.0]])
    with np.errstate(all="raise"):
        s = cr.softmax(cr.tensor(x), axis=1).data
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
