"""`gradcheck_model` and `chainrule gradcheck` say how many entries were sampled of how many
(issue 16, point 13); `chainrule explain` on biases, with the loss and the update (point 12)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import main


def test_the_message_says_sampled_of_total():
    rng = np.random.default_rng(0)
    model = nn.mlp([64, 100, 10], "tanh", rng=0)  # 64·100 + 100 + 100·10 + 10 = 7 510
    X, y = rng.normal(size=(4, 64)), rng.integers(0, 10, 4)
    res = cr.gradcheck_model(model, X, y, "cross_entropy", max_params=500)
    assert res.ok and res.n_checked == 500 and res.n_total == model.num_parameters() == 7510
    assert "gradient check OK: 500 sampled of 7 510 parameters" in str(res)
    small = nn.mlp([3, 4, 2], "tanh", rng=0)
    every = cr.gradcheck_model(small, X[:, :3], y % 2, "cross_entropy", max_params=500)
    assert every.n_checked == every.n_total == 26
    assert "gradient check OK: all 26 parameters" in str(every)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "--dataset", "digits", "--layers", "100", "--epochs", "1", "-q"]
    assert main([*args, "--out", str(out_dir)]) == 0
    return out_dir


def test_the_cli_says_sampled_of_total(digits_run, capsys):
    capsys.readouterr()
    assert main(["gradcheck", "--model", str(digits_run), "--max-params", "500"]) == 0
    out = capsys.readouterr().out
    assert "gradient check OK: 500 sampled of 7 510 parameters" in out


def test_the_cli_explains_a_bias_with_its_loss_and_update(digits_run, capsys):
    capsys.readouterr()
    args = ["explain", "--model", str(digits_run), "--dataset", "digits", "--rows", "8"]
    assert main([*args, "--weight", "2.bias[3]", "--lr", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("∂C/∂b for 2.bias[3] (bias of unit 3), over 8 sample(s):")
    assert "CrossEntropyLoss(reduction='mean')" in out and "n = 8 samples" in out
    old, new = re.search(r"update: b_j - η·∂C/∂b_j = (\S+) - .* = (\S+)", out).groups()
    assert old != new and "-0.000000e+00" not in out
    assert main([*args, "--weight", "2.bias[3,1]"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'2.bias[1]' (layer position, unit)" in err
