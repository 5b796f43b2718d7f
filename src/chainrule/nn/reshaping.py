"""Unflatten: rows of features back to images or signals (``(N, 784) -> (N, 1, 28, 28)``)."""

from __future__ import annotations

import math
from typing import Any

from .. import ops
from ..tensor import Tensor, as_tensor
from .module import Module
from .registry import register_module

__all__ = ["Unflatten"]


@register_module(builtin=True)
class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``: the first
    layer of a convolutional network that reads table rows (``chainrule train --arch``).

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.nn.Unflatten(1, (1, 28, 28))(np.zeros((5, 784), np.float32)).shape
    (5, 1, 28, 28)
    """

    def __init__(self, dim: int, unflattened_size: Any) -> None:
        super().__init__()
        self.dim = int(dim)
        sizes = (unflattened_size,) if isinstance(unflattened_size, int) else unflattened_size
        self.unflattened_size = tuple(int(v) for v in sizes)
        if not self.unflattened_size or any(v < 1 and v != -1 for v in self.unflattened_size):
            raise ValueError(
                f"Unflatten: unflattened_size must be positive sizes (one may be -1), got "
                f"{unflattened_size!r}"
            )

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        d = self.dim % x.ndim if -x.ndim <= self.dim < x.ndim else None
        known = math.prod(v for v in self.unflattened_size if v != -1)
        if d is None or (
            x.shape[d] != known if -1 not in self.unflattened_size else x.shape[d] % known
        ):
            raise ValueError(
                f"Unflatten({self.dim}, {self.unflattened_size}) cannot split dimension "
                f"{self.dim} of an input of shape {x.shape}"
            )
        return ops.reshape(x, *x.shape[:d], *self.unflattened_size, *x.shape[d + 1 :])

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        d = self.dim % len(input_shape)
        return (*input_shape[:d], *self.unflattened_size, *input_shape[d + 1 :])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "unflattened_size": list(self.unflattened_size)}
