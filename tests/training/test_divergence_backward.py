"""A finite loss whose gradient is not finite (sqrt at 0): the divergence report says the
backward pass made it and what to change, not that the loss overflowed."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


class _SqrtRelu(nn.Module):
    def forward(self, x):
        return cr.sqrt(cr.relu(x))  # derivative 1/(2·sqrt(0)) = inf at 0


def test_a_nan_gradient_from_a_finite_loss_is_blamed_on_the_backward_pass():
    X = np.ones((8, 3))
    X[0] = 0.0  # one row whose pre-activation is exactly 0
    model = nn.Sequential(nn.Linear(3, 4, bias=False, rng=0), _SqrtRelu(), nn.Linear(4, 1, rng=1))
    model.to(np.float64)
    y = np.ones((8, 1))
    with pytest.raises(cr.DivergenceError) as info:
        cr.fit(model, X, y, loss="mse", epochs=1, verbose=0, on_nonfinite="raise")
    msg = str(info.value)
    assert "the gradient of '0.weight' is not finite" in msg
    assert "the backward pass produced it" in msg
    assert "sqrt(x + eps)" in msg
    assert "the loss itself overflowed" not in msg
    assert "lower the learning rate" not in msg
