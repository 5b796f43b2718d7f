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


def test_the_example_reproduces_the_textbook_numbers(capsys):
    """examples/backprop_by_hand.py against the numbers Mazur's worked example publishes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "backprop_by_hand.py"
    spec = importlib.util.spec_from_file_location("backprop_by_hand", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    r = example.main()
    out = capsys.readouterr().out
    published = {
        "out_h1": 0.593269992,
        "out_h2": 0.596884378,
        "out_o1": 0.75136507,
        "out_o2": 0.772928465,
        "E_total": 0.298371109,
        "dE/dw5": 0.082167041,
        "dE/dw1": 0.000438568,
        "new_w1": 0.149780716,
        "new_w2": 0.19956143,
        "new_w3": 0.24975114,
        "new_w4": 0.29950229,
        "new_w5": 0.35891648,
        "new_w6": 0.408666186,
        "new_w7": 0.511301270,
        "new_w8": 0.561370121,
    }
    for key, value in published.items():
        assert r[key] == pytest.approx(value, abs=6e-9), key
    assert round(r["dE/dw6"], 7) == 0.0826676  # the ½(y - a)² number
    for k in range(1, 9):  # the engine equals the hand computation
        assert r[f"grad_w{k}"] == pytest.approx(r[f"dE/dw{k}"], rel=1e-12)
    assert r["w6 MSELoss(reduction='sum')"] == pytest.approx(2 * r["dE/dw6"], rel=1e-12)
    assert r["w6 MSELoss(), 1 sample × 2 outputs, n = 2"] == pytest.approx(r["dE/dw6"], rel=1e-12)
    # the error after the step, recomputed here by hand from the new weights
    w = {k: r[f"new_w{k}"] for k in range(1, 9)}
    h1, h2 = sig(0.05 * w[1] + 0.10 * w[2] + 0.35), sig(0.05 * w[3] + 0.10 * w[4] + 0.35)
    o1, o2 = sig(h1 * w[5] + h2 * w[6] + 0.60), sig(h1 * w[7] + h2 * w[8] + 0.60)
    after = 0.5 * (0.01 - o1) ** 2 + 0.5 * (0.99 - o2) ** 2
    assert r["E_total_after"] == pytest.approx(after, rel=1e-12) and after < r["E_total"]
    assert "∂E/∂w6 = 0.741365070 · 0.186815602 · 0.596884378 = 0.082667628" in out
    assert "∂C/∂w for 2.weight[1,0]" in out and "∂C/∂w for 0.weight[0,0]" in out
