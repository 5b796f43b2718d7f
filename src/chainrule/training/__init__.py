"""Training: the fit loop, callbacks, history, metrics and checkpoints."""

from __future__ import annotations

from . import metrics
from ._threads import blas_threads_for
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
)
from .fit import DivergenceError, Trainer, evaluate, fit, predict, predict_proba
from .history import History

__all__ = [
    "CSVLogger",
    "Callback",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "Trainer",
    "blas_threads_for",
    "evaluate",
    "fit",
    "metrics",
    "predict",
    "predict_proba",
]
