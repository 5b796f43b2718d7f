"""Gradient flow: per-layer gradients, weights, updates and activations during training.

:class:`GradientFlow` is a callback for :func:`chainrule.fit`. For every layer with a weight
matrix or kernel (a Linear; any layer whose ``fans()`` are known) and every epoch it records the gradient's RMS (mean over the epoch's batches), the weight RMS, the
update-to-weight ratio ``‖W_end - W_start‖ / ‖W_start‖``, and for the activation after the layer
its mean and spread, the fraction of dead ReLU units (zero for every sample of a batch; after a
convolution a unit is a channel, dead when zero at every position too) and of saturated
sigmoid/tanh units. It then says in plain words what looks wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..nn.module import Module
from ..nn.registry import activation_kind
from ..training.callbacks import Callback
from ..training.summary import (
    CLIP_ADVICE,
    input_scaling_advice,
    target_scaling_advice,
    trivial_loss,
)

__all__ = ["EXPLODING_RMS", "VANISHING_RATIO", "GradientFlow"]

# Vanishing: the first layer's gradient RMS below this fraction of the last layer's in most
# epochs while the loss is not falling; below SEVERE_VANISHING_RATIO whatever the loss does.
VANISHING_RATIO = 1 / 20
SEVERE_VANISHING_RATIO = 1e-3
MIN_EPOCHS = 5  # "sustained" needs this many epochs (two epochs cannot tell slow from stuck)
# Exploding through depth: activation RMS growing by more than GROWTH_PER_LAYER per layer and
# more than GROWTH_TOTAL from the first hidden layer to the last, or the first epoch's loss more
# than LOSS_SCALE times the loss of the best constant prediction.
GROWTH_PER_LAYER = 1.5
GROWTH_TOTAL = 20.0
LOSS_SCALE = 10.0
EXPLODING_RMS = 1e2  # a layer's gradient RMS above this (matters for SGD, not for Adam)
DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5
ADAPTIVE = ("Adam", "AdamW", "RMSprop", "Adagrad")  # step size independent of gradient scale
# activation kinds (nn.registry) whose units can die, or saturate
_RELU_LIKE = ("relu", "leaky_relu", "elu", "gelu")
_SATURATING = ("sigmoid", "tanh")


def _ratio_text(r: float) -> str:
    """A growth or decay factor as a person reads it: ``130×``, ``2.2×``, ``1.5e+09×``."""
    if r >= 1e4:
        return f"{r:.1e}×"
    return f"{r:.2g}×" if r < 10 else f"{r:.0f}×"


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0


def _weighted(m: Module) -> bool:
    """A layer whose weight gradient is followed: it has a weight and reports its fans."""
    return m.fans() is not None and getattr(m, "weight", None) is not None


def _watched(m: Module) -> str | None:
    """The kind of a ReLU-like or saturating activation (as registered), else None."""
    kind = activation_kind(m, inherited=True)
    return kind if kind in _RELU_LIKE or kind in _SATURATING else None


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = self.std = self.rms = self.dead = self.saturated = 0.0
        self.sample: np.ndarray | None = None


class GradientFlow(Callback):
    """Record how the gradient flows through the layers, epoch by epoch, and warn.

    Attributes (after ``fit``)
    --------------------------
    layers : list of str
        The names of the layers with a weight matrix or kernel (their position in the model:
        Linear layers, and any layer that reports its ``fans()``), input first.
    labels : dict
        Each layer's name as built, e.g. ``{"2": "2: Linear(32→10)"}``.
    activations : dict
        The activation that follows each hidden layer (``"ReLU"``, ``"Sigmoid"``, ...); the
        output layer has none.
    losses : list of float
        The training loss of each epoch.
    records : dict
        ``records[name][quantity]`` is a list over epochs; quantities: ``grad_rms``,
        ``weight_rms``, ``update_ratio``, ``act_mean``, ``act_std``, ``act_rms``,
        ``dead_fraction``, ``saturated_fraction`` (NaN where it does not apply; see
        :meth:`cell`).
    warnings : list of str
        Plain-language findings with suggestions (vanishing or exploding gradients, non-finite
        values, dead or saturated units, unscaled inputs, learning rate).
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.layers: list[str] = []
        self.labels: dict[str, str] = {}
        self.activations: dict[str, str] = {}
        self._kinds: dict[str, str] = {}  # the activations' kinds (nn.registry)
        self._fans: dict[str, tuple[int, int]] = {}
        self.losses: list[float] = []
        self.records: dict[str, dict[str, list[float]]] = {}
        self.warnings: list[str] = []
        self._hooks: list[Any] = []

    # ----- wiring -----
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        assert self.model is not None
        mods = list(self.model.named_modules())
        self._linears: list[tuple[str, Any]] = [(n, m) for n, m in mods if _weighted(m)]
        self.layers = [n for n, _ in self._linears]
        self.labels = {}
        self._fans = {}
        for n, m in self._linears:
            fan_in, fan_out = self._fans[n] = m.fans()
            self.labels[n] = f"{n}: {type(m).__name__}({_shape_text(m, fan_in, fan_out)})"
        self._kinds = {}
        self._w0 = {n: _rms(m.weight.data) for n, m in self._linears}
        quantities = (
            "grad_rms",
            "act_rms",
            "weight_rms",
            "update_ratio",
            "act_mean",
            "act_std",
            "dead_fraction",
            "saturated_fraction",
        )
        for n in self.layers:
            self.records.setdefault(n, {q: [] for q in quantities})
        self._act: dict[str, tuple[Module, _Stats]] = {}
        order = [m for _, m in mods]
        for name, lin in self._linears:
            k = next(i for i, m in enumerate(order) if m is lin)
            follow = next((m for m in order[k + 1 :] if _weighted(m) or _watched(m)), None)
            if follow is None or _weighted(follow):
                continue
            stats = _Stats()
            self._act[name] = (follow, stats)
            self.activations[name] = type(follow).__name__
            self._kinds[name] = _watched(follow)  # type: ignore[assignment]
            # a kernel (Conv: weight (out, in, *k)) has channels on axis 1: a unit is a channel
            per_channel = lin.weight.ndim > 2
            self._hooks.append(
                follow.register_forward_hook(self._watch(follow, stats, per_channel))
            )
        self._grad_sum = {n: 0.0 for n in self.layers}
        self._batches = 0
        self._nonfinite: set[str] = set()

    def _watch(self, module: Module, stats: _Stats, per_channel: bool = False) -> Any:
        kind = _watched(module)

        def hook(mod: Module, inputs: Any, out: Any) -> None:
            if not mod.training:
                return  # validation and prediction are not part of the training flow
            a = np.asarray(out.data, dtype=np.float32)
            if a.ndim < 2 or a.shape[0] == 0:
                return
            stats.n += 1
            stats.mean += float(a.mean())
            stats.std += float(a.std())
            stats.rms += _rms(a)
            if kind in _RELU_LIKE:
                # dead: zero for every sample (a feature map: at every position too)
                axes = (0, *range(2, a.ndim)) if per_channel else 0
                stats.dead += float(np.mean(np.all(a <= 0, axis=axes)))
            elif kind == "sigmoid":
                stats.saturated += float(np.mean((a < 0.01) | (a > 0.99)))
            elif kind == "tanh":
                stats.saturated += float(np.mean(np.abs(a) > 0.99))
            stats.sample = a[:256].ravel()

        return hook

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = {n: lin.weight.data.copy() for n, lin in self._linears}
        self._grad_sum = {n: 0.0 for n in self.layers}
        self._batches = 0
        for _, stats in self._act.values():
            stats.reset()

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches += 1
        for n, lin in self._linears:
            g = lin.weight.grad
            if g is None:
                continue
            r = _rms(g)
            if not math.isfinite(r):
                self._nonfinite.add(n)
            self._grad_sum[n] += r

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        self.losses.append(float(loss) if loss is not None else math.nan)
        for n, lin in self._linears:
            rec = self.records[n]
            w = lin.weight.data
            rec["grad_rms"].append(self._grad_sum[n] / max(self._batches, 1))
            rec["weight_rms"].append(_rms(w))
            start = self._start[n]
            base = float(np.linalg.norm(start))
            rec["update_ratio"].append(
                float(np.linalg.norm(w - start)) / base if base > 0 else math.nan
            )
            entry = self._act.get(n)
            stats = entry[1] if entry is not None else _Stats()
            k = stats.n
            rec["act_mean"].append(stats.mean / k if k else math.nan)
            rec["act_std"].append(stats.std / k if k else math.nan)
            rec["act_rms"].append(stats.rms / k if k else math.nan)
            rec["dead_fraction"].append(stats.dead / k if k else math.nan)
            rec["saturated_fraction"].append(stats.saturated / k if k else math.nan)
        self.warnings = self.diagnose()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self.warnings = self.diagnose()
        if self.verbose and self.warnings:
            print("Gradient flow:\n" + "\n".join(f"  - {w}" for w in self.warnings))

    # ----- findings -----
    def gradient_ratio(self, epoch: int = -1) -> float:
        """First layer's gradient RMS divided by the last layer's (at ``epoch``)."""
        if len(self.layers) < 2:
            return 1.0
        first = self.records[self.layers[0]]["grad_rms"]
        last = self.records[self.layers[-1]]["grad_rms"]
        if not first or not last or last[epoch] == 0:
            return math.nan
        return first[epoch] / last[epoch]

    def _label(self, n: str) -> str:
        return self.labels.get(n, n)

    def _yardstick(self) -> tuple[float, str] | None:
        tr = self.trainer
        y = None if tr is None else tr.fit_targets
        if tr is None or y is None:
            return None
        try:
            return trivial_loss(tr.loss_fn, y)
        except Exception:  # a yardstick is optional
            return None

    def _init_scale(self) -> str:
        """How the initial weights compare with He's (ReLU family) or Glorot's scale."""
        gains = []
        for n, _ in self._linears[:-1]:
            fan_in, fan_out = self._fans[n]
            relu = self._kinds.get(n) in _RELU_LIKE
            ref = math.sqrt(2 / fan_in) if relu else math.sqrt(2 / (fan_in + fan_out))
            gains.append(self._w0.get(n, math.nan) / ref)
        gains = [g for g in gains if math.isfinite(g)]
        if not gains:
            return ""
        g = float(np.median(gains))
        kind = (
            "He scale √(2/fan_in)"
            if any(self._kinds.get(n) in _RELU_LIKE for n in self.layers)
            else "Glorot scale √(2/(fan_in+fan_out))"
        )
        return f"the initial weights are {g:.2g}× the {kind}" if g > 1.5 else ""

    def _depth_growth(self, epoch: int = 0) -> tuple[float, float, str, str] | None:
        """Activation RMS growth from the first hidden layer to the last: total, per layer."""
        names = [n for n in self.layers if n in self._act]
        vals = [(n, self.records[n]["act_rms"][epoch]) for n in names]
        vals = [(n, v) for n, v in vals if math.isfinite(v) and v > 0]
        if len(vals) < 3:
            return None
        total = vals[-1][1] / vals[0][1]
        return total, total ** (1 / (len(vals) - 1)), vals[0][0], vals[-1][0]

    def diagnose(self) -> list[str]:
        """Plain-language findings with suggestions, from what was recorded so far.

        - **Exploding** (through depth): the activations' RMS grows by more than
          ``GROWTH_PER_LAYER`` per layer and ``GROWTH_TOTAL`` overall in the first epoch, or the
          first epoch's loss is more than ``LOSS_SCALE`` times the loss of the best constant
          prediction (:func:`chainrule.training.summary.trivial_loss`). Large gradients without
          growth through depth are blamed on what causes them: unscaled targets, or — with
          plain SGD only — a learning rate that is too high (Adam's step does not grow with
          the gradient's scale).
        - **Vanishing**: the first layer's gradient RMS is below ``VANISHING_RATIO`` of the
          last layer's in at least 80 % of at least ``MIN_EPOCHS`` epochs while the loss is not
          falling (the last epoch's loss above 90 % of the first's, or of the constant
          prediction's), or below ``SEVERE_VANISHING_RATIO`` in every epoch.
        """
        out: list[str] = []
        if not self.layers:
            return out
        tr = self.trainer
        opt_name = type(getattr(tr, "optimizer", None)).__name__
        lr = None
        if tr is not None and getattr(tr, "optimizer", None) is not None:
            lr = float(tr.optimizer.param_groups[0]["lr"])
        lower_lr = f"lower the learning rate (now {lr:g})" if lr else "lower the learning rate"
        losses = [v for v in self.losses if math.isfinite(v)]
        yard = self._yardstick()
        if self._nonfinite:
            names = ", ".join(self._label(n) for n in self.layers if n in self._nonfinite)
            out.append(
                f"Gradients became NaN or infinite in {names}: {lower_lr}, scale the inputs, or "
                f"{CLIP_ADVICE}."
            )
        if not self.records[self.layers[0]]["grad_rms"]:
            return out  # no epoch completed: nothing more to judge
        # ----- exploding: growth through depth, loss scale against the constant prediction
        growth = self._depth_growth(0)
        grows = growth is not None and growth[0] > GROWTH_TOTAL and growth[1] > GROWTH_PER_LAYER
        loss_ratio = losses[0] / yard[0] if yard and losses and yard[0] > 0 else math.nan
        too_large_loss = math.isfinite(loss_ratio) and loss_ratio > LOSS_SCALE
        exploding = False
        if grows or (too_large_loss and growth is not None and growth[1] > 1.2):
            exploding = True
            parts = []
            if growth is not None:
                _, per, first, last = growth
                a0 = self.records[first]["act_rms"][0]
                a1 = self.records[last]["act_rms"][0]
                parts.append(
                    f"the activations grow {_ratio_text(per)} per layer through depth (RMS "
                    f"{a0:.3g} after {self._label(first)} → {a1:.3g} after {self._label(last)}, "
                    "first epoch)"
                )
            if too_large_loss and yard:
                parts.append(
                    f"the first epoch's loss {losses[0]:.4g} is {_ratio_text(loss_ratio)} the "
                    f"loss of {yard[1]} ({yard[0]:.3g})"
                )
            cause = self._init_scale()
            out.append(
                "Exploding activations and gradients: "
                + " and ".join(parts)
                + ". Cause: "
                + (
                    cause + ", too large for this depth"
                    if cause
                    else "weights too large for this depth"
                )
                + ". Re-initialise with He initialisation for ReLU-family activations or Glorot "
                "for sigmoid/tanh (the default of mlp() and chainrule train's network; "
                'init_scheme="he" / --init he), add batch normalisation (BatchNorm layers; '
                f"chainrule train's network: --batch-norm), or {CLIP_ADVICE}."
            )
        if not exploding:
            for n in self.layers:
                g = self.records[n]["grad_rms"]
                if not (g and math.isfinite(g[-1]) and g[-1] > EXPLODING_RMS):
                    continue
                targets = (
                    target_scaling_advice(tr.loss_fn, tr.fit_targets)
                    if tr is not None and tr.fit_targets is not None
                    else None
                )
                if targets:
                    out.append(f"Large gradients ({self._label(n)}: RMS {g[-1]:.2g}). {targets}")
                elif opt_name not in ADAPTIVE:
                    out.append(
                        f"Large gradients ({self._label(n)}: RMS {g[-1]:.2g}) with {opt_name}, "
                        f"whose step is the learning rate times the gradient: {lower_lr} or "
                        f"{CLIP_ADVICE}."
                    )
                # with Adam-like optimizers the step does not scale with the gradient: no alarm
                break
        # ----- vanishing: sustained decay toward the input, with a loss that is not falling
        n_epochs = len(self.records[self.layers[0]]["grad_rms"])
        ratios = [self.gradient_ratio(e) for e in range(n_epochs)]
        finite = [r for r in ratios if math.isfinite(r) and r > 0]
        if len(self.layers) >= 2 and finite:
            share = sum(r < VANISHING_RATIO for r in finite) / len(finite)
            median = float(np.median(finite))
            not_falling = bool(losses) and (
                losses[-1] >= 0.9 * losses[0] or (yard is not None and losses[-1] >= 0.9 * yard[0])
            )
            severe = all(r < SEVERE_VANISHING_RATIO for r in finite)
            sustained = len(finite) >= MIN_EPOCHS and share >= 0.8
            if (sustained and not_falling) or severe:
                first, last = self.layers[0], self.layers[-1]
                g0 = float(np.median(self.records[first]["grad_rms"]))
                g1 = float(np.median(self.records[last]["grad_rms"]))
                loss_text = ""
                if losses:
                    loss_text = f" and the loss is not falling ({losses[0]:.4g} → {losses[-1]:.4g}"
                    if yard:
                        loss_text += f"; {yard[1]} gives {yard[0]:.3g}"
                    loss_text += ")"
                out.append(
                    f"Vanishing gradients: the gradient shrinks {_ratio_text(1 / median)} from "
                    f"the last layer to the first (RMS {g1:.2g} at {self._label(last)} → "
                    f"{g0:.2g} at {self._label(first)}, median over {len(finite)} epoch"
                    f"{'s' if len(finite) != 1 else ''}){loss_text}, so the early layers barely "
                    "learn. Try a ReLU-family activation with He initialisation, fewer "
                    "layers, batch normalisation, Adam or a larger learning rate (chainrule "
                    "train's network: --activation relu, --layers, --batch-norm, --optimizer "
                    "adam); with sigmoid or tanh keep Glorot initialisation (their default)."
                )
        for n in self.layers:
            d = self.records[n]["dead_fraction"]
            if d and math.isfinite(d[-1]) and d[-1] > DEAD_FRACTION:
                out.append(
                    f"{d[-1]:.0%} of the ReLU units after {self._label(n)} are dead (zero for "
                    f"every sample): {lower_lr}, use another activation (LeakyReLU or ELU in "
                    "the model or architecture file; chainrule train's network: --activation "
                    "leaky_relu), or He initialisation."
                )
            s = self.records[n]["saturated_fraction"]
            if s and math.isfinite(s[-1]) and s[-1] > SATURATED_FRACTION:
                out.append(
                    f"{s[-1]:.0%} of the sigmoid/tanh units after {self._label(n)} are saturated "
                    "(slope near 0): scale the inputs, use Glorot initialisation or a "
                    "ReLU-family activation (chainrule train's network: --init glorot, "
                    "--activation relu)."
                )
        ur = [
            (self.records[n]["update_ratio"][-1], n)
            for n in self.layers
            if self.records[n]["update_ratio"]
        ]
        ur = [(u, n) for u, n in ur if math.isfinite(u)]
        if ur:
            top, where = max(ur)
            if top > 10:
                out.append(
                    f"Weights change by more than 1000 % per epoch ({self._label(where)} moved "
                    f"{_ratio_text(top)} its own size): the learning rate is far too high; "
                    f"{lower_lr} by a factor of 10 or more."
                )
            elif top > 0.5:
                out.append(
                    f"Weights change by up to {top:.0%} per epoch ({self._label(where)}): the "
                    f"learning rate may be too high; try {lr / 3:.2g} (--lr {lr / 3:.2g})."
                    if lr
                    else f"Weights change by up to {top:.0%} per epoch ({self._label(where)}): the "
                    "learning rate may be too high."
                )
        if tr is not None and tr.fit_inputs is not None:
            scaling = input_scaling_advice(tr.fit_inputs)
            if scaling:
                out.append(scaling)
        return out

    def cell(self, name: str, quantity: str, epoch: int = -1) -> tuple[float | None, str]:
        """A table cell: the recorded value, or None with the reason it does not apply.

        ``dead_fraction`` applies to layers followed by a ReLU-family activation,
        ``saturated_fraction`` to layers followed by sigmoid or tanh; the output layer has no
        activation after it (its outputs are logits or values).
        """
        act = self.activations.get(name)
        if quantity in ("dead_fraction", "saturated_fraction", "act_rms", "act_mean", "act_std"):
            if act is None:
                return None, "no activation after this layer (its outputs are logits or values)"
            if quantity == "dead_fraction" and self._kinds.get(name) not in _RELU_LIKE:
                return None, f"{act} units cannot die (only ReLU-family units output 0 for all)"
            if quantity == "saturated_fraction" and self._kinds.get(name) not in _SATURATING:
                return None, f"{act} does not saturate (only sigmoid and tanh flatten out)"
        values = self.records[name][quantity]
        if not values or not math.isfinite(values[epoch]):
            return None, "not recorded (no finite value)"
        return values[epoch], ""

    def plot(self) -> Any:
        """Per-layer gradient RMS across epochs, and per-layer activation distributions."""
        from ..plots import integer_epoch_ticks, require_matplotlib

        Figure = require_matplotlib()
        fig = Figure(figsize=(12, 4.4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        n_epochs = 0
        for n in self.layers:
            g = self.records[n]["grad_rms"]
            n_epochs = max(n_epochs, len(g))
            ax1.plot(range(1, len(g) + 1), g, marker="o", ms=3, label=self._label(n))
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("gradient RMS of the weights (log scale)")
        ax1.set_title("gradient flow per layer (input layer first)")
        ax1.legend(
            fontsize=7,
            title="layer (position: layer)",
            title_fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
        integer_epoch_ticks(ax1, range(1, n_epochs + 1))
        data = [(n, st.sample) for n, (_, st) in self._act.items() if st.sample is not None]
        if data:
            ax2.violinplot([d for _, d in data], showmedians=True)
            ax2.set_xticks(
                range(1, len(data) + 1),
                labels=[f"{self._label(n)}\n→ {self.activations.get(n, '')}" for n, _ in data],
                fontsize=7,
                rotation=20 if len(data) > 4 else 0,
            )
            ax2.set_ylabel("activation value")
            ax2.set_xlabel("hidden layer and its activation")
            ax2.set_title("activation distributions (last training batch)")
        else:
            ax2.set_title("no activations recorded")
        return fig


def _shape_text(m: Any, fan_in: int, fan_out: int) -> str:
    """A layer's size as built: ``32→10`` for a Linear, ``1→16, 3×3`` for a convolution
    (channels and kernel, not its fans: a 3×3 kernel over 1 channel has fan-in 9)."""
    channels = getattr(m, "in_channels", None), getattr(m, "out_channels", None)
    kernel = getattr(m, "kernel_size", None)
    if None in channels or not isinstance(kernel, tuple):
        return f"{fan_in}→{fan_out}"
    return f"{channels[0]}→{channels[1]}, {'×'.join(str(k) for k in kernel)}"
