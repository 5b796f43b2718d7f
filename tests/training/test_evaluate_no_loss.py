"""``evaluate`` without ``loss=``: class-label metrics on one output per class work (the
largest output is the class), what would be a guess is refused with what to pass, and
nothing to compute is an error rather than an empty dict."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    return X, rng.integers(0, 3, 40), rng.integers(0, 2, 40)


def test_label_metrics_take_the_largest_output_whatever_the_outputs_are(data):
    X, y, _ = data
    model = cr.nn.mlp([4, 3], rng=0)
    logits = cr.predict(model, X)
    expected = float(np.mean(logits.argmax(axis=1) == y))
    got = cr.evaluate(model, X, y, metrics=["accuracy", "f1"])
    assert got["accuracy"] == expected
    with_loss = cr.evaluate(model, X, y, loss="cross_entropy", metrics=["accuracy", "f1"])
    assert got["accuracy"] == with_loss["accuracy"] and got["f1"] == with_loss["f1"]
    # a softmax at the end (probabilities) or a log-softmax: the same classes
    probs = cr.nn.Sequential(model, cr.nn.Softmax(dim=1))
    assert cr.evaluate(probs, X, y, metrics=["accuracy"])["accuracy"] == expected


@pytest.mark.parametrize("metric", ["log_loss"])
def test_probability_metrics_without_a_loss_ask_for_one(data, metric):
    X, y, _ = data
    with pytest.raises(ValueError, match="give loss="):
        cr.evaluate(cr.nn.mlp([4, 3], rng=0), X, y, metrics=[metric])


def test_one_output_with_labels_is_ambiguous_and_says_so(data):
    X, _, yb = data
    model = cr.nn.mlp([4, 1], rng=0)
    with pytest.raises(ValueError, match="bce_with_logits"):
        cr.evaluate(model, X, yb, metrics=["accuracy"])
    z = cr.predict(model, X).ravel()
    got = cr.evaluate(model, X, yb, loss="bce_with_logits", metrics=["accuracy"])
    assert got["accuracy"] == float(np.mean((z > 0).astype(int) == yb))


def test_value_metrics_and_callables_compare_outputs_as_they_are(data):
    X, _, _ = data
    t = X[:, :1] * 2.0
    model = cr.nn.mlp([4, 1], rng=0)
    out = cr.predict(model, X)
    got = cr.evaluate(model, X, t, metrics=["mse"])
    assert got["mse"] == pytest.approx(float(np.mean((out - t) ** 2)), rel=1e-6)

    def worst(y_true, y_pred):
        return float(np.max(np.abs(np.asarray(y_true) - np.asarray(y_pred))))

    assert cr.evaluate(model, X, t, metrics=[worst])["worst"] == pytest.approx(
        float(np.max(np.abs(out - t))), rel=1e-6
    )


def test_nothing_to_compute_is_an_error(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="nothing to compute"):
        cr.evaluate(cr.nn.mlp([4, 3], rng=0), X, y)
