"""lr-find sweeps the model that will train (issue 16.8) and says what its numbers are."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.diagnostics as diagnostics
from chainrule import nn
from chainrule.cli import main


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def test_weight_decay_and_clipping_reach_the_sweep():
    X, y = data()
    model = nn.mlp([5, 8, 2], "relu", rng=0)
    kw = dict(optimizer="sgd", num_steps=30, start_lr=1e-2, end_lr=1.0, seed=0)
    plain = cr.lr_find(model, X, y, "cross_entropy", **kw)
    decayed = cr.lr_find(model, X, y, "cross_entropy", weight_decay=5.0, **kw)
    clipped = cr.lr_find(model, X, y, "cross_entropy", clip_grad_norm=1e-6, **kw)
    assert plain.raw_losses[0] == decayed.raw_losses[0]  # same first batch, same weights
    assert not np.allclose(plain.raw_losses[5:], decayed.raw_losses[5 : len(plain.raw_losses)])
    # with a (tiny) clip the weights barely move: the loss stays at its first values
    assert np.ptp(clipped.raw_losses[:5]) < np.ptp(plain.raw_losses[:30])
    assert decayed.settings["weight decay"] == 5.0 and clipped.settings["gradient clipping"]
    with pytest.raises(ValueError, match="weight_decay"):
        cr.lr_find(model, X, y, "cross_entropy", weight_decay=-1.0)


def test_text_reads_as_a_learning_rate():
    X, y = data()
    res = cr.lr_find(nn.mlp([5, 8, 2], "relu", rng=0), X, y, "cross_entropy", num_steps=40)
    text = str(res)
    assert f"lowest ({res.losses.min():.4g}) at learning rate {res.best_lr:.2e}" in text
    assert f"suggested learning rate: {res.suggestion:.2e}" in text
    assert "lowest loss at" not in text


def test_cli_lr_find_uses_the_training_options(monkeypatch, capsys):
    seen = {}
    real = diagnostics.lr_find

    def spy(model, X, y, loss, **kw):
        seen.update(model=model, X=X, kw=kw)
        return real(model, X, y, loss, **{**kw, "num_steps": 20})

    monkeypatch.setattr(diagnostics, "lr_find", spy)
    code = main(["lr-find", "--dataset", "iris", "--layers", "12,6", "--dropout", "0.3",
                 "--weight-decay", "0.01", "--batch-size", "17", "--clip-grad-norm", "2",
                 "--optimizer", "sgd", "--test-split", "0.2", "--batch-norm"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    model = seen["model"]
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(4, 12), (12, 6), (6, 3)]
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.3, 0.3]
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    kw = seen["kw"]
    assert kw["batch_size"] == 17 and kw["weight_decay"] == 0.01
    assert kw["clip_grad_norm"] == 2.0 and kw["optimizer"] == "sgd"
    assert len(seen["X"]) == 120  # the training rows only (150 - 20 %), as train uses
    assert "at learning rate" in out and "train with" in out
