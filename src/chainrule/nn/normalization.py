"""Layers for image batches: BatchNorm2d (per-channel statistics) and Dropout2d (whole
channels)."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor, as_tensor
from .layers import BatchNorm1d, Dropout, as_input
from .registry import register_module

__all__ = ["BatchNorm2d", "Dropout2d"]


@register_module(builtin=True)
class BatchNorm2d(BatchNorm1d):
    """Batch normalisation of images per channel (Ioffe & Szegedy 2015,
    https://arxiv.org/abs/1502.03167), as ``torch.nn.BatchNorm2d``.

    ``y[n, c, h, w] = (x[n, c, h, w] - μ_c) / √(σ²_c + eps) · γ_c + β_c`` with the mean and
    (biased) variance of channel c over the batch and all positions (N·H·W values) in
    training, and the running estimates in eval mode. The running statistics follow
    ``r ← (1 - momentum)·r + momentum·s`` with the unbiased variance, as PyTorch — through
    :class:`BatchNorm1d`'s state primitive (the same arguments, parameters and buffers).

    Shape
    -----
    input ``(N, C, H, W)``; output the same.
    """

    def forward(self, x: Any) -> Tensor:
        c = self.num_features
        x = as_input(x, self.dtype, f"BatchNorm2d({c})")
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"BatchNorm2d({c}) expected input of shape (N, {c}, H, W), got {x.shape}"
            )
        return self._normalize(x)

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def extra_repr(self) -> str:
        """As PyTorch: ``3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True``."""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


@register_module(builtin=True)
class Dropout2d(Dropout):
    """Channel dropout (Tompson et al. 2015, https://arxiv.org/abs/1411.4280), as
    ``torch.nn.Dropout2d``: in training each channel of each sample is zeroed with
    probability ``p`` and the kept ones are scaled by ``1/(1-p)``; identity in eval mode.

    :class:`Dropout` with one draw per (sample, channel) instead of one per element: the mask
    ``(N, C, 1, 1)`` enters the same ``dropout`` primitive, broadcast over the positions.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    rng : int, Generator or None — as :class:`Dropout`: None draws from the running ``fit``'s
        generator (or ``cr.manual_seed``'s outside ``fit``).

    Shape
    -----
    input ``(N, C, H, W)`` or ``(N, C, L)``, as PyTorch's documented shapes: a 3-D input is a
    batch of signals (each of its ``N·C`` rows is kept or zeroed whole), not one unbatched
    image; output the same.
    """

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Dropout2d(p={self.p}) expected input of shape (N, C, H, W) or (N, C, L), got "
                f"{x.shape}"
            )
        return super().forward(x)

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One draw per (sample, channel): ``(N, C, 1, 1)`` (``(N, C, 1)`` for signals)."""
        return (*shape[:2], *(1,) * (len(shape) - 2))
