"""Drop-in scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

Change ``from sklearn.neural_network import MLPClassifier`` to
``from chainrule.sklearn import MLPClassifier`` and keep the code: every constructor parameter of
scikit-learn's estimators has the same meaning, default and validation, and the same fitted
attributes are set. Underneath, the estimators are thin: they build a chainrule model
(``nn.mlp``), a loss with scikit-learn's L2 penalty, an optimizer, and train with chainrule's fit
loop (``lbfgs`` runs ``scipy.optimize`` on chainrule's loss and gradient).

Extras: more activations (``leaky_relu``, ``elu``, ``gelu``, ``softplus``), ``dropout``,
``dtype`` (float32 inputs train in float32 unless told otherwise), ``class_weight``,
``restore_best_weights`` and, for the regressor, ``scale_target`` (standardise the target for
training; on by default — scikit-learn's MLPRegressor scores below 0 on diabetes without it).
Needs scikit-learn: ``pip install "chainrule[datasets]"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

from ._numerics import log_sigmoid, log_softmax, sigmoid, softmax
from ._sklearn import _BaseMLP, _PenalizedLoss, _plain  # noqa: F401 - _PenalizedLoss: tests import it here
from .io import register_loader
from .tensor import no_grad

__all__ = ["MLPClassifier", "MLPRegressor"]


def from_model_file(model: Any, info: dict[str, Any]) -> Any:
    """Rebuild an estimator saved with ``cr.save`` (called by ``cr.load``)."""
    classes: dict[str, Any] = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
    cls = classes.get(str(info.get("class")))
    if cls is None:
        raise ValueError(f"unknown estimator class {info.get('class')!r}")
    params = dict(info["params"])
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if isinstance(params.get("class_weight"), list):
        params["class_weight"] = {a: b for a, b in params["class_weight"]}
    est = cls(**params)
    est._model = model
    est._optimizer = None
    est._rng = np.random.default_rng(0)
    state = info["state"]
    for k in cls._STATE:
        setattr(est, k, state.get(k))
    if "feature_names_in_" in state:
        est.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
    est._restore_extra(state)
    return est


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's interface, trained by chainrule.

    Same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPClassifier``; extras: ``dropout``, ``dtype``,
    ``restore_best_weights``, ``class_weight`` (dict or "balanced") and the activations
    leaky_relu, elu, gelu, softplus. Binary and multilabel targets use a logistic output
    (``out_activation_ = "logistic"``), multiclass a softmax.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        dtype: Any = None,
        restore_best_weights: bool = False,
        class_weight: Any = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dropout=dropout,
            dtype=dtype,
            restore_best_weights=restore_best_weights,
        )
        self.class_weight = class_weight

    def _prepare(
        self, X: Any, y: Any, sample_weight: Any, reset: bool, classes: Any = None
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            accept_sparse=False,
            multi_output=True,
            dtype=(np.float64, np.float32),
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        check_classification_targets(y)
        if reset:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(classes if classes is not None else y)
            self.classes_ = self._label_binarizer.classes_
            kind = type_of_target(y)
            self._multilabel = kind == "multilabel-indicator"
            self._loss_kind = (
                "multiclass" if (len(self.classes_) > 2 and not self._multilabel) else "binary"
            )
            self.out_activation_ = "softmax" if self._loss_kind == "multiclass" else "logistic"
        else:
            unseen = np.setdiff1d(np.unique(y) if not self._multilabel else [], self.classes_)
            if len(unseen):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {np.unique(y)}."
                )
        Y = self._label_binarizer.transform(y).astype(np.float64)
        self.n_outputs_ = Y.shape[1]
        sw = self._weights(y, sample_weight)
        return X, Y, sw

    def _weights(self, y: np.ndarray, sample_weight: Any) -> Any:
        from sklearn.utils.class_weight import compute_sample_weight
        from sklearn.utils.validation import _check_sample_weight

        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, y if y.ndim == 1 else np.zeros(len(y)))
            if np.sum(sw) <= 0:
                raise ValueError("Sample weights must contain at least one non-zero number.")
        if self.class_weight is not None and not self._multilabel:
            cw = compute_sample_weight(self.class_weight, y)
            sw = cw if sw is None else sw * cw
        return sw

    def _extra_state(self) -> dict[str, Any]:
        return {
            "classes_": _plain(self.classes_),
            "multilabel": bool(self._multilabel),
            "loss_kind": self._loss_kind,
        }

    def _restore_extra(self, state: dict[str, Any]) -> None:
        self.classes_ = np.asarray(state["classes_"])
        self._multilabel = bool(state["multilabel"])
        self._loss_kind = state["loss_kind"]
        self.out_activation_ = "softmax" if self._loss_kind == "multiclass" else "logistic"
        self._label_binarizer = LabelBinarizer()
        if self._multilabel:
            self._label_binarizer.fit(np.eye(len(self.classes_), dtype=int))
        else:
            self._label_binarizer.fit(self.classes_)

    def _labels_of(self, Y: np.ndarray) -> np.ndarray:
        """Original labels for rows of the binarised target."""
        if self._loss_kind == "multiclass":
            return self.classes_[Y.argmax(1)]
        if self._multilabel:
            return Y.astype(int)
        return self.classes_[Y[:, 0].astype(int)]

    def _score_raw(self, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self._predict_from_raw(self._forward(X))))

    def _forward(self, X: np.ndarray) -> np.ndarray:
        was = self._model.training
        self._model.eval()
        with no_grad():
            out = self._model(X).data
        self._model.train(was)
        return out

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Fit the model to data matrix X and target(s) y."""
        self._validate_params()
        X, Y, sw = self._prepare(
            X, y, sample_weight, reset=not (self.warm_start and hasattr(self, "_model"))
        )
        return self._fit(X, Y, sw, incremental=False)

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> MLPClassifier:
        """One epoch over (X, y); ``classes`` is required on the first call."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        self._validate_params()
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if (
            not first
            and classes is not None
            and not np.array_equal(np.unique(classes), self.classes_)
        ):
            raise ValueError(
                f"`classes={list(classes)}` is not the same as on last call to partial_fit, was: {list(self.classes_)}"
            )
        X, Y, sw = self._prepare(X, y, sample_weight, reset=first, classes=classes)
        if first:
            self._build(X.shape[1], Y.shape[1], self._work_dtype(X))
        return self._fit(X, Y, sw, incremental=True)

    def _predict_from_raw(self, out: np.ndarray) -> np.ndarray:
        if self._loss_kind == "multiclass":
            return self.classes_[out.argmax(1)]
        pred = (out > 0).astype(int)
        if self._multilabel:
            return pred
        return self.classes_[pred.ravel()]

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (an indicator matrix for multilabel targets)."""
        return self._predict_from_raw(self._raw(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        out = self._raw(X).astype(np.float64)
        if self._loss_kind == "multiclass":
            return softmax(out, axis=1)
        p = sigmoid(out)
        if self._multilabel:
            return p
        return np.hstack([1 - p, p])

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of ``predict_proba`` (computed stably from the logits)."""
        out = self._raw(X).astype(np.float64)
        if self._loss_kind == "multiclass":
            return log_softmax(out, axis=1)
        log_p = log_sigmoid(out)
        log_q = log_sigmoid(-out)
        return log_p if self._multilabel else np.hstack([log_q, log_p])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's interface, trained by chainrule.

    Same parameters, defaults and fitted attributes as ``sklearn.neural_network.MLPRegressor``
    (loss: half the mean squared error plus the L2 penalty); extras as :class:`MLPClassifier`
    and ``scale_target=True``: the target is standardised for training and predictions are
    mapped back (``loss_`` is then in standardised units).
    """

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints, "scale_target": ["boolean"]}

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        dtype: Any = None,
        restore_best_weights: bool = False,
        scale_target: bool = True,
    ) -> None:
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dropout=dropout,
            dtype=dtype,
            restore_best_weights=restore_best_weights,
        )
        self.scale_target = scale_target

    _loss_kind = "squared"
    out_activation_ = "identity"

    def _prepare(
        self, X: Any, y: Any, sample_weight: Any, reset: bool
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        from sklearn.utils.validation import _check_sample_weight

        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            accept_sparse=False,
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
        )
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1).astype(np.float64)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X)
            if np.sum(sw) <= 0:
                raise ValueError("Sample weights must contain at least one non-zero number.")
        if reset or not hasattr(self, "_y_mean"):
            if self.scale_target:
                # weighted statistics: weight k is the same as k copies of the row
                mean = np.average(Y, axis=0, weights=sw)
                std = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=sw))
                self._y_mean, self._y_std = mean, np.where(std > 0, std, 1.0)
            else:
                self._y_mean, self._y_std = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        self.n_outputs_ = Y.shape[1]
        return X, (Y - self._y_mean) / self._y_std, sw

    def _labels_of(self, Y: np.ndarray) -> np.ndarray:
        return self._decode(Y)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "y_mean": _plain(self._y_mean),
            "y_std": _plain(self._y_std),
            "y_1d": bool(self._y_1d),
        }

    def _restore_extra(self, state: dict[str, Any]) -> None:
        self._y_mean = np.asarray(state["y_mean"], dtype=np.float64)
        self._y_std = np.asarray(state["y_std"], dtype=np.float64)
        self._y_1d = bool(state["y_1d"])

    def _score_raw(self, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        was = self._model.training
        self._model.eval()
        with no_grad():
            out = self._model(X).data
        self._model.train(was)
        return float(r2_score(y, self._decode(out)))

    def _decode(self, out: np.ndarray) -> np.ndarray:
        pred = out.astype(np.float64) * self._y_std + self._y_mean
        return pred.ravel() if self._y_1d else pred

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Fit the model to data matrix X and target(s) y."""
        self._validate_params()
        X, Y, sw = self._prepare(
            X, y, sample_weight, reset=not (self.warm_start and hasattr(self, "_model"))
        )
        return self._fit(X, Y, sw, incremental=False)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y)."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        self._validate_params()
        first = not hasattr(self, "_model")
        X, Y, sw = self._prepare(X, y, sample_weight, reset=first)
        return self._fit(X, Y, sw, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values (in the target's units)."""
        return self._decode(self._raw(X))


# `cr.load` rebuilds estimators from their model files through io's loader registry
# (io sits on a lower floor and imports nothing from here).
register_loader("sklearn_estimator", from_model_file)
