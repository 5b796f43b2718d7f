"""`gradcheck_model` and `chainrule gradcheck` say how many entries were sampled of how many
(issue 16, point 13)."""

from __future__ import annotations

import numpy as np

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


def test_the_cli_says_sampled_of_total(tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--layers", "100", "--epochs", "1", "-q"]
    assert main([*args, "--out", str(out_dir)]) == 0
    capsys.readouterr()
    assert main(["gradcheck", "--model", str(out_dir), "--max-params", "500"]) == 0
    out = capsys.readouterr().out
    assert "gradient check OK: 500 sampled of 7 510 parameters" in out
