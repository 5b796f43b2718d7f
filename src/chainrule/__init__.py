"""chainrule: neural networks on NumPy, with backpropagation as the engine.

>>> import chainrule as cr
>>> w = cr.tensor([0.5, -1.0], requires_grad=True)
>>> loss = ((w * 3.0) ** 2).sum()
>>> loss.backward()
>>> w.grad
array([  9., -18.], dtype=float32)
"""

from __future__ import annotations

from . import nn as nn
from . import optim as optim
from .functional import grad, value_and_grad
from .gradcheck import GradcheckError, gradcheck
from .ops import (
    abs,
    add,
    astype,
    clip,
    concatenate,
    div,
    elu,
    exp,
    flatten,
    gelu,
    getitem,
    leaky_relu,
    linear,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    pow,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    transpose,
    var,
    where,
)
from .tensor import Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled, tensor

__version__ = "0.1.0"

__all__ = [
    "GradcheckError",
    "Tensor",
    "abs",
    "add",
    "astype",
    "clip",
    "concatenate",
    "div",
    "elu",
    "enable_grad",
    "exp",
    "flatten",
    "gelu",
    "getitem",
    "grad",
    "gradcheck",
    "is_grad_enabled",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mul",
    "neg",
    "no_grad",
    "pow",
    "relu",
    "reshape",
    "set_grad_enabled",
    "sigmoid",
    "softmax",
    "softplus",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "tanh",
    "tensor",
    "transpose",
    "value_and_grad",
    "var",
    "where",
]
