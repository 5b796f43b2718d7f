"""Layers: Linear, activations, Dropout, BatchNorm1d, Flatten, Identity (the MLP builder,
:func:`mlp`, is in :mod:`chainrule.nn.builders`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from .._random import as_generator, current_generator
from .._stateful import masked_dropout, running_stats_update
from .._validation import check_number
from ..tensor import Tensor, as_array, as_tensor
from . import init
from .module import Module, Parameter
from .registry import LAYERS, register_module
from .replicas import batch_moments, dropout_keep

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "LAYERS",
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


def as_input(x: Any, dtype: np.dtype[Any], where: str) -> Tensor:
    """Turn layer input into a Tensor; arrays are converted to the layer's float dtype."""
    if isinstance(x, Tensor):
        return x
    try:
        arr = as_array(x)
    except TypeError as exc:
        raise TypeError(f"{where} expected numeric input, got {type(x).__name__}: {exc}") from None
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return Tensor._const(arr)


def _size_or_none(v: Any) -> int | None:
    """A non-negative int read from a model file's configuration, or None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


@register_module(builtin=True)
class Linear(Module):
    """Fully connected layer ``z = x @ W + b``.

    ``W`` has shape ``(in_features, out_features)``: row ``i`` holds the weights *from* input
    ``i``, so ``W[i, j]`` is ``w_ij`` of ``z_j = Σ_i x_i w_ij + b_j`` (input i -> unit j, the
    textbook's notation) and the layout matches scikit-learn's ``coefs_``. PyTorch stores the
    transpose, ``(out_features, in_features)``, and computes ``x @ W.T + b``;
    ``load_state_dict`` from PyTorch needs ``W.T``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    rng : int, Generator or None
        Seed or generator for the initial weights.
    dtype : default np.float32

    Shape
    -----
    input: ``(..., in_features)``; output: ``(..., out_features)``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> layer = cr.nn.Linear(3, 2, rng=0)
    >>> layer(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: Any = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        self.dtype = np.dtype(dtype)
        self.weight = Parameter(np.zeros((self.in_features, self.out_features), self.dtype))
        self.bias = Parameter(np.zeros(self.out_features, self.dtype)) if bias else None
        self.reset_parameters(rng)

    def reset_parameters(self, rng: Any = None) -> None:
        """PyTorch's default: weight and bias from U(-b, b), b = 1/√fan_in.

        (This is He uniform with gain √(2/(1+5)), i.e. ``kaiming_uniform_(a=√5)``.)
        """
        gen = as_generator(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        init.uniform_(self.weight, -bound, bound, rng=gen)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound, rng=gen)

    def forward(self, x: Any) -> Tensor:
        x = as_input(x, self.weight.dtype, f"Linear({self.in_features}, {self.out_features})")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expected input with last "
                f"dimension {self.in_features}, got shape {x.shape}{self._shape_hint(x.shape)}"
            )
        return ops.linear(x, self.weight, self.bias)

    def _shape_hint(self, shape: tuple[int, ...]) -> str:
        """What to do about an input of the wrong shape, when it can be told."""
        if len(shape) > 2:
            per_sample = int(np.prod(shape[1:]))
            fix = "" if per_sample == self.in_features else (
                f", and in_features={per_sample} for what it gives")  # fmt: skip
            return (
                f" — for images or feature maps, put nn.Flatten() before this layer (it makes "
                f"(N, {per_sample}) of {shape}){fix}"
            )
        if len(shape) == 2:
            return f" — the layer before gives {shape[-1]} features: use in_features={shape[-1]}"
        return ""

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    @classmethod
    def config_elements(cls, config: dict[str, Any]) -> int:
        n_in, n_out = (
            _size_or_none(config.get("in_features")),
            _size_or_none(config.get("out_features")),
        )
        if n_in is None or n_out is None:
            return 0
        return n_in * n_out + (n_out if config.get("bias", True) else 0)

    def flops(self, input_shape: tuple[int | None, ...]) -> int:
        """``rows · in_features · out_features`` multiply-adds (the product ``x @ W``)."""
        rows = input_shape[:-1]
        if any(r is None for r in rows):
            return 0
        return math.prod(rows) * self.in_features * self.out_features  # type: ignore[arg-type]

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.out_features)

    def fans(self) -> tuple[int, int]:
        return self.in_features, self.out_features


@register_module(builtin=True, activation="identity")
class Identity(Module):
    """Returns its input."""

    def get_config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any) -> Any:
        return x


class _Activation(Module):
    fn: Any = None

    def get_config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any) -> Tensor:
        return type(self).fn(as_tensor(x))  # type: ignore[misc]


@register_module(builtin=True, activation="relu")
class ReLU(_Activation):
    """``max(x, 0)``; gradient 1 for x > 0, else 0."""

    fn = ops.relu


@register_module(builtin=True, activation="sigmoid")
class Sigmoid(_Activation):
    """``1 / (1 + e^{-x})``; gradient ``σ(1 - σ)``."""

    fn = ops.sigmoid


@register_module(builtin=True, activation="tanh")
class Tanh(_Activation):
    """``tanh x``; gradient ``1 - tanh²x``."""

    fn = ops.tanh


@register_module(builtin=True, activation="leaky_relu")
class LeakyReLU(Module):
    """``x`` for x > 0, ``negative_slope·x`` otherwise."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        check_number("negative_slope", negative_slope)
        self.negative_slope = float(negative_slope)

    def forward(self, x: Any) -> Tensor:
        return ops.leaky_relu(as_tensor(x), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


@register_module(builtin=True, activation="elu")
class ELU(Module):
    """``x`` for x > 0, ``α(e^x - 1)`` otherwise."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        check_number("alpha", alpha)
        self.alpha = float(alpha)

    def forward(self, x: Any) -> Tensor:
        return ops.elu(as_tensor(x), self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register_module(builtin=True, activation="gelu")
class GELU(Module):
    """``x·Φ(x)``; ``approximate="tanh"`` for the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Any) -> Tensor:
        return ops.gelu(as_tensor(x), self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


@register_module(builtin=True, activation="softplus")
class Softplus(Module):
    """``(1/β)·log(1 + e^{βx})``."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        check_number("beta", beta, low=0, low_inclusive=False)
        self.beta = float(beta)

    def forward(self, x: Any) -> Tensor:
        return ops.softplus(as_tensor(x), self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"

    def get_config(self) -> dict[str, Any]:
        return {"beta": self.beta}


@register_module(builtin=True, same_shape=True)
class Softmax(Module):
    """``e^{x_i} / Σ_j e^{x_j}`` along ``axis`` (``dim`` is accepted as PyTorch's name)."""

    def __init__(self, axis: int = -1, *, dim: int | None = None) -> None:
        super().__init__()
        self.axis = int(dim if dim is not None else axis)

    def forward(self, x: Any) -> Tensor:
        return ops.softmax(as_tensor(x), axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


@register_module(builtin=True, same_shape=True)
class LogSoftmax(Softmax):
    """``x_i - log Σ_j e^{x_j}`` along ``axis``."""

    def forward(self, x: Any) -> Tensor:
        return ops.log_softmax(as_tensor(x), axis=self.axis)


@register_module(builtin=True, same_shape=True)
class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    rest by ``1/(1-p)`` so that the expected output equals the input; identity in eval mode.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    rng : int, Generator or None
        Draws the masks: given, the layer keeps its own generator; None (the usual way to write
        it) draws from the running ``fit``'s generator (so ``fit(seed=...)`` fixes the masks) and
        outside ``fit`` from chainrule's default generator (``cr.manual_seed``). NumPy's global
        generator is never used.

    Notes
    -----
    The mask is drawn by :meth:`draw_mask` and enters the graph as an explicit input of the
    ``dropout`` primitive (``y = x ⊙ mask``, ``∂C/∂x = g ⊙ mask``), not as a hidden side
    effect: a recorded step can take a fresh mask as an input.
    """

    def __init__(self, p: float = 0.5, *, rng: Any = None) -> None:
        super().__init__()
        check_number("p", p, low=0, high=1)
        self.p = float(p)
        self.rng: np.random.Generator | None = None if rng is None else as_generator(rng)

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if not self.training or self.p == 0.0:
            return x
        if x.dtype.kind != "f":  # integers join as float32, as x * mask did
            x = Tensor._const(x.data.astype(np.float32))
        return masked_dropout(x, self.draw_mask(x.shape, x.dtype))

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the mask for an input of ``shape``: one draw per element."""
        return shape

    def draw_mask(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A mask for an input of ``shape``: 0 with probability ``p``, else ``1/(1-p)``.

        Drawn from the layer's generator (see ``rng``), in ``dtype``.
        """
        dtype = np.dtype(dtype)
        shape = self.mask_shape(tuple(shape))
        if self.p == 1.0:
            return np.zeros(shape, dtype)
        gen = self.rng if self.rng is not None else current_generator()
        keep = dropout_keep(gen, shape, self.p)  # data-parallel: a global batch's mask, sliced
        return keep.astype(dtype) * dtype.type(1.0 / (1.0 - self.p))  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}


@register_module(builtin=True, same_shape=True)
class BatchNorm1d(Module):
    """Batch normalisation (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167).

    ``y = (x - μ) / √(σ² + eps) · γ + β`` with the batch mean and (biased) variance in
    training, and the running estimates in eval mode. The running variance is updated with the
    unbiased batch variance: ``r ← (1 - momentum)·r + momentum·σ²_unbiased``, as PyTorch.
    That update is the output of the ``batch_norm_running_stats`` primitive, written into the
    buffers in one place (:meth:`_update_running_stats`), not a side effect scattered in
    ``forward``.

    Shape
    -----
    input: ``(N, C)`` or ``(N, C, L)``; statistics per channel C.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.num_features = _check_size("num_features", num_features)
        check_number("eps", eps, low=0, low_inclusive=False)
        if momentum is not None:
            check_number("momentum", momentum, low=0, high=1)
        self.eps = float(eps)
        # None: the cumulative average of every batch's statistics, as PyTorch
        self.momentum = None if momentum is None else float(momentum)
        self.dtype = np.dtype(dtype)
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = Parameter(np.ones(num_features, self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, self.dtype)) if affine else None
        self.running_mean: np.ndarray
        self.running_var: np.ndarray
        self.num_batches_tracked: np.ndarray
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, self.dtype))
            self.register_buffer("running_var", np.ones(num_features, self.dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def reset_parameters(self, rng: Any = None) -> None:
        if self.weight is not None and self.bias is not None:
            init.ones_(self.weight)
            init.zeros_(self.bias)
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x: Any) -> Tensor:
        x = as_input(x, self.dtype, f"BatchNorm1d({self.num_features})")
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm1d({self.num_features}) expected input of shape (N, "
                f"{self.num_features}) or (N, {self.num_features}, L), got shape {x.shape}"
            )
        return self._normalize(x)

    def _normalize(self, x: Tensor) -> Tensor:
        """Normalise per channel (axis 1) over every other axis, for inputs of any rank."""
        axes = (0, *range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training or not self.track_running_stats:
            n = x.size // self.num_features
            synced = batch_moments(x, axes)  # data-parallel or split: the whole batch's
            if synced is not None:
                n = synced[2]
            if self.training and n <= 1:
                raise ValueError(
                    f"{type(self).__name__} needs more than one value per channel in training, "
                    f"got input shape {x.shape}"
                )
            if synced is not None:
                mean, var = synced[0], synced[1]
            else:
                mean = x.mean(axis=axes, keepdims=True)
                var = x.var(axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.data.reshape(-1), var.data.reshape(-1), n)
            xhat = (x - mean) / ops.sqrt(var + self.eps)
        else:
            mean_c = self.running_mean.reshape(shape)
            std_c = np.sqrt(self.running_var.reshape(shape) + self.eps)
            xhat = (x - mean_c) / std_c
        if self.weight is not None and self.bias is not None:
            return xhat * self.weight.reshape(shape) + self.bias.reshape(shape)
        return xhat

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        """The one place the running statistics change: the state primitive's outputs (from
        the batch's per-channel ``mean`` and biased ``var`` over ``n`` values) are written
        into the buffers, which stay the same arrays. With ``momentum=None`` the factor of
        batch ``t`` (counted from 1) is ``1/t``: the running statistics are the plain average
        of every batch's, as PyTorch's cumulative moving average."""
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        new = running_stats_update(
            self.running_mean, self.running_var, self.num_batches_tracked, mean, var,
            momentum, n,
        )  # fmt: skip
        for buffer, value in zip(
            (self.running_mean, self.running_var, self.num_batches_tracked), new
        ):
            np.copyto(buffer, value)

    @classmethod
    def config_elements(cls, config: dict[str, Any]) -> int:
        n = _size_or_none(config.get("num_features"))
        if n is None:
            return 0
        affine = 2 * n if config.get("affine", True) else 0
        return affine + (2 * n + 1 if config.get("track_running_stats", True) else 0)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def get_config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "dtype": self.dtype.name,
        }


@register_module(builtin=True)
class Flatten(Module):
    """Collapse dimensions ``start_dim`` to ``end_dim`` (inclusive, as ``torch.nn.Flatten``):
    ``(N, 28, 28) -> (N, 784)``, ``(N, C, H, W) -> (N, C·H·W)``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: Any) -> Tensor:
        return ops.flatten(as_tensor(x), self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        end = "" if self.end_dim == -1 else f", end_dim={self.end_dim}"
        return f"start_dim={self.start_dim}{end}"

    def get_config(self) -> dict[str, Any]:
        end = {} if self.end_dim == -1 else {"end_dim": self.end_dim}
        return {"start_dim": self.start_dim, **end}

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        n = len(input_shape)
        d = self.start_dim % n if input_shape else 0
        e = self.end_dim % n + 1 if input_shape else 0
        rest = input_shape[d:e]
        size = None if any(r is None for r in rest) else math.prod(rest)  # type: ignore[arg-type]
        return (*input_shape[:d], size, *input_shape[e:])


ACTIVATIONS: dict[str, type[Module]] = {
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "logistic": Sigmoid,
    "tanh": Tanh,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "gelu": GELU,
    "softplus": Softplus,
    "identity": Identity,
    "linear": Identity,
}
