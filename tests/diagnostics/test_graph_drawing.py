"""draw_graph before and after backward (issues 13.4 and 16.10): the structure outlives
backward, drawing has no side effects on gradients, pictures without Graphviz."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.diagnostics import graph as graph_module
from chainrule.tensor import Released, ReleasedNode, Tensor


def setup():
    model = nn.mlp([3, 4, 2], "tanh", rng=0)
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1])
    return model, X, y, nn.CrossEntropyLoss()(model(X), y)


def labels(dot):
    return re.findall(r'\[label="([^"]*)"', dot)


def test_structure_survives_backward_and_only_values_are_released():
    model, _X, _y, loss = setup()
    names = dict(model.named_parameters())
    before = cr.draw_graph(loss, names=names)
    loss.backward()
    after = cr.draw_graph(loss, names=names)
    edges = re.findall(r"t\d+ -> t\d+", before)
    assert re.findall(r"t\d+ -> t\d+", after) == edges  # same edges, same order
    heads_before = [lab.split("\\n")[0] for lab in labels(before)]
    heads_after = [lab.split("\\n")[0] for lab in labels(after)]
    assert heads_before == heads_after  # same operations and leaves
    shapes = [re.search(r"shape \(([\d, ]*)\)", lab).group(1) for lab in labels(after)]
    assert shapes == [re.search(r"shape \(([\d, ]*)\)", lab).group(1) for lab in labels(before)]
    # parameters: value and gradient summaries equal to their arrays
    w = model[0].weight
    g = w.grad.astype(np.float64)
    lab = next(x for x in labels(after) if x.startswith("0.weight"))
    assert f"grad mean {g.mean():.3g}, range [{g.min():.3g}, {g.max():.3g}]" in lab
    assert "released by backward()" in after and "style=dashed" in after
    # the released structure holds no arrays: the memory is freed as before
    stack, seen = [loss], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, ReleasedNode):
            assert obj.op is not None and isinstance(obj.shape, tuple)
            assert not any(isinstance(getattr(obj, a), np.ndarray) for a in obj.__slots__)
            stack.extend(obj.inputs)
        elif isinstance(obj, Tensor) and obj.op is not None:
            assert type(obj._inputs) is Released
            stack.extend(obj._inputs)
        elif isinstance(obj, tuple):
            assert all(isinstance(d, int) for d in obj)  # a constant's shape only
    # a second backward still fails loudly, and asking the drawing for gradients too
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    with pytest.raises(ValueError, match="released"):
        cr.draw_graph(loss, backward=True)


def test_backward_true_computes_for_the_drawing_only_and_twice_is_the_same():
    model, _X, _y, loss = setup()
    dot1 = cr.draw_graph(loss, backward=True)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated
    dot2 = cr.draw_graph(loss, backward=True)
    assert dot1 == dot2
    # the drawn gradients are the true ones: compare with an explicit backward
    loss.backward(retain_graph=True)
    g = model[2].weight.grad.astype(np.float64).copy()
    assert f"grad mean {g.mean():.3g}, range [{g.min():.3g}, {g.max():.3g}]" in dot1
    # existing gradients are left exactly as they were (not doubled, not zeroed)
    grads = [p.grad.copy() for p in model.parameters()]
    cr.draw_graph(loss, backward=True)
    cr.draw_graph(loss, backward=True)
    for p, before in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, before)
    # intermediate nodes show their gradient too; the root's is 1
    assert re.search(r'div\\n[^"]*grad 1"', dot1)


def test_a_mean_loss_is_explained():
    model, X, y, loss = setup()
    dot = cr.draw_graph(loss)
    assert "÷ 5: the mean = sum ÷ n" in dot  # 5 rows
    assert "per-sample weights" not in dot  # a plain mean: sum ÷ n, nothing else
    weighted = nn.functional.cross_entropy(model(X), y, sample_weight=np.ones(5))
    assert "× per-sample weights (all 1)" in cr.draw_graph(weighted)
    loss.backward()
    after = cr.draw_graph(loss)
    assert "÷ n: the mean = sum ÷ n" in after
    mse = nn.MSELoss()(model(X), np.zeros((5, 2), np.float32))
    assert "Σ a ÷ n" in cr.draw_graph(mse) or "the mean = sum ÷ n" in cr.draw_graph(mse)


def test_without_graphviz_png_fails_with_a_way_out_and_svg_is_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    model, _X, _y, loss = setup()
    with pytest.raises(RuntimeError) as err:
        cr.draw_graph(loss, path=tmp_path / "g.png")
    msg = str(err.value)
    assert "returned" not in msg and "g.svg" in msg and graph_module.ONLINE_VIEWER in msg
    assert not (tmp_path / "g.png").exists()
    loss.backward()
    cr.draw_graph(loss, path=tmp_path / "g.svg", names=dict(model.named_parameters()))
    root = ET.parse(tmp_path / "g.svg").getroot()
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "0.weight" in texts and "softmax_cross_entropy" in texts
    n_boxes = len(list(root.iter("{http://www.w3.org/2000/svg}rect")))
    assert n_boxes == len(labels(cr.draw_graph(loss)))
    with pytest.raises(RuntimeError, match="renderer='auto'"):
        cr.draw_graph(loss, path=tmp_path / "h.svg", renderer="graphviz")
    with pytest.raises(ValueError, match="renderer"):
        cr.draw_graph(loss, renderer="nope")
