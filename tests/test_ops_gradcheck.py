"""Every primitive's backward rule against float64 central differences (table-driven).

Shapes ``()``, ``(3,)``, ``(3, 2)``, ``(0, 3)``; broadcasting pairs; reductions over
``axis ∈ {None, 0, 1, -1}`` × ``keepdims``. Inputs are drawn from each function's domain and
away from kinks; kinks have exact tests in ``test_ops_semantics.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

from .conftest import away_from_zero

SHAPES = [(), (3,), (3, 2), (0, 3)]


def normal(rng, shape):
    return rng.normal(size=shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, size=shape)


def kinked(rng, shape):
    return away_from_zero(rng, shape)


UNARY = {
    "neg": (lambda x: -x, normal),
    "exp": (cr.exp, normal),
    "log": (cr.log, positive),
    "sqrt": (cr.sqrt, positive),
    "abs": (cr.abs, kinked),
    "tanh": (cr.tanh, normal),
    "sigmoid": (cr.sigmoid, normal),
    "relu": (cr.relu, kinked),
    "leaky_relu": (lambda x: cr.leaky_relu(x, 0.2), kinked),
    "elu": (lambda x: cr.elu(x, alpha=1.5), kinked),
    "gelu": (cr.gelu, normal),
    "gelu_tanh": (lambda x: cr.gelu(x, approximate="tanh"), normal),
    "softplus": (cr.softplus, normal),
    "softplus_beta": (lambda x: cr.softplus(x, beta=2.5), normal),
    "pow_const": (lambda x: x**3, normal),
    "pow_half": (lambda x: x**0.5, positive),
    "rpow": (lambda x: 2.0**x, normal),
    "clip": (
        lambda x: cr.clip(x, -0.7, 0.9),
        lambda r, s: (
            np.clip(kinked(r, s), -3, 3) * 0.0 + r.choice([-1.5, -0.3, 0.2, 0.5, 1.4], size=s)
        ),
    ),
    "astype": (lambda x: cr.astype(x, np.float32).astype(np.float64), normal),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, shape, rng):
    fn, domain = UNARY[name]
    x = domain(rng, shape)
    # astype rounds to float32: a larger step keeps the rounding out of the difference quotient
    tol = {"eps": 1e-2, "atol": 1e-4} if name == "astype" else {}
    assert cr.gradcheck(fn, x, **tol)


BINARY = {
    "add": (lambda a, b: a + b, normal, normal),
    "sub": (lambda a, b: a - b, normal, normal),
    "mul": (lambda a, b: a * b, normal, normal),
    "div": (lambda a, b: a / b, normal, positive),
    "pow": (lambda a, b: a**b, positive, normal),
    "maximum": (cr.maximum, normal, normal),
    "minimum": (cr.minimum, normal, normal),
}

PAIRS = [
    ((), ()),
    ((3,), (3,)),
    ((3, 2), (3, 2)),
    ((0, 3), (0, 3)),
    ((3, 1), (1, 4)),
    ((1, 2), (3, 2)),
    ((), (3, 2)),
    ((2,), (3, 2)),
    ((2, 1, 3), (4, 1)),
    ((0, 3), (3,)),
]


@pytest.mark.parametrize("shapes", PAIRS, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary(name, shapes, rng):
    fn, da, db = BINARY[name]
    a, b = da(rng, shapes[0]), db(rng, shapes[1])
    assert cr.gradcheck(fn, a, b)
    if name in ("add", "mul", "maximum", "minimum"):  # symmetric: the other order too
        assert cr.gradcheck(fn, b, a)


AXES = [None, 0, 1, -1]
REDUCTIONS = {
    "sum": lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
    "mean": lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims),
    "max": lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims),
    "min": lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims),
    "var": lambda x, axis, keepdims: x.var(axis=axis, keepdims=keepdims),
    "var_ddof1": lambda x, axis, keepdims: cr.var(x, axis=axis, keepdims=keepdims, ddof=1),
    "logsumexp": lambda x, axis, keepdims: cr.logsumexp(x, axis=axis, keepdims=keepdims),
}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction(name, axis, keepdims, rng):
    fn = REDUCTIONS[name]
    x = rng.normal(size=(3, 4))
    assert cr.gradcheck(lambda t: fn(t, axis, keepdims), x)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "max", "logsumexp"])
def test_reduction_over_tuple_axes_and_3d(name, rng):
    x = rng.normal(size=(2, 3, 4))
    assert cr.gradcheck(lambda t: REDUCTIONS[name](t, (0, 2), False), x)
    assert cr.gradcheck(lambda t: REDUCTIONS[name](t, 1, True), x)


# the mean of nothing is undefined (NaN, as in NumPy), so mean only reduces the non-empty axis
@pytest.mark.parametrize(
    "name,axis",
    [
        ("sum", None),
        ("sum", 0),
        ("sum", 1),
        ("logsumexp", None),
        ("logsumexp", 0),
        ("logsumexp", 1),
        ("mean", 1),
        ("var", 1),
    ],
)
def test_reduction_of_empty(name, axis):
    x = np.zeros((0, 3))
    out = REDUCTIONS[name](cr.tensor(x), axis, False)
    assert out.shape == np.sum(x, axis=axis).shape
    assert cr.gradcheck(lambda t: REDUCTIONS[name](t, axis, False), x)


@pytest.mark.parametrize("shape", [(), (3,)], ids=str)
def test_reductions_of_small_shapes(shape, rng):
    x = rng.normal(size=shape)
    for name in ("sum", "mean", "max", "min", "logsumexp"):
        assert cr.gradcheck(lambda t, n=name: REDUCTIONS[n](t, None, False), x)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("fn", [cr.softmax, cr.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_family(fn, axis, rng):
    x = rng.normal(size=(3, 4))
    w = rng.normal(size=(3, 4))  # a non-trivial seed: sum of softmax alone has zero gradient
    assert cr.gradcheck(lambda t: fn(t, axis=axis) * w, x)
    assert cr.gradcheck(
        lambda t: fn(t, axis=axis) * w[:1],
        np.zeros((0, 4)) if axis != 0 else rng.normal(size=(1, 4)),
    )


MATMUL = [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (4, 3, 2)),
    ((5, 2, 3), (3,)),
    ((3,), (5, 3, 2)),
    ((0, 3), (3, 2)),
]


@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_matmul(shapes, rng):
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    np.testing.assert_allclose(cr.matmul(a, cr.tensor(b)).data, np.matmul(a, b))
    assert cr.gradcheck(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("xshape", [(4, 3), (2, 4, 3), (0, 3), (3,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(xshape, bias, rng):
    x, w, b = rng.normal(size=xshape), rng.normal(size=(3, 2)), rng.normal(size=2)
    ref = x @ w + (b if bias else 0)
    np.testing.assert_allclose(cr.linear(x, cr.tensor(w), cr.tensor(b) if bias else None).data, ref)
    if bias:
        assert cr.gradcheck(cr.linear, x, w, b)
    else:
        assert cr.gradcheck(cr.linear, x, w)


INDICES = {
    "int": 1,
    "negative_int": -1,
    "slice": slice(0, 2),
    "step_slice": slice(None, None, 2),
    "tuple": (slice(1, 3), 0),
    "int_array_repeats": np.array([0, 2, 0, 0]),
    "int_list": [2, 1],
    "bool_mask_rows": np.array([True, False, True]),
    "bool_mask_full": "mask",
    "mixed_array_slice": (np.array([0, 2, 2]), slice(None)),
    "two_arrays": (np.array([0, 1, 1]), np.array([1, 0, 0])),
    "ellipsis_newaxis": (Ellipsis, None),
}


@pytest.mark.parametrize("name", sorted(INDICES))
def test_getitem(name, rng):
    x = rng.normal(size=(3, 2))
    idx = INDICES[name]
    if isinstance(idx, str):
        idx = x > 0
    np.testing.assert_allclose(cr.tensor(x)[idx].data, x[idx])
    assert cr.gradcheck(lambda t: t[idx] * 1.5, x)


def test_getitem_repeated_indices_accumulate():
    x = cr.tensor(np.arange(4.0), requires_grad=True)
    x[np.array([1, 1, 1, 3])].sum().backward()
    np.testing.assert_allclose(x.grad, [0, 3, 0, 1])


@pytest.mark.parametrize(
    "shape,axes", [((2, 3), ()), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (-1, 0, 1))]
)
def test_transpose(shape, axes, rng):
    x = rng.normal(size=shape)
    np.testing.assert_allclose(cr.tensor(x).transpose(*axes).data, np.transpose(x, axes or None))
    assert cr.gradcheck(
        lambda t: (
            t.transpose(*axes)
            * np.arange(np.prod(shape)).reshape(np.transpose(x, axes or None).shape)
        ),
        x,
    )


def test_reshape_and_flatten(rng):
    x = rng.normal(size=(2, 3, 2))
    assert cr.gradcheck(lambda t: t.reshape(3, 4) * np.arange(12.0).reshape(3, 4), x)
    assert cr.gradcheck(lambda t: cr.flatten(t, 1) * np.arange(12.0).reshape(2, 6), x)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(axis, rng):
    a, b, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    w = rng.normal(size=np.concatenate([a, b, c], axis=axis).shape)
    assert cr.gradcheck(lambda x, y, z: cr.concatenate([x, y, z], axis=axis) * w, a, b, c)
    ws = rng.normal(size=np.stack([a, b], axis=axis).shape)
    assert cr.gradcheck(lambda x, y: cr.stack([x, y], axis=axis) * ws, a, b)


def test_concatenate_uneven_pieces(rng):
    a, b = rng.normal(size=(1, 3)), rng.normal(size=(4, 3))
    w = rng.normal(size=(5, 3))
    assert cr.gradcheck(lambda x, y: cr.concatenate([x, y]) * w, a, b)


@pytest.mark.parametrize(
    "shapes", [((3, 2), (3, 2), (3, 2)), ((3, 1), (1, 2), ()), ((2,), (3, 2), (2,))], ids=str
)
def test_where(shapes, rng):
    cond = rng.normal(size=shapes[0]) > 0
    a, b = rng.normal(size=shapes[1]), rng.normal(size=shapes[2])
    assert cr.gradcheck(lambda x, y: cr.where(cond, x, y), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_forward_matches_float64_reference(dtype, rng):
    """Every unary and binary op computes in the input dtype, close to the float64 value."""
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for name, (fn, domain) in UNARY.items():
        if name == "astype":
            continue
        x64 = domain(rng, (4, 3))
        out = fn(cr.tensor(x64.astype(dtype)))
        ref = fn(cr.tensor(x64.astype(dtype).astype(np.float64))).data
        assert out.dtype == dtype, name
        np.testing.assert_allclose(out.data, ref, rtol=tol * 10, atol=tol, err_msg=name)
    for name, (fn, da, db) in BINARY.items():
        a, b = da(rng, (4, 3)), db(rng, (3,))
        out = fn(cr.tensor(a.astype(dtype)), cr.tensor(b.astype(dtype)))
        ref = fn(
            cr.tensor(a.astype(dtype).astype(np.float64)),
            cr.tensor(b.astype(dtype).astype(np.float64)),
        ).data
        assert out.dtype == dtype, name
        np.testing.assert_allclose(out.data, ref, rtol=tol * 10, atol=tol, err_msg=name)
    x = rng.normal(size=(4, 3)).astype(dtype)
    for fn in (
        cr.softmax,
        cr.log_softmax,
        lambda t: cr.logsumexp(t, axis=1),
        lambda t: t.var(axis=0),
        lambda t: t.mean(),
        lambda t: t @ t.T,
    ):
        out = fn(cr.tensor(x))
        assert out.dtype == dtype
        np.testing.assert_allclose(
            out.data, fn(cr.tensor(x.astype(np.float64))).data, rtol=tol * 10, atol=tol
        )
