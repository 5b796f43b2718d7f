"""Convolution and pooling as primitives of the engine, with PyTorch's functional interface.

``conv1d``, ``conv2d``, ``max_pool1d``, ``max_pool2d``, ``avg_pool1d``, ``avg_pool2d``,
``adaptive_avg_pool1d`` and ``adaptive_avg_pool2d`` take PyTorch's arguments in PyTorch's
order with its semantics: layouts ``(N, C, L)`` / ``(N, C, H, W)`` (or unbatched ``(C, L)`` /
``(C, H, W)``), weights ``(out_channels, in_channels / groups, *kernel)`` — copy weights from
or to ``torch.nn.Conv2d`` unchanged. Each is one primitive whose NumPy kernels and per-input
backward rules live in :mod:`chainrule.nn._conv_kernels` (im2col + one GEMM per layer).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ops
from .._primitive import apply, defprimitive
from ..tensor import Tensor, as_tensor
from . import _conv_kernels as K

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "conv1d",
    "conv2d",
    "max_pool1d",
    "max_pool2d",
]

Rule = Callable[..., Any]


# ---------------------------------------------------------------------------------------------
# 2-D kernels on 1-D signals: (N, C, L) is viewed as (N, C, 1, L), no copy
# ---------------------------------------------------------------------------------------------
def _img(a: Any) -> Any:
    return None if a is None else a[:, :, None, :]


def _sig(a: np.ndarray) -> np.ndarray:
    return a[:, :, 0, :]


def _as_1d(rule: Rule) -> Rule:
    """A rule of a 2-D kernel as the rule of its 1-D primitive."""

    def rule1d(g: Any, out: Any, saved: Any, *inputs: Any, **attrs: Any) -> Any:
        args = [a if a is None or a.ndim != 3 else _img(a) for a in inputs]
        res = rule(_img(g), _img(out), saved, *args, **attrs)
        return _sig(res) if res.ndim == 4 else res

    rule1d.__name__ = rule.__name__.replace("2d", "1d")
    return rule1d


def _conv1d_forward(x: Any, w: Any, b: Any = None, **attrs: Any) -> tuple[Any, Any]:
    out, cols = K.conv2d_forward(_img(x), _img(w), b, **attrs)
    return _sig(out), cols


def _max_pool1d_forward(x: Any, **attrs: Any) -> tuple[Any, Any]:
    out, arg = K.max_pool2d_forward(_img(x), **attrs)
    return _sig(out), arg


def _avg_pool1d_forward(x: Any, **attrs: Any) -> Any:
    return _sig(K.avg_pool2d_forward(_img(x), **attrs))


def _adaptive_avg_pool1d_forward(x: Any, **attrs: Any) -> Any:
    return _sig(K.adaptive_avg_pool2d_forward(_img(x), **attrs))


def _avg_pool2d_grad(g: Any, out: Any, saved: Any, x: Any, **attrs: Any) -> Any:
    return K.avg_pool2d_grad(g, out, x, **attrs)


def _adaptive_avg_pool2d_grad(g: Any, out: Any, saved: Any, x: Any, **attrs: Any) -> Any:
    return K.adaptive_avg_pool2d_grad(g, out, x, **attrs)


# ---------------------------------------------------------------------------------------------
# test inputs and the PyTorch counterparts (for the check_primitive suite)
# ---------------------------------------------------------------------------------------------
def _conv_attrs(s: Any, p: Any, d: Any, groups: int) -> dict[str, Any]:
    return {"stride": s, "padding": p, "dilation": d, "groups": groups}


def _conv2d_examples(rng: np.random.Generator, dtype: Any) -> list[Any]:
    """Strides, padding (asymmetric as "same" makes it), dilation, groups, depthwise, odd
    sizes and batch 1."""
    cases: list[Any] = []
    for n, c, h, w, o, kh, kw, attrs in [
        (2, 3, 7, 6, 4, 3, 3, _conv_attrs((1, 1), (1, 1, 1, 1), (1, 1), 1)),
        (1, 4, 9, 8, 6, 3, 2, _conv_attrs((2, 1), (0, 1, 2, 0), (1, 2), 2)),
        (2, 3, 5, 7, 6, 2, 3, _conv_attrs((1, 2), (0, 0, 0, 0), (2, 1), 3)),
        (1, 1, 6, 5, 2, 4, 4, _conv_attrs((1, 1), (1, 2, 1, 2), (1, 1), 1)),
    ]:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((o, c // attrs["groups"], kh, kw)).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        cases.append(((x, wt, b), attrs))
    cases.append(((x, wt), attrs))  # no bias
    return cases


def _conv1d_examples(rng: np.random.Generator, dtype: Any) -> list[Any]:
    cases = []
    for n, c, length, o, k, attrs in [
        (2, 3, 11, 4, 3, _conv_attrs((1, 1), (0, 0, 1, 1), (1, 1), 1)),
        (1, 4, 9, 4, 2, _conv_attrs((1, 2), (0, 0, 0, 1), (1, 3), 4)),
        (3, 2, 7, 4, 5, _conv_attrs((1, 1), (0, 0, 2, 2), (1, 1), 2)),
    ]:
        x = rng.standard_normal((n, c, length)).astype(dtype)
        wt = rng.standard_normal((o, c // attrs["groups"], k)).astype(dtype)
        cases.append(((x, wt, rng.standard_normal(o).astype(dtype)), attrs))
    return cases


def _torch_pad(x: Any, padding: Any, value: float = 0.0) -> Any:
    import torch.nn.functional as tf

    t, b, left, r = padding
    return tf.pad(x, (left, r, t, b), value=value)


def _torch_conv2d(x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    import torch.nn.functional as tf

    return tf.conv2d(_torch_pad(x, attrs["padding"]), w, b, attrs["stride"], 0,
                     attrs["dilation"], attrs["groups"])  # fmt: skip


def _torch_conv1d(x: Any, w: Any, b: Any = None, **attrs: Any) -> Any:
    return _torch_conv2d(x[:, :, None], w[:, :, None], b, **attrs)[:, :, 0]


def _pool_examples(d: int, kind: str) -> Callable[..., list[Any]]:
    def examples(rng: np.random.Generator, dtype: Any) -> list[Any]:
        configs = [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 1), (1, 1, 1, 1)),
                   ((3, 2), (1, 2), (1, 2, 0, 1))]  # fmt: skip
        cases: list[Any] = []
        for i, (k, s, p) in enumerate(configs):
            shape: tuple[int, ...] = (2 - i % 2, 3, 7, 6)
            if d == 1:
                k, s, p, shape = (1, k[1]), (1, s[1]), (0, 0, p[2], p[3]), (*shape[:2], 9)
            x = rng.standard_normal(shape).astype(dtype)
            attrs: dict[str, Any]
            if kind == "max":
                attrs = {"kernel": k, "stride": s, "padding": p, "dilation": (1, 1 + i % 2)}
            else:
                attrs = {"kernel": k, "stride": s, "padding": p, "divisor_override": None,
                         "counted": p if i != 1 else (0, 0, 0, 0)}  # fmt: skip
            cases.append(((x,), attrs))
        return cases

    return examples


def _torch_max_pool2d(x: Any, **attrs: Any) -> Any:
    import torch.nn.functional as tf

    xp = _torch_pad(x, attrs["padding"], float("-inf"))
    return tf.max_pool2d(xp, attrs["kernel"], attrs["stride"], 0, attrs["dilation"])


def _torch_max_pool1d(x: Any, **attrs: Any) -> Any:
    return _torch_max_pool2d(x[:, :, None], **attrs)[:, :, 0]


def _torch_avg_pool2d(x: Any, **attrs: Any) -> Any:
    """The window sums (a convolution with ones) over each window's count of counted cells —
    the input and its ``counted`` padding, a convolution of ones too (PyTorch's rule, with
    ``ceil_mode``'s extra cells never counted) — or over ``divisor_override``; computed with
    torch alone, independently of the kernel's ``_avg_divisor``."""
    import torch
    import torch.nn.functional as tf

    (kh, kw), c = attrs["kernel"], x.shape[1]
    ones = torch.ones((c, 1, kh, kw), dtype=x.dtype)
    sums = tf.conv2d(_torch_pad(x, attrs["padding"]), ones, stride=attrs["stride"], groups=c)
    if attrs["divisor_override"] is not None:
        return sums / attrs["divisor_override"]
    (t, b, left, r), (ct, cb, cl, cr) = attrs["padding"], attrs["counted"]
    mask = tf.pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype), (cl, cr, ct, cb), value=1.0)
    mask = tf.pad(mask, (left - cl, r - cr, t - ct, b - cb), value=0.0)
    count = tf.conv2d(mask, ones[:1], stride=attrs["stride"])
    return sums / count


def _torch_avg_pool1d(x: Any, **attrs: Any) -> Any:
    return _torch_avg_pool2d(x[:, :, None], **attrs)[:, :, 0]


def _adaptive_examples(d: int) -> Callable[..., list[Any]]:
    def examples(rng: np.random.Generator, dtype: Any) -> list[Any]:
        sizes = [(1, 1), (3, 2), (4, 5)] if d == 2 else [(1, 1), (1, 3), (1, 4)]
        shape = (2, 3, 7, 9) if d == 2 else (2, 3, 9)
        return [((rng.standard_normal(shape).astype(dtype),), {"output_size": s}) for s in sizes]

    return examples


def _torch_adaptive_avg_pool2d(x: Any, output_size: Any) -> Any:
    import torch.nn.functional as tf

    return tf.adaptive_avg_pool2d(x, output_size)


def _torch_adaptive_avg_pool1d(x: Any, output_size: Any) -> Any:
    import torch.nn.functional as tf

    return tf.adaptive_avg_pool1d(x, output_size[1])


# ---------------------------------------------------------------------------------------------
# the primitives
# ---------------------------------------------------------------------------------------------
# NOTE: the input gradient reads the weight; the weight gradient reads the input: the batched
# layout saves its im2col columns (the weight gradient is one GEMM), the per-sample layout a
# view of the input, whose columns it builds again (so an in-place change of x must raise
# when the weight needs a gradient, as in PyTorch).
_CONV_RULES = (K.conv2d_grad_input, K.conv2d_grad_weight, K.conv2d_grad_bias)
conv2d_p = defprimitive(
    "conv2d", K.conv2d_forward, vjps=_CONV_RULES, kind="contraction", saves=True,
    needed_by=((1,), (0,), ()), examples=_conv2d_examples, torch=_torch_conv2d,
)  # fmt: skip
conv1d_p = defprimitive(
    "conv1d", _conv1d_forward, vjps=tuple(_as_1d(r) for r in _CONV_RULES), kind="contraction",
    saves=True, needed_by=((1,), (0,), ()), examples=_conv1d_examples, torch=_torch_conv1d,
)  # fmt: skip
# the pools' rules read what the forward saved (the windows) and, for the maximum, the output
# (the arg-max is where a window equals it); the input only by its shape
max_pool2d_p = defprimitive(
    "max_pool2d", K.max_pool2d_forward, vjps=(K.max_pool2d_grad,), kind="reduction",
    saves=True, reads_inputs=False, reads_out=True, examples=_pool_examples(2, "max"),
    torch=_torch_max_pool2d,
)  # fmt: skip
max_pool1d_p = defprimitive(
    "max_pool1d", _max_pool1d_forward, vjps=(_as_1d(K.max_pool2d_grad),), kind="reduction",
    saves=True, reads_inputs=False, reads_out=True, examples=_pool_examples(1, "max"),
    torch=_torch_max_pool1d,
)  # fmt: skip
avg_pool2d_p = defprimitive(
    "avg_pool2d", K.avg_pool2d_forward, vjps=(_avg_pool2d_grad,), kind="reduction",
    reads_inputs=False, examples=_pool_examples(2, "avg"), torch=_torch_avg_pool2d,
)  # fmt: skip
avg_pool1d_p = defprimitive(
    "avg_pool1d", _avg_pool1d_forward, vjps=(_as_1d(_avg_pool2d_grad),), kind="reduction",
    reads_inputs=False, examples=_pool_examples(1, "avg"), torch=_torch_avg_pool1d,
)  # fmt: skip
adaptive_avg_pool2d_p = defprimitive(
    "adaptive_avg_pool2d", K.adaptive_avg_pool2d_forward, vjps=(_adaptive_avg_pool2d_grad,),
    kind="reduction", reads_inputs=False, examples=_adaptive_examples(2),
    torch=_torch_adaptive_avg_pool2d,
)  # fmt: skip
adaptive_avg_pool1d_p = defprimitive(
    "adaptive_avg_pool1d", _adaptive_avg_pool1d_forward,
    vjps=(_as_1d(_adaptive_avg_pool2d_grad),), kind="reduction", reads_inputs=False,
    examples=_adaptive_examples(1), torch=_torch_adaptive_avg_pool1d,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# argument checks (PyTorch's rules, chainrule's messages)
# ---------------------------------------------------------------------------------------------
def _ints(fn: str, name: str, value: Any, n: int, low: int) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints, each ≥ ``low``) as an n-tuple."""
    if type(value) is int and value >= low:  # the common cases, without the general checks
        return (value,) * n
    if (
        type(value) is tuple
        and len(value) == n
        and all(type(v) is int for v in value)
        and min(value, default=low) >= low
    ):
        return value
    vals = value if isinstance(value, (tuple, list)) else (value,) * n
    if len(vals) != n or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in vals
    ):
        raise TypeError(f"{fn}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < low for v in vals):
        raise ValueError(f"{fn}: {name} must be >= {low}, got {value!r}")
    return tuple(int(v) for v in vals)


def _input(fn: str, x: Any, spatial: int) -> tuple[Tensor, bool]:
    """``x`` as a float Tensor with a batch axis; True if one was added (unbatched input)."""
    x = as_tensor(x)
    if x.dtype.kind != "f":
        x = Tensor._const(x.data.astype(np.float32))
    names = "(N, C, L)" if spatial == 1 else "(N, C, H, W)"
    if x.ndim == spatial + 1:
        return ops.reshape(x, 1, *x.shape), True
    if x.ndim != spatial + 2:
        raise ValueError(
            f"{fn} expected a {spatial + 2}-D input {names} (or {spatial + 1}-D without the "
            f"batch axis), got shape {x.shape}"
        )
    return x, False


def _check_fits(
    fn: str, size: tuple[int, ...], pads: tuple[int, ...], span: tuple[int, ...]
) -> None:
    padded = tuple(n + pads[2 * i] + pads[2 * i + 1] for i, n in enumerate(size))
    if any(s > p for s, p in zip(span, padded)):
        show = lambda t: " x ".join(map(str, t))
        raise ValueError(
            f"{fn}: the kernel ({show(span)}, dilated) is larger than the padded input "
            f"({show(padded)}); use a smaller kernel or more padding"
        )


def _as_pads(t: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Per-side pads of the 2-D kernels from 1-D or 2-D (lo, hi) pairs."""
    return (0, 0, t[0], t[1]) if len(t) == 2 else (t[0], t[1], t[2], t[3])


def _lift(t: tuple[int, ...], fill: int = 1) -> tuple[int, int]:
    return (fill, t[0]) if len(t) == 1 else (t[0], t[1])


# ---------------------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------------------
def _conv(
    fn: str,
    d: int,
    x: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
) -> Tensor:
    x, unbatched = _input(fn, x, d)
    w = as_tensor(weight)
    if w.ndim != d + 2:
        raise ValueError(
            f"{fn}: weight must be {d + 2}-D (out_channels, in_channels/groups, *kernel), got "
            f"shape {w.shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    o, cg = w.shape[:2]
    c = x.shape[1]
    if o % groups:
        raise ValueError(f"{fn}: out_channels ({o}) must be divisible by groups ({groups})")
    if c != cg * groups:
        raise ValueError(
            f"{fn}: expected input with {cg * groups} channels (weight {w.shape}, groups="
            f"{groups}), got input of shape {x.shape}"
        )
    b = None if bias is None else as_tensor(bias)
    if b is not None and b.shape != (o,):
        raise ValueError(f"{fn}: bias must have shape ({o},), got {b.shape}")
    st = _ints(fn, "stride", stride, d, 1)
    dil = _ints(fn, "dilation", dilation, d, 1)
    kernel = tuple(w.shape[2:])
    span = tuple(di * (k - 1) + 1 for di, k in zip(dil, kernel))
    if isinstance(padding, str):
        if padding == "valid":
            pads: tuple[int, ...] = (0,) * (2 * d)
        elif padding == "same":
            if any(s != 1 for s in st):
                raise ValueError(f"{fn}: padding='same' needs stride 1, got stride={stride!r}")
            # total d·(k-1) per axis; an odd total puts the extra one at the end, as PyTorch
            pads = tuple(p for sp in span for p in ((sp - 1) // 2, sp - 1 - (sp - 1) // 2))
        else:
            raise ValueError(
                f"{fn}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}"
            )
    else:
        pads = tuple(p for p in _ints(fn, "padding", padding, d, 0) for _ in (0, 1))
    _check_fits(fn, tuple(x.shape[2:]), pads, span)
    dtype = np.result_type(x.dtype, w.dtype, *([] if b is None else [b.dtype]))
    x, w = (t if t.dtype == dtype else ops.astype(t, dtype) for t in (x, w))
    inputs = (x, w) if b is None else (x, w, b if b.dtype == dtype else ops.astype(b, dtype))
    attrs = {"stride": _lift(st), "padding": _as_pads(pads), "dilation": _lift(dil),
             "groups": groups}  # fmt: skip
    out = apply(conv2d_p if d == 2 else conv1d_p, *inputs, **attrs)
    return ops.reshape(out, *out.shape[1:]) if unbatched else out


def conv1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution (cross-correlation, as PyTorch) over signals ``(N, C_in, L)``.

    ``out[n, o, t] = bias[o] + Σ_{c, k} weight[o, c, k] · x_pad[n, g(o)·C_in/G + c, t·s + k·d]``
    where ``g(o)`` is output channel o's group. ``padding`` is an int, a 1-tuple, ``"valid"``
    (none) or ``"same"`` (output length = input length; stride 1).

    Shape
    -----
    input ``(N, C_in, L)``, weight ``(C_out, C_in/groups, K)``, bias ``(C_out,)``;
    output ``(N, C_out, ⌊(L + 2p - d·(K-1) - 1)/s⌋ + 1)``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> x = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    >>> cr.nn.functional.conv1d(x, np.ones((1, 1, 2), np.float32)).data
    array([[[1., 3., 5., 7.]]], dtype=float32)
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) over images ``(N, C_in, H, W)``.

    ``out[n, o, y, x] = bias[o] + Σ_{c,i,j} weight[o, c, i, j] ·
    x_pad[n, g(o)·C_in/G + c, y·s_h + i·d_h, x·s_w + j·d_w]``. ``stride``, ``padding`` and
    ``dilation`` are ints or pairs; ``padding`` may also be ``"valid"`` or ``"same"``
    (stride 1; an odd total padding puts the extra row/column at the end, as PyTorch);
    ``groups=C_in`` with ``C_out = m·C_in`` is a depthwise convolution.

    The backward rules are the transposed products: ``∂C/∂W = G @ colsᵀ`` with the columns
    saved by the forward, ``∂C/∂x = col2im(Wᵀ @ G)``, ``∂C/∂b = Σ G``.

    Shape
    -----
    input ``(N, C_in, H, W)`` (or ``(C_in, H, W)``), weight ``(C_out, C_in/groups, KH, KW)``,
    output ``(N, C_out, OH, OW)``, ``OH = ⌊(H + 2p_h - d_h·(KH-1) - 1)/s_h⌋ + 1``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> x = np.ones((2, 3, 8, 8), np.float32)
    >>> cr.nn.functional.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding="same").shape
    (2, 4, 8, 8)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------
def _pool_geometry(
    fn: str,
    d: int,
    size: tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Kernel, stride, padding, dilation and the per-side pads (with ``ceil_mode``'s extra
    cells at the end) of a pooling call over spatial sizes ``size``, checked as PyTorch checks
    them."""
    k = _ints(fn, "kernel_size", kernel_size, d, 1)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else (
        _ints(fn, "stride", stride, d, 1))  # fmt: skip
    p = _ints(fn, "padding", padding, d, 0)
    dil = _ints(fn, "dilation", dilation, d, 1)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(
            f"{fn}: padding must be at most half of kernel_size, got padding={padding!r}, "
            f"kernel_size={kernel_size!r}"
        )
    span = tuple(di * (ki - 1) + 1 for di, ki in zip(dil, k))
    pads = []
    for n, pi, si, sp in zip(size, p, s, span):
        extra = 0
        if ceil_mode:  # PyTorch's size: ⌈(n + 2p - span) / s⌉ + 1, at least 1 ...
            o = -(-(n + 2 * pi - sp) // si) + 1
            if (o - 1) * si >= n + pi:  # ... and the last window starts inside the input
                o -= 1
            if o >= 1:  # a window larger than the padded input is fine: it gets extra cells
                extra = max(0, (o - 1) * si + sp - (n + 2 * pi))
        pads += [pi, pi + extra]
    _check_fits(fn, size, tuple(pads), span)  # no window at all: refused, as PyTorch
    return k, s, p, dil, tuple(pads)


def _max_pool(
    fn: str, d: int, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
    ceil_mode: bool, return_indices: bool,
) -> Tensor:  # fmt: skip
    if return_indices:
        raise ValueError(f"{fn}: return_indices=True is not supported by chainrule")
    x, unbatched = _input(fn, x, d)
    k, s, _, dil, pads = _pool_geometry(fn, d, tuple(x.shape[2:]), kernel_size, stride, padding,
                                        dilation, ceil_mode)  # fmt: skip
    attrs = {"kernel": _lift(k), "stride": _lift(s), "padding": _as_pads(pads),
             "dilation": _lift(dil)}  # fmt: skip
    out = apply(max_pool2d_p if d == 2 else max_pool1d_p, x, **attrs)
    return ops.reshape(out, *out.shape[1:]) if unbatched else out


def max_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Maximum over windows of ``kernel_size`` (stride defaults to kernel_size; padding is
    -∞). The gradient goes to each window's arg-max; ties go to the first position in the
    window and NaN propagates, as in PyTorch."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)  # fmt: skip


def max_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """2-D max pooling: ``out[n, c, y, x] = max_{i,j} x_pad[n, c, y·s_h + i·d_h, x·s_w + j·d_w]``.

    The gradient goes to each window's arg-max (summed where windows overlap); ties go to
    the first position in row-major order and NaN propagates, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> cr.nn.functional.max_pool2d(x, 2).data
    array([[[[ 5.,  7.],
             [13., 15.]]]], dtype=float32)
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)  # fmt: skip


def _avg_pool(
    fn: str, d: int, x: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
    count_include_pad: bool, divisor_override: Any,
) -> Tensor:  # fmt: skip
    x, unbatched = _input(fn, x, d)
    k, s, p, _, pads = _pool_geometry(
        fn, d, tuple(x.shape[2:]), kernel_size, stride, padding, 1, ceil_mode
    )
    bad = isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral)
    if divisor_override is not None and (bad or divisor_override == 0):
        raise ValueError(f"{fn}: divisor_override must be a non-zero int, got {divisor_override!r}")
    if divisor_override is not None:
        divisor_override = int(divisor_override)  # np.int64(3) as 3 (the attrs stay plain)
    counted = tuple(q for pi in p for q in (pi, pi)) if count_include_pad else (0,) * (2 * d)
    attrs = {"kernel": _lift(k), "stride": _lift(s), "padding": _as_pads(pads),
             "counted": _as_pads(counted), "divisor_override": divisor_override}  # fmt: skip
    out = apply(avg_pool2d_p if d == 2 else avg_pool1d_p, x, **attrs)
    return ops.reshape(out, *out.shape[1:]) if unbatched else out


def avg_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over windows of ``kernel_size`` (zero padding counted unless
    ``count_include_pad=False``), as ``torch.nn.functional.avg_pool1d``."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)  # fmt: skip


def avg_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling: ``out[n, c, y, x] = Σ_{i,j} x_pad[n, c, y·s_h + i, x·s_w + j] / D``
    with ``D = KH·KW`` (or the number of unpadded cells with ``count_include_pad=False``, or
    ``divisor_override``); the gradient spreads ``∂C/∂out / D`` over each window."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)  # fmt: skip


def _adaptive(fn: str, d: int, x: Any, output_size: Any) -> Tensor:
    x, unbatched = _input(fn, x, d)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * d
    if len(sizes) != d:
        raise TypeError(f"{fn}: output_size must be an int or a tuple of {d}, got {output_size!r}")
    size = tuple(n if v is None else v for v, n in zip(sizes, x.shape[2:]))
    size = _ints(fn, "output_size", size, d, 1)
    if any(n == 0 for n in x.shape[2:]):
        raise ValueError(f"{fn}: expected non-empty spatial dimensions, got shape {x.shape}")
    attrs = {"output_size": _lift(size)}
    out = apply(adaptive_avg_pool2d_p if d == 2 else adaptive_avg_pool1d_p, x, **attrs)
    return ops.reshape(out, *out.shape[1:]) if unbatched else out


def adaptive_avg_pool1d(input: Any, output_size: Any) -> Tensor:
    """Average over ``output_size`` adaptive bins ``[⌊i·L/n⌋, ⌈(i+1)·L/n⌉)``, as PyTorch."""
    return _adaptive("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Any, output_size: Any) -> Tensor:
    """Average over adaptive bins (PyTorch's ``⌊i·H/OH⌋ … ⌈(i+1)·H/OH⌉``) to ``output_size``
    (an int, a pair, None keeps a dimension); ``output_size=1`` is global average pooling.

    Computed as ``P_H @ x @ P_Wᵀ`` with the bin-averaging matrices; the gradient is
    ``P_Hᵀ @ G @ P_W``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> cr.nn.functional.adaptive_avg_pool2d(x, 1).data.ravel()
    array([1.5, 5.5], dtype=float32)
    """
    return _adaptive("adaptive_avg_pool2d", 2, input, output_size)
