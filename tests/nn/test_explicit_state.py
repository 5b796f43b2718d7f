"""Dropout's mask and BatchNorm's running statistics are explicit inputs/outputs of primitives.

The numbers are bitwise those of the former inline code (reproduced here as references).
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule._primitive import PRIMITIVES
from chainrule._stateful import masked_dropout, running_stats_update

DTYPES = [np.float32, np.float64]


def old_mask(gen, shape, p, dtype):
    """The mask exactly as Dropout drew it before (the reference)."""
    dtype = np.dtype(dtype)
    keep = gen.random(shape, dtype=np.float64) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_output_and_gradient_are_bitwise_the_former_ones(p, dtype):
    x = np.random.default_rng(1).standard_normal((16, 7)).astype(dtype)
    g = np.random.default_rng(2).standard_normal((16, 7)).astype(dtype)
    layer = nn.Dropout(p, rng=5)
    t = cr.tensor(x, requires_grad=True)
    y = layer(t)
    y.backward(g)
    mask = old_mask(np.random.default_rng(5), x.shape, p, dtype)
    assert y.dtype == dtype and t.grad.dtype == dtype
    np.testing.assert_array_equal(y.data, x * mask)  # bitwise
    np.testing.assert_array_equal(t.grad, g * mask)  # ∂C/∂x = g ⊙ mask, bitwise


def test_the_mask_is_an_explicit_input_of_the_dropout_primitive():
    layer = nn.Dropout(0.5, rng=3)
    t = cr.tensor(np.ones((4, 6), np.float32), requires_grad=True)
    y = layer(t)
    assert y.primitive is PRIMITIVES["dropout"] and y.primitive.kind == "random"
    x_in, mask = y._inputs
    assert x_in is t and isinstance(mask, np.ndarray) and mask.shape == (4, 6)
    np.testing.assert_array_equal(y.data, mask)  # x = 1: the output is the mask
    # a recorded step can replay with a mask it is given: same mask, same numbers
    replay = masked_dropout(t, layer.draw_mask((4, 6), np.float32))
    fresh = nn.Dropout(0.5, rng=3)
    np.testing.assert_array_equal(
        masked_dropout(t, fresh.draw_mask((4, 6), np.float32)).data, y.data
    )
    assert not np.array_equal(replay.data, y.data)  # the layer's generator moved on


def test_dropout_edge_cases_keep_their_behaviour():
    x = cr.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    assert nn.Dropout(0.0)(x) is x
    layer = nn.Dropout(1.0)
    np.testing.assert_array_equal(layer(x).data, np.zeros((2, 3), np.float32))
    layer.eval()
    assert layer(x) is x
    ints = nn.Dropout(0.5, rng=0)(np.arange(6).reshape(2, 3))  # integers join as float32
    assert ints.dtype == np.float32
    ref = np.arange(6).reshape(2, 3).astype(np.float32) * old_mask(
        np.random.default_rng(0), (2, 3), 0.5, np.float32
    )
    np.testing.assert_array_equal(ints.data, ref)


def test_dropout_inside_fit_with_a_seed_is_bitwise_reproducible():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)

    def run():
        model = nn.Sequential(
            nn.Linear(5, 16, rng=1), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3, rng=2)
        )
        cr.fit(model, X, y, loss="cross_entropy", epochs=3, batch_size=16, seed=7, verbose=0)
        return np.concatenate([p.data.ravel() for p in model.parameters()])

    np.testing.assert_array_equal(run(), run())


# ----- batch norm ---------------------------------------------------------------------------
def old_running_update(rm, rv, count, mean, var, m, n):
    """The former in-place update (the reference)."""
    rm, rv, count = rm.copy(), rv.copy(), count.copy()
    unbiased = var * (n / (n - 1))
    rm *= 1 - m
    rm += m * mean
    rv *= 1 - m
    rv += m * unbiased
    count += 1
    return rm, rv, count


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 4), (6, 4, 5)])
def test_batchnorm_running_statistics_are_bitwise_the_former_ones(shape, dtype):
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(4, momentum=0.3, dtype=dtype)
    buffers = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    rm, rv, count = (b.copy() for b in buffers)
    axes = (0,) if len(shape) == 2 else (0, 2)
    n = int(np.prod(shape)) // 4
    for _ in range(4):
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        bn(x)
        rm, rv, count = old_running_update(
            rm, rv, count, x.mean(axis=axes), x.var(axis=axes), 0.3, n
        )
        np.testing.assert_array_equal(bn.running_mean, rm)
        np.testing.assert_array_equal(bn.running_var, rv)
        assert bn.num_batches_tracked == count
    # the buffers are still the same arrays (state_dict views, optimizer-free state)
    assert buffers[0] is bn.running_mean and buffers[1] is bn.running_var
    assert bn.running_mean.dtype == dtype and bn.num_batches_tracked.dtype == np.int64


def test_the_running_statistics_update_is_a_state_primitive_that_writes_nothing():
    # (its formula's derivatives are checked by check_primitive over the registry)
    prim = PRIMITIVES["batch_norm_running_stats"]
    assert prim.kind == "state" and prim.n_outputs == 3
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    count = np.zeros((), np.int64)
    mean, var = np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32)
    new_m, new_v, new_c = running_stats_update(rm, rv, count, mean, var, 0.1, 5)
    assert rm.tolist() == [0, 0, 0] and rv.tolist() == [1, 1, 1] and count == 0  # untouched
    # r ← 0.9·0 + 0.1·mean ; v ← 0.9·1 + 0.1·var·5/4
    np.testing.assert_allclose(new_m, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(new_v, [0.9 + 0.1 * 5, 0.9 + 0.125 * 5, 0.9 + 0.15 * 5], rtol=1e-6)
    assert new_c == 1 and new_m.dtype == np.float32


def old_batchnorm(x, w, b, eps):
    """The former training-mode graph, built from the same primitives (the reference)."""
    axes = (0,) if x.ndim == 2 else (0, 2)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / cr.sqrt(var + eps)
    return xhat * w.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("shape", [(8, 4), (6, 4, 5)])
def test_batchnorm_output_and_gradients_are_bitwise_the_former_ones(shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    bn = nn.BatchNorm1d(4)
    bn.weight.data[...] = rng.standard_normal(4)
    bn.bias.data[...] = rng.standard_normal(4)
    t = cr.tensor(x, requires_grad=True)
    out = bn(t)
    out.backward(g)
    t2 = cr.tensor(x, requires_grad=True)
    w2 = cr.tensor(bn.weight.data.copy(), requires_grad=True)
    b2 = cr.tensor(bn.bias.data.copy(), requires_grad=True)
    ref = old_batchnorm(t2, w2, b2, bn.eps)
    ref.backward(g)
    np.testing.assert_array_equal(out.data, ref.data)
    np.testing.assert_array_equal(t.grad, t2.grad)
    np.testing.assert_array_equal(bn.weight.grad, w2.grad)
    np.testing.assert_array_equal(bn.bias.grad, b2.grad)


def test_the_normalisation_is_generic_over_the_channel_axis_as_torch_batchnorm2d():
    torch = pytest.importorskip("torch")

    class BatchNorm2dSketch(nn.BatchNorm1d):  # what a 4-D subclass needs: the shape check
        def forward(self, x):
            return self._normalize(cr.tensor(x))

    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 6))
    ours = BatchNorm2dSketch(4, momentum=0.2, dtype=np.float64)
    ref = torch.nn.BatchNorm2d(4, momentum=0.2, dtype=torch.float64)
    for _ in range(2):
        out = ours(x)
        tout = ref(torch.tensor(x))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.running_mean, ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, ref.running_var.numpy(), rtol=1e-12)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 2
