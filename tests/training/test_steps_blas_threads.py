"""Trainer.steps: one BLAS thread during each small step, the caller's threads between steps,
and the model's layers walked once per run (not at every step: the playground calls ``next()``
thousands of times a second)."""

import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.training import _threads


def _blas_threads(threadpoolctl):
    info = threadpoolctl.threadpool_info()
    return min(i["num_threads"] for i in info if i["user_api"] == "blas")


def test_steps_limit_blas_during_each_step_only_and_ask_the_size_once(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("CHAINRULE_BLAS_THREADS", raising=False)
    asked = []
    real = _threads.is_small_step
    monkeypatch.setattr(
        _threads,
        "is_small_step",
        lambda *a: asked.append(a) or real(*a),  # type: ignore[func-returns-value]
    )
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 30)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    during = []

    class Record(cr.training.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            during.append(_blas_threads(threadpoolctl))

    trainer = cr.Trainer(
        nn.mlp([30, 64, 2], rng=0), "cross_entropy", "sgd", lr=0.1, seed=0, verbose=0,
        callbacks=[Record()],
    )  # fmt: skip
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        between = []
        steps = []
        for logs in trainer.steps(X, y, epochs=2, batch_size=16):
            between.append(_blas_threads(threadpoolctl))
            steps.append(logs["step"])
        assert steps == list(range(8))
    assert during == [1] * 8  # a 30-64-2 step at batch 16 is small: one thread
    if (os.cpu_count() or 1) > 1:
        assert between == [2] * 8  # the caller's limit between steps
    assert len(asked) == 1  # the layers are walked once for the run, not per step
    assert asked[0][1] == (16, 30)
