"""Training: the fit loop, its step plans, callbacks, history, metrics and checkpoints."""

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
from .fastpath import FusedMLPPlan
from .fit import DivergenceError, Trainer, evaluate, fit, predict, predict_proba
from .history import History
from .split_step import SplitStepPlan
from .steps import EagerPlan, StepPlan, check_step_plan

__all__ = [
    "CSVLogger",
    "Callback",
    "DivergenceError",
    "EagerPlan",
    "EarlyStopping",
    "FusedMLPPlan",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "SplitStepPlan",
    "StepPlan",
    "Trainer",
    "blas_threads_for",
    "check_step_plan",
    "evaluate",
    "fit",
    "metrics",
    "predict",
    "predict_proba",
]
