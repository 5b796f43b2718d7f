"""The bad-input matrix: every public entry point × every kind of bad input.

Each case must raise ValueError or TypeError (or scikit-learn's InvalidParameterError, a
ValueError) whose message names the argument or the column, the expectation and the value.
docs/errors.md lists the same table. The CLI's cases (one line, exit status 2) are in
tests/test_cli.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim

rng = np.random.default_rng(0)
X = rng.normal(size=(20, 3)).astype(np.float32)
Y = np.arange(20) % 2
NAN_X = X.copy()
NAN_X[4, 1] = np.nan
INF_Y = Y.astype(float)
INF_Y[3] = np.inf


def model():
    return nn.mlp([3, 4, 2], rng=0)


def fit(x, y, **kw):
    return cr.fit(model(), x, y, loss="cross_entropy", verbose=0, **kw)


def sk_classifier():
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPClassifier

    return MLPClassifier(max_iter=3)


def sk_regressor():
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPRegressor

    return MLPRegressor(max_iter=3)


def quiet(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run


CASES = {
    # ----- tensors and operations -----
    ("cr.tensor", "strings"): (lambda: cr.tensor(np.array(["a"])), "numeric"),
    ("cr.tensor", "integer requires_grad"): (
        lambda: cr.tensor(np.arange(3), requires_grad=True),
        "floating-point",
    ),
    ("add", "shapes that do not broadcast"): (
        lambda: cr.tensor(np.ones((3, 4))) + np.ones(3),
        r"add.*\(3, 4\).*\(3,\)",
    ),
    ("matmul", "misaligned shapes"): (
        lambda: cr.tensor(np.ones((3, 4))) @ cr.tensor(np.ones((5, 2))),
        r"matmul.*\(3, 4\).*\(5, 2\)",
    ),
    ("sum", "axis out of range"): (lambda: cr.tensor(np.ones((2, 3))).sum(axis=4), "axis"),
    ("reshape", "impossible shape"): (
        lambda: cr.tensor(np.ones((2, 3))).reshape(4, 2),
        r"reshape.*\(2, 3\)",
    ),
    ("max", "empty axis"): (lambda: cr.tensor(np.ones((0, 3))).max(axis=0), "empty"),
    ("backward", "non-scalar without seed"): (
        lambda: (cr.tensor([1.0, 2.0], requires_grad=True) * 2).backward(),
        "seed",
    ),
    ("gradcheck", "eps <= 0"): (
        lambda: cr.gradcheck(lambda t: t.sum(), np.ones(2), eps=0),
        "eps must be > 0",
    ),
    # ----- layers -----
    ("Linear", "zero size"): (lambda: nn.Linear(0, 2), "in_features must be a positive int, got 0"),
    ("Linear", "non-integer size"): (lambda: nn.Linear(3, 2.5), "out_features"),
    ("Linear", "wrong input width"): (
        lambda: nn.Linear(3, 2)(np.ones((4, 5))),
        r"Linear\(3, 2\) expected input with last dimension 3, got shape \(4, 5\)",
    ),
    ("Linear", "string input"): (lambda: nn.Linear(3, 2)(np.array([["a", "b", "c"]])), "numeric"),
    ("Dropout", "p > 1"): (lambda: nn.Dropout(2), "p must be <= 1, got 2"),
    ("Dropout", "negative p"): (lambda: nn.Dropout(-0.1), "p must be >= 0"),
    ("BatchNorm1d", "wrong width"): (
        lambda: nn.BatchNorm1d(3)(np.ones((4, 2))),
        r"BatchNorm1d\(3\) expected",
    ),
    ("BatchNorm1d", "one sample in training"): (
        lambda: nn.BatchNorm1d(3)(np.ones((1, 3))),
        "more than one value",
    ),
    ("mlp", "negative width"): (
        lambda: nn.mlp([3, -1, 2]),
        r"widths\[1\] must be a positive int, got -1",
    ),
    ("mlp", "unknown activation"): (lambda: nn.mlp([3, 2], "swish"), "activation must be one of"),
    ("load_state_dict", "wrong shape"): (
        lambda: model().load_state_dict(
            {**model().state_dict(), "0.weight": np.zeros((5, 4), np.float32)}
        ),
        r"'0\.weight' has shape \(5, 4\)",
    ),
    # ----- losses -----
    ("MSELoss", "(n, 1) against (n,)"): (
        lambda: nn.MSELoss()(cr.tensor(X[:, :1]), X[:, 0]),
        r"input shape \(20, 1\) and target shape \(20,\)",
    ),
    ("CrossEntropyLoss", "label out of range"): (
        lambda: nn.CrossEntropyLoss()(cr.tensor(X), np.full(20, 5)),
        "target contains class 5, but the input has 3 classes",
    ),
    ("CrossEntropyLoss", "string labels"): (
        lambda: nn.CrossEntropyLoss()(cr.tensor(X), np.array(["a"] * 20)),
        "integer class indices",
    ),
    ("CrossEntropyLoss", "non-integral labels"): (
        lambda: nn.CrossEntropyLoss()(cr.tensor(X), np.full(20, 0.5)),
        "integers",
    ),
    ("BCELoss", "probabilities outside [0, 1]"): (
        lambda: nn.BCELoss()(cr.tensor([1.5]), [1.0]),
        r"probabilities in \[0, 1\]",
    ),
    ("any loss", "sample_weight of wrong length"): (
        lambda: nn.MSELoss()(cr.tensor(X), X, sample_weight=np.ones(3)),
        r"sample_weight must have shape \(20,\)",
    ),
    ("any loss", "negative sample_weight"): (
        lambda: nn.MSELoss()(cr.tensor(X), X, sample_weight=-np.ones(20)),
        "non-negative",
    ),
    ("any loss", "unknown reduction"): (lambda: nn.MSELoss(reduction="avg"), "reduction must be"),
    ("HuberLoss", "delta <= 0"): (lambda: nn.HuberLoss(delta=0), "delta must be > 0"),
    # ----- optimizers and schedules -----
    ("SGD", "negative learning rate"): (
        lambda: optim.SGD(model().parameters(), lr=-1),
        "lr must be > 0, got -1",
    ),
    ("Adam", "zero learning rate"): (
        lambda: optim.Adam(model().parameters(), lr=0),
        "lr must be > 0, got 0",
    ),
    ("Adam", "beta outside [0, 1)"): (
        lambda: optim.Adam(model().parameters(), betas=(0.9, 1.0)),
        r"betas\[1\] must be < 1",
    ),
    ("SGD", "negative momentum"): (
        lambda: optim.SGD(model().parameters(), lr=0.1, momentum=-1),
        "momentum must be >= 0",
    ),
    ("any optimizer", "no parameters"): (lambda: optim.Adam([]), "empty parameter list"),
    ("StepLR", "step_size 0"): (
        lambda: optim.lr_scheduler.StepLR(optim.SGD(model().parameters(), lr=0.1), 0),
        "step_size must be >= 1",
    ),
    ("clip_grad_norm", "negative max_norm"): (
        lambda: optim.clip_grad_norm(model().parameters(), -1),
        "max_norm must be >= 0",
    ),
    # ----- fit, predict, evaluate -----
    ("fit", "NaN in X"): (
        lambda: fit(NAN_X, Y),
        r"X contains NaN or infinite values \(first at row 4, column 1\)",
    ),
    ("fit", "inf in y"): (
        lambda: cr.fit(model(), X, INF_Y, loss="mse", verbose=0),
        r"y contains NaN or infinite values \(first at row 3\)",
    ),
    ("fit", "0 rows"): (lambda: fit(X[:0], Y[:0]), "X has 0 samples"),
    ("fit", "0 columns"): (
        lambda: fit(X[:, :0], Y),
        r"expected input with last dimension 3, got shape \(20, 0\)",
    ),
    ("fit", "1-D X"): (lambda: fit(X[:, 0], Y), r"got shape \(20,\)"),
    ("fit", "string X"): (lambda: fit(X.astype(str), Y), "X must be numeric"),
    ("fit", "labels out of range"): (
        lambda: fit(X, Y + 5),
        "target contains class 5, but the input has 2 classes",
    ),
    ("fit", "X and y lengths differ"): (
        lambda: fit(X, Y[:5]),
        "X and y have different numbers of samples: 20 and 5",
    ),
    ("fit", "sample_weight length"): (
        lambda: fit(X, Y, sample_weight=np.ones(3)),
        r"sample_weight must have shape \(20,\)",
    ),
    ("fit", "negative sample_weight"): (
        lambda: fit(X, Y, sample_weight=-np.ones(20)),
        "non-negative",
    ),
    ("fit", "class_weight for unseen class"): (
        lambda: fit(X, Y, class_weight={9: 1.0}),
        "class_weight names classes not in y",
    ),
    ("fit", "batch_size 0"): (lambda: fit(X, Y, batch_size=0), "batch_size must be >= 1, got 0"),
    ("fit", "negative epochs"): (lambda: fit(X, Y, epochs=-1), "epochs must be >= 0"),
    ("fit", "zero learning rate"): (lambda: fit(X, Y, lr=0), "lr must be > 0, got 0"),
    ("fit", "validation_split 1"): (
        lambda: fit(X, Y, validation_split=1.0),
        "validation_split must be < 1",
    ),
    ("fit", "unknown loss"): (
        lambda: cr.fit(model(), X, Y, loss="hinge", verbose=0),
        "unknown loss 'hinge'",
    ),
    ("fit", "unknown metric"): (lambda: fit(X, Y, metrics=["auc_roc"]), "unknown metric"),
    ("predict", "wrong feature count"): (
        lambda: cr.predict(model(), X[:, :2]),
        r"expected input with last dimension 3, got shape \(20, 2\)",
    ),
    ("predict", "NaN in X"): (
        lambda: cr.predict(model(), NAN_X),
        r"X contains NaN.*row 4, column 1",
    ),
    ("predict", "0 rows"): (lambda: cr.predict(model(), X[:0]), "X has 0 samples.*predict"),
    ("predict", "string X"): (lambda: cr.predict(model(), X.astype(str)), "X must be numeric"),
    ("evaluate", "lengths differ"): (
        lambda: cr.evaluate(model(), X, Y[:3], "cross_entropy"),
        "different numbers of samples",
    ),
    # ----- model files -----
    ("save", "custom module"): (
        lambda: cr.save(type("Mine", (nn.Module,), {})(), "x.chainrule"),
        r"Mine is neither a chainrule layer nor registered.*@cr\.nn\.register_module",
    ),
    ("fit", "checkpoint of a custom module"): (
        lambda: cr.fit(
            type("Mine", (nn.Sequential,), {})(nn.Linear(3, 2)),
            X,
            Y,
            loss="cross_entropy",
            verbose=0,
            callbacks=[cr.ModelCheckpoint("c.chainrule")],
        ),
        r"checkpoints need a model file.*register_module",
    ),
    ("fit", "batches without targets"): (
        lambda: cr.fit(model(), iter([X, X]), loss="cross_entropy", verbose=0),
        r"batch 0 is a ndarray, not an \(x, y\) pair",
    ),
    ("optim.Adam", "the model itself"): (
        lambda: optim.Adam(model()),
        r"got the model itself \(Sequential\); pass model\.parameters\(\)",
    ),
    ("Module.to", "a GPU"): (lambda: model().to("cuda"), "CPU only"),
    ("Module.load_state_dict", "transposed Linear weight"): (
        lambda: model().load_state_dict({**model().state_dict(), "0.weight": np.zeros((4, 3))}),
        r"transpose.*from_torch_state_dict",
    ),
    ("predict", "tuple output"): (
        lambda: cr.predict(type("Two", (nn.Module,), {"forward": lambda s, x: (x, x)})(), X),
        r"returned a tuple of 2 outputs",
    ),
    ("load", "not a file"): (lambda: cr.load("."), "directory"),
    # ----- data -----
    ("datasets.load", "unknown name"): (lambda: cr.datasets.load("mnist-9000"), "unknown data set"),
    ("moons", "negative noise"): (lambda: cr.datasets.moons(noise=-1), "noise must be >= 0"),
    ("train_test_split", "test_size 1"): (
        lambda: cr.data.train_test_split(Y, 1.0),
        "test_size must be < 1",
    ),
    # ----- scikit-learn estimators -----
    ("MLPClassifier.fit", "NaN in X"): (lambda: sk_classifier().fit(NAN_X, Y), "NaN"),
    ("MLPClassifier.fit", "continuous y"): (
        lambda: sk_classifier().fit(X, X[:, 0]),
        "Unknown label type",
    ),
    ("MLPClassifier.fit", "lengths differ"): (
        lambda: sk_classifier().fit(X, Y[:4]),
        "inconsistent numbers of samples",
    ),
    ("MLPClassifier.fit", "negative alpha"): (
        lambda: type(sk_classifier())(alpha=-1).fit(X, Y),
        "'alpha' parameter",
    ),
    ("MLPClassifier.predict", "wrong feature count"): (
        quiet(lambda: sk_classifier().fit(X, Y).predict(X[:, :2])),
        "X has 2 features",
    ),
    ("MLPClassifier.partial_fit", "unseen labels"): (
        quiet(lambda: sk_classifier().partial_fit(X, Y, classes=[0, 1]).partial_fit(X, Y + 7)),
        "classes not in",
    ),
    ("MLPRegressor.fit", "0 rows"): (lambda: sk_regressor().fit(X[:0], Y[:0]), "0 sample"),
    ("MLPRegressor.fit", "zero batch_size"): (
        lambda: type(sk_regressor())(batch_size=0).fit(X, Y),
        "'batch_size' parameter",
    ),
}


@pytest.mark.parametrize("key", list(CASES), ids=[f"{a} | {b}" for a, b in CASES])
def test_bad_input_is_answered(key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call, message = CASES[key]
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_matrix_size():
    # (entry point × bad input) cases covered here; 19 more CLI cases in tests/test_cli.py
    assert len(CASES) >= 70
