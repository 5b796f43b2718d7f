"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d (PyTorch's arguments)."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor, as_tensor
from . import conv_ops
from .module import Module
from .registry import register_module

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "MaxPool1d",
    "MaxPool2d",
]


def _norm(value: Any) -> Any:
    """A size argument as stored in a config: tuples become lists (JSON)."""
    return list(value) if isinstance(value, tuple) else value


def _window_sizes(
    name: str,
    spatial: tuple[int | None, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> tuple[int | None, ...]:
    """Output sizes of a pooling window over ``spatial`` (None stays None), as the forward
    pass computes them (``(n + pads - span) // stride + 1``, ``ceil_mode``'s extra cells in
    the pads); raises ValueError where the forward pass would."""
    known = tuple(10**6 if n is None else n for n in spatial)  # a stand-in for unknown sizes
    k, s, _, dil, pads = conv_ops._pool_geometry(
        name, len(spatial), known, kernel_size, stride, padding, dilation, ceil_mode
    )
    return tuple(
        None
        if n is None
        else (n + pads[2 * i] + pads[2 * i + 1] - dil[i] * (k[i] - 1) - 1) // s[i] + 1
        for i, n in enumerate(spatial)
    )


class _Pool(Module):
    _d = 2

    def _check(self, x: Any) -> Tensor:
        x = as_tensor(x)
        d = self._d
        if x.ndim not in (d + 1, d + 2):
            spatial = "L" if d == 1 else "H, W"
            raise ValueError(
                f"{type(self).__name__}({self.extra_repr()}) expected input of shape "
                f"(N, C, {spatial}) or (C, {spatial}), got {x.shape}"
            )
        return x

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        """``(N, C, *spatial)`` after pooling (None for a size not known), or None if the
        shape does not fit (the forward pass says why)."""
        if len(input_shape) != self._d + 2:
            return None
        try:
            return (*input_shape[:2], *self._sizes(input_shape[2:]))
        except (TypeError, ValueError):
            return None

    def _sizes(self, spatial: tuple[int | None, ...]) -> tuple[int | None, ...]:
        raise NotImplementedError


class _MaxPoolNd(_Pool):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        if return_indices:
            raise ValueError(f"{type(self).__name__}: return_indices=True is not supported")
        name = type(self).__name__
        conv_ops._ints(name, "kernel_size", kernel_size, self._d, 1)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, bool(ceil_mode)

    def _sizes(self, spatial: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return _window_sizes(type(self).__name__, spatial, self.kernel_size, self.stride,
                             self.padding, self.dilation, self.ceil_mode)  # fmt: skip

    def forward(self, x: Any) -> Tensor:
        fn = conv_ops.max_pool1d if self._d == 1 else conv_ops.max_pool2d
        return fn(self._check(x), self.kernel_size, self.stride, self.padding, self.dilation,
                  self.ceil_mode)  # fmt: skip

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return (
            f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "kernel_size": _norm(self.kernel_size),
            "stride": _norm(self.stride),
            "padding": _norm(self.padding),
            "dilation": _norm(self.dilation),
            "ceil_mode": self.ceil_mode,
        }


@register_module(builtin=True)
class MaxPool1d(_MaxPoolNd):
    """Max pooling over signals ``(N, C, L)`` (:func:`chainrule.nn.functional.max_pool1d`);
    ``stride`` defaults to ``kernel_size``."""

    _d = 1


@register_module(builtin=True)
class MaxPool2d(_MaxPoolNd):
    """Max pooling over images ``(N, C, H, W)`` (:func:`chainrule.nn.functional.max_pool2d`);
    ``stride`` defaults to ``kernel_size``. The gradient goes to each window's maximum.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.nn.MaxPool2d(2)(np.zeros((1, 6, 28, 28), np.float32)).shape
    (1, 6, 14, 14)
    """

    _d = 2


class _AvgPoolNd(_Pool):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        conv_ops._ints(type(self).__name__, "kernel_size", kernel_size, self._d, 1)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override

    def _sizes(self, spatial: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return _window_sizes(type(self).__name__, spatial, self.kernel_size, self.stride,
                             self.padding, 1, self.ceil_mode)  # fmt: skip

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        if self._d == 1:
            return conv_ops.avg_pool1d(x, self.kernel_size, self.stride, self.padding,
                                       self.ceil_mode, self.count_include_pad)  # fmt: skip
        return conv_ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                                   self.ceil_mode, self.count_include_pad,
                                   self.divisor_override)  # fmt: skip

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}"

    def get_config(self) -> dict[str, Any]:
        cfg = {
            "kernel_size": _norm(self.kernel_size),
            "stride": _norm(self.stride),
            "padding": _norm(self.padding),
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad,
        }
        if self._d == 2:
            cfg["divisor_override"] = self.divisor_override
        return cfg


@register_module(builtin=True)
class AvgPool1d(_AvgPoolNd):
    """Average pooling over signals ``(N, C, L)`` (:func:`chainrule.nn.functional.avg_pool1d`)."""

    _d = 1

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


@register_module(builtin=True)
class AvgPool2d(_AvgPoolNd):
    """Average pooling over images ``(N, C, H, W)`` (:func:`chainrule.nn.functional.avg_pool2d`)."""

    _d = 2


class _AdaptiveAvgPoolNd(_Pool):
    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Any) -> Tensor:
        fn = conv_ops.adaptive_avg_pool1d if self._d == 1 else conv_ops.adaptive_avg_pool2d
        return fn(self._check(x), self.output_size)

    def _sizes(self, spatial: tuple[int | None, ...]) -> tuple[int | None, ...]:
        size = self.output_size
        size = (size,) * self._d if not isinstance(size, (tuple, list)) else tuple(size)
        if len(size) != self._d:
            raise ValueError(f"output_size={self.output_size!r}")
        return tuple(n if o is None else int(o) for n, o in zip(spatial, size))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def get_config(self) -> dict[str, Any]:
        return {"output_size": _norm(self.output_size)}


@register_module(builtin=True)
class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average over ``output_size`` adaptive bins of a signal ``(N, C, L)``."""

    _d = 1


@register_module(builtin=True)
class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average over adaptive bins of an image to ``output_size`` (``1``: global average
    pooling, ``(N, C, H, W) -> (N, C, 1, 1)``), as ``torch.nn.AdaptiveAvgPool2d``."""

    _d = 2
