"""The examples run and do what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_engine_demo_learns_two_moons(capsys):
    accuracy = load("engine_demo").main(epochs=300)
    out = capsys.readouterr().out
    losses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("epoch")]
    assert losses[-1] < losses[0] / 10  # the loss falls
    assert accuracy >= 0.97


def test_digits_example_reaches_97_percent():
    import pytest

    pytest.importorskip("sklearn")
    accuracies = [load("digits_mlp").main(seed=s, verbose=False) for s in (0, 1)]
    assert min(accuracies) >= 0.97, accuracies


def test_vanishing_gradients_example(tmp_path):
    import pytest

    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    flows = load("vanishing_gradients").main(str(tmp_path / "v.png"), epochs=1)
    flagged = {k: any(w.startswith("Vanishing") for w in f.warnings) for k, f in flows.items()}
    assert flagged == {
        "sigmoid, standard init U(±1/√n)": True,
        "sigmoid, Glorot init": False,
        "ReLU, He init": False,
    }
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
