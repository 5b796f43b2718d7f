"""Inside a fit where no user code runs between steps, the arena writes every step's
gradients into the same buffers (no allocation per step); gradients a user kept before or
after the fit are still never overwritten, and a user callback turns the reuse off."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.training import Callback


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def _setup(dropout=0.0):
    model = cr.nn.mlp([5, 8, 2], rng=0, dropout=dropout)
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt


@pytest.mark.parametrize("dropout", [0.0, 0.3])  # the fused and the eager plan
def test_a_fit_of_the_librarys_own_reuses_one_buffer(dropout):
    X, y = _data()
    model, opt = _setup(dropout)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=16,
           verbose=0, seed=0)  # fmt: skip
    before = opt.arena.grad_version
    stop = cr.callbacks.EarlyStopping(monitor="loss", patience=5)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
           verbose=0, seed=0, callbacks=[stop])  # fmt: skip
    # 8 steps: at most one renewal (on entry: the first fit's views were handed out)
    assert opt.arena.grad_version - before <= 1


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_kept_before_and_after_a_private_fit_stay(dropout):
    X, y = _data()
    model, opt = _setup(dropout)
    loss_fn = cr.nn.CrossEntropyLoss()
    opt.zero_grad()
    loss_fn(model(X[:8]), y[:8]).backward()
    opt.step()
    opt.zero_grad()
    loss_fn(model(X[8:16]), y[8:16]).backward()
    kept = [p.grad for p in model.parameters()]
    copies = [g.copy() for g in kept]
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
           verbose=0, seed=0)  # fmt: skip
    after = [p.grad for p in model.parameters()]
    after_copies = [g.copy() for g in after]
    for g, c in zip(kept, copies):
        np.testing.assert_array_equal(g, c)
    opt.zero_grad()
    loss_fn(model(X[:8]), y[:8]).backward()
    opt.step()
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=16,
           verbose=0, seed=1)  # fmt: skip
    for g, c in zip(after, after_copies):
        np.testing.assert_array_equal(g, c)


def test_a_user_callback_gets_fresh_arrays_every_step():
    X, y = _data()
    model, opt = _setup()
    seen = []

    class Keep(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append((model[0].weight.grad, model[0].weight.grad.copy()))

    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
           verbose=0, seed=0, callbacks=[Keep()])  # fmt: skip
    assert len(seen) == 8
    for g, c in seen:
        np.testing.assert_array_equal(g, c)
    assert len({id(g) for g, _ in seen}) == 8


def test_a_lambda_callback_is_the_users_code():
    X, y = _data()
    model, opt = _setup()
    seen = []

    def keep(batch, logs):
        seen.append((model[0].weight.grad, model[0].weight.grad.copy()))

    cb = cr.training.LambdaCallback(on_batch_end=keep)
    cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=16,
           verbose=0, seed=0, callbacks=[cb])  # fmt: skip
    assert len(seen) == 4
    for g, c in seen:
        np.testing.assert_array_equal(g, c)
