"""The three experiments of docs/playground.md do what the page says they do."""

from __future__ import annotations

import re
from pathlib import Path

from chainrule.playground.session import Session, decode_frame
from chainrule.playground.state import PlaygroundState

DOC = (Path(__file__).resolve().parents[2] / "docs" / "playground.md").read_text()
LINKS = re.findall(r"`#(dataset=[^`]+)`", DOC)


def _link(start: str) -> str:
    (link,) = [t for t in LINKS if t.startswith(start)]
    return link


def _run(session: Session, steps: int, every: int = 50) -> dict:
    for k in range(steps):
        session._one_step()
        if k % every == 0:  # frames feed the loss history the warnings read, as in the page
            session.frame()
    return decode_frame(session.frame())[0]


def test_the_page_links_parse():
    assert len(LINKS) == 5
    for link in LINKS:
        PlaygroundState.from_hash(link)


def test_1_learning_rate_too_high():
    circle = PlaygroundState.from_hash(_link("dataset=circle&layers=4,2"))
    assert circle.lr == 10
    h = _run(Session(circle), 600)
    assert h["trainLoss"] > 0.69  # worse than a coin toss
    assert any(w.startswith("saturated units") for w in h["warnings"])
    good = _run(
        Session(
            PlaygroundState.from_hash(
                _link("dataset=circle&layers=4,2").replace("lr=10", "lr=0.03")
            )
        ),
        2500,
    )
    assert good["testLoss"] < 0.1
    plane = Session(PlaygroundState.from_hash(_link("dataset=plane")))
    h = _run(plane, 150, every=10)
    assert h["warnings"][0].startswith("training stopped at step")
    assert plane.step < 100 and h["trainLoss"] is None  # diverged (the last weights are finite)
    calm = _run(
        Session(PlaygroundState.from_hash(_link("dataset=plane").replace("lr=1", "lr=0.03"))), 1500
    )
    assert calm["metrics"]["testR2"] > 0.9


def test_2_vanishing_gradients_with_deep_sigmoid_layers():
    s = Session(PlaygroundState.from_hash(_link("dataset=circle&layers=8")))
    h = _run(s, 800)
    assert abs(h["trainLoss"] - 0.693) < 0.01
    assert any(w.startswith("vanishing gradients") for w in h["warnings"])
    s.run_command("set", key="activation", value="tanh")  # without a reset
    assert s.step == 800
    h = _run(s, 2500)
    assert h["trainLoss"] < 0.3 and not any(w.startswith("vanishing") for w in h["warnings"])
    adam = Session(PlaygroundState.from_hash(_link("dataset=circle&layers=8")))
    _run(adam, 800)
    adam.run_command("set", key="optimizer", value="adam")  # sigmoid kept
    assert _run(adam, 2500)["trainLoss"] < 0.1


def test_3_overfitting_then_l2_regularisation():
    s = Session(PlaygroundState.from_hash(_link("dataset=spiral")))
    h = _run(s, 3000, every=200)
    assert h["trainLoss"] < 0.05 and h["testLoss"] > 0.5  # the noise learned
    overfit = h["testLoss"]
    s.run_command("set", key="reg", value="l2")
    s.run_command("set", key="regRate", value="0.01")
    h = _run(s, 3000, every=200)
    assert h["testLoss"] < overfit / 2 and h["trainLoss"] > 0.02
