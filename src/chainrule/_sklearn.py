"""What chainrule's scikit-learn estimators share: the base estimator and its helpers.

``_BaseMLP`` holds everything :class:`chainrule.sklearn.MLPClassifier` and
:class:`~chainrule.sklearn.MLPRegressor` have in common — parameter validation, building the
model, the loss with scikit-learn's L2 penalty (``_PenalizedLoss``), the optimizers, early
stopping (``_SklearnStopping``), ``lbfgs`` through ``scipy.optimize``, ``partial_fit`` and
saving; the public estimators and their documentation live in :mod:`chainrule.sklearn`.
(Split out of ``sklearn.py`` along this seam, issue 17.)
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import nn
from .nn import functional as F
from .optim import SGD, Adam
from .tensor import Tensor, enable_grad, no_grad
from .training.callbacks import Callback
from .training.fit import Trainer

_ACTIVATIONS = {"identity", "logistic", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus"}


class _PenalizedLoss:
    """scikit-learn's objective: the data loss plus ``α/2 · Σ‖W‖² / n`` over the weights.

    ``n`` is the batch's (weighted) sample count, as scikit-learn divides by the batch size.
    ``fast_spec`` tells training's fused MLP step the same objective.
    """

    def __init__(self, kind: str, weights: list[Any], alpha: float) -> None:
        self.kind, self.weights, self.alpha = kind, weights, alpha

    def fast_spec(self) -> tuple[str, float, float]:
        kind = {"squared": "squared", "multiclass": "multiclass", "binary": "binary_sum"}[self.kind]
        return kind, (0.5 if self.kind == "squared" else 1.0), float(self.alpha)

    def __call__(self, out: Tensor, y: Any, sample_weight: Any = None) -> Tensor:
        n = float(np.sum(sample_weight)) if sample_weight is not None else float(out.shape[0])
        if self.kind == "squared":  # ((y - ŷ)²).mean() / 2
            data = F.mse_loss(out, y, sample_weight=sample_weight) * 0.5
        elif self.kind == "multiclass":
            data = F.cross_entropy(out, y, sample_weight=sample_weight)
        else:  # binary / multilabel: the log loss summed over outputs, averaged over samples
            per = F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(axis=1)
            if sample_weight is None:
                data = per.mean()
            else:
                w = np.asarray(sample_weight, dtype=per.dtype)
                data = (per * w).sum() / float(w.sum())
        if self.alpha and n > 0:
            penalty = sum(
                ((w * w).sum() for w in self.weights), start=Tensor._const(np.zeros((), out.dtype))
            )
            data = data + penalty * (0.5 * self.alpha / n)
        return data


class _SklearnStopping(Callback):
    """scikit-learn's end-of-epoch logic: tol / n_iter_no_change on the training loss or the
    validation score, the adaptive learning rate, invscaling, best-weights bookkeeping."""

    def __init__(self, est: Any, n_samples: int, val: tuple[Any, Any] | None) -> None:
        self.est, self.n_samples, self.val = est, n_samples, val

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        est = self.est
        loss = float((logs or {})["loss"])
        est.t_ += self.n_samples
        est.n_iter_ += 1
        est.loss_curve_.append(loss)
        est.loss_ = loss
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.val is not None:
            score = est._score_raw(*self.val)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_state = self.model.state_dict()  # type: ignore[union-attr]
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
                if est.restore_best_weights:
                    est._best_state = self.model.state_dict()  # type: ignore[union-attr]
        groups = est._optimizer.param_groups
        group = groups[0]
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            for g in groups:
                g["lr"] = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.val is not None else "Training loss"
            if est.solver == "sgd" and est.learning_rate == "adaptive" and group["lr"] > 1e-6:
                for g in groups:
                    g["lr"] /= 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(
                        f"{what} did not improve more than tol={est.tol} for "
                        f"{est.n_iter_no_change} consecutive epochs. Setting learning rate to {group['lr']:f}"
                    )
                return
            if est.verbose:
                print(
                    f"{what} did not improve more than tol={est.tol} for {est.n_iter_no_change} "
                    "consecutive epochs. Stopping."
                )
            est._converged = True
            self.stop_training = True


class _BaseMLP(BaseEstimator):
    _parameter_constraints: dict = {
        **_SkMLPClassifier._parameter_constraints,
        "activation": [StrOptions(_ACTIVATIONS)],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"}), type],
        "restore_best_weights": ["boolean"],
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
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.restore_best_weights = restore_best_weights

    # ----- the model ------------------------------------------------------------------------------
    def _hidden(self) -> list[int]:
        h = self.hidden_layer_sizes
        sizes = [h] if isinstance(h, Integral) else list(h)
        if any(not isinstance(s, Integral) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _work_dtype(self, X: np.ndarray) -> np.dtype[Any]:
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    def _build(self, n_in: int, n_out: int, dtype: np.dtype[Any]) -> None:
        act = {"logistic": "sigmoid"}.get(self.activation, self.activation)
        rng = np.random.default_rng(_seed(self.random_state))
        self._model = nn.mlp(
            [n_in, *self._hidden(), n_out],
            act,
            dropout=self.dropout,
            rng=rng,
            init_scheme="auto",
            dtype=dtype,
        )
        # scikit-learn's initialisation: weights and biases from U(±√(f/(fan_in + fan_out))),
        # f = 2 for the logistic activation and 6 otherwise (Glorot & Bengio)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer in self._model:
            if isinstance(layer, nn.Linear):
                bound = np.sqrt(factor / (layer.in_features + layer.out_features))
                nn.init.uniform_(layer.weight, -bound, bound, rng=rng)
                if layer.bias is not None:
                    nn.init.uniform_(layer.bias, -bound, bound, rng=rng)
        self._rng = rng
        self._optimizer: Any = None
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self.best_loss_: float | None = math.inf
        self._no_improvement_count = 0
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_validation_score_: float | None = -math.inf if self.early_stopping else None

    def _make_optimizer(self) -> None:
        groups = list(self._model.parameters())  # the L2 penalty is part of the loss
        if self.solver == "sgd":
            self._optimizer = SGD(
                groups,
                lr=self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum and self.momentum > 0,
            )
        else:
            self._optimizer = Adam(
                groups,
                lr=self.learning_rate_init,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
            )

    def _loss(self) -> _PenalizedLoss:
        weights = [m.weight for m in self._model if isinstance(m, nn.Linear)]
        return _PenalizedLoss(self._loss_kind, weights, self.alpha)

    @property
    def coefs_(self) -> list[np.ndarray]:
        check_is_fitted(self, "_model")
        return [m.weight.data for m in self._model if isinstance(m, nn.Linear)]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        check_is_fitted(self, "_model")
        return [m.bias.data for m in self._model if isinstance(m, nn.Linear) and m.bias is not None]

    @property
    def n_layers_(self) -> int:
        check_is_fitted(self, "_model")
        return len(self._hidden()) + 2

    # ----- fitting ------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray, sample_weight: Any, incremental: bool) -> Any:
        n, d = X.shape
        dtype = self._work_dtype(X)
        first = not (incremental or self.warm_start) or not hasattr(self, "_model")
        if not first and self._model[0].in_features != d:
            raise ValueError(
                f"X has {d} features, but this {type(self).__name__} was fitted with "
                f"{self._model[0].in_features} features."
            )
        if first:
            self._build(d, Y.shape[1], dtype)
        dtype = self._model[0].weight.dtype
        X = X.astype(dtype, copy=False)
        Y = Y.astype(dtype, copy=False)
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sw)
            return self
        if self._optimizer is None or not (incremental or self.warm_start):
            self._make_optimizer()
        target = Y.argmax(1) if self._loss_kind == "multiclass" else Y
        val = None
        if self.early_stopping and not incremental:
            stratify = (
                target
                if self._loss_kind == "multiclass"
                else (Y[:, 0] if Y.shape[1] == 1 and self._loss_kind == "binary" else None)
            )
            idx_tr, idx_val = train_test_split(
                np.arange(n),
                random_state=int(self._rng.integers(2**31)),
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            val = (X[idx_val], self._labels_of(Y[idx_val]))
            X, target = X[idx_tr], target[idx_tr]
            sw = None if sw is None else sw[idx_tr]
            n = len(X)
        if self.batch_size == "auto":
            bs = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going "
                    "to be clipped",
                    stacklevel=3,
                )
            bs = min(int(self.batch_size), n)
        stopper = _SklearnStopping(self, n, val)
        callbacks: list[Callback] = [stopper]
        trainer = Trainer(
            self._model,
            self._loss(),
            self._optimizer,
            callbacks=callbacks,
            seed=self._rng,
            verbose=0,
            # as scikit-learn: no per-step check; non-finite weights are reported after fitting
            on_nonfinite="ignore",
        )
        self._converged = False
        self._best_state = None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.fit(
                X,
                target,
                epochs=1 if incremental else self.max_iter,
                batch_size=bs,
                shuffle=self.shuffle,
                sample_weight=sw,
            )
        self.history_ = trainer.history
        if not all(np.all(np.isfinite(p.data)) for p in self._model.parameters()):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large "
                "values and need to be preprocessed."
            )
        if self._best_state is not None and (self.early_stopping or self.restore_best_weights):
            self._model.load_state_dict(self._best_state)
        if not incremental and not self._converged and trainer.stop_reason == "epochs":
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if self.early_stopping:
            self.best_loss_ = None  # scikit-learn's convention with early stopping
        return self

    def _fit_lbfgs(self, X: np.ndarray, Y: np.ndarray, sw: np.ndarray | None) -> None:
        from scipy.optimize import minimize

        params = list(self._model.parameters())
        loss_fn = self._loss()
        target = Y.argmax(1) if self._loss_kind == "multiclass" else Y
        dtype = params[0].dtype
        self._model.train()

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            k = 0
            for p in params:
                p.data[...] = theta[k : k + p.size].reshape(p.shape).astype(dtype)
                k += p.size
            self._model.zero_grad()
            with enable_grad():
                value = loss_fn(self._model(X), target, sample_weight=sw)
                value.backward()
            grad = np.concatenate([np.asarray(p.grad, np.float64).ravel() for p in params])
            return float(value.item()), grad

        theta0 = np.concatenate([p.data.astype(np.float64).ravel() for p in params])
        res = minimize(
            fun,
            theta0,
            method="L-BFGS-B",
            jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        fun(res.x)
        self.n_iter_ = int(res.nit)
        self.loss_ = float(res.fun)
        self.loss_curve_ = [self.loss_]
        self.best_loss_ = self.loss_
        self.t_ = len(X) * self.n_iter_
        if res.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"(status={res.status}): {res.message}",
                ConvergenceWarning,
                stacklevel=3,
            )

    # ----- prediction ---------------------------------------------------------------------------
    def _raw(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "_model")
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=(np.float64, np.float32))
        dtype = self._model[0].weight.dtype
        self._model.eval()
        with no_grad():
            out = self._model(X.astype(dtype, copy=False)).data
        return out

    # ----- model files (cr.save / cr.load) ---------------------------------------------------------
    _STATE: tuple[str, ...] = (
        "n_features_in_",
        "n_outputs_",
        "n_iter_",
        "t_",
        "loss_",
        "best_loss_",
        "loss_curve_",
        "validation_scores_",
        "best_validation_score_",
    )

    def __chainrule_save__(self) -> tuple[Any, dict[str, Any]]:
        """The model and what rebuilds this estimator around it (JSON only)."""
        check_is_fitted(self, "_model")
        params = {}
        for k, v in self.get_params().items():
            if isinstance(v, tuple):
                v = list(v)
            if isinstance(v, np.random.RandomState):
                v = None
            if k == "class_weight" and isinstance(v, dict):
                v = [[_plain(a), float(b)] for a, b in v.items()]
            params[k] = v
        state = {k: _plain(getattr(self, k, None)) for k in self._STATE}
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(f) for f in self.feature_names_in_]
        state.update(self._extra_state())
        return self._model, {
            "sklearn_estimator": {"class": type(self).__name__, "params": params, "state": state}
        }

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        return tags


def _plain(v: Any) -> Any:
    """A JSON-able version of a fitted attribute."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _seed(random_state: Any) -> int:
    if random_state is None:  # chainrule's default generator (cr.manual_seed), never NumPy's
        from ._random import default_generator

        return int(default_generator().integers(2**31))
    if isinstance(random_state, Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31))
    raise ValueError(f"random_state must be an int, a RandomState or None, got {random_state!r}")
