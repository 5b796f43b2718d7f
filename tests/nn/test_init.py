"""Initialisers: the distributions they promise, in place, with explicit generators."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainrule import nn
from chainrule.nn import init


def weight(shape=(400, 300)):
    return nn.Parameter(np.zeros(shape, np.float32))


def test_xavier_uniform_bound_and_variance():
    w = init.xavier_uniform_(weight(), rng=0)
    b = math.sqrt(6 / 700)
    assert np.abs(w.data).max() <= b and np.abs(w.data).max() > 0.99 * b
    assert w.data.var() == pytest.approx(2 / 700, rel=0.02)


def test_xavier_normal_std():
    w = init.xavier_normal_(weight(), gain=2.0, rng=0)
    assert w.data.std() == pytest.approx(2 * math.sqrt(2 / 700), rel=0.02)


def test_kaiming_uniform_and_normal_use_fan_in_and_gain():
    w = init.kaiming_uniform_(weight(), rng=0)
    b = math.sqrt(2) * math.sqrt(3 / 400)
    assert np.abs(w.data).max() <= b and np.abs(w.data).max() > 0.99 * b
    w = init.kaiming_normal_(weight(), mode="fan_out", nonlinearity="relu", rng=0)
    assert w.data.std() == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    w = init.kaiming_normal_(weight(), a=0.1, nonlinearity="leaky_relu", rng=0)
    assert w.data.std() == pytest.approx(math.sqrt(2 / 1.01) / 20, rel=0.02)


def test_lecun_normal_zeros_constant():
    w = init.lecun_normal_(weight(), rng=0)
    assert w.data.std() == pytest.approx(1 / 20, rel=0.02)
    assert np.all(init.zeros_(weight()).data == 0)
    assert np.all(init.constant_(weight((3,)), 0.5).data == 0.5)


def test_gains():
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("sigmoid") == 1.0
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("nope")


def test_same_seed_same_weights_and_dtype_kept():
    a = init.kaiming_uniform_(weight(), rng=5)
    b = init.kaiming_uniform_(weight(), rng=5)
    assert a.data.tobytes() == b.data.tobytes() and a.dtype == np.float32
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(weight((3,)))


def test_generator_is_accepted_as_pytorchs_name_for_rng():
    a = init.kaiming_normal_(weight(), generator=np.random.default_rng(3))
    b = init.kaiming_normal_(weight(), rng=np.random.default_rng(3))
    assert a.data.tobytes() == b.data.tobytes()
    c = init.xavier_uniform_(weight(), generator=3)
    assert c.data.tobytes() == init.xavier_uniform_(weight(), rng=3).data.tobytes()
