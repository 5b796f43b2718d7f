"""Networks: Module and Parameter, layers, activations, initialisation and losses."""

from __future__ import annotations

from . import functional, init
from .builders import mlp
from .conv import Conv1d, Conv2d
from .layers import (
    ACTIVATIONS,
    ELU,
    GELU,
    LAYERS,
    BatchNorm1d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential
from .normalization import BatchNorm2d, Dropout2d
from .pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .registry import register_module
from .reshaping import Unflatten
from .torch_compat import from_torch_state_dict, to_torch_state_dict

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "LAYERS",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Unflatten",
    "from_torch_state_dict",
    "functional",
    "init",
    "mlp",
    "register_module",
    "to_torch_state_dict",
]
