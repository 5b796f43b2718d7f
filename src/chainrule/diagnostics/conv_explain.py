"""The chain rule for one weight of a convolution: a sum over samples *and positions*.

For ``z[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · a[n, c, y·s + i·d, x·s + j·d]`` (the
layer's input ``a`` zero-padded):

    ∂C/∂w[o,c,i,j] = Σ_n Σ_{y,x} ∂C/∂z[n,o,y,x] · a[n, c, y·s + i·d, x·s + j·d]
    ∂C/∂b[o]       = Σ_n Σ_{y,x} ∂C/∂z[n,o,y,x]

— the same weight is used at every position, so its gradient collects one term per position
and sample. :func:`chainrule.explain` calls :func:`explain_conv` for a Conv1d/Conv2d weight.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.conv import Conv1d, Conv2d
from ..nn.layers import as_input
from ..tensor import Tensor, enable_grad

__all__ = ["ConvExplanation", "explain_conv"]


@dataclass
class ConvExplanation:
    """``∂C/∂w`` of one convolution weight (or bias) as the sum over samples and positions."""

    weight: str
    index: tuple[int, ...]
    per_sample: np.ndarray  # Σ over positions, one entry per sample
    positions: int  # output positions per sample (OH·OW or L_out)
    total: float
    engine_grad: float
    value: float | None = None  # the entry's current value (in the model)
    lr: float | None = None
    updated: float | None = None  # value - lr·engine_grad in the parameter's dtype, as SGD

    def __str__(self) -> str:
        n = len(self.per_sample)
        if len(self.index) == 1:
            head = (
                f"∂C/∂b for {self.weight}[{self.index[0]}] (bias of output channel {self.index[0]})"
            )
            formula = "∂C/∂b[o] = Σ_samples Σ_positions ∂C/∂z[n,o,p]"
        else:
            o, c, *k = self.index
            head = (f"∂C/∂w for {self.weight}{list(self.index)} (input channel {c} -> output "
                    f"channel {o}, kernel offset {tuple(k)})")  # fmt: skip
            formula = "∂C/∂w[o,c,k] = Σ_samples Σ_positions ∂C/∂z[n,o,p] · a[n,c,p·s + k·d]"
        lines = [f"{head}, over {n} sample(s) x {self.positions} position(s):", f"  {formula}"]
        for s in range(min(n, 5)):
            lines.append(f"  sample {s:>4}: Σ over positions = {self.per_sample[s]: .6e}")
        if n > 5:
            lines.append(f"  ... {n - 5} more samples")
        lines.append(f"  sum over samples: {self.total: .10e}")
        diff = abs(self.total - self.engine_grad)
        same = diff <= 5e-11 * abs(self.engine_grad) or diff == 0.0
        lines.append(f"  engine gradient:  {self.engine_grad: .10e}  "
                     + ("(the same to every digit shown)" if same else f"(difference {diff:.1e})"))  # fmt: skip
        if self.lr is not None and self.value is not None and self.updated is not None:
            from .explain import update_line

            sym = "b" if len(self.index) == 1 else "w"
            lines.append(update_line(self.value, self.updated, self.engine_grad, self.lr, sym))
        return "\n".join(lines)


def explain_conv(
    model: Any,
    X: Any,
    y: Any,
    loss_fn: Any,
    pos: int,
    weight: str,
    index: Any,
    lr: float | None = None,
) -> ConvExplanation:
    """Decompose the gradient of ``weight`` (layer ``pos`` of the Sequential ``model``, a
    Conv1d or Conv2d) at ``index``; computed on a float64 copy in eval mode. With ``lr``,
    also the gradient-descent step ``w - lr·∂C/∂w`` in the parameter's dtype."""
    work = copy.deepcopy(model).to(np.float64)
    work.eval()
    work.zero_grad()
    layers = list(work)
    conv = layers[pos]
    if not isinstance(conv, (Conv1d, Conv2d)):
        raise TypeError(f"layer {pos} is not a convolution")
    is_bias = weight.endswith(".bias")
    idx: tuple[int, ...] = (
        (int(index),) if isinstance(index, (int, np.integer)) else tuple(int(k) for k in index)
    )
    shape = (conv.out_channels,) if is_bias else tuple(conv.weight.shape)
    if is_bias and conv.bias is None:
        raise ValueError(f"{weight!r}: layer {pos} was built with bias=False")
    if len(idx) != len(shape) or not all(0 <= k < s for k, s in zip(idx, shape)):
        raise ValueError(f"index {idx} is outside {weight} of shape {shape}")
    X = X.detach() if isinstance(X, Tensor) else X
    with enable_grad():
        h: Any = as_input(np.asarray(X, np.float64), np.dtype(np.float64), "explain")
        a = z = None
        for k, layer in enumerate(layers):
            if k == pos:
                a = h
                z = layer(h).retain_grad()
                h = z
            else:
                h = layer(h)
        loss_fn(h, y).backward()
    assert a is not None and z is not None and z.grad is not None
    delta = z.grad if isinstance(conv, Conv2d) else z.grad[:, :, None, :]
    o = idx[0]
    if is_bias:
        per_sample = delta[:, o].sum(axis=(1, 2))
        engine = float(conv.bias.grad[o])  # type: ignore[union-attr, index]
    else:
        act = a.data if isinstance(conv, Conv2d) else a.data[:, :, None, :]
        g = conv.groups
        c = (o // (conv.out_channels // g)) * (conv.in_channels // g) + idx[1]
        kk = idx[2:] if isinstance(conv, Conv2d) else (0, idx[2])
        st = conv.stride if isinstance(conv, Conv2d) else (1, conv.stride[0])
        dl = conv.dilation if isinstance(conv, Conv2d) else (1, conv.dilation[0])
        if conv.padding == "same":  # an odd total puts the extra one at the end
            sides = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                     for d, k in zip(conv.dilation, conv.kernel_size)]  # fmt: skip
        elif conv.padding == "valid":
            sides = [(0, 0)] * len(conv.kernel_size)
        else:
            sides = [(int(q), int(q)) for q in conv.padding]
        if isinstance(conv, Conv1d):
            sides = [(0, 0), *sides]
        ap = np.pad(act[:, c], [(0, 0), *sides])
        oh, ow = delta.shape[2:]
        r0, c0 = kk[0] * dl[0], kk[1] * dl[1]
        seen = ap[:, r0 : r0 + st[0] * (oh - 1) + 1 : st[0], c0 : c0 + st[1] * (ow - 1) + 1 : st[1]]
        per_sample = (delta[:, o] * seen).sum(axis=(1, 2))
        engine = float(conv.weight.grad[idx])  # type: ignore[index]
    own = model[pos].bias if is_bias else model[pos].weight  # the model's, not the copy's
    value = own.data[idx]
    updated = (
        None if lr is None else float(value - own.data.dtype.type(lr) * own.data.dtype.type(engine))
    )
    return ConvExplanation(weight, idx, per_sample, int(np.prod(delta.shape[2:])),
                           float(per_sample.sum()), engine, float(value), lr, updated)  # fmt: skip
