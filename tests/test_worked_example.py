"""The textbook worked example, by hand: a 2-2-1 sigmoid network with MSE.

Network: z1 = x W1 + b1, a1 = σ(z1), z2 = a1 W2 + b2, a2 = σ(z2), C = (a2 - y)².
With one sample, the gradient of C with respect to the hidden-to-output weight w_11 (hidden
unit 1 -> output unit 1) is the chain-rule product

    ∂C/∂w = ∂C/∂a2 · ∂a2/∂z2 · ∂z2/∂w
          = 2(a2 - y) · a2(1 - a2) · a1[1]

and for an input-to-hidden weight W1[0, 1] (input 0 -> hidden unit 1) the error is
backpropagated through w_11 first:

    ∂C/∂W1[0,1] = [2(a2 - y) · a2(1 - a2) · W2[1,0]] · a1[1](1 - a1[1]) · x[0]
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_worked_example_by_hand():
    x = [0.05, 0.10]
    W1 = [[0.15, 0.25], [0.20, 0.30]]  # W1[i][j]: input i -> hidden j
    b1 = [0.35, 0.35]
    W2 = [[0.40], [0.45]]  # W2[j][0]: hidden j -> output
    b2 = [0.60]
    y = 0.01

    # forward pass, written out
    z1 = [x[0] * W1[0][j] + x[1] * W1[1][j] + b1[j] for j in range(2)]  # [0.3775, 0.3925]
    a1 = [sig(v) for v in z1]  # [0.593269992, 0.596884378]
    z2 = a1[0] * W2[0][0] + a1[1] * W2[1][0] + b2[0]  # 1.105905967
    a2 = sig(z2)  # 0.751365070
    C = (a2 - y) ** 2  # 0.549622166

    # backward pass, one factor at a time
    dC_da2 = 2 * (a2 - y)  # 1.482730139
    da2_dz2 = a2 * (1 - a2)  # 0.186815602
    dz2_dw = a1[1]  # 0.596884378 (the input to the weight)
    dC_dW2_1 = dC_da2 * da2_dz2 * dz2_dw  # 1.48273 · 0.18682 · 0.59688 = 0.165335256
    delta_h1 = dC_da2 * da2_dz2 * W2[1][0]  # error reaching hidden unit 1
    dC_dW1_01 = delta_h1 * a1[1] * (1 - a1[1]) * x[0]  # 0.001499608

    assert z1[0] == pytest.approx(0.3775) and a2 == pytest.approx(0.75136507, rel=1e-8)
    assert dC_dW2_1 == pytest.approx(0.165335256, rel=1e-8)
    assert dC_dW1_01 == pytest.approx(0.001499608, rel=1e-6)

    # the engine computes the same numbers
    tW1 = cr.tensor(np.array(W1), requires_grad=True)
    tb1 = cr.tensor(np.array(b1), requires_grad=True)
    tW2 = cr.tensor(np.array(W2), requires_grad=True)
    tb2 = cr.tensor(np.array(b2), requires_grad=True)
    out = cr.sigmoid(cr.sigmoid(np.array([x]) @ tW1 + tb1) @ tW2 + tb2)
    loss = ((out - y) ** 2).mean()
    loss.backward()
    assert loss.item() == pytest.approx(C, rel=1e-12)
    assert tW2.grad[1, 0] == pytest.approx(dC_dW2_1, rel=1e-12)
    assert tW1.grad[0, 1] == pytest.approx(dC_dW1_01, rel=1e-12)
    assert tb2.grad[0] == pytest.approx(dC_da2 * da2_dz2, rel=1e-12)
