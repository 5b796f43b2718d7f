"""The fused MLP step plan: the same mathematics as the engine, without a graph.

When the model is a Sequential of Linear layers with elementwise activations between them
(ReLU, LeakyReLU, Tanh, Sigmoid, Identity), the loss is one of the common ones, and the
optimizer keeps its parameters in flat buffers, :func:`chainrule.fit` runs each step's forward
and backward passes (:class:`FusedMLPPlan`, one of the trainer's step plans, see
:mod:`chainrule.training.steps`) as a fixed sequence of NumPy calls into preallocated arrays: forward ``Z = A W + b`` and the activation in
place; the loss and its gradient at the output in one fused expression (softmax − y for
cross-entropy); backward ``∂C/∂W = Aᵀ δ`` written straight into the optimizer's flat gradient
buffer (a fresh one each step, :meth:`~chainrule.arena.ParameterArena.claim_grads`: the
last step's ``p.grad``, which a callback may have kept, is never overwritten),
``δ_prev = (δ Wᵀ) ⊙ f'`` from the saved activations. Every formula is the engine's
rule for the same primitive, so the gradients agree with ``backward()`` to rounding error
(:func:`~chainrule.training.steps.check_step_plan`, float64, to 1e-12); anything else (dropout,
batch norm, custom layers or losses) the plan declines, and the engine's plan runs it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._numerics import exp_nonpositive
from ..kernels import activate_, activation_grad_, column_sums, linear, row_max, weight_grad
from ..nn.layers import Linear
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ..nn.module import Sequential
from ..nn.registry import activation_kind
from .steps import StepPlan

__all__ = ["FastMLP", "FusedMLPPlan"]

# activations with a kernel here, by the kind their class registered (nn.registry)
_KINDS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")


def loss_spec(loss_fn: Any) -> tuple[str, float, float] | None:
    """(kind, scale, l2) if the fast path can compute this loss, else None.

    ``l2`` is scikit-learn's penalty ``α/2 · Σ‖W‖² / n`` over the weights (0 for none).
    """
    spec = getattr(loss_fn, "fast_spec", None)
    if spec is not None:
        return spec()  # type: ignore[no-any-return]
    if (
        type(loss_fn) is CrossEntropyLoss
        and loss_fn.reduction == "mean"
        and loss_fn.weight is None
        and loss_fn.label_smoothing == 0.0
    ):
        return ("multiclass", 1.0, 0.0)
    if type(loss_fn) is MSELoss and loss_fn.reduction == "mean":
        return ("squared", 1.0, 0.0)
    if (
        type(loss_fn) is BCEWithLogitsLoss
        and loss_fn.reduction == "mean"
        and loss_fn.weight is None
        and loss_fn.pos_weight is None
    ):
        return ("binary_mean", 1.0, 0.0)
    return None


class _Buffers(NamedTuple):
    """Everything the step writes or reuses for batches of one size (a fit sees at most two:
    the full batch and the last)."""

    Z: list[np.ndarray]  # each layer's output, activation applied in place
    D: list[np.ndarray]  # each layer's δ = ∂C/∂z
    ones_rows: np.ndarray  # (n,): bias gradients as 1ᵀδ
    ones_cols: np.ndarray  # (C,): softmax row sums as e·1
    row_starts: np.ndarray  # [0, C, 2C, ...]: targets as positions in the flattened (n, C)
    scratch: np.ndarray  # room for one δ: activation derivatives without temporaries


class FusedMLPPlan(StepPlan):
    """The fused step for one (model, loss, optimizer); build with :meth:`create`."""

    name = "fused_mlp"
    reuses_output = True  # the output array is the last layer's buffer, rewritten every step

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        optimizer: Any,
        linears: list[Linear],
        acts: list[Any],
        spec: tuple[str, float, float],
    ) -> None:
        super().__init__(model, loss_fn, optimizer)
        self.linears, self.acts = linears, acts
        # what each activation computes, looked up once (the registry's answer for a layer's
        # class cannot change while the plan holds the layer)
        self._kinds = [
            None if a is None or activation_kind(a) not in _KERNEL_KINDS else activation_kind(a)
            for a in acts
        ]
        # the parameters whose gradient the step writes, for the trainable flags they were
        # found for: ([(weight, bias) flags per layer], [weight or None, bias or None, ...])
        self._wanted: tuple[list[tuple[bool, bool]], list[Any]] | None = None
        self.kind, self.scale, self.l2 = spec
        self.modules = list(model.modules())
        self.output = np.empty(0)  # the last batch's output (the last layer's buffer)
        self._shape_cache: dict[tuple[int, Any], _Buffers] = {}
        self.arena: Any = optimizer.arena  # where the gradients go (read again by ready())

    @classmethod
    def create(cls, model: Any, loss_fn: Any, optimizer: Any) -> FusedMLPPlan | None:
        if type(model) is not Sequential or getattr(optimizer, "arena", None) is None:
            return None
        layers = list(model)
        linears: list[Any] = []
        acts: list[Any] = []
        expect_linear = True
        for layer in layers:
            if expect_linear:
                if type(layer) is not Linear or layer.bias is None:
                    return None
                linears.append(layer)
                acts.append(None)
                expect_linear = False
            elif activation_kind(layer) in _KINDS:
                slope = getattr(layer, "negative_slope", 0.0)
                if activation_kind(layer) == "leaky_relu" and slope <= 0:
                    return None
                acts[-1] = layer
                expect_linear = True
            elif type(layer) is Linear and layer.bias is not None:
                linears.append(layer)
                acts.append(None)
            else:
                return None
        if acts[-1] is not None and activation_kind(acts[-1]) != "identity":
            return None  # an activation on the output belongs to the loss: use the engine
        if len({id(lin) for lin in linears}) != len(linears):
            return None  # a layer used twice: its gradient is a sum (the engine's += does it)
        spec = loss_spec(loss_fn)
        if spec is None:
            return None
        return cls(model, loss_fn, optimizer, linears, acts, spec)

    def _buffers(self, n: int, dtype: np.dtype[Any]) -> _Buffers:
        """The step's arrays for batches of ``n`` rows, made once per batch size."""
        key = (n, dtype)
        got = self._shape_cache.get(key)
        if got is None:
            widths = [lin.out_features for lin in self.linears]
            c = widths[-1]
            got = self._shape_cache[key] = _Buffers(
                Z=[np.empty((n, w), dtype) for w in widths],
                D=[np.empty((n, w), dtype) for w in widths],
                ones_rows=np.ones(n, dtype),
                ones_cols=np.ones(c, dtype),
                row_starts=np.arange(n, dtype=np.int64) * c,
                scratch=np.empty(n * max(widths), dtype),
            )
        return got

    def ready(self, optimizer: Any) -> bool:
        """True if every parameter's gradient can be written into the optimizer's flat buffer."""
        arena = self.arena = optimizer.arena
        for lin in self.linears:
            for p in (lin.weight, lin.bias):
                if not p.requires_grad:  # type: ignore[union-attr]
                    continue  # frozen: the step writes no gradient for it
                if arena.grad_view(p) is None:
                    return False
        return True

    def usable(self) -> bool:
        """The gradients can go to the optimizer's flat buffers and no forward hook watches."""
        return self.ready(self.optimizer) and not self.hooked(self.modules)

    def check_targets(self, y: np.ndarray) -> None:
        """Class indices must lie in [0, C) (the engine's loss checks each batch itself), and
        other targets need one value per output."""
        if self.kind != "multiclass":
            _check_target_width(self.loss_fn, np.asarray(y), self.linears[-1].out_features)
            return
        c = self.linears[-1].out_features
        labels = np.asarray(y)
        if labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise ValueError(
                    "cross_entropy: class targets must be integers, got non-integral values"
                )
        elif labels.dtype.kind not in "iu":
            raise TypeError(
                f"cross_entropy: target must be integer class indices, got dtype {labels.dtype}"
            )
        bad = (labels < 0) | (labels >= c)
        if labels.ndim != 1:
            raise ValueError(
                f"cross_entropy: target must have shape ({len(labels)},), got {labels.shape}"
            )
        if np.any(bad):
            raise ValueError(
                f"cross_entropy: target contains class {int(labels[bad][0])}, but the input has {c} "
                f"classes (valid: 0 to {c - 1})"
            )

    @staticmethod
    def hooked(modules: Any) -> bool:
        """True if a forward hook watches one of ``modules`` (then the engine path must run)."""
        return any(m.__dict__.get("_forward_hooks") for m in modules)

    def run(self, xb: np.ndarray, yb: Any, wb: np.ndarray | None) -> tuple[float, np.ndarray]:
        """Forward, loss and backward for one batch (see :meth:`StepPlan.run`)."""
        loss = self.step(xb, yb, wb)
        return loss, self.output

    def step(self, xb: np.ndarray, yb: np.ndarray, wb: np.ndarray | None) -> float:
        """Forward, loss and backward for one batch; leaves ``p.grad`` set for every parameter.

        Returns the batch loss (as the loss module would); the output is ``self.output``.
        """
        first = self.linears[0]
        if xb.ndim != 2 or xb.shape[1] != first.in_features:
            raise ValueError(
                f"Linear({first.in_features}, {first.out_features}) expected input with last "
                f"dimension {first.in_features}, got shape {xb.shape}"
            )
        n = xb.shape[0]
        dtype = first.weight.data.dtype
        buf = self._buffers(n, dtype)
        Z, D = buf.Z, buf.D
        # ----- forward: Z_k = A_{k-1} W_k + b_k, then the activation in place -----
        a = xb
        outs: list[np.ndarray] = []
        for lin, act, kind, z in zip(self.linears, self.acts, self._kinds, Z):
            linear(a, lin.weight.data, lin.bias.data, out=z)  # type: ignore[union-attr]
            if kind is not None:
                activate_(kind, z, getattr(act, "negative_slope", 0.01))
            outs.append(z)
            a = z
        out = outs[-1]
        # ----- loss and δ = ∂C/∂z at the output -----
        delta = D[-1]
        loss = self._loss_and_delta(out, yb, wb, delta, buf)
        count = float(wb.sum()) if wb is not None else float(n)
        l2 = self.l2 / count if self.l2 and count > 0 else 0.0
        if l2:  # the penalty's value α/2·Σ‖W‖²/n (its gradient αW/n is added below)
            loss += (
                0.5
                * l2
                * sum(
                    float(np.dot(lin.weight.data.ravel(), lin.weight.data.ravel()))
                    for lin in self.linears
                )
            )
        # ----- backward -----
        # a frozen parameter (requires_grad=False) gets no gradient (None, as backward() leaves
        # it), so no optimizer moves it; δ stops at the lowest layer that has anything to train
        inputs = [xb, *outs[:-1]]
        trainable = [
            (lin.weight.requires_grad, lin.bias.requires_grad)  # type: ignore[union-attr]
            for lin in self.linears
        ]
        lowest = next((k for k, t in enumerate(trainable) if any(t)), len(self.linears))
        # this step's gradient arrays: views of the arena's flat buffer never handed out before
        # (fresh buffers each step: the last step's .grad may have been kept by a callback)
        wanted = self._wanted
        if wanted is None or wanted[0] != trainable:
            grads: list[Any] = []
            for lin, (tw, tb) in zip(self.linears, trainable):
                grads += (lin.weight if tw else None, lin.bias if tb else None)
            wanted = self._wanted = (trainable, grads)
        targets = self.arena.claim_grads(wanted[1])
        for k in range(len(self.linears) - 1, lowest - 1, -1):
            lin = self.linears[k]
            tw, tb = trainable[k]
            if tw:
                gw = targets[2 * k]
                if gw is None:  # not held by the arena: an array of its own
                    gw = np.empty_like(lin.weight.data)
                weight_grad(inputs[k], delta, out=gw)  # K = 1: an outer product
                if l2:
                    gw += lin.weight.data * dtype.type(l2)
                lin.weight.grad = gw
            else:
                lin.weight.grad = None
            if tb:
                # ∂C/∂b = Σ_rows δ as 1ᵀδ (kernels.column_sums)
                gb = targets[2 * k + 1]
                if gb is None:
                    gb = np.empty_like(lin.bias.data)  # type: ignore[union-attr]
                column_sums(delta, buf.ones_rows, out=gb)
                lin.bias.grad = gb  # type: ignore[union-attr]
            else:
                lin.bias.grad = None  # type: ignore[union-attr]
            if k > lowest:
                prev = D[k - 1]
                np.matmul(delta, lin.weight.data.T, out=prev)
                tmp = buf.scratch[: prev.size].reshape(prev.shape)
                kind = self._kinds[k - 1]
                if kind is not None:  # g ← g ⊙ f'(z) from the activation's output
                    slope = getattr(self.acts[k - 1], "negative_slope", 0.01)
                    activation_grad_(kind, outs[k - 1], prev, tmp, slope)
                delta = prev
        for lin in self.linears[:lowest]:  # wholly frozen layers below the lowest trainable
            lin.weight.grad = None
            lin.bias.grad = None  # type: ignore[union-attr]
        self.output = out
        return loss

    def _loss_and_delta(
        self,
        out: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        delta: np.ndarray,
        buf: _Buffers,
    ) -> float:
        n = out.shape[0]
        dtype = out.dtype
        total = float(w.sum()) if w is not None else float(n)
        col = None if w is None else (w / total).astype(dtype).reshape(-1, 1)
        if self.kind == "multiclass":
            # softmax and log-softmax from one shifted exponent: z - max, e = exp, s = Σe
            # the targets as positions in the flattened (n, C) array: 1-D gathers and
            # scatters, several times faster than delta[rows, idx] on small batches
            at = np.asarray(y, dtype=np.int64).reshape(-1) + buf.row_starts
            flat = delta.reshape(-1)
            np.subtract(out, row_max(out), out=delta)
            picked = flat[at]
            np.exp(delta, out=delta)
            # Σ_j e_ij as e·1: NumPy's sum along a short last axis is 3–5× slower (measured)
            s = np.matmul(delta, buf.ones_cols).reshape(n, 1)
            picked -= np.log(s[:, 0])  # log-probability of the target class
            loss = -float(picked.sum()) / n if w is None else -float((picked * w).sum() / total)
            # (softmax − y)/n in two passes: e·(1/(n·s)), then −1/n at the targets
            scale = (1.0 / (n * s)) if col is None else (col / s)
            delta *= scale.astype(dtype, copy=False)
            flat[at] -= dtype.type(1.0 / n) if col is None else col[:, 0]
        elif self.kind == "squared":
            yy = np.asarray(y, dtype=dtype).reshape(out.shape)
            np.subtract(out, yy, out=delta)
            m = out.shape[1]
            if w is None:
                loss = float(np.mean(delta * delta)) * self.scale
                delta *= dtype.type(2.0 * self.scale / (n * m))
            else:
                loss = float(((delta * delta).mean(axis=1) * w).sum() / total) * self.scale
                delta *= col * dtype.type(2.0 * self.scale / m)
        else:  # binary_mean (mean over elements) or binary_sum (sum over outputs, mean over samples)
            yy = np.asarray(y, dtype=dtype).reshape(out.shape)
            m = out.shape[1]
            # one exponent for both: e = e^{-|z|} ≤ 1 (subnormals flushed, as _numerics does);
            # softplus(-z) = max(-z, 0) + log1p(e) and σ(z) = 1/(1+e) or e/(1+e) — bitwise
            # _numerics.softplus(-z) and _numerics.sigmoid(z), with half the exponentials
            e = exp_nonpositive(-np.abs(out))
            elem = (1 - yy) * out + (np.maximum(-out, 0) + np.log1p(e))  # (1-y)z + softplus(-z)
            if m == 1:  # one output: the row's mean or sum is its only element (bitwise)
                per = elem.reshape(n)
            else:
                per = elem.sum(axis=1) if self.kind == "binary_sum" else elem.mean(axis=1)
            loss = float(per.sum()) / n if w is None else float((per * w).sum() / total)
            # σ(z) = 1/(1+e) for z ≥ 0, e/(1+e) below: one division, straight into δ
            np.divide(np.where(out >= 0, dtype.type(1), e), 1 + e, out=delta)
            delta -= yy
            div = 1.0 if self.kind == "binary_sum" else float(m)
            if col is None:
                delta *= dtype.type(1.0 / (n * div))
            else:
                delta *= col * dtype.type(1.0 / div)
        return loss


FastMLP = FusedMLPPlan  # its name before it became a step plan


def _check_target_width(loss_fn: Any, y: np.ndarray, outputs: int) -> None:
    """Targets of an elementwise loss need one value per model output: ``(n, outputs)``."""
    per_sample = y[0].size if len(y) else 0
    if per_sample != outputs or (outputs > 1 and y.shape[1:] != (outputs,)):
        want = f"({len(y)},) or ({len(y)}, 1)" if outputs == 1 else f"({len(y)}, {outputs})"
        raise ValueError(
            f"{type(loss_fn).__name__}: the model has {outputs} output(s) per sample, so y must "
            f"have shape {want}, got {y.shape}; give one target per output, or change the "
            "model's last layer"
        )


_KERNEL_KINDS = ("relu", "tanh", "sigmoid", "leaky_relu")  # identity: nothing to do


def _activate(act: Any, z: np.ndarray) -> None:
    kind = activation_kind(act)
    if kind in _KERNEL_KINDS:
        activate_(kind, z, getattr(act, "negative_slope", 0.01))


def _backward_act(act: Any, a: np.ndarray, g: np.ndarray, tmp: np.ndarray) -> None:
    """``g ← g ⊙ f'(z)`` from the activation's output ``a`` (kernels.activation_grad_)."""
    kind = None if act is None else activation_kind(act)
    if kind in _KERNEL_KINDS:
        activation_grad_(kind, a, g, tmp, getattr(act, "negative_slope", 0.01))
