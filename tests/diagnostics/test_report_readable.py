"""Reports and plots a student can read (issues 16.11 and 13.6)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import TrainSettings, run_training

pytest.importorskip("matplotlib")


def moons_run(tmp_path, name, **kw):
    s = TrainSettings(dataset="moons", layers=[16, 16], epochs=3, report=True, verbose=0,
                      out=str(tmp_path / name), **kw)  # fmt: skip
    res = run_training(s)
    return res, (tmp_path / name / "report.html").read_text()


def test_report_has_settings_decision_boundary_and_no_nan(tmp_path):
    res, page = moons_run(tmp_path, "a")
    assert "decision_boundary" in res.files
    assert "<h2>Decision boundary (test set)</h2>" in page
    assert re.search(r"alt='Decision boundary \(test set\)' src='data:image/png;base64,", page)
    assert "<h2>Settings</h2>" in page
    for label, value in [("activation", "relu"), ("learning rate", "0.001"), ("seed", "0"),
                         ("hidden layers", "16, 16"), ("data", "moons")]:  # fmt: skip
        assert f"<tr><th>{label}</th><td>{value}</td></tr>" in page, label
    assert "auto: He (Kaiming) uniform" in page  # the initialisation is visible
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"\bnan\b", text.lower())
    # layers named as built; the output layer's dead/saturated cells say why they are empty
    assert "<td>0: Linear(2→16)</td>" in page and "<td>4: Linear(16→2)</td>" in page
    out_row = re.search(r"<tr><td>4: Linear\(16→2\)</td>(.*?)</tr>", page).group(1)
    assert out_row.count("—") == 2 and "no activation after this layer" in page
    relu_row = re.search(r"<tr><td>0: Linear\(2→16\)</td>(.*?)</tr>", page).group(1)
    assert "ReLU does not saturate" in relu_row and re.search(r"<td>\d+%</td>", relu_row)
    # two runs with different settings give distinguishable reports
    _, other = moons_run(tmp_path, "b", activation="tanh", lr=0.01)
    settings = lambda p: p[p.index("<h2>Settings</h2>") : p.index("<h2>How training")]
    assert settings(page) != settings(other)
    assert "<tr><th>activation</th><td>tanh</td></tr>" in other
    assert "Glorot (Xavier) uniform" in other


def test_flow_plot_labels_and_short_run_ticks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = nn.mlp([4, 8, 8, 3], "sigmoid", rng=0)
    flow = cr.GradientFlow()
    hist = cr.fit(model, X, y, loss="cross_entropy", epochs=3, verbose=0, callbacks=[flow])
    assert flow.labels == {"0": "0: Linear(4→8)", "2": "2: Linear(8→8)", "4": "4: Linear(8→3)"}
    fig = flow.plot()
    ax1, ax2 = fig.axes[:2]
    assert [t.get_text() for t in ax1.get_legend().get_texts()] == list(flow.labels.values())
    assert ax2.get_ylabel() == "activation value"
    assert [t.get_text() for t in ax2.get_xticklabels()] == [
        "0: Linear(4→8)\n→ Sigmoid",
        "2: Linear(8→8)\n→ Sigmoid",
    ]
    assert list(ax1.get_xticks()) == [1, 2, 3]  # whole epochs, not 1.5 or 2.25
    curves = hist.plot()
    assert list(curves.axes[0].get_xticks()) == [1, 2, 3]
    # what does not apply says why
    assert flow.cell("4", "dead_fraction")[0] is None
    assert "no activation" in flow.cell("4", "saturated_fraction")[1]
    assert "cannot die" in flow.cell("0", "dead_fraction")[1]
    value, why = flow.cell("0", "saturated_fraction")
    assert why == "" and 0 <= value <= 1
