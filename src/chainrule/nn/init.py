"""Weight initialisation, in place, with an explicit generator.

Fans follow the layouts of chainrule's layers, so that every function gives the same
distribution as ``torch.nn.init`` on the same layer:

* a 2-D weight is a Linear weight, shape ``(in_features, out_features)`` (``z = x @ W + b``, the
  transpose of PyTorch's layout): ``fan_in = shape[0]``, ``fan_out = shape[1]``;
* a weight with more dimensions is a convolution kernel in PyTorch's layout
  ``(out_channels, in_channels/groups, *kernel_size)`` (Conv1d, Conv2d):
  ``fan_in = shape[1]·Π kernel_size``, ``fan_out = shape[0]·Π kernel_size`` — as PyTorch.

A 2-D array in PyTorch's ``(out, in)`` layout would have its fans swapped: transpose it first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._random import as_generator
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def _array(t: Any) -> np.ndarray:
    arr = t.data if isinstance(t, Tensor) else t
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise TypeError(f"init functions fill a float Tensor or ndarray in place, got {type(t)}")
    return arr


def _fans(arr: np.ndarray) -> tuple[int, int]:
    """``(fan_in, fan_out)``: Linear ``(in, out)`` for 2-D, PyTorch's conv layout above."""
    if arr.ndim < 2:
        raise ValueError(
            f"fan in and fan out need a weight with at least 2 dimensions, got {arr.shape}"
        )
    if arr.ndim == 2:
        return arr.shape[0], arr.shape[1]
    receptive = math.prod(arr.shape[2:])
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    linear/identity/conv1d/conv2d/sigmoid: 1; tanh: 5/3; relu: √2; leaky_relu: √(2/(1+slope²))
    with ``slope = param`` (0.01 if None); selu: 3/4.
    """
    convs = (
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    )
    if nonlinearity in ("linear", "identity", "sigmoid", "logistic", *convs):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity in ("relu", "elu", "gelu"):
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"nonlinearity must be one of linear, identity, conv1d, conv2d, sigmoid, tanh, relu, "
        f"leaky_relu, elu, gelu, selu; got {nonlinearity!r}"
    )


def _fill(t: Any, values: np.ndarray) -> Any:
    arr = _array(t)
    arr[...] = values.astype(arr.dtype, copy=False)
    return t


def uniform_(t: Any, a: float = 0.0, b: float = 1.0, rng: Any = None, generator: Any = None) -> Any:
    """Fill with U(a, b). ``generator`` is accepted as PyTorch's name for ``rng``."""
    arr = _array(t)
    return _fill(t, as_generator(rng if rng is not None else generator).uniform(a, b, arr.shape))


def normal_(
    t: Any, mean: float = 0.0, std: float = 1.0, rng: Any = None, generator: Any = None
) -> Any:
    """Fill with N(mean, std²). ``generator`` is accepted as PyTorch's name for ``rng``."""
    arr = _array(t)
    return _fill(
        t, as_generator(rng if rng is not None else generator).normal(mean, std, arr.shape)
    )


def constant_(t: Any, value: float) -> Any:
    """Fill with ``value``."""
    _array(t)[...] = value
    return t


def zeros_(t: Any) -> Any:
    """Fill with zeros."""
    return constant_(t, 0.0)


def ones_(t: Any) -> Any:
    """Fill with ones."""
    return constant_(t, 1.0)


def xavier_uniform_(t: Any, gain: float = 1.0, rng: Any = None, generator: Any = None) -> Any:
    """Glorot/Xavier uniform: U(-b, b), b = gain·√(6/(fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = _fans(_array(t))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, rng, generator)


def xavier_normal_(t: Any, gain: float = 1.0, rng: Any = None, generator: Any = None) -> Any:
    """Glorot/Xavier normal: N(0, σ²), σ = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(t))
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng, generator)


def _kaiming_std(t: Any, a: float, mode: str, nonlinearity: str) -> float:
    fan_in, fan_out = _fans(_array(t))
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    t: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: Any = None,
    generator: Any = None,
) -> Any:
    """He/Kaiming uniform: U(-b, b), b = gain·√(3 / fan) — He et al. 2015.

    As PyTorch: ``gain = calculate_gain(nonlinearity, a)``, the default nonlinearity is
    ``"leaky_relu"`` with negative slope ``a`` (so ``a=0`` is ReLU's gain √2, and
    ``a=√5`` gives PyTorch's Linear/Conv default ``b = 1/√fan_in``); ``fan`` is ``fan_in`` or
    ``fan_out`` by ``mode`` (see the module docstring for the layouts).
    """
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound, rng, generator)


def kaiming_normal_(
    t: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: Any = None,
    generator: Any = None,
) -> Any:
    """He/Kaiming normal: N(0, σ²), σ = gain / √fan — He et al. 2015.

    ``gain = calculate_gain(nonlinearity, a)``, PyTorch's default ``"leaky_relu"`` (slope ``a``).
    """
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity), rng, generator)


def lecun_normal_(t: Any, rng: Any = None, generator: Any = None) -> Any:
    """LeCun normal: N(0, 1/fan_in) — LeCun et al. 1998."""
    fan_in, _ = _fans(_array(t))
    return normal_(t, 0.0, math.sqrt(1.0 / fan_in), rng, generator)
