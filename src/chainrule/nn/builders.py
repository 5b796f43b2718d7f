"""The MLP builder: ``mlp([784, 256, 10], "relu")`` as a Sequential of the layers of
:mod:`chainrule.nn.layers`, with an initialisation chosen for its activation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._random import as_generator
from .._validation import check_number
from . import init
from .layers import ACTIVATIONS, BatchNorm1d, Dropout, Linear, Softmax, _check_size
from .module import Module, Sequential

__all__ = ["mlp"]

_RELU_FAMILY = {"relu", "leaky_relu", "elu", "gelu"}


def mlp(
    widths: Sequence[int],
    activation: str = "relu",
    *,
    output_activation: str | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    init_scheme: str = "auto",
    rng: Any = None,
    dtype: Any = np.float32,
) -> Sequential:
    """Build a multilayer perceptron ``Linear → activation → … → Linear`` as a Sequential.

    Parameters
    ----------
    widths : sequence of int
        Layer widths from input to output, e.g. ``[784, 256, 128, 10]``.
    activation : str
        Hidden activation: relu, leaky_relu, elu, gelu, sigmoid (logistic), tanh, softplus,
        identity.
    output_activation : str, optional
        Applied after the last layer (default none: the output is logits / values).
    dropout : float
        Dropout probability after each hidden activation (0 = none).
    batch_norm : bool
        Insert BatchNorm1d before each hidden activation.
    init_scheme : {"auto", "he", "glorot", "lecun", "default"}
        "auto" picks He (Kaiming) uniform for the ReLU family and Glorot (Xavier) uniform for
        sigmoid (with gain 4, for its slope of 1/4), tanh and the rest; "default" keeps
        Linear's own U(±1/√fan_in) — the "standard" initialisation under which Glorot & Bengio
        observed vanishing gradients. Biases start at zero except with "default".
    rng : int, Generator or None
        One seed for all weights (and dropout masks): the same seed gives bitwise-identical
        models.

    Examples
    --------
    >>> import chainrule as cr
    >>> cr.nn.mlp([4, 8, 3], "tanh", rng=0)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )  # 67 parameters
    """
    widths = [_check_size(f"widths[{i}]", w) for i, w in enumerate(widths)]
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width, got {widths}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if output_activation is not None and output_activation not in ACTIVATIONS:
        valid = sorted([*ACTIVATIONS, "softmax"])
        if output_activation != "softmax":
            raise ValueError(f"output_activation must be one of {valid}, got {output_activation!r}")
    if init_scheme not in ("auto", "he", "glorot", "lecun", "default"):
        raise ValueError(
            f"init_scheme must be auto, he, glorot, lecun or default, got {init_scheme!r}"
        )
    check_number("dropout", dropout, low=0, high=1, high_inclusive=False)
    gen = as_generator(rng)
    scheme = init_scheme
    if scheme == "auto":
        scheme = "he" if activation in _RELU_FAMILY else "glorot"
    layers: list[Module] = []
    n_layers = len(widths) - 1
    for k in range(n_layers):
        lin = Linear(widths[k], widths[k + 1], rng=gen, dtype=dtype)
        last = k == n_layers - 1
        if scheme != "default":
            if scheme == "he" and not last:
                nonlin = "leaky_relu" if activation == "leaky_relu" else "relu"
                init.kaiming_uniform_(lin.weight, nonlinearity=nonlin, rng=gen)
            elif scheme == "lecun":
                init.lecun_normal_(lin.weight, rng=gen)
            else:
                # Glorot & Bengio's normalised initialisation assumes a unit slope at 0; the
                # logistic sigmoid's is 1/4, so its weights are scaled by 4 (as in their
                # tutorials) — without it a deep sigmoid stack still loses its gradient.
                gain = 4.0 if activation in ("sigmoid", "logistic") and not last else 1.0
                init.xavier_uniform_(lin.weight, gain=gain, rng=gen)
            if lin.bias is not None:
                init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            if batch_norm:
                layers.append(BatchNorm1d(widths[k + 1], dtype=dtype))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                # without rng=, the masks follow fit's seed (see Dropout)
                layers.append(Dropout(dropout, rng=None if rng is None else gen))
    if output_activation == "softmax":
        layers.append(Softmax(axis=-1))
    elif output_activation is not None:
        layers.append(ACTIVATIONS[output_activation]())
    return Sequential(*layers)
