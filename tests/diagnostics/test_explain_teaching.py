"""cr.explain for a learner: no side effects, the loss's convention stated, biases, readable
numbers (issue 16, points 1, 2 and 12), on the textbook 2-2-2 sigmoid network (Mazur's example).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim

# ----- the textbook network: x = (0.05, 0.10), w1..w8 = .15 ... .55, b1 = .35, b2 = .60 -----
X = np.array([[0.05, 0.10]])
Y = np.array([[0.01, 0.99]])


def textbook(outputs=2):
    model = nn.Sequential(
        nn.Linear(2, 2, dtype=np.float64),
        nn.Sigmoid(),
        nn.Linear(2, outputs, dtype=np.float64),
        nn.Sigmoid(),
    )
    model[0].weight.data[...] = [[0.15, 0.25], [0.20, 0.30]]  # W[i, j]: input i -> unit j
    model[0].bias.data[...] = 0.35
    model[2].weight.data[...] = np.array([[0.40, 0.50], [0.45, 0.55]])[:, :outputs]
    model[2].bias.data[...] = 0.60
    return model


def half_sse(out, y):
    return 0.5 * ((out - y) ** 2).sum()


def sig(v):
    return 1 / (1 + math.exp(-v))


def by_hand():
    """The forward and backward pass of the textbook example, in plain floats."""
    h = [sig(0.05 * 0.15 + 0.10 * 0.20 + 0.35), sig(0.05 * 0.25 + 0.10 * 0.30 + 0.35)]
    o = [sig(h[0] * 0.40 + h[1] * 0.45 + 0.60), sig(h[0] * 0.50 + h[1] * 0.55 + 0.60)]
    d_o = [(o[0] - 0.01) * o[0] * (1 - o[0]), (o[1] - 0.99) * o[1] * (1 - o[1])]
    return h, o, d_o


# ----- point 1: explaining changes nothing ------------------------------------------------------
def _step(opt_name, explain, grads):
    rng = np.random.default_rng(0)
    Xb, yb = rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 3, 8)
    model = nn.mlp([3, 6, 5, 3], "tanh", dropout=0.2, rng=0)
    opt = {"sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9), "adam": optim.Adam}[opt_name](
        model.parameters()
    )
    model.train()
    model[2].eval()  # a sub-module (Dropout) in its own mode must keep it
    opt.zero_grad()
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(grads):  # 0: every .grad is None; 2: accumulated over two backward passes
        model.eval()
        loss_fn(model(Xb), yb).backward()
        model.train()
        model[2].eval()
    if grads == -1:  # zeros, not None: they must stay zeros
        for p in model.parameters():
            p.grad = np.zeros_like(p.data)
    xt = cr.tensor(Xb, requires_grad=True)
    if explain:
        before = [None if p.grad is None else p.grad for p in model.parameters()]
        copies = [None if g is None else g.copy() for g in before]
        cr.explain(model, xt, yb, loss_fn, "3.weight[1,0]", lr=0.1)
        cr.explain(model, Xb, yb, loss_fn, "6.bias[2]")
        after = [p.grad for p in model.parameters()]
        for b, c, a in zip(before, copies, after):
            assert a is b  # None stays None, the same array stays the same array...
            if c is not None:
                assert a.tobytes() == c.tobytes()  # ...with the same bits
        assert xt.grad is None  # the input tensor is not touched either
        modes = [m.training for m in model.modules()]
        assert modes[0] is True and model[2].training is False and model[5].training is True
    if grads > 0:
        opt.step()
    if grads == -1:
        assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    return [p.data.tobytes() for p in model.parameters()]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("grads", [-1, 0, 1, 2])
def test_explain_leaves_gradients_mode_and_the_next_step_unchanged(opt_name, grads):
    assert _step(opt_name, True, grads) == _step(opt_name, False, grads)


def test_the_issue_reproduction_zero_grad_backward_explain_step():
    def run(with_explain):
        model = textbook()
        opt = optim.SGD(model.parameters(), lr=0.5)
        opt.zero_grad()
        half_sse(model(X), Y).backward()
        if with_explain:
            cr.explain(model, X, Y, half_sse, "2.weight[1,0]")
        opt.step()
        return [p.data.copy() for p in model.parameters()]

    with_e, without = run(True), run(False)
    for a, b in zip(with_e, without):
        assert a.tobytes() == b.tobytes()
    assert with_e[2][1, 0] == pytest.approx(0.45 - 0.5 * 0.0826676278, rel=1e-9)  # it moved


# ----- point 2: the loss's convention -----------------------------------------------------------
def test_textbook_half_sum_gives_the_textbook_number():
    e = cr.explain(textbook(), X, Y, half_sse, "2.weight[1,0]")  # w6: hidden 2 -> output 1
    h, o, d_o = by_hand()
    assert e.total == pytest.approx(d_o[0] * h[1], rel=1e-12)
    assert round(e.total, 7) == 0.0826676
    assert e.dC_da[0] == pytest.approx(o[0] - 0.01, rel=1e-12)  # ∂(½(a - y)²)/∂a = a - y
    w5 = cr.explain(textbook(), X, Y, half_sse, "2.weight[0,0]")
    assert round(w5.total, 9) == 0.082167041  # the number the textbook prints for w5
    assert "your own function" in str(e)


def test_mse_conventions_and_where_the_1_over_n_goes():
    half = cr.explain(textbook(), X, Y, half_sse, "2.weight[1,0]").total
    mean = cr.explain(textbook(), X, Y, nn.MSELoss(), "2.weight[1,0]")
    total = cr.explain(textbook(), X, Y, nn.MSELoss(reduction="sum"), "2.weight[1,0]")
    # MSELoss = (1/n) Σ (ŷ - y)², n = 2 entries: ∂C/∂ŷ = 2(ŷ - y)/2 — the ½·sum's value here
    assert mean.total == pytest.approx(half, rel=1e-12)
    assert total.total == pytest.approx(2 * half, rel=1e-12)
    # with one output (the issue's 2-2-1 network) the mean has n = 1: twice the textbook value
    one = cr.explain(textbook(1), X, Y[:, :1], nn.MSELoss(), "2.weight[1,0]")
    assert one.total == pytest.approx(2 * half, rel=1e-12)
    assert round(one.total, 7) == 0.1653353
    text = str(mean)
    assert "MSELoss(reduction='mean'): C = (1/n)·Σ (ŷ - y)²" in text
    assert "n = 2 entries (1 sample × 2 outputs)" in text
    assert "∂C/∂ŷ = 2(ŷ - y)/n: the 1/n of the mean is inside ∂C/∂a_j" in text
    assert "× n/2 = 1" in str(mean) and "× n/2 = 0.5" in str(one)
    assert "a sum has no 1/n" in str(total)
    # a batch of 4 copies of the sample: the mean divides by 8 entries, each sample's error /4
    batch = cr.explain(textbook(), np.repeat(X, 4, 0), np.repeat(Y, 4, 0), "mse", "2.weight[1,0]")
    np.testing.assert_allclose(batch.dC_da, mean.dC_da[0] / 4, rtol=1e-12)
    assert batch.total == pytest.approx(mean.total, rel=1e-12)
    assert "n = 8 entries (4 samples × 2 outputs)" in str(batch)


def test_cross_entropy_states_its_mean_over_samples():
    rng = np.random.default_rng(0)
    model = nn.mlp([3, 4, 3], "tanh", rng=0, dtype=np.float64)
    Xb, yb = rng.normal(size=(6, 3)), rng.integers(0, 3, 6)
    e = cr.explain(model, Xb, yb, "cross_entropy", "2.bias[1]")
    assert "C = (1/n)·Σ -log softmax(ŷ)_y" in str(e) and "n = 6 samples" in str(e)
    assert "(softmax(ŷ) - onehot(y))/n" in str(e)
    weighted = cr.explain(
        model, rng.normal(size=(6, 3)), rng.integers(0, 3, 6),
        nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 3.0])), "2.bias[1]",
    )  # fmt: skip
    assert "Σ w_y" in str(weighted)


# ----- point 12: biases, the backpropagated sum, the update, signs ------------------------------
def test_a_bias_is_explained():
    model = textbook()
    e = cr.explain(model, X, Y, half_sse, "0.bias[1]", lr=0.5)
    h, _, d_o = by_hand()
    back = d_o[0] * 0.45 + d_o[1] * 0.55  # ∂C/∂a of hidden unit 2 = Σ_k δ_k w_jk
    assert e.dC_da[0] == pytest.approx(back, rel=1e-12)
    assert e.total == pytest.approx(back * h[1] * (1 - h[1]), rel=1e-12)
    assert e.dz_dw.tolist() == [1.0] and e.index == (1,)
    model.zero_grad()
    half_sse(model(X), Y).backward()
    assert e.engine_grad == model[0].bias.grad[1]
    text = str(e)
    assert text.startswith("∂C/∂b for 0.bias[1] (bias of unit 1)") and "∂z_j/∂b_j" in text
    assert "b_j - η·∂C/∂b_j = 0.35 - 0.5·" in text
    # the other ways to name it
    assert cr.explain(model, X, Y, half_sse, "0.bias", 1).total == e.total
    assert cr.explain(model, X, Y, half_sse, "0.bias", (1,)).total == e.total


def test_bias_and_weight_names_are_checked():
    model = textbook()
    with pytest.raises(ValueError, match=r"'2.bias\[1\]' \(layer position, unit\)"):
        cr.explain(model, X, Y, half_sse, "2.bias[1,0]")
    with pytest.raises(ValueError, match="must look like"):
        cr.explain(model, X, Y, half_sse, "2.weight[1]")
    with pytest.raises(ValueError, match=r"outside 2.bias of shape \(2,\)"):
        cr.explain(model, X, Y, half_sse, "2.bias[2]")
    nobias = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Tanh(), nn.Linear(2, 1))
    with pytest.raises(ValueError, match="built with bias=False"):
        cr.explain(nobias, X, Y[:, :1], half_sse, "0.bias[0]")
    with pytest.raises(ValueError, match="activations counted"):
        cr.explain(model, X, Y, half_sse, "1.weight[0,0]")


def _numbers(line):
    return [float(v) for v in re.findall(r"-?\d\.\d+e[+-]\d+", line)]


def test_the_backpropagated_error_shows_each_product_and_the_total():
    e = cr.explain(textbook(), X, Y, half_sse, "0.weight[1,0]")
    _, _, d_o = by_hand()
    lines = str(e).splitlines()
    prods = [ln for ln in lines if "δ_k·w_jk =" in ln]
    assert len(prods) == 2
    by_k = {int(re.search(r"k=(\d+)", ln).group(1)): _numbers(ln) for ln in prods}
    for k, w in ((0, 0.40), (1, 0.50)):  # hidden unit 1 feeds output k with w5 = .40, w7 = .50
        d, wk, p = by_k[k]
        assert d == pytest.approx(d_o[k], rel=1e-6) and wk == w
        assert p == pytest.approx(d_o[k] * w, rel=1e-6)
    total_line = next(ln for ln in lines if "total Σ_k δ_k·w_jk" in ln)
    total, dC_da = _numbers(total_line)
    assert total == pytest.approx(d_o[0] * 0.40 + d_o[1] * 0.50, rel=1e-6)
    assert total == dC_da == float(f"{e.dC_da[0]:.6e}")


def test_many_next_units_are_summarised_and_still_add_up():
    rng = np.random.default_rng(1)
    model = nn.mlp([3, 4, 9, 2], "tanh", rng=0, dtype=np.float64)
    Xb, yb = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    e = cr.explain(model, Xb, yb, "cross_entropy", "0.weight[0,1]")
    lines = str(e).splitlines()
    shown = [_numbers(ln)[-1] for ln in lines if "δ_k·w_jk =" in ln]
    rest = _numbers(next(ln for ln in lines if "more units, together" in ln))[0]
    total = _numbers(next(ln for ln in lines if "total Σ_k" in ln))[0]
    assert len(shown) == 5 and sum(shown) + rest == pytest.approx(total, abs=5e-6)
    assert total == pytest.approx(e.dC_da[0], rel=1e-6)


@pytest.mark.parametrize("lr", [0.1, 1e-4, 1e-6])
def test_the_update_shows_the_change_and_matches_an_sgd_step_in_float32(lr):
    rng = np.random.default_rng(0)
    model = nn.mlp([3, 8, 2], "tanh", rng=0)  # float32
    Xb, yb = rng.normal(size=(6, 3)).astype(np.float32), rng.integers(0, 2, 6)
    e = cr.explain(model, Xb, yb, "cross_entropy", "2.weight[1,0]", lr=lr)
    line = next(ln for ln in str(e).splitlines() if "update" in ln)
    old, new = re.search(r"= (-?[\d.]+) - .* = (-?[\d.]+)", line).groups()
    assert old != new  # enough digits to see the change
    digits = len(new.lstrip("-0.").replace(".", ""))
    opt = optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    nn.CrossEntropyLoss()(model(Xb), yb).backward()
    opt.step()
    assert e.updated == float(model[2].weight.data[1, 0])  # exactly what SGD does
    assert float(new) == pytest.approx(e.updated, rel=10.0 ** (1 - digits))
    assert "a change of" in line


def test_no_negative_zero_is_printed():
    model = textbook()
    Xz = np.array([[0.0, 0.10]])  # input 0 is 0: the product for w[0, j] is -0.0 (error < 0)
    e = cr.explain(model, Xz, Y, half_sse, "0.weight[0,1]", lr=0.5)
    assert e.dC_da[0] != 0 and e.per_sample[0] == 0
    assert "-0.0" not in str(e) and "0.000000e+00" in str(e)


def test_cli_help_says_what_the_layer_number_means(capsys):
    from chainrule.cli import main

    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = capsys.readouterr().out
    assert "position" in out and "activations counted" in out and "bias" in out


def test_the_loss_description_follows_the_loss_options():
    rng = np.random.default_rng(0)
    model = nn.mlp([3, 4, 3], "tanh", rng=0, dtype=np.float64)
    Xb, yb = rng.normal(size=(6, 3)), np.array([0, 1, 2, -100, 1, -100])
    e = cr.explain(model, Xb, yb, nn.CrossEntropyLoss(), "2.weight[1,0]")
    assert "n = 4 samples (2 ignored)" in str(e)
    model.zero_grad()
    nn.CrossEntropyLoss()(model(Xb), yb).backward()
    assert e.total == pytest.approx(model[2].weight.grad[1, 0], rel=1e-12)
    smooth = cr.explain(model, Xb, yb % 3, nn.CrossEntropyLoss(label_smoothing=0.1), "2.bias[0]")
    assert "ε = 0.1" in str(smooth)

    class MyMSE(nn.MSELoss):
        pass

    assert "C = (1/n)·Σ (ŷ - y)²" in str(cr.explain(textbook(), X, Y, MyMSE(), "2.bias[0]"))
    with pytest.raises(ValueError, match=r"one number \(reduction 'mean' or 'sum'\), got shape"):
        cr.explain(textbook(), X, Y, nn.MSELoss(reduction="none"), "2.bias[0]")
