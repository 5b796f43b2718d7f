"""Layers for image batches: BatchNorm2d (per-channel statistics) and Dropout2d (whole
channels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._random import as_generator, current_generator
from .._validation import check_number
from ..tensor import Tensor
from . import init
from .layers import _check_size, as_input
from .module import Module, Parameter
from .registry import register_module

__all__ = ["BatchNorm2d", "Dropout2d"]


@register_module
class BatchNorm2d(Module):
    """Batch normalisation of images per channel (Ioffe & Szegedy 2015,
    https://arxiv.org/abs/1502.03167), as ``torch.nn.BatchNorm2d``.

    ``y[n, c, h, w] = (x[n, c, h, w] - μ_c) / √(σ²_c + eps) · γ_c + β_c`` with the mean and
    (biased) variance of channel c over the batch and all positions (N·H·W values) in
    training, and the running estimates in eval mode. The running statistics follow
    ``r ← (1 - momentum)·r + momentum·s`` with the unbiased variance, as PyTorch.

    Shape
    -----
    input ``(N, C, H, W)``; output the same.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.num_features = _check_size("num_features", num_features)
        check_number("eps", eps, low=0, low_inclusive=False)
        check_number("momentum", momentum, low=0, high=1)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.dtype = np.dtype(dtype)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.weight = Parameter(np.ones(num_features, self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, self.dtype)) if affine else None
        self.running_mean: np.ndarray
        self.running_var: np.ndarray
        self.num_batches_tracked: np.ndarray
        if self.track_running_stats:
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
        c = self.num_features
        dtype = self.weight.dtype if self.weight is not None else self.dtype
        x = as_input(x, dtype, f"BatchNorm2d({c})")
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"BatchNorm2d({c}) expected input of shape (N, {c}, H, W), got {x.shape}"
            )
        axes, shape = (0, 2, 3), (1, c, 1, 1)
        if self.training or not self.track_running_stats:
            n = x.size // c
            if self.training and n <= 1:
                raise ValueError(
                    f"BatchNorm2d needs more than one value per channel in training, got input "
                    f"shape {x.shape}"
                )
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                m = self.momentum
                self.running_mean *= 1 - m
                self.running_mean += m * mean.data.reshape(-1)
                self.running_var *= 1 - m
                self.running_var += m * var.data.reshape(-1) * (n / (n - 1))
                self.num_batches_tracked += 1
            xhat = (x - mean) / ops.sqrt(var + self.eps)
        else:
            mean_c = self.running_mean.reshape(shape)
            std_c = np.sqrt(self.running_var.reshape(shape) + self.eps)
            xhat = (x - mean_c) / std_c
        if self.weight is not None and self.bias is not None:
            return xhat * self.weight.reshape(shape) + self.bias.reshape(shape)
        return xhat

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

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


@register_module
class Dropout2d(Module):
    """Channel dropout (Tompson et al. 2015, https://arxiv.org/abs/1411.4280), as
    ``torch.nn.Dropout2d``: in training each channel of each sample is zeroed with
    probability ``p`` and the kept ones are scaled by ``1/(1-p)``; identity in eval mode.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    rng : int, Generator or None — as :class:`Dropout`: None draws from the running ``fit``'s
        generator (or ``cr.manual_seed``'s outside ``fit``).

    Shape
    -----
    input ``(N, C, H, W)`` (or unbatched ``(C, H, W)``); output the same.
    """

    def __init__(self, p: float = 0.5, *, rng: Any = None) -> None:
        super().__init__()
        check_number("p", p, low=0, high=1)
        self.p = float(p)
        self.rng: np.random.Generator | None = None if rng is None else as_generator(rng)

    def forward(self, x: Any) -> Tensor:
        x = ops._t(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Dropout2d(p={self.p}) expected input of shape (N, C, H, W) or (C, H, W), got "
                f"{x.shape}"
            )
        if not self.training or self.p == 0.0:
            return x
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
        shape = (*x.shape[:-2], 1, 1)
        if self.p == 1.0:
            mask = np.zeros(shape, dtype)
        else:
            gen = self.rng if self.rng is not None else current_generator()
            keep = gen.random(shape, dtype=np.float64) >= self.p
            mask = keep.astype(dtype) * dtype.type(1.0 / (1.0 - self.p))
        return x * mask

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}
