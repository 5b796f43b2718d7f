"""A Trainer used again (another fit, a model moved to float64 in between) and stop decisions
taken elsewhere (another process, a callback setting the flag directly, Keras's
``model.stop_training``) report what happened."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.training import Callback, Trainer


def _data(n=48):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


@pytest.mark.parametrize("dropout", [0.0, 0.2])  # the fused and the eager plan
def test_trainer_follows_the_model_to_float64(dropout):
    """Built on a float32 model that then moves to float64, the trainer trains in float64:
    the same weights as a trainer built on the float64 model (no batch rounded to float32)."""
    X, y = _data()
    results = []
    for move_after in (True, False):
        model = nn.mlp([4, 8, 2], rng=0, dropout=dropout)
        if not move_after:
            model.to(np.float64)
        tr = Trainer(model, "cross_entropy", "adam", seed=0, verbose=0)
        if move_after:
            model.to(np.float64)
        tr.fit(X, y, epochs=2, batch_size=16)
        assert tr.dtype == np.float64
        results.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*results):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


def test_train_step_alone_follows_the_model_dtype():
    X, y = _data(16)
    model = nn.mlp([4, 8, 2], rng=0)
    tr = Trainer(model, "cross_entropy", "sgd", verbose=0)
    model.to(np.float64)
    tr.train_step((X, y))
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    assert tr.dtype == np.float64


def test_a_second_fit_has_its_own_outcome():
    X, y = _data()
    model = nn.mlp([4, 8, 2], rng=0)
    tr = Trainer(model, "cross_entropy", "sgd", lr=1e30, seed=0, verbose=0)
    tr.fit(X * 1e6, y, epochs=2, batch_size=16)
    assert tr.stop_reason == "diverged" and tr.history.message
    for g in tr.optimizer.param_groups:
        g["lr"] = 0.01
    model.load_state_dict(nn.mlp([4, 8, 2], rng=0).state_dict())
    tr.fit(X, y, epochs=2, batch_size=16)
    assert tr.stop_reason == "epochs"
    assert tr.history.message == "" and tr.history.stop_reason == "epochs"


def test_each_fit_returns_its_own_history_as_keras():
    """A second fit on the same Trainer returns a new History of its own epochs (1, 2), as
    Keras's model.fit does; the first fit's record is left as it was."""
    X, y = _data()
    tr = Trainer(nn.mlp([4, 8, 2], rng=0), "cross_entropy", "adam", seed=0, verbose=0)
    h1 = tr.fit(X, y, epochs=2, batch_size=16)
    first = list(h1.history["loss"])
    h2 = tr.fit(X, y, epochs=3, batch_size=16)
    assert h2 is not h1 and tr.history is h2
    assert h1.epoch == [1, 2] and h1.history["loss"] == first
    assert h2.epoch == [1, 2, 3] and len(h2.history["loss"]) == 3
    assert "3 epochs" in h2.summary and h2.stop_reason == "epochs"


class _Remote(Trainer):
    """Another process asks to stop (what data-parallel training's agree_stop returns)."""

    def __init__(self, *args, ask=2, after=3, **kw):
        super().__init__(*args, **kw)
        self.ask, self.after = ask, after

    def agree_stop(self, flag):
        return max(flag, self.ask) if self.iterations >= self.after else flag


@pytest.mark.parametrize("ask", [1, 2])
def test_a_stop_agreed_from_another_process_says_so(ask):
    X, y = _data()
    tr = _Remote(nn.mlp([4, 8, 2], rng=0), "cross_entropy", seed=0, verbose=0, ask=ask)
    tr.fit(X, y, epochs=5, batch_size=16)
    assert tr.stop_reason == "peer"
    assert "another process" in tr.stop_detail
    assert tr.history.stop_reason == "peer"
    assert "another process" in tr.history.summary
    # stop after the epoch: the epoch of step 3 is recorded; at once: it is not
    assert len(tr.history.epoch) == (1 if ask == 1 else 0)


def test_stop_training_set_directly_and_keras_model_flag():
    X, y = _data()

    class Direct(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.stop_training = True  # the attribute itself, not the setter

    class KerasHabit(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.model.stop_training = True

    for cb in (Direct(), KerasHabit()):
        model = nn.mlp([4, 8, 2], rng=0)
        hist = cr.fit(model, X, y, loss="cross_entropy", epochs=4, verbose=0, callbacks=[cb])
        assert hist.epoch == [1]
        assert hist.stop_reason == "callback"
    # the model's flag is reset by the next fit
    model = nn.mlp([4, 8, 2], rng=0)
    model.stop_training = True
    hist = cr.fit(model, X, y, loss="cross_entropy", epochs=3, verbose=0)
    assert hist.epoch == [1, 2, 3]


def test_train_step_alone_refuses_a_batch_of_unequal_lengths():
    X, y = _data(16)
    tr = Trainer(nn.mlp([4, 8, 2], rng=0), "cross_entropy", verbose=0)
    with pytest.raises(
        ValueError, match=r"x has 16 rows, so y must have 16 rows; got y of shape \(15,\)"
    ):
        tr.train_step((X, y[:-1]))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\)"):
        tr.train_step((X, y, np.ones(3)))
