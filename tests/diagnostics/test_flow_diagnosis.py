"""The gradient-flow warnings as behaviour: they fire on the sick runs of issue 16 and stay quiet
on healthy ones, they name the real cause, and every piece of advice can be typed."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import TrainSettings, build_parser, main, run_training
from chainrule.training.summary import trivial_loss

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    ds = cr.datasets.load("digits")
    X = ((ds.X - ds.X.mean(0)) / (ds.X.std(0) + 1e-8)).astype(np.float32)
    return X, ds.y


def _train_options() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train = sub.choices["train"]
    return {s for a in train._actions for s in a.option_strings}


def assert_typeable(messages):
    """Every command-line option named in the advice exists; Python-only advice has a CLI twin."""
    options = _train_options()
    for m in messages:
        for flag in re.findall(r"(--[a-z][a-z-]*)", m):
            assert flag in options, (flag, m)
        if "clip_grad_norm=" in m:
            assert "--clip-grad-norm" in m, m


# ----- the yardstick ----------------------------------------------------------------------------
def test_trivial_loss_is_the_best_constant_prediction():
    y = np.repeat(np.arange(10), 7)
    value, what = trivial_loss(nn.CrossEntropyLoss(), y)
    assert value == pytest.approx(math.log(10)) and "class frequencies" in what
    y2 = np.array([0, 0, 0, 1])  # p = (3/4, 1/4)
    assert trivial_loss(nn.CrossEntropyLoss(), y2)[0] == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    )
    t = np.array([[1.0], [2.0], [3.0], [6.0]])
    assert trivial_loss(nn.MSELoss(), t)[0] == pytest.approx(np.var(t))
    assert trivial_loss(nn.L1Loss(), t)[0] == pytest.approx(np.mean(np.abs(t - 2.5)))
    # the mean of a constant prediction's loss really is that value
    const = cr.tensor(np.full((4, 1), t.mean(), np.float32))
    mse = nn.MSELoss()(const, cr.tensor(t.astype(np.float32))).item()
    assert mse == pytest.approx(trivial_loss(nn.MSELoss(), t)[0], rel=1e-6)
    assert trivial_loss(nn.MSELoss(reduction="sum"), t) is None


# ----- exploding: growth through depth ----------------------------------------------------------
def deep_relu_times_3(X, y, epochs=3):
    model = nn.mlp([64] + [64] * 8 + [10], "relu", rng=0)
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            p.data *= 3
    flow = cr.GradientFlow()
    hist = cr.fit(
        model, X, y, loss="cross_entropy", optimizer=cr.optim.SGD(model.parameters(), lr=1e-4),
        epochs=epochs, verbose=0, seed=0, callbacks=[flow],
    )  # fmt: skip
    return flow, hist


def test_exploding_fires_on_a_deep_relu_net_with_weights_times_3(digits):
    flow, hist = deep_relu_times_3(*digits)
    acts = [flow.records[n]["act_rms"][0] for n in flow.layers[:-1]]
    assert acts[-1] / acts[0] > 100  # the activations grow through depth
    assert hist.history["loss"][0] > 100 * math.log(10)  # far above the constant prediction
    found = [w for w in flow.warnings if w.startswith("Exploding")]
    assert len(found) == 1, flow.warnings
    w = found[0]
    assert "per layer through depth" in w and "predicting the class frequencies" in w
    # the real cause: weights 3× He's scale (measured 3.0 up to sampling)
    m = re.search(r"initial weights are ([\d.]+)× the He scale", w)
    assert m and 2.5 < float(m.group(1)) < 3.5, w
    # the summary no longer advises a larger learning rate
    assert "larger learning rate" not in hist.summary
    assert "times the loss of predicting the class frequencies" in hist.summary
    assert_typeable(flow.warnings)


def test_healthy_he_relu_net_is_not_flagged_exploding(digits):
    model = nn.mlp([64] + [64] * 8 + [10], "relu", rng=0)
    flow = cr.GradientFlow()
    cr.fit(model, *digits, loss="cross_entropy", optimizer="sgd", lr=1e-2, epochs=3, verbose=0,
           seed=0, callbacks=[flow])  # fmt: skip
    assert not any(w.startswith(("Exploding", "Large")) for w in flow.warnings), flow.warnings


def test_unscaled_regression_targets_with_adam_name_the_targets_not_the_learning_rate():
    ds = cr.datasets.load("plane", seed=0)
    X = ds.X.astype(np.float32)
    y = (ds.y.astype(np.float32) * 1000).reshape(-1, 1)
    model = nn.mlp([3, 32, 32, 1], "relu", rng=0)
    flow = cr.GradientFlow()
    hist = cr.fit(model, X, y, loss="mse", optimizer="adam", epochs=10, verbose=0, seed=0,
                  callbacks=[flow])  # fmt: skip
    assert max(flow.records[n]["grad_rms"][-1] for n in flow.layers) > 100  # large gradients
    text = " ".join(flow.warnings)
    assert not any(w.startswith("Exploding") for w in flow.warnings)
    assert "lower the learning rate" not in text
    assert "targets are unscaled" in text
    assert "targets are unscaled" in hist.summary
    # the same targets standardised: quiet
    flow2 = cr.GradientFlow()
    z = (y - y.mean()) / y.std()
    cr.fit(nn.mlp([3, 32, 32, 1], "relu", rng=0), X, z, loss="mse", optimizer="adam", epochs=10,
           verbose=0, seed=0, callbacks=[flow2])  # fmt: skip
    assert not flow2.warnings, flow2.warnings


# ----- vanishing: sustained decay with a loss that does not fall --------------------------------
VANISHING_RUN = dict(
    dataset="digits", layers=[32] * 6, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=15,
    gradient_flow=True, out=None, verbose=0,
)  # fmt: skip


def test_vanishing_fires_on_the_issue_run_and_says_what_to_type():
    res = run_training(TrainSettings(**VANISHING_RUN))
    flow = res.flow
    assert res.metrics["test"]["accuracy"] < 0.35  # the run did not learn
    ratios = [flow.gradient_ratio(e) for e in range(15)]
    assert np.median(ratios) < 1 / 20  # sustained decay toward the input
    found = [w for w in flow.warnings if w.startswith("Vanishing")]
    assert len(found) == 1, flow.warnings
    assert "median over 15 epochs" in found[0] and "loss is not falling" in found[0]
    assert "0: Linear(64→32)" in found[0]
    assert_typeable(flow.warnings)


@pytest.mark.parametrize(
    "overrides",
    [dict(activation="relu"), dict(activation="sigmoid", layers=[32, 32], optimizer="adam",
                                    lr=1e-2)],
)  # fmt: skip
def test_healthy_runs_stay_quiet(overrides):
    res = run_training(TrainSettings(**{**VANISHING_RUN, **overrides}))
    assert res.metrics["test"]["accuracy"] > 0.85
    assert res.flow.warnings == []


def test_init_option_reaches_the_model_and_is_validated(tmp_path, capsys):
    base = {**VANISHING_RUN, "epochs": 1, "gradient_flow": False}
    w_auto = run_training(TrainSettings(**base)).model[0].weight.data
    w_default = run_training(TrainSettings(**base, init="default")).model[0].weight.data
    # Glorot ×4 for sigmoid: U(±4·√(6/(64+32))) = U(±1); default: U(±1/√64) = U(±0.125)
    assert np.abs(w_auto).max() > 0.9 and np.abs(w_default).max() <= 0.125 + 1e-6
    assert main(["train", "--dataset", "iris", "--init", "nope", "--out", str(tmp_path)]) == 2
    assert "--init must be one of auto, he, glorot, lecun, default" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "gain 4" in " ".join(help_text.split())


# ----- divergence: quiet, capped, plain --------------------------------------------------------
def test_diverging_cli_run_is_quiet_capped_and_says_the_model_is_useless(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--optimizer", "sgd", "--lr", "5", "--epochs", "20",
            "--gradient-flow", "--no-plots", "--out", str(tmp_path / "run")]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [
        str(w.message) for w in caught
    ]
    assert "training diverged" in out
    assert "no better than chance" in out and "--lr 0.5" in out
    assert not re.search(r"\d{6,}\s?%", out), out  # no absurd percentages
    assert "more than 1000 % per epoch" in out
    lines = [ln.strip("- ").strip() for ln in out.splitlines()]
    assert_typeable([ln for ln in lines if "Try" in ln or "try" in ln or "lower" in ln])


def test_clip_grad_norm_option_tames_the_same_run(tmp_path, capsys):
    code = main(["train", "--dataset", "digits", "--optimizer", "sgd", "--lr", "5", "--epochs",
                 "5", "--clip-grad-norm", "1", "--no-plots", "-q", "--out",
                 str(tmp_path / "run")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "diverged" not in out
    acc = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert acc > 80
    bad = ["train", "--dataset", "iris", "--clip-grad-norm", "0", "--out", str(tmp_path)]
    assert main(bad) == 2


def test_diverging_regression_reports_plain_figures(tmp_path, capsys):
    args = ["train", "--dataset", "diabetes", "--optimizer", "sgd", "--lr", "3", "--epochs", "5",
            "--no-plots", "-q", "--out", str(tmp_path / "run")]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0
    out = capsys.readouterr().out
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not re.search(r"\d{12,}", out), out  # no 50-digit R²
    assert "no better than predicting the mean" in out or "not finite" in out
