"""Optimizers, learning-rate schedules and gradient clipping."""

from __future__ import annotations

from ..arena import ParameterArena
from . import lr_scheduler
from ._kernels import get_kernels, set_kernels
from .clip import clip_grad_norm, clip_grad_norm_, clip_grad_value, clip_grad_value_
from .optimizers import GD, SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = [
    "GD",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "ParameterArena",
    "RMSprop",
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value",
    "clip_grad_value_",
    "get_kernels",
    "lr_scheduler",
    "set_kernels",
]
