"""Convolution layers: Conv1d and Conv2d (PyTorch's arguments, weights and initialisation)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._random import as_generator
from ..tensor import Tensor
from . import conv_ops, init
from .layers import as_input
from .module import Module, Parameter
from .registry import register_module

__all__ = ["Conv1d", "Conv2d"]


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _border_index(title: str, mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """The input cell each cell of a padded axis copies: ``lo`` before and ``hi`` after the
    ``n`` cells of the axis, filled by ``mode`` (PyTorch's limits: reflect needs padding
    < n, circular padding <= n)."""
    if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
        limit = "smaller than" if mode == "reflect" else "at most"
        raise ValueError(
            f"{title}: padding_mode={mode!r} needs padding {limit} the input size, got "
            f"padding ({lo}, {hi}) on an axis of size {n}"
        )
    cells = np.arange(-lo, n + hi)
    if mode == "reflect":
        cells = np.abs(cells)
        return np.where(cells >= n, 2 * (n - 1) - cells, cells)
    if mode == "replicate":
        return np.clip(cells, 0, n - 1)
    return cells % n  # circular


def _show(t: tuple[int, ...]) -> str:
    """A kernel/stride as the user would write it: ``3`` for ``(3, 3)``."""
    return str(t[0]) if len(set(t)) == 1 else str(t)


class _ConvNd(Module):
    """Shared body of Conv1d and Conv2d (``_d`` spatial dimensions)."""

    _d = 2
    _fn = staticmethod(conv_ops.conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        rng: Any = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        d = self._d
        self.in_channels = conv_ops._ints(name, "in_channels", in_channels, 1, 1)[0]
        self.out_channels = conv_ops._ints(name, "out_channels", out_channels, 1, 1)[0]
        self.groups = conv_ops._ints(name, "groups", groups, 1, 1)[0]
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups})"
            )
        self.kernel_size = conv_ops._ints(name, "kernel_size", kernel_size, d, 1)
        self.stride = conv_ops._ints(name, "stride", stride, d, 1)
        self.dilation = conv_ops._ints(name, "dilation", dilation, d, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride={stride!r}")
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = conv_ops._ints(name, "padding", padding, d, 0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        self.dtype = np.dtype(dtype)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(np.zeros(shape, self.dtype))
        self.bias = Parameter(np.zeros(self.out_channels, self.dtype)) if bias else None
        self.reset_parameters(rng)

    def reset_parameters(self, rng: Any = None) -> None:
        """PyTorch's default: weight ``kaiming_uniform_(a=√5)``, i.e. U(-b, b) with
        ``b = 1/√fan_in``, ``fan_in = in_channels/groups · Π kernel_size``; bias U(-b, b) too."""
        gen = as_generator(rng)
        bound = 1.0 / math.sqrt(self.fans()[0])
        init.uniform_(self.weight, -bound, bound, rng=gen)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound, rng=gen)

    @classmethod
    def config_elements(cls, config: dict[str, Any]) -> int:
        """``out · in/groups · Π kernel (+ out for the bias)`` from a model file's
        configuration (0 if a size is not a plain non-negative int: the constructor judges)."""
        values: list[Any] = [config.get(k) for k in ("in_channels", "out_channels")]
        values.append(config.get("groups", 1))
        k = config.get("kernel_size")
        values += list(k) if isinstance(k, list) else [k] * cls._d
        if len(values) != 3 + cls._d or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
        ):
            return 0
        c_in, c_out, groups, *kernel = values
        weights = c_out * (c_in // groups) * math.prod(kernel)
        return weights + (c_out if config.get("bias", True) else 0)

    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of the kernel, as PyTorch counts them (its
        ``_calculate_fan_in_and_fan_out`` on the weight ``(O, C/G, *kernel)``):
        ``fan_in = C/G · Π kernel``, ``fan_out = O · Π kernel`` (not divided by the groups)."""
        k = math.prod(self.kernel_size)
        return self.in_channels // self.groups * k, self.out_channels * k

    def _title(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={_show(self.kernel_size)})"
        )

    def _check_input(self, x: Tensor) -> None:
        d = self._d
        spatial = "L" if d == 1 else "H, W"
        if x.ndim not in (d + 1, d + 2) or x.shape[-d - 1] != self.in_channels:
            raise ValueError(
                f"{self._title()} expected input of shape (N, {self.in_channels}, {spatial}), "
                f"got {x.shape}{self._shape_hint(x.shape)}"
            )
        size = x.shape[-d:]
        pads: tuple[int, ...] = (0,) * d if isinstance(self.padding, str) else self.padding
        padded = tuple(n + 2 * p for n, p in zip(size, pads))
        span = tuple(di * (k - 1) + 1 for di, k in zip(self.dilation, self.kernel_size))
        if self.padding != "same" and any(s > p for s, p in zip(span, padded)):
            raise ValueError(
                f"{self._title()}: the kernel ({' x '.join(map(str, span))}, with dilation) is "
                f"larger than the padded input ({' x '.join(map(str, padded))}; input shape "
                f"{x.shape}, padding {pads})"
            )

    def _shape_hint(self, shape: tuple[int, ...]) -> str:
        """What to do about a wrong input shape, when the shape tells: a missing channel axis,
        channels last, or feature rows that need an Unflatten."""
        d, c = self._d, self.in_channels
        axes = "(N, 1, L)" if d == 1 else "(N, 1, H, W)"
        if len(shape) == d + 1 and c == 1:
            return f": no channel axis? X[:, None] gives {axes}"
        if len(shape) == d + 2 and shape[-1] == c and shape[1] != c:
            order = "(0, 2, 1)" if d == 1 else "(0, 3, 1, 2)"
            return f": channels last? X.transpose{order} puts the channels second"
        if len(shape) == 2:
            return (
                ": rows of features; put nn.Unflatten(1, (C, ...)) before the first convolution "
                "to make them images"
            )
        return ""

    def forward(self, x: Any) -> Tensor:
        x = as_input(x, self.weight.dtype, self._title())
        self._check_input(x)
        padding: Any = self.padding
        if self.padding_mode != "zeros":  # pad first, then a convolution without padding
            x, padding = self._pad_borders(x), 0
        return self._fn(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)  # fmt: skip

    def _pad_borders(self, x: Tensor) -> Tensor:
        """``x`` with its borders filled by ``padding_mode``, as PyTorch's ``F.pad``:
        ``reflect`` mirrors without repeating the edge (``c b | a b c d | c b``), ``replicate``
        repeats the edge (``a a | a b c d | d d``), ``circular`` wraps around
        (``c d | a b c d | a b``). Each spatial axis is one gather of the input (its gradient:
        the adds of every copy back onto the input cell it came from)."""
        d = self._d
        if self.padding == "same":
            spans = [di * (k - 1) for di, k in zip(self.dilation, self.kernel_size)]
            pads = [(s // 2, s - s // 2) for s in spans]  # the extra one at the end, as PyTorch
        elif self.padding == "valid":
            pads = [(0, 0)] * d
        else:
            pads = [(int(p), int(p)) for p in self.padding]
        first = x.ndim - d  # the spatial axes are the last d (an unbatched input has no N)
        for axis, (lo, hi) in zip(range(first, first + d), pads):
            if lo or hi:
                index = _border_index(self._title(), self.padding_mode, x.shape[axis], lo, hi)
                x = x[(slice(None),) * axis + (index,)]
        return x

    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...] | None:
        d = self._d
        if len(input_shape) != d + 2:
            return None
        out: list[int | None] = [input_shape[0], self.out_channels]
        for i, n in enumerate(input_shape[2:]):
            if n is None or self.padding == "same":
                out.append(n)
                continue
            p = 0 if self.padding == "valid" else self.padding[i]  # type: ignore[index]
            k, s, di = self.kernel_size[i], self.stride[i], self.dilation[i]
            out.append((n + 2 * int(p) - di * (k - 1) - 1) // s + 1)
        return tuple(out)

    def flops(self, input_shape: tuple[int | None, ...]) -> int:
        shape = self.output_shape(input_shape)
        if shape is None or any(v is None for v in shape):
            return 0
        return math.prod(shape) * self.fans()[0]  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0,) * self._d:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._d:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        } | ({} if self.padding_mode == "zeros" else {"padding_mode": self.padding_mode})


@register_module(builtin=True)
class Conv1d(_ConvNd):
    """1-D convolution layer over signals ``(N, C_in, L)``: :func:`chainrule.nn.functional.conv1d`
    with a learned weight ``(out_channels, in_channels/groups, kernel_size)`` and bias.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or 1-tuple; padding also ``"same"``/``"valid"``
    groups : int, default 1 (``groups=in_channels``: depthwise)
    bias : bool, default True
    padding_mode : ``"zeros"`` (default), ``"reflect"``, ``"replicate"`` or ``"circular"``
    rng : int, Generator or None — the initial weights (PyTorch's default rule)
    dtype : default np.float32

    Shape
    -----
    input ``(N, C_in, L)``; output ``(N, C_out, ⌊(L + 2p - d·(K-1) - 1)/s⌋ + 1)``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.nn.Conv1d(1, 8, kernel_size=5, padding=2, rng=0)(np.zeros((4, 1, 40))).shape
    (4, 8, 40)
    """

    _d = 1
    _fn = staticmethod(conv_ops.conv1d)


@register_module(builtin=True)
class Conv2d(_ConvNd):
    """2-D convolution layer over images ``(N, C_in, H, W)``:
    :func:`chainrule.nn.functional.conv2d` with a learned weight
    ``(out_channels, in_channels/groups, KH, KW)`` (PyTorch's layout: weights copy either way)
    and bias. Initialised as PyTorch: U(-1/√fan_in, 1/√fan_in), fan_in = C_in/groups·KH·KW.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or pair; padding also ``"same"``/``"valid"``
    groups : int, default 1 (``groups=in_channels``: depthwise)
    bias : bool, default True
    padding_mode : ``"zeros"`` (default), ``"reflect"``, ``"replicate"`` or ``"circular"``
    rng : int, Generator or None — the initial weights
    dtype : default np.float32

    Shape
    -----
    input ``(N, C_in, H, W)``; output ``(N, C_out, OH, OW)``,
    ``OH = ⌊(H + 2p_h - d_h·(KH-1) - 1)/s_h⌋ + 1``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> conv = cr.nn.Conv2d(3, 16, kernel_size=3, rng=0)
    >>> conv(np.zeros((2, 3, 28, 28))).shape
    (2, 16, 26, 26)
    """

    _d = 2
    _fn = staticmethod(conv_ops.conv2d)
