"""Explain one weight's (or bias's) gradient as the chain rule's product of three factors.

For the weight ``w_ij`` of a Linear layer (input ``i`` -> unit ``j``), with ``z_j = Σ_i a_i w_ij
+ b_j`` and ``a_j = f(z_j)`` the activation that follows (the identity if none)::

    ∂C/∂w_ij = Σ_samples  ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂w_ij
                          (error)   (slope f')  (input a_i)

(for the bias ``b_j`` the last factor is ``∂z_j/∂b_j = 1``), and, for a hidden unit, the error
is backpropagated from the next layer's units ``k``: ``∂C/∂a_j = Σ_k δ_k · w_jk`` with
``δ_k = ∂C/∂z_k``. Every number comes from one forward and one backward pass on a copy of the
model; the total equals the engine's gradient. ``∂C/∂a_j`` is the derivative of the loss as it
is reduced: a ``"mean"`` loss puts its ``1/n`` there (the printed explanation says so).
"""

from __future__ import annotations

import copy
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.layers import Linear, LogSoftmax, Softmax, as_input
from ..nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from ..nn.module import Module, Sequential
from ..tensor import Tensor, enable_grad
from ..training.arguments import resolve_loss

__all__ = ["Explanation", "describe_loss", "explain", "parse_weight"]


def _f(x: float, spec: str = " .6e") -> str:
    """Format without a negative zero (``-0.000000e+00`` reads as a sign that is not there)."""
    return format(float(x) + 0.0, spec)


@dataclass
class Explanation:
    """The decomposition of ``∂C/∂w_ij`` (or ``∂C/∂b_j``); arrays have one entry per sample."""

    weight: str  # the parameter's name, "2.weight" or "2.bias"
    index: tuple[int, ...]  # (i, j) for a weight, (j,) for a bias
    value: float
    dC_da: np.ndarray  # ∂C/∂a_j per sample (includes the loss's 1/n under "mean")
    da_dz: np.ndarray  # f'(z_j) per sample
    dz_dw: np.ndarray  # a_i per sample (the input the weight multiplies); 1 for a bias
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
    loss: str = ""  # the loss used: its formula, reduction and where the 1/n goes
    next_delta: np.ndarray | None = None  # δ_k = ∂C/∂z_k of the next layer, (samples, k)
    next_weight: np.ndarray | None = None  # w_jk for every k of the next layer

    @property
    def is_bias(self) -> bool:
        return self.weight.endswith(".bias")

    def __str__(self) -> str:
        n = len(self.per_sample)
        if self.is_bias:
            (j,) = self.index
            lines = [
                f"∂C/∂b for {self.weight}[{j}] (bias of unit {j}), over {n} sample(s):",
            ]
            formula = "∂C/∂b_j = Σ_samples ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂b_j"
            last = "∂z_j/∂b_j"
        else:
            i, j = self.index
            lines = [
                f"∂C/∂w for {self.weight}[{i},{j}] (input {i} -> unit {j}), over {n} sample(s):"
            ]
            formula = "∂C/∂w_ij = Σ_samples ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂w_ij"
            last = "∂z_j/∂w_ij (a_i)"
        lines += ["  " + line for line in self.loss.splitlines()]
        lines.append(f"  {formula}   (a_j = {self.activation}(z_j))")
        show = min(n, 5)
        lines.append(f"  sample   ∂C/∂a_j        ∂a_j/∂z_j      {last:<18} product")
        for s in range(show):
            lines.append(
                f"  {s:>6}   {_f(self.dC_da[s])}  {_f(self.da_dz[s])}  {_f(self.dz_dw[s])}      "
                f"{_f(self.per_sample[s])}"
            )
        if n > show:
            lines.append(f"  ... {n - show} more sample{'s' if n - show > 1 else ''}")
        lines.append(f"  sum over samples: {_f(self.total, ' .10e')}")
        diff = abs(self.total - self.engine_grad)
        same = diff <= 5e-11 * abs(self.engine_grad) or diff == 0.0
        lines.append(
            f"  engine gradient:  {_f(self.engine_grad, ' .10e')}  "
            + ("(the same to every digit shown)" if same else f"(difference {diff:.1e})")
        )
        if self.is_output:
            lines.append("  unit j is an output: ∂C/∂a_j comes straight from the loss")
        else:
            lines += self._backprop_lines()
        if self.lr is not None and self.updated is not None:
            lines.append(self._update_line())
        return "\n".join(lines)

    def _backprop_lines(self) -> list[str]:
        lines = [
            "  backpropagated error: ∂C/∂a_j = Σ_k δ_k · w_jk over the next layer's units k",
            f"    (this unit's own δ_j = ∂C/∂z_j, summed over samples: {_f(float(self.delta.sum()))})",
        ]
        if self.next_delta is None or self.next_weight is None or not len(self.next_delta):
            return lines
        products = self.next_delta[0] * self.next_weight
        order = sorted(range(len(products)), key=lambda k: -abs(products[k]))
        lines.append("    sample 0:")
        for k in order[:5]:
            lines.append(
                f"    k={k:<4} δ_k·w_jk = {_f(self.next_delta[0, k])} · {_f(self.next_weight[k])}"
                f" = {_f(products[k])}"
            )
        if len(order) > 5:
            rest = float(sum(products[k] for k in order[5:]))
            more = f"... {len(order) - 5} more units, together"
            lines.append(f"    {more:<50}{_f(rest)}")
        lines.append(
            f"    {'total Σ_k δ_k·w_jk':<50}{_f(float(products.sum()))}"
            f"  (∂C/∂a_j of sample 0: {_f(self.dC_da[0])})"
        )
        scale = float(np.max(np.abs(self.dC_da))) if len(self.dC_da) else 0.0
        if self.backprop_error <= 1e-5 * scale:  # float32 rounding of a sum over k, or better
            lines.append("    (every sample: Σ_k δ_k·w_jk equals its ∂C/∂a_j, up to rounding)")
        else:
            lines.append(
                f"    (every sample: Σ_k δ_k·w_jk against ∂C/∂a_j: largest difference "
                f"{self.backprop_error:.1e})"
            )
        return lines

    def _update_line(self) -> str:
        assert self.lr is not None and self.updated is not None
        sym = "b_j" if self.is_bias else "w_ij"
        return update_line(self.value, self.updated, self.engine_grad, self.lr, sym)


def update_line(w: float, new: float, g: float, lr: float, sym: str) -> str:
    """``gradient-descent update: w - η·∂C/∂w = ... = new`` with the digits that show the step."""
    # enough significant digits to see the change (up to what the number holds)
    d = 6
    while d < 17 and format(w, f".{d}g") == format(new, f".{d}g"):
        d += 1
    line = (
        f"  gradient-descent update: {sym} - η·∂C/∂{sym} = {_f(w, f'.{d}g')} - "
        f"{lr:g}·{_f(g, '.6g')} = {_f(new, f'.{d}g')}"
    )
    if w == new:
        return line + "  (the step is below the weight's floating-point resolution)"
    return line + f"  (a change of {_f(new - w, '.3g')})"


_PARAM = re.compile(r"^\s*([\w.]+?)(?:\.(weight|bias))?\s*\[\s*(\d+(?:\s*,\s*\d+)*)\s*,?\s*\]\s*$")


def parse_weight(text: str) -> tuple[str, tuple[int, ...]]:
    """``"2.weight[3,1]"`` -> ``("2.weight", (3, 1))``; ``"2.bias[1]"`` -> ``("2.bias", (1,))``;
    a convolution's weight has 3 (Conv1d) or 4 (Conv2d) indices: ``"0.weight[1,0,2,1]"``
    (output channel, input channel, kernel row, kernel column).

    The number before the dot is the layer's position in the Sequential, counting every
    layer (activations included): in ``Linear, Tanh, Linear`` the second Linear is ``2``.
    """
    m = _PARAM.match(text)
    if m:
        kind = m.group(2) or "weight"
        idx = tuple(int(k) for k in m.group(3).split(","))
        if len(idx) == 1 if kind == "bias" else 2 <= len(idx) <= 4:
            return f"{m.group(1)}.{kind}", idx
    raise ValueError(
        f"weight must look like '2.weight[3,1]' (Linear: layer position, input, unit), "
        f"'0.weight[1,0,2,1]' (Conv2d: output channel, input channel, kernel row, column; "
        f"Conv1d: three indices) or '2.bias[1]' (layer position, unit), got {text!r}"
    )


def _n_text(n: int, what: str, shape: tuple[int, ...]) -> str:
    if what == "entries" and len(shape) == 2:
        s, o = shape
        return f"n = {n} entries ({s} sample{'s' * (s != 1)} × {o} output{'s' * (o != 1)})"
    return f"n = {n} {what}"


def describe_loss(loss: Any, output_shape: tuple[int, ...], target: Any = None) -> str:
    """The loss's formula, its reduction and where the ``1/n`` of a mean goes (for ``explain``).

    ``output_shape`` is the shape of the model's output ``ŷ`` (samples first); ``target``, if
    given, lets class targets equal to ``ignore_index`` drop out of ``n``.
    """
    red = getattr(loss, "reduction", None)
    size = int(np.prod(output_shape))
    samples = output_shape[0] if output_shape else 1
    # formula of one term, ∂C/∂ŷ under "sum", ∂C/∂ŷ under "mean"
    elementwise = {
        MSELoss: ("(ŷ - y)²", "2(ŷ - y)", "2(ŷ - y)/n"),
        L1Loss: ("|ŷ - y|", "sign(ŷ - y)", "sign(ŷ - y)/n"),
        HuberLoss: (
            "h(ŷ - y), h(d) = ½d² for |d| ≤ δ, δ(|d| - ½δ) beyond",
            "h'(ŷ - y)",
            "h'(ŷ - y)/n",
        ),
        BCELoss: (
            "-(y log ŷ + (1 - y) log(1 - ŷ))",
            "(ŷ - y)/(ŷ(1 - ŷ))",
            "(ŷ - y)/(n·ŷ(1 - ŷ))",
        ),
        BCEWithLogitsLoss: (
            "-(y log σ(ŷ) + (1 - y) log(1 - σ(ŷ))), ŷ = logits",
            "σ(ŷ) - y",
            "(σ(ŷ) - y)/n",
        ),
    }
    per_sample = {
        CrossEntropyLoss: (
            "-log softmax(ŷ)_y, ŷ = logits",
            "softmax(ŷ) - onehot(y)",
            "(softmax(ŷ) - onehot(y))/n",
        ),
        NLLLoss: ("-ŷ_y, ŷ = log-probabilities", "-onehot(y)", "-onehot(y)/n"),
    }
    kind = next((k for k in (*elementwise, *per_sample) if isinstance(loss, k)), None)
    name = f"{type(loss).__name__}(reduction={red!r})"
    if kind in elementwise:
        elem, deriv, deriv_mean = elementwise[kind]
        n, what = size, "entries"
    elif kind in per_sample:
        elem, deriv, deriv_mean = per_sample[kind]
        n, what = samples, "samples"
        t = np.asarray(target.data if isinstance(target, Tensor) else target)
        if target is not None and t.dtype.kind in "iu" and t.ndim == 1:
            ignored = int(np.sum(t == getattr(loss, "ignore_index", -100)))
            n, what = n - ignored, "samples" + (f" ({ignored} ignored)" if ignored else "")
        if getattr(loss, "label_smoothing", 0.0):
            elem += f", y smoothed to (1 - ε)y + ε/C, ε = {loss.label_smoothing:g}"
    else:
        label = getattr(loss, "__name__", None) or type(loss).__name__
        return (
            f"loss: {label} (your own function): explain cannot read its formula; ∂C/∂a_j\n"
            "  below is its derivative as backpropagated, including any 1/n it divides by"
        )
    weighted = any(getattr(loss, a, None) is not None for a in ("weight", "pos_weight"))
    extra = " (with the loss's weights)" if weighted else ""
    if red == "sum":
        return (
            f"loss: {name}: C = Σ {elem}{extra}\n"
            f"  ∂C/∂ŷ = {deriv}: a sum has no 1/n; each sample adds its own term"
        )
    if red == "mean":
        denom = "Σ w_y (the targets' class weights)" if kind in per_sample and extra else None
        if denom:
            return (
                f"loss: {name}: C = Σ_samples w_y·{elem} / {denom}\n"
                f"  ∂C/∂ŷ = w_y·({deriv})/Σ w_y: the division is inside ∂C/∂a_j below"
            )
        lines = [
            f"loss: {name}: C = (1/n)·Σ {elem}{extra}, {_n_text(n, what, output_shape)}",
            f"  ∂C/∂ŷ = {deriv_mean}: the 1/n of the mean is inside ∂C/∂a_j below",
        ]
        if kind is MSELoss:
            lines.append(
                f"  (no ½: the textbook C = ½·Σ (ŷ - y)² has ∂C/∂ŷ = ŷ - y, which is these "
                f"numbers × n/2 = {n / 2:g})"
            )
        return "\n".join(lines)
    return f"loss: {name}"


def explain(
    model: Module,
    X: Any,
    y: Any,
    loss: Any,
    weight: str,
    index: tuple[int, ...] | int | None = None,
    lr: float | None = None,
) -> Explanation:
    """Decompose ``∂C/∂w_ij`` (or ``∂C/∂b_j``) of a Sequential MLP into the chain rule's factors.

    ``∂C/∂w_ij = Σ_samples ∂C/∂a_j · ∂a_j/∂z_j · ∂z_j/∂w_ij`` with ``∂z_j/∂w_ij = a_i`` (the
    input the weight multiplies) and ``∂z_j/∂b_j = 1``. The model is not changed: the
    computation runs on a copy, so the model's parameters, their ``.grad`` (None or
    accumulated values) and its train/eval mode are exactly as before the call.

    Parameters
    ----------
    model : Sequential
        Linear layers, each optionally followed by an elementwise activation (Dropout is
        treated as in eval mode). A final Softmax/LogSoftmax is treated as part of the loss.
    X, y : array_like
        A batch and its targets.
    loss : loss module, name (``"mse"``) or callable ``loss(output, y)``
        The printed explanation states its formula, its reduction and where a mean's ``1/n``
        goes (into ``∂C/∂a_j``).
    weight : str
        The parameter's name, e.g. ``"2.weight"``, or with the entry: ``"2.weight[3,1]"``
        (input 3 -> unit 1) or ``"2.bias[1]"`` (unit 1). The number is the layer's position
        in the Sequential, activations counted: in ``Linear, Tanh, Linear`` the second
        Linear is ``2`` (the names of ``model.named_parameters()``).
    index : (i, j) or j, optional
        The entry, if not in ``weight``: ``(i, j)`` for a weight, ``j`` or ``(j,)`` for a bias.
    lr : float, optional
        Also show the gradient-descent update ``w_ij - lr·∂C/∂w_ij`` (in the weight's dtype).

    Returns
    -------
    Explanation
        Its ``str()`` is the printed explanation; ``total`` equals ``engine_grad``.
    """
    if "[" in weight:
        weight, index = parse_weight(weight)
    is_bias = weight.endswith(".bias")
    if index is None:
        raise ValueError(
            "give the entry as index=(i, j) (or j for a bias) or in the name, e.g. "
            "'2.weight[3,1]' or '2.bias[1]'"
        )
    if not isinstance(model, Sequential):
        raise TypeError(f"explain needs a Sequential model, got {type(model).__name__}")
    name = weight.rsplit(".", 1)[0] if weight.endswith((".weight", ".bias")) else weight
    if not weight.endswith((".weight", ".bias")):
        weight = f"{name}.weight"
    layers = list(model)
    try:
        pos = int(name)
    except ValueError:
        raise ValueError(
            f"weight {weight!r}: the layer must be given by its position in the Sequential "
            "(activations counted, e.g. '2.weight[3,1]')"
        ) from None
    if lr is not None and not (
        isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0
    ):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if 0 <= pos < len(layers) and type(layers[pos]).__name__ in ("Conv1d", "Conv2d"):
        from .conv_explain import explain_conv  # the sum over positions and samples

        return explain_conv(model, X, y, resolve_loss(loss), pos, weight, index, lr)  # type: ignore[return-value]
    if not 0 <= pos < len(layers) or not isinstance(layers[pos], Linear):
        linear = [f"{k}.weight" for k, m in enumerate(layers) if isinstance(m, Linear)]
        raise ValueError(
            f"{weight!r} is not a Linear layer's {'bias' if is_bias else 'weight'}; the "
            f"weights are: {', '.join(linear)} (positions in the Sequential, activations counted)"
        )
    lin = layers[pos]
    assert isinstance(lin, Linear)  # checked above
    idx = (index,) if isinstance(index, (int, np.integer)) else tuple(int(k) for k in index)
    if is_bias:
        if lin.bias is None:
            raise ValueError(f"{weight!r}: layer {pos} was built with bias=False")
        if len(idx) != 1 or not 0 <= idx[0] < lin.out_features:
            raise ValueError(
                f"index {idx} is outside {weight} of shape ({lin.out_features},): give one unit"
            )
    elif len(idx) != 2 or not (0 <= idx[0] < lin.in_features and 0 <= idx[1] < lin.out_features):
        raise ValueError(
            f"index {idx} is outside {weight} of shape ({lin.in_features}, {lin.out_features})"
        )
    loss_fn = resolve_loss(loss)
    # The computation runs on a copy: backward() on the model itself would add to (or, after
    # zero_grad, replace) the gradients the user is about to step with, and eval() would lose
    # each sub-module's own mode. The copy is in eval mode (dropout off).
    # (the memo maps each gradient array to None: the copy starts without gradients and they
    # are not copied for nothing)
    memo: dict[int, Any] = {}
    for p in model.parameters():
        if p.grad is not None:
            memo[id(p.grad)] = None
    work = copy.deepcopy(model, memo)
    work.eval()
    work.zero_grad()
    X = X.detach() if isinstance(X, Tensor) else X
    y = y.detach() if isinstance(y, Tensor) else y
    return _explain(work, list(work), pos, idx, X, y, loss_fn, weight, lr)


def _explain(
    model: Module,
    layers: list[Module],
    pos: int,
    idx: tuple[int, ...],
    X: Any,
    y: Any,
    loss: Any,
    weight: str,
    lr: float | None,
) -> Explanation:
    lin = layers[pos]
    assert isinstance(lin, Linear)
    is_bias = len(idx) == 1
    j = idx[-1]
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
    if not isinstance(c, Tensor) or c.size != 1:
        raise ValueError(
            "explain needs a loss that returns one number (reduction 'mean' or 'sum'), got "
            f"{'shape ' + str(c.shape) if isinstance(c, Tensor) else type(c).__name__}"
        )
    c.backward()
    assert a_in is not None and z is not None
    j_in = np.asarray(a_in.data, np.float64)
    a_i = np.ones(j_in.shape[0]) if is_bias else j_in[:, idx[0]]
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
    param = lin.bias if is_bias else lin.weight
    assert param is not None and param.grad is not None
    engine = param.grad[idx]
    terms: list[tuple[int, float, float]] = []
    recon_error = 0.0
    d_next = w_row = None
    if next_z is not None and next_lin_pos is not None:
        w_next = layers[next_lin_pos].weight.data  # type: ignore[attr-defined]
        d_next = next_z.grad.astype(np.float64)  # type: ignore[union-attr]
        w_row = w_next[j].astype(np.float64)
        totals = d_next.sum(axis=0)
        terms = sorted(
            ((k, float(totals[k]), float(w_next[j, k])) for k in range(w_next.shape[1])),
            key=lambda t: -abs(t[1] * t[2]),
        )
        recon = d_next @ w_row  # Σ_k δ_k w_jk, sample by sample
        recon_error = float(np.max(np.abs(recon - dC_da))) if len(recon) else 0.0
    value = param.data[idx]
    # the update as SGD computes it, in the parameter's dtype: w - lr·g
    updated = None if lr is None else float(value - param.data.dtype.type(lr) * engine)
    return Explanation(
        weight=weight,
        index=idx,
        value=float(value),
        dC_da=dC_da,
        da_dz=da_dz,
        dz_dw=a_i,
        per_sample=per_sample,
        total=float(per_sample.sum()),
        engine_grad=float(engine),
        activation=act_name,
        delta=delta,
        next_terms=terms,
        is_output=next_lin_pos is None,
        lr=lr,
        updated=updated,
        backprop_error=recon_error,
        loss=describe_loss(loss, tuple(h.shape), y),
        next_delta=d_next,
        next_weight=w_row,
    )
