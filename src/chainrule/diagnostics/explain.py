"""Explain one weight's gradient as the chain rule's product of three factors.

For the weight ``w_ij`` of a Linear layer (input ``i`` -> unit ``j``), with ``z_j = Σ_i a_i w_ij
+ b_j`` and ``a_j = f(z_j)`` the activation that follows (the identity if none)::

    ∂C/∂w_ij = Σ_samples  ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂w_ij
                          (error)   (slope f')  (input a_i)

and, for a hidden unit, the error is backpropagated from the next layer's units ``k``:
``∂C/∂a_j = Σ_k δ_k · w_jk`` with ``δ_k = ∂C/∂z_k``. Every number comes from one forward and one
backward pass; the total equals the engine's gradient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.layers import Linear, LogSoftmax, Softmax, as_input
from ..nn.module import Module, Sequential
from ..tensor import Tensor, enable_grad

__all__ = ["Explanation", "explain", "parse_weight"]


@dataclass
class Explanation:
    """The decomposition of ``∂C/∂w_ij`` (arrays have one entry per sample)."""

    weight: str
    index: tuple[int, int]
    value: float
    dC_da: np.ndarray  # ∂C/∂a_j per sample (includes the loss's 1/n)
    da_dz: np.ndarray  # f'(z_j) per sample
    dz_dw: np.ndarray  # a_i per sample (the input the weight multiplies)
    per_sample: np.ndarray  # the product of the three
    total: float  # Σ over samples = ∂C/∂w_ij
    engine_grad: float  # what backward() computed
    activation: str
    delta: np.ndarray  # δ_j = ∂C/∂z_j per sample
    next_terms: list[tuple[int, float, float]] = field(default_factory=list)  # (k, Σδ_k, w_jk)
    is_output: bool = False
    lr: float | None = None
    updated: float | None = None
    backprop_error: float = 0.0  # max over samples |Σ_k δ_k w_jk - ∂C/∂a_j|

    def __str__(self) -> str:
        i, j = self.index
        n = len(self.per_sample)
        lines = [
            f"∂C/∂w for {self.weight}[{i},{j}] (input {i} -> unit {j}), over {n} sample(s):",
            f"  ∂C/∂w_ij = Σ_samples ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂w_ij   (a_j = {self.activation}(z_j))",
        ]
        show = min(n, 5)
        lines.append("  sample   ∂C/∂a_j        ∂a_j/∂z_j      ∂z_j/∂w_ij (a_i)   product")
        for s in range(show):
            lines.append(
                f"  {s:>6}   {self.dC_da[s]: .6e}  {self.da_dz[s]: .6e}  {self.dz_dw[s]: .6e}      "
                f"{self.per_sample[s]: .6e}"
            )
        if n > show:
            lines.append(f"  ... {n - show} more samples")
        lines.append(f"  sum over samples: {self.total: .10e}")
        lines.append(
            f"  engine gradient:  {self.engine_grad: .10e}  (difference {abs(self.total - self.engine_grad):.1e})"
        )
        if self.is_output:
            lines.append("  unit j is an output: ∂C/∂a_j comes straight from the loss")
        else:
            lines.append(
                "  backpropagated error: ∂C/∂a_j = Σ_k δ_k · w_jk over the next layer's units k "
                f"(δ_j = ∂C/∂z_j summed over samples: {float(self.delta.sum()): .6e})"
            )
            lines.append(
                f"    (per sample, Σ_k δ_k·w_jk reproduces ∂C/∂a_j to {self.backprop_error:.1e})"
            )
            for k, d, w in self.next_terms[:5]:
                lines.append(f"    k={k:<4} Σδ_k = {d: .6e}   w_jk = {w: .6e}")
            if len(self.next_terms) > 5:
                lines.append(f"    ... {len(self.next_terms) - 5} more units")
        if self.lr is not None and self.updated is not None:
            lines.append(
                f"  gradient-descent update: w_ij - η·∂C/∂w_ij = {self.value:.6g} - {self.lr:g}·"
                f"{self.total:.6g} = {self.updated:.6g}"
            )
        return "\n".join(lines)


_WEIGHT = re.compile(r"^\s*([\w.]+?)(?:\.weight)?\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]\s*$")


def parse_weight(text: str) -> tuple[str, tuple[int, int]]:
    """``"2.weight[3,1]"`` -> ``("2.weight", (3, 1))``."""
    m = _WEIGHT.match(text)
    if not m:
        raise ValueError(
            f"weight must look like '2.weight[3,1]' (layer name, input, unit), got {text!r}"
        )
    return f"{m.group(1)}.weight", (int(m.group(2)), int(m.group(3)))


def explain(
    model: Module,
    X: Any,
    y: Any,
    loss: Any,
    weight: str,
    index: tuple[int, int] | None = None,
    lr: float | None = None,
) -> Explanation:
    """Decompose ``∂C/∂w_ij`` of a Sequential MLP into the chain rule's factors.

    Parameters
    ----------
    model : Sequential
        Linear layers, each optionally followed by an elementwise activation (Dropout is
        treated as in eval mode). A final Softmax/LogSoftmax is treated as part of the loss.
    X, y : array_like
        A batch and its targets.
    loss : loss module or callable ``loss(output, y)``
    weight : str
        The weight's name, e.g. ``"2.weight"``, or with the entry: ``"2.weight[3,1]"``.
    index : (i, j), optional
        Input ``i`` and unit ``j`` (if not in ``weight``).
    lr : float, optional
        Also show the gradient-descent update ``w_ij - lr·∂C/∂w_ij``.

    Returns
    -------
    Explanation
        Its ``str()`` is the printed explanation; ``total`` equals ``engine_grad``.
    """
    if "[" in weight:
        weight, index = parse_weight(weight)
    if index is None:
        raise ValueError("give the entry as index=(i, j) or in the name, e.g. '2.weight[3,1]'")
    if not isinstance(model, Sequential):
        raise TypeError(f"explain needs a Sequential model, got {type(model).__name__}")
    name = weight[: -len(".weight")] if weight.endswith(".weight") else weight
    layers = list(model)
    try:
        pos = int(name)
    except ValueError:
        raise ValueError(
            f"weight {weight!r}: the layer must be given by its index in the Sequential"
        ) from None
    if not 0 <= pos < len(layers) or not isinstance(layers[pos], Linear):
        linear = [f"{k}.weight" for k, m in enumerate(layers) if isinstance(m, Linear)]
        raise ValueError(
            f"{weight!r} is not a Linear layer's weight; the weights are: {', '.join(linear)}"
        )
    lin = layers[pos]
    assert isinstance(lin, Linear)  # checked above
    i, j = int(index[0]), int(index[1])
    if not (0 <= i < lin.in_features and 0 <= j < lin.out_features):
        raise ValueError(
            f"index ({i}, {j}) is outside {weight} of shape ({lin.in_features}, {lin.out_features})"
        )
    was_training = model.training
    model.eval()
    try:
        return _explain(model, layers, pos, lin, i, j, X, y, loss, weight, lr)
    finally:
        model.train(was_training)


def _explain(
    model: Module,
    layers: list[Module],
    pos: int,
    lin: Linear,
    i: int,
    j: int,
    X: Any,
    y: Any,
    loss: Any,
    weight: str,
    lr: float | None,
) -> Explanation:
    # the activation that follows the Linear (elementwise), if any
    act: Module | None = None
    nxt = pos + 1
    while nxt < len(layers) and type(layers[nxt]).__name__ == "Dropout":
        nxt += 1
    if nxt < len(layers) and not isinstance(layers[nxt], (Linear, Softmax, LogSoftmax)):
        act = layers[nxt]
        nxt += 1
    # the next Linear's pre-activation carries δ_k for the backpropagated sum
    next_lin_pos = next((k for k in range(nxt, len(layers)) if isinstance(layers[k], Linear)), None)
    model.zero_grad()
    with enable_grad():  # one forward pass, keeping the gradients of z, a and the next z
        h: Any = as_input(X, lin.weight.dtype, "explain")
        a_in = z = a_out = next_z = None
        for k, layer in enumerate(layers):
            if k == pos:
                a_in = h
                z = layer(h).retain_grad()
                h = z
            elif act is not None and layer is act:
                a_out = layer(h).retain_grad()
                h = a_out
            else:
                h = layer(h)
                if k == next_lin_pos:
                    next_z = h.retain_grad()
        c = loss(h, y)
    c.backward()
    assert a_in is not None and z is not None
    a_i = np.asarray(a_in.data, np.float64)[:, i]
    if a_out is not None:
        dC_da = a_out.grad[:, j].astype(np.float64)
        zz = Tensor(z.data[:, j].copy(), requires_grad=True)
        with enable_grad():
            act(zz).sum().backward()  # type: ignore[misc]
        da_dz = zz.grad.astype(np.float64)  # type: ignore[union-attr]
        act_name = type(act).__name__.lower()
    else:
        dC_da = z.grad[:, j].astype(np.float64)  # type: ignore[index]
        da_dz = np.ones_like(dC_da)
        act_name = "identity"
    delta = z.grad[:, j].astype(np.float64)  # type: ignore[index]
    per_sample = dC_da * da_dz * a_i
    engine = float(lin.weight.grad[i, j])  # type: ignore[index]
    terms: list[tuple[int, float, float]] = []
    recon_error = 0.0
    if next_z is not None and next_lin_pos is not None:
        w_next = layers[next_lin_pos].weight.data  # type: ignore[attr-defined]
        d_next = next_z.grad.astype(np.float64)  # type: ignore[union-attr]
        totals = d_next.sum(axis=0)
        terms = sorted(
            ((k, float(totals[k]), float(w_next[j, k])) for k in range(w_next.shape[1])),
            key=lambda t: -abs(t[1] * t[2]),
        )
        recon = d_next @ w_next[j].astype(np.float64)  # Σ_k δ_k w_jk, sample by sample
        recon_error = float(np.max(np.abs(recon - dC_da))) if len(recon) else 0.0
    value = float(lin.weight.data[i, j])
    total = float(per_sample.sum())
    model.zero_grad()
    return Explanation(
        weight=weight,
        index=(i, j),
        value=value,
        dC_da=dC_da,
        da_dz=da_dz,
        dz_dw=a_i,
        per_sample=per_sample,
        total=total,
        engine_grad=engine,
        activation=act_name,
        delta=delta,
        next_terms=terms,
        is_output=next_lin_pos is None,
        lr=lr,
        updated=None if lr is None else value - lr * total,
        backprop_error=recon_error,
    )
