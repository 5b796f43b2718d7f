"""chainrule.sklearn: scikit-learn's own estimator checks, tools, parity with its MLP."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from chainrule.sklearn import MLPClassifier, MLPRegressor


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


def test_fitted_attributes_like_sklearn(iris):
    X, y = iris
    clf = quiet(
        lambda: MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=50, random_state=0).fit(X, y)
    )
    assert list(clf.classes_) == [0, 1, 2] and clf.n_features_in_ == 4 and clf.n_outputs_ == 3
    assert clf.n_layers_ == 4 and clf.out_activation_ == "softmax"
    assert [c.shape for c in clf.coefs_] == [(4, 8), (8, 6), (6, 3)]
    assert [b.shape for b in clf.intercepts_] == [(8,), (6,), (3,)]
    assert len(clf.loss_curve_) == clf.n_iter_ == 50 and clf.t_ == 50 * 150
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.history_["loss"] == pytest.approx(clf.loss_curve_)
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X), rtol=1e-10)


def test_string_labels_binary_multilabel_and_multioutput():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    yb = np.where(X[:, 0] > 0, "yes", "no")
    clf = quiet(lambda: MLPClassifier(max_iter=80, random_state=0).fit(X, yb))
    assert clf.out_activation_ == "logistic" and set(clf.predict(X)) <= {"yes", "no"}
    assert clf.score(X, yb) > 0.9 and clf.predict_proba(X).shape == (120, 2)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0], axis=1).astype(int)
    ml = quiet(lambda: MLPClassifier(max_iter=80, random_state=0).fit(X, Y))
    assert ml.predict(X).shape == (120, 2) and ml.score(X, Y) > 0.8
    Yr = np.stack([X[:, 0] * 2, X[:, 1] - X[:, 2]], axis=1)
    reg = quiet(lambda: MLPRegressor(max_iter=150, random_state=0).fit(X, Yr))
    assert reg.predict(X).shape == (120, 2) and reg.score(X, Yr) > 0.8


def test_tools_grid_search_pipeline_clone_pickle_and_model_files(iris, tmp_path):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import chainrule as cr

    X, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    grid = quiet(lambda: GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3).fit(X, y))
    assert grid.best_score_ > 0.85
    clf = quiet(lambda: MLPClassifier(max_iter=60, random_state=0, dropout=0.1).fit(X, y))
    assert clone(clf).get_params() == clf.get_params()
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    cr.save(clf, tmp_path / "clf.chainrule")
    loaded = cr.load(tmp_path / "clf.chainrule")
    assert isinstance(loaded, MLPClassifier) and loaded.n_iter_ == clf.n_iter_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    reg = quiet(lambda: MLPRegressor(max_iter=30, random_state=0).fit(X[:, :3], X[:, 3]))
    cr.save(reg, tmp_path / "reg.chainrule")
    np.testing.assert_array_equal(
        cr.load(tmp_path / "reg.chainrule").predict(X[:, :3]), reg.predict(X[:, :3])
    )


def test_partial_fit_warm_start_and_solvers(iris):
    X, y = iris
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(5):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 5
    with pytest.raises(AttributeError, match="stochastic"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=[0, 1, 2])
    ws = quiet(lambda: MLPClassifier(max_iter=10, warm_start=True, random_state=0).fit(X, y))
    first = [c.copy() for c in ws.coefs_]
    quiet(lambda: ws.fit(X, y))
    assert ws.n_iter_ == 20 and not np.array_equal(first[0], ws.coefs_[0])
    for solver in ("lbfgs", "sgd"):
        est = quiet(
            lambda s=solver: MLPClassifier(
                solver=s, max_iter=200, random_state=0, learning_rate_init=0.01
            ).fit(X, y)
        )
        assert est.score(X, y) > 0.9, solver
    es = quiet(lambda: MLPClassifier(early_stopping=True, max_iter=300, random_state=0).fit(X, y))
    assert es.best_loss_ is None and len(es.validation_scores_) == es.n_iter_
    assert es.best_validation_score_ == max(es.validation_scores_)


def test_validation_like_sklearn(iris):
    X, y = iris
    from sklearn.utils._param_validation import InvalidParameterError

    for bad in [
        dict(activation="swish"),
        dict(solver="newton"),
        dict(alpha=-1),
        dict(max_iter=0),
        dict(learning_rate_init=0),
        dict(momentum=2),
    ]:
        with pytest.raises(InvalidParameterError):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        quiet(lambda: MLPClassifier(max_iter=5).fit(X, y)).predict(X[:, :2])
