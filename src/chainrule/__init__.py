"""chainrule: neural networks on NumPy, with backpropagation as the engine.

>>> import chainrule as cr
>>> w = cr.tensor([0.5, -1.0], requires_grad=True)
>>> loss = ((w * 3.0) ** 2).sum()
>>> loss.backward()
>>> w.grad
array([  9., -18.], dtype=float32)
"""

from __future__ import annotations

from . import data as data
from . import diagnostics as diagnostics
from . import distributed as distributed
from . import io as io
from . import nn as nn
from . import optim as optim
from . import training as training
from ._memory import keep_freed_memory
from ._random import manual_seed
from ._torch_names import (  # PyTorch's names (issue 15)
    cat,
    clamp,
    ones,
    permute,
    rand,
    randn,
    round,
    squeeze,
    std,
    swapaxes,
    unsqueeze,
    zeros,
)
from .data import datasets as datasets
from .diagnostics import GradientFlow as GradientFlow
from .diagnostics import draw_graph as draw_graph
from .diagnostics import explain as explain
from .diagnostics import gradcheck_model as gradcheck_model
from .diagnostics import lr_find as lr_find
from .functional import grad, value_and_grad
from .gradcheck import GradcheckError, gradcheck
from .io import ModelFileError, load, load_state_dict, save, save_state_dict
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
from .training import (
    CSVLogger,
    DivergenceError,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
    Trainer,
    evaluate,
    fit,
    predict,
    predict_proba,
)
from .training import callbacks as callbacks
from .training import metrics as metrics


def _load_estimator(model: nn.Module, info: dict[str, object]) -> object:
    """Rebuild an estimator from its model file: ``cr.load`` calls this for a file saved from a
    ``chainrule.sklearn`` estimator, in a process that may never have imported the estimators.

    The estimators (and scikit-learn) are imported only now, when such a file is loaded; once
    imported, ``chainrule.sklearn`` registers its own loader in place of this one. The wiring
    lives here, in the package root: it is the one module that stands above every face, while
    ``io`` (training floor) may import nothing from the applications floor, and the file itself
    only names the key ``"sklearn_estimator"`` (loading never imports a module a file names).
    """
    try:
        from .sklearn import from_model_file
    except ImportError as exc:
        raise ImportError(
            "this model file holds a chainrule.sklearn estimator, and loading it needs "
            f'scikit-learn ({exc}): pip install "chainrule[datasets]"'
        ) from None
    return from_model_file(model, info)


io.register_loader("sklearn_estimator", _load_estimator)

__version__ = "0.1.0"

__all__ = [
    "CSVLogger",
    "DivergenceError",
    "EarlyStopping",
    "GradcheckError",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ModelFileError",
    "ProgressBar",
    "Tensor",
    "Trainer",
    "abs",
    "add",
    "astype",
    "callbacks",
    "clip",
    "concatenate",
    "distributed",
    "div",
    "elu",
    "enable_grad",
    "evaluate",
    "exp",
    "fit",
    "flatten",
    "gelu",
    "getitem",
    "grad",
    "gradcheck",
    "is_grad_enabled",
    "leaky_relu",
    "linear",
    "load",
    "load_state_dict",
    "log",
    "log_softmax",
    "logsumexp",
    "manual_seed",
    "matmul",
    "max",
    "maximum",
    "mean",
    "metrics",
    "min",
    "minimum",
    "mul",
    "neg",
    "nn",
    "no_grad",
    "optim",
    "pow",
    "predict",
    "predict_proba",
    "relu",
    "reshape",
    "save",
    "save_state_dict",
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
    "training",
    "transpose",
    "value_and_grad",
    "var",
    "where",
]
__all__ += [  # PyTorch's names (issue 15)
    "cat",
    "clamp",
    "ones",
    "permute",
    "rand",
    "randn",
    "round",
    "squeeze",
    "std",
    "swapaxes",
    "unsqueeze",
    "zeros",
]

keep_freed_memory()  # a step's temporaries cost no page faults (CHAINRULE_MALLOC=keep: off)
