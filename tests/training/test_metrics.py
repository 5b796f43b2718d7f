"""Metrics against scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.training import metrics as M

sk = pytest.importorskip("sklearn.metrics")


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    p[p == 3] = 2  # a class never predicted: zero_division=0
    assert M.accuracy(y, p) == pytest.approx(sk.accuracy_score(y, p))
    for mine, theirs in [
        (M.precision, sk.precision_score),
        (M.recall, sk.recall_score),
        (M.f1, sk.f1_score),
    ]:
        assert mine(y, p) == pytest.approx(theirs(y, p, average="macro", zero_division=0))
    np.testing.assert_array_equal(M.confusion_matrix(y, p), sk.confusion_matrix(y, p))
    labels = np.array(["cat", "dog", "cat", "emu"])
    preds = np.array(["cat", "cat", "cat", "emu"])
    np.testing.assert_array_equal(
        M.confusion_matrix(labels, preds), sk.confusion_matrix(labels, preds)
    )


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(3), 50)
    y = rng.integers(0, 3, 50)
    assert M.log_loss(y, proba) == pytest.approx(sk.log_loss(y, proba, labels=[0, 1, 2]))
    pb = rng.random(50)
    yb = rng.integers(0, 2, 50)
    assert M.log_loss(yb, pb) == pytest.approx(sk.log_loss(yb, pb))


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(40, 2))
    p = y + rng.normal(scale=0.3, size=(40, 2))
    assert M.mae(y, p) == pytest.approx(sk.mean_absolute_error(y, p))
    assert M.mse(y, p) == pytest.approx(sk.mean_squared_error(y, p))
    assert M.rmse(y, p) == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)))
    assert M.r2(y, p) == pytest.approx(sk.r2_score(y, p))
    assert M.r2(y[:, 0], p[:, 0]) == pytest.approx(sk.r2_score(y[:, 0], p[:, 0]))
