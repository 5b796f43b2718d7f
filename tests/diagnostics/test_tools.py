"""lr_find, draw_graph, gradcheck_model, bench_grad, the HTML report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def test_lr_find_leaves_the_model_alone_and_its_suggestion_trains_digits():
    pytest.importorskip("sklearn")
    from chainrule.data import train_test_split

    ds = cr.datasets.load("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    mean, std = ds.X[tr].mean(0), ds.X[tr].std(0) + 1e-8
    Xtr, Xte = (ds.X[tr] - mean) / std, (ds.X[te] - mean) / std
    model = nn.mlp([64, 128, 10], "relu", rng=0)
    before = model.state_dict()
    res = cr.lr_find(model, Xtr, ds.y[tr], "cross_entropy", num_steps=150, seed=0)
    for k, v in model.state_dict().items():
        assert v.tobytes() == before[k].tobytes()
    assert 1e-5 < res.suggestion < 1.0 and res.suggestion <= res.best_lr
    assert len(res.lrs) == len(res.losses) and np.all(np.diff(res.lrs) > 0)
    assert "suggested learning rate" in str(res)
    cr.fit(
        model, Xtr, ds.y[tr], loss="cross_entropy", lr=res.suggestion, epochs=40, verbose=0, seed=0
    )
    acc = float((cr.predict(model, Xte).argmax(1) == ds.y[te]).mean())
    assert acc >= 0.97, (res.suggestion, acc)


def test_draw_graph_before_and_after_backward(tmp_path):
    model = nn.mlp([3, 4, 2], "tanh", rng=0)
    X, y = np.ones((5, 3), np.float32), np.array([0, 1, 0, 1, 1])
    loss = nn.CrossEntropyLoss()(model(X), y)
    dot = cr.draw_graph(loss, names=dict(model.named_parameters()))
    assert dot.startswith("digraph") and "linear" in dot and "tanh" in dot
    assert "0.weight" in dot and "(3, 4)" in dot and "gradients not computed yet" in dot
    assert dot.count("->") >= 6
    dot2 = cr.draw_graph(loss, backward=True, path=tmp_path / "g.dot")
    assert "grad mean" in dot2 and "not computed" not in dot2
    assert (tmp_path / "g.dot").read_text() == dot2
    loss.backward()
    after = cr.draw_graph(loss)  # the structure outlives backward (issue 13.4)
    assert after.count("->") == dot.count("->") and "released by backward()" in after
    with pytest.raises(ValueError, match="released"):
        cr.draw_graph(loss, backward=True)  # asks for values that are gone


def test_gradcheck_model_passes_and_catches_a_wrong_rule(monkeypatch):
    from chainrule import ops

    rng = np.random.default_rng(0)
    model = nn.mlp([4, 6, 3], "tanh", rng=0)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    res = cr.gradcheck_model(model, X, y, nn.CrossEntropyLoss())
    assert res.ok and res.n_checked == model.num_parameters() and "OK" in str(res)
    assert model[0].weight.dtype == np.float32  # the model passed in is untouched
    wrong = dataclasses.replace(ops.tanh_p, vjps=(lambda g, out, saved, x: g * (1 - out),))
    monkeypatch.setattr(ops.elementwise, "tanh_p", wrong)
    bad = cr.gradcheck_model(model, X, y, nn.CrossEntropyLoss())
    assert not bad.ok and bad.worst_parameter in ("0.weight", "0.bias") and "MISMATCH" in str(bad)


def test_bench_grad_rows_are_medians_and_mark_extrapolation(monkeypatch):
    # no timing assertions: a fake clock makes every measurement's duration known
    from chainrule.diagnostics import numerics

    durations = iter([0.005, 0.001, 0.003, 0.009, 0.002] * 100)

    class Clock:
        now = 0.0

        def perf_counter(self):
            Clock.now += next(durations) if Clock.started else 0.0
            Clock.started = not Clock.started
            return Clock.now

        started = False

    monkeypatch.setattr(numerics, "time", Clock())
    rows = cr.diagnostics.bench_grad([[3, 4, 2], [20, 40, 5]], max_fd_params=50, repeats=5)
    small, big = rows
    assert small["parameters"] == 3 * 4 + 4 + 4 * 2 + 2 and big["parameters"] == 1045
    assert small["backprop_s"] == pytest.approx(0.003)  # the median of (5, 1, 3, 9, 2) ms
    assert small["backprop_min_s"] == pytest.approx(0.001)
    assert small["backprop_max_s"] == pytest.approx(0.009)
    assert small["extrapolated"] == 0.0 and small["fd_params_timed"] == 26
    assert big["extrapolated"] == 1.0 and big["fd_params_timed"] == 50
    # finite differences on 50 parameters, scaled to all 1045: median duration × 1045 / 50
    assert big["finite_diff_s"] == pytest.approx(0.003 * 1045 / 50)
    assert big["ratio"] == pytest.approx(big["finite_diff_s"] / big["backprop_s"])
    text = cr.diagnostics.format_bench_grad(rows)
    lines = text.splitlines()
    assert "*" not in lines[1] and lines[2].count("*") == 1  # only the extrapolated row
    assert "includes the forward pass" in text and "medians of 5 repeats" in text
    assert "timed on 50 randomly chosen parameters" in text
    pytest.importorskip("matplotlib")
    fig = cr.diagnostics.bench_grad_figure(rows)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "finite differences, extrapolated" in labels
    assert "backpropagation (forward + backward pass)" in labels


def test_html_report(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)).astype(np.float32), rng.integers(0, 2, 100)
    flow = cr.GradientFlow()
    h = cr.fit(
        nn.mlp([4, 8, 2], rng=0), X, y, loss="cross_entropy", epochs=3, verbose=0, callbacks=[flow]
    )
    path = cr.diagnostics.write_report(tmp_path / "r.html", h, flow, {"accuracy": 0.5})
    with open(path) as fh:
        text = fh.read()
    assert text.count("data:image/png;base64,") == 2 and "Gradient flow" in text
    assert "src='http" not in text  # self-contained
