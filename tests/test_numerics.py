"""chainrule._numerics: the one array-level module of stable softmax, sigmoid, softplus, ...

Formulas against references written with Python's ``math`` (no SciPy), logits of magnitude 1e4
without warnings, dtype kept; and every former re-implementation now gives these numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import _numerics as N

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-14}
ROWS = [
    [800.0, 1.0, 1.0],
    [-431.0, 279.0, 427.0],
    [1e4, -1e4, 0.0],
    [-1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4],
    [0.5, -1.25, 2.0],
]
POINTS = [-1e4, -800.0, -100.0, -20.0, -1.5, 0.0, 1e-3, 2.0, 20.0, 100.0, 800.0, 1e4]


def ref_lse(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def ref_log_softmax(v):
    m = max(v)
    log_s = math.log(sum(math.exp(x - m) for x in v))
    return [(x - m) - log_s for x in v]


def ref_sigmoid(v):
    if v >= 0:
        return 1 / (1 + math.exp(-v))
    e = math.exp(v) if v > -745 else 0.0
    return e / (1 + e)


def ref_softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_matches_the_formulas_for_huge_logits_without_warnings(dtype):
    x = np.array(ROWS, dtype=dtype)
    lse = np.array([ref_lse(r) for r in ROWS])
    ref_lsm = np.array([ref_log_softmax(r) for r in ROWS])
    with np.errstate(under="ignore"):
        ref_sm = np.exp(ref_lsm)
    with np.errstate(all="raise"):
        got_lse = N.logsumexp(x, axis=1)
        got_lsm = N.log_softmax(x, axis=1)
        got_sm = N.softmax(x, axis=1)
        got_keep = N.logsumexp(x, axis=1, keepdims=True)
        got_all = N.logsumexp(x)
    for got in (got_lse, got_lsm, got_sm, got_keep, got_all):
        assert got.dtype == dtype
    assert got_keep.shape == (len(ROWS), 1) and got_all.shape == ()
    rtol = TOL[dtype]
    np.testing.assert_allclose(got_lse, lse, rtol=rtol)
    np.testing.assert_allclose(got_keep[:, 0], lse, rtol=rtol)
    np.testing.assert_allclose(got_all, ref_lse([v for r in ROWS for v in r]), rtol=rtol)
    np.testing.assert_allclose(got_lsm, ref_lsm, rtol=rtol)
    np.testing.assert_allclose(got_sm, ref_sm, rtol=rtol, atol=float(np.finfo(dtype).tiny))
    np.testing.assert_allclose(got_sm.sum(axis=1), 1.0, rtol=rtol)
    assert got_sm[2].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_softplus_log_sigmoid_match_the_formulas_at_every_magnitude(dtype):
    x = np.array(POINTS, dtype=dtype)
    xs = x.astype(float).tolist()
    with np.errstate(all="raise"):
        s, sp, sp2, ls = N.sigmoid(x), N.softplus(x), N.softplus(x, beta=2.0), N.log_sigmoid(x)
    for got in (s, sp, sp2, ls):
        assert got.dtype == dtype
    rtol, tiny = TOL[dtype], float(np.finfo(dtype).tiny)
    np.testing.assert_allclose(s, [ref_sigmoid(v) for v in xs], rtol=rtol, atol=tiny)
    np.testing.assert_allclose(sp, [ref_softplus(v) for v in xs], rtol=rtol, atol=tiny)
    np.testing.assert_allclose(sp2, [ref_softplus(2 * v) / 2 for v in xs], rtol=rtol, atol=tiny)
    np.testing.assert_allclose(ls, [-ref_softplus(-v) for v in xs], rtol=rtol, atol=tiny)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[5] == 0.5
    assert sp[-1] == 1e4 and sp[0] == 0.0 and ls[0] == -1e4 and ls[-1] == 0.0


def test_exp_nonpositive_flushes_subnormals_to_zero_and_is_exact_otherwise():
    for dtype in DTYPES:
        a = np.array([0.0, -1.0, -50.0, -87.0, -103.0, -700.0, -745.0, -1e4], dtype)
        with np.errstate(all="raise"):
            got = N.exp_nonpositive(a)
        tiny = np.finfo(dtype).tiny
        with np.errstate(under="ignore"):
            plain = np.exp(a)
        normal = plain >= tiny
        np.testing.assert_array_equal(got[normal], plain[normal])
        assert np.all(got[~normal] == 0) and got.dtype == dtype


def test_integer_input_is_computed_in_float64_and_float16_stays_float16():
    assert N.softmax(np.array([1, 2, 3])).dtype == np.float64
    assert N.sigmoid(np.array([0])).tolist() == [0.5]
    h = np.array([-1e4, 0, 1e4], np.float16)
    with np.errstate(all="raise"):
        assert N.sigmoid(h).dtype == np.float16 and N.softmax(h).dtype == np.float16


def test_empty_and_all_minus_infinity_slices():
    e = np.zeros((0, 3), np.float32)
    assert N.softmax(e, axis=1).shape == (0, 3) and N.logsumexp(e, axis=1).shape == (0,)
    assert N.logsumexp(np.zeros((2, 0)), axis=1).tolist() == [-np.inf, -np.inf]
    assert N.logsumexp(np.full(3, -np.inf)) == -np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_engine_primitives_compute_exactly_these_numbers(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, 4)) * 30).astype(dtype)
    x[0] = [1e4, -1e4, 0, 3]
    t = cr.tensor(x)
    np.testing.assert_array_equal(cr.softmax(t, axis=1).data, N.softmax(x, axis=1))
    np.testing.assert_array_equal(cr.log_softmax(t, axis=0).data, N.log_softmax(x, axis=0))
    np.testing.assert_array_equal(cr.logsumexp(t, axis=1).data, N.logsumexp(x, axis=1))
    np.testing.assert_array_equal(cr.sigmoid(t).data, N.sigmoid(x))
    np.testing.assert_array_equal(cr.softplus(t, beta=0.5).data, N.softplus(x, beta=0.5))


def test_predict_proba_and_estimators_use_the_stable_functions_for_huge_logits():
    class Fixed(cr.nn.Module):
        def __init__(self, z):
            super().__init__()
            self.z = z

        def forward(self, x):
            return cr.tensor(self.z)

    z = np.array([[1e4, -1e4, 0.0], [3.0, 1.0, -2.0]], np.float32)
    with np.errstate(all="raise"):
        p = cr.predict_proba(Fixed(z), np.zeros((2, 1), np.float32))
        b = cr.predict_proba(Fixed(z[:, :1].copy()), np.zeros((2, 1), np.float32))
    assert p.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_array_equal(p, N.softmax(z, axis=-1))
    np.testing.assert_array_equal(b, N.sigmoid(z[:, :1]))
    assert b[0, 0] == 1.0 and p[0].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_sklearn_classifier_probabilities_for_huge_logits_are_finite():
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y)
    with np.errstate(all="raise"):
        p = clf.predict_proba(X * 1e6)
        lp = clf.predict_log_proba(X * 1e6)
    assert np.all(np.isfinite(lp)) and np.allclose(p.sum(axis=1), 1)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-12, atol=1e-300)
