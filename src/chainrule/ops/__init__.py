"""Primitives: every differentiable operation of chainrule, one record each.

A primitive is a :class:`chainrule._primitive.Primitive`: a named forward on NumPy arrays,
one backward rule per input (``rule(g, out, saved, *inputs, **attrs)``, called only for the
inputs that require a gradient), its kind, and what its rules read. The records are grouped
by kind, one module each, and registered in :data:`chainrule._primitive.PRIMITIVES`:

- :mod:`.elementwise` — ``+ - * / **``, maximum/minimum, exp, log, sqrt, abs, tanh, sigmoid,
  relu, leaky_relu, elu, gelu, softplus, astype, clip, where, round;
- :mod:`.reduction` — sum, mean, max, min, var, logsumexp;
- :mod:`.movement` — reshape, transpose, getitem, setitem, concatenate, stack, split;
- :mod:`.contraction` — matmul, linear;
- :mod:`.fused` — softmax, log_softmax, softmax_cross_entropy, binary_cross_entropy.

The functions users call (``cr.exp``, ``x.sum()``, ...) check their arguments and call
:func:`chainrule._primitive.apply`; this module re-exports them and installs the operators and
methods on :class:`~chainrule.tensor.Tensor`. How to add a primitive: see
:mod:`chainrule._primitive`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._primitive import PRIMITIVES as PRIMITIVES
from .._primitive import Primitive as Primitive
from .._primitive import apply as apply
from .._primitive import check_registry
from ..tensor import Tensor
from ._common import _alias, _coerce, _norm_axis, _norm_index, _t
from .contraction import linear, linear_p, matmul, matmul_p
from .elementwise import (
    _relu_array,
    _sigmoid,
    abs,
    abs_p,
    add,
    add_p,
    astype,
    astype_p,
    clip,
    clip_p,
    div,
    div_p,
    elu,
    elu_p,
    exp,
    exp_p,
    gelu,
    gelu_p,
    leaky_relu,
    leaky_relu_p,
    log,
    log_p,
    maximum,
    maximum_p,
    minimum,
    minimum_p,
    mul,
    mul_p,
    neg,
    neg_p,
    pow,
    pow_p,
    relu,
    relu_p,
    round,
    round_p,
    sigmoid,
    sigmoid_p,
    softplus,
    softplus_p,
    sqrt,
    sqrt_p,
    sub,
    sub_p,
    tanh,
    tanh_p,
    where,
    where_p,
)
from .fused import (
    binary_cross_entropy_elementwise,
    binary_cross_entropy_p,
    log_softmax,
    log_softmax_p,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_p,
    softmax_p,
)
from .movement import (
    chunk,
    concatenate,
    concatenate_p,
    flatten,
    getitem,
    getitem_p,
    permute,
    reshape,
    reshape_p,
    setitem,
    setitem_p,
    split,
    split_p,
    stack,
    stack_p,
    swapaxes,
    transpose,
    transpose_p,
)
from .reduction import (
    MinMax,
    logsumexp,
    logsumexp_p,
    max,
    max_p,
    mean,
    mean_p,
    min,
    min_p,
    sum,
    sum_p,
    var,
    var_p,
)

__all__ = [
    "PRIMITIVES",
    "MinMax",
    "Primitive",
    "abs",
    "add",
    "apply",
    "astype",
    "binary_cross_entropy_elementwise",
    "chunk",
    "clip",
    "concatenate",
    "div",
    "elu",
    "exp",
    "flatten",
    "gelu",
    "getitem",
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
    "permute",
    "pow",
    "relu",
    "reshape",
    "round",
    "setitem",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "split",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "swapaxes",
    "tanh",
    "transpose",
    "var",
    "where",
]
# the records, by their usual name (JAX's ``exp_p`` convention)
_RECORDS = (
    abs_p, add_p, astype_p, binary_cross_entropy_p, clip_p, concatenate_p, div_p, elu_p, exp_p,
    gelu_p, getitem_p, leaky_relu_p, linear_p, log_p, log_softmax_p, logsumexp_p, matmul_p,
    max_p, maximum_p, mean_p, min_p, minimum_p, mul_p, neg_p, pow_p, relu_p, reshape_p,
    round_p, setitem_p, sigmoid_p, softmax_cross_entropy_p, softmax_p, softplus_p, split_p,
    sqrt_p, stack_p, sub_p, sum_p, tanh_p, transpose_p, var_p, where_p,
)  # fmt: skip
_PRIVATE_REEXPORTS = (_coerce, _norm_axis, _norm_index, _relu_array, _sigmoid, _t)


# ---------------------------------------------------------------------------------------------
# methods and operators of Tensor
# ---------------------------------------------------------------------------------------------
def _argmax(
    x: Tensor, axis: Any = None, *, dim: Any = None, keepdim: bool | None = None
) -> np.ndarray:
    axis = _alias("argmax", "axis", axis, "dim", dim, None)
    return np.argmax(x.data, axis=axis, keepdims=bool(keepdim))  # type: ignore[no-any-return]


def _argmin(
    x: Tensor, axis: Any = None, *, dim: Any = None, keepdim: bool | None = None
) -> np.ndarray:
    axis = _alias("argmin", "axis", axis, "dim", dim, None)
    return np.argmin(x.data, axis=axis, keepdims=bool(keepdim))  # type: ignore[no-any-return]


def _rpow(x: Tensor, other: Any) -> Tensor:
    return pow(_coerce(other, x), x)


_METHODS: dict[str, Callable[..., Any]] = {
    "__add__": add,
    "__radd__": lambda x, o: add(o, x),
    "__sub__": sub,
    "__rsub__": lambda x, o: sub(o, x),
    "__mul__": mul,
    "__rmul__": lambda x, o: mul(o, x),
    "__truediv__": div,
    "__rtruediv__": lambda x, o: div(o, x),
    "__pow__": pow,
    "__rpow__": _rpow,
    "__matmul__": matmul,
    "__rmatmul__": lambda x, o: matmul(o, x),
    "__neg__": neg,
    "__pos__": lambda x: x,
    "__getitem__": getitem,
    "sum": sum,
    "mean": mean,
    "max": max,
    "min": min,
    "var": var,
    "reshape": reshape,
    "transpose": transpose,
    "swapaxes": swapaxes,
    "permute": permute,
    "flatten": flatten,
    "exp": exp,
    "log": log,
    "sqrt": sqrt,
    "abs": abs,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "clip": clip,
    "argmax": _argmax,
    "argmin": _argmin,
    "split": split,
    "chunk": chunk,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
del _name, _fn

check_registry()  # every registered primitive has its rules (an import-time check)

# in-place operators and PyTorch's names install themselves on Tensor
from .. import _inplace as _inplace  # noqa: E402
from .. import _torch_names as _torch_names  # noqa: E402
