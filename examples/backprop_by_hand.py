"""The textbook backpropagation exercise, every number: a 2-2-2 sigmoid network, one sample.

This is the network of Matt Mazur's "A Step by Step Backpropagation Example" (2015), the one
most courses work by hand::

    inputs   i1 = 0.05, i2 = 0.10                     targets  o1 = 0.01, o2 = 0.99
    hidden   net_hj = w·i + b1,  out_hj = σ(net_hj)   w1 = .15 (i1→h1)  w2 = .20 (i2→h1)
                                                      w3 = .25 (i1→h2)  w4 = .30 (i2→h2)
    output   net_ok = w·h + b2,  out_ok = σ(net_ok)   w5 = .40 (h1→o1)  w6 = .45 (h2→o1)
                                                      w7 = .50 (h1→o2)  w8 = .55 (h2→o2)
    biases   b1 = .35, b2 = .60                       cost     E = ½ Σ_k (target_k - out_k)²

It prints the forward pass, the backward pass by hand (each chain-rule factor), the engine's
``.grad`` next to it, ``cr.explain`` on w6 and w1, what ``MSELoss`` gives instead of ``½·sum``
and why, and one gradient-descent step with η = 0.5 (weights only, as in the textbook).

chainrule's ``Linear`` stores ``W[i, j]`` = the weight from input ``i`` to unit ``j``; the
names ``"0.weight"`` and ``"2.weight"`` are the layers' positions in the Sequential
(Linear, Sigmoid, Linear, Sigmoid: the activations count).

Run:  python examples/backprop_by_hand.py
"""

from __future__ import annotations

import math

import numpy as np

import chainrule as cr
from chainrule import nn, optim

# the textbook's names for the weights, and where each lives in chainrule
WEIGHTS = {
    "w1": ("0.weight", (0, 0)),
    "w2": ("0.weight", (1, 0)),
    "w3": ("0.weight", (0, 1)),
    "w4": ("0.weight", (1, 1)),
    "w5": ("2.weight", (0, 0)),
    "w6": ("2.weight", (1, 0)),
    "w7": ("2.weight", (0, 1)),
    "w8": ("2.weight", (1, 1)),
}


def half_sse(out, target):
    """The textbook cost E = ½ Σ (target - out)²: a sum, and a ½ that cancels the square's 2."""
    return 0.5 * ((out - target) ** 2).sum()


def build() -> nn.Sequential:
    """The network with the textbook's weights set by hand (float64, to compare 9 digits)."""
    model = nn.Sequential(
        nn.Linear(2, 2, dtype=np.float64),
        nn.Sigmoid(),
        nn.Linear(2, 2, dtype=np.float64),
        nn.Sigmoid(),
    )
    model.load_state_dict(
        {
            "0.weight": [[0.15, 0.25], [0.20, 0.30]],  # rows: from i1, i2; columns: to h1, h2
            "0.bias": [0.35, 0.35],
            "2.weight": [[0.40, 0.50], [0.45, 0.55]],  # rows: from h1, h2; columns: to o1, o2
            "2.bias": [0.60, 0.60],
        }
    )
    return model


def sigma(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def main(verbose: bool = True) -> dict[str, float]:
    say = print if verbose else (lambda *a, **k: None)
    x, target = [0.05, 0.10], [0.01, 0.99]
    w = {"w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30}
    w |= {"w5": 0.40, "w6": 0.45, "w7": 0.50, "w8": 0.55}
    b1, b2 = 0.35, 0.60
    r: dict[str, float] = {}

    say("Forward pass (by hand)")
    r["net_h1"] = w["w1"] * x[0] + w["w2"] * x[1] + b1
    r["net_h2"] = w["w3"] * x[0] + w["w4"] * x[1] + b1
    r["out_h1"], r["out_h2"] = sigma(r["net_h1"]), sigma(r["net_h2"])
    r["net_o1"] = w["w5"] * r["out_h1"] + w["w6"] * r["out_h2"] + b2
    r["net_o2"] = w["w7"] * r["out_h1"] + w["w8"] * r["out_h2"] + b2
    r["out_o1"], r["out_o2"] = sigma(r["net_o1"]), sigma(r["net_o2"])
    r["E_o1"] = 0.5 * (target[0] - r["out_o1"]) ** 2
    r["E_o2"] = 0.5 * (target[1] - r["out_o2"]) ** 2
    r["E_total"] = r["E_o1"] + r["E_o2"]
    for k in ("net_h1", "out_h1", "net_h2", "out_h2", "net_o1", "out_o1", "net_o2", "out_o2"):
        say(f"  {k:<8} = {r[k]:.9f}")
    say(f"  E_total  = ½(0.01 - out_o1)² + ½(0.99 - out_o2)² = {r['E_o1']:.9f} + "
        f"{r['E_o2']:.9f} = {r['E_total']:.9f}")  # fmt: skip

    model = build()
    X, Y = np.array([x]), np.array([target])
    loss = half_sse(model(X), Y)
    say(f"  engine: E_total = {loss.item():.9f}")

    say("\nBackward pass, output layer: ∂E/∂w = ∂E/∂out_o · ∂out_o/∂net_o · ∂net_o/∂w")
    d_out = [r["out_o1"] - target[0], r["out_o2"] - target[1]]  # ∂E/∂out_ok = out_ok - target_k
    slope_o = [r["out_o1"] * (1 - r["out_o1"]), r["out_o2"] * (1 - r["out_o2"])]  # σ' = σ(1 - σ)
    delta_o = [d_out[k] * slope_o[k] for k in range(2)]  # δ_ok = ∂E/∂net_ok
    hidden = [r["out_h1"], r["out_h2"]]
    for name, k, j in (("w5", 0, 0), ("w6", 0, 1), ("w7", 1, 0), ("w8", 1, 1)):
        r[f"dE/d{name}"] = d_out[k] * slope_o[k] * hidden[j]
        say(f"  ∂E/∂{name} = {d_out[k]:.9f} · {slope_o[k]:.9f} · {hidden[j]:.9f} "
            f"= {r[f'dE/d{name}']:.9f}")  # fmt: skip

    say("Backward pass, hidden layer: ∂E/∂out_h = Σ_k δ_ok · w_hk, then the same three factors")
    back = [
        delta_o[0] * w["w5"] + delta_o[1] * w["w7"],
        delta_o[0] * w["w6"] + delta_o[1] * w["w8"],
    ]
    for j in range(2):
        wa, wb = ("w5", "w7") if j == 0 else ("w6", "w8")
        say(f"  ∂E/∂out_h{j + 1} = {delta_o[0]:.9f}·{w[wa]} + ({delta_o[1]:.9f})·{w[wb]} "
            f"= {back[j]:.9f}")  # fmt: skip
    slope_h = [h * (1 - h) for h in hidden]
    for name, j, i in (("w1", 0, 0), ("w2", 0, 1), ("w3", 1, 0), ("w4", 1, 1)):
        r[f"dE/d{name}"] = back[j] * slope_h[j] * x[i]
        say(f"  ∂E/∂{name} = {back[j]:.9f} · {slope_h[j]:.9f} · {x[i]} = {r[f'dE/d{name}']:.9f}")

    say("\nThe engine's gradients (one backward() call) against the hand computation")
    loss.backward()
    params = dict(model.named_parameters())
    for name, (pname, idx) in WEIGHTS.items():
        g = float(params[pname].grad[idx])
        hand = r[f"dE/d{name}"]
        say(f"  {name} = {pname}[{idx[0]},{idx[1]}]  .grad = {g:.12f}   by hand {hand:.12f}")
        r[f"grad_{name}"] = g

    say("\ncr.explain: the same product, factor by factor")
    say(cr.explain(model, X, Y, half_sse, "2.weight[1,0]"))  # w6
    say(cr.explain(model, X, Y, half_sse, "0.weight[0,0]"))  # w1

    say("\nThe same gradient with MSELoss: C = (1/n) Σ (ŷ - y)², no ½, n = entries of ŷ")
    say("(∂C/∂ŷ = 2(ŷ - y)/n against ½·sum's ŷ - y: MSELoss's gradient is 2/n times ½·sum's)")
    for label, fn, X_, Y_ in (
        ("MSELoss(), 1 sample × 2 outputs, n = 2", nn.MSELoss(), X, Y),
        ("MSELoss(reduction='sum')", nn.MSELoss(reduction="sum"), X, Y),
        ("MSELoss(), 4 copies of the sample, n = 8", nn.MSELoss(), X.repeat(4, 0), Y.repeat(4, 0)),
    ):
        e = cr.explain(model, X_, Y_, fn, "2.weight[1,0]")
        half = cr.explain(model, X_, Y_, half_sse, "2.weight[1,0]").total  # same batch
        r[f"w6 {label}"] = e.total
        say(f"  {label:<42} ∂C/∂w6 = {e.total:.9f} = {e.total / half:g} × ½·sum's {half:.9f}")

    say("\nOne gradient-descent step, η = 0.5, on the weights (the textbook keeps the biases)")
    opt = optim.SGD([params["0.weight"], params["2.weight"]], lr=0.5)
    opt.step()  # the gradients of the backward() above
    for name, (pname, idx) in WEIGHTS.items():
        new = float(params[pname].data[idx])
        r[f"new_{name}"] = new
        say(f"  {name}: {w[name]:.2f} - 0.5·({r[f'dE/d{name}']:.9f}) = {new:.9f}")
    with cr.no_grad():
        r["E_total_after"] = half_sse(model(X), Y).item()
    say(f"  E_total after the step: {r['E_total_after']:.9f} (before: {r['E_total']:.9f})")
    return r


if __name__ == "__main__":
    main()
