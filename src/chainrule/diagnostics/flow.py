"""Gradient flow: per-layer gradients, weights, updates and activations during training.

:class:`GradientFlow` is a callback for :func:`chainrule.fit`. For every Linear layer and
every epoch it records the gradient's RMS (mean over the epoch's batches), the weight RMS, the
update-to-weight ratio ``‖W_end - W_start‖ / ‖W_start‖``, and for the activation after the layer
its mean and spread, the fraction of dead ReLU units (zero for every sample of a batch) and of
saturated sigmoid/tanh units. It then says in plain words what looks wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..nn.layers import ELU, GELU, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from ..nn.module import Module
from ..training.callbacks import Callback
from ..training.summary import input_scaling_advice

__all__ = ["EXPLODING_RMS", "VANISHING_RATIO", "GradientFlow"]

VANISHING_RATIO = 1e-3  # first layer's gradient RMS below this fraction of the last layer's
EXPLODING_RMS = 1e2  # a layer's gradient RMS above this
DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = self.std = self.dead = self.saturated = 0.0
        self.sample: np.ndarray | None = None


class GradientFlow(Callback):
    """Record how the gradient flows through the layers, epoch by epoch, and warn.

    Attributes (after ``fit``)
    --------------------------
    layers : list of str
        The Linear layers' names, input first.
    records : dict
        ``records[name][quantity]`` is a list over epochs; quantities: ``grad_rms``,
        ``weight_rms``, ``update_ratio``, ``act_mean``, ``act_std``, ``dead_fraction``,
        ``saturated_fraction``.
    warnings : list of str
        Plain-language findings with suggestions (vanishing or exploding gradients, non-finite
        values, dead or saturated units, unscaled inputs, learning rate).
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.layers: list[str] = []
        self.records: dict[str, dict[str, list[float]]] = {}
        self.warnings: list[str] = []
        self._hooks: list[Any] = []

    # ----- wiring -----
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        assert self.model is not None
        mods = list(self.model.named_modules())
        self._linears: list[tuple[str, Linear]] = [(n, m) for n, m in mods if isinstance(m, Linear)]
        self.layers = [n for n, _ in self._linears]
        quantities = (
            "grad_rms",
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
            follow = next(
                (
                    m
                    for m in order[k + 1 :]
                    if isinstance(m, (ReLU, LeakyReLU, ELU, GELU, Sigmoid, Tanh, Linear))
                ),
                None,
            )
            if follow is None or isinstance(follow, Linear):
                continue
            stats = _Stats()
            self._act[name] = (follow, stats)
            self._hooks.append(follow.register_forward_hook(self._watch(follow, stats)))
        self._grad_sum = {n: 0.0 for n in self.layers}
        self._batches = 0
        self._nonfinite: set[str] = set()

    def _watch(self, module: Module, stats: _Stats) -> Any:
        kind = type(module).__name__

        def hook(mod: Module, inputs: Any, out: Any) -> None:
            if not mod.training:
                return  # validation and prediction are not part of the training flow
            a = np.asarray(out.data, dtype=np.float32)
            if a.ndim < 2 or a.shape[0] == 0:
                return
            stats.n += 1
            stats.mean += float(a.mean())
            stats.std += float(a.std())
            if kind in ("ReLU", "LeakyReLU", "ELU", "GELU"):
                stats.dead += float(np.mean(np.all(a <= 0, axis=0)))
            elif kind == "Sigmoid":
                stats.saturated += float(np.mean((a < 0.01) | (a > 0.99)))
            elif kind == "Tanh":
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

    def diagnose(self) -> list[str]:
        """Plain-language warnings with suggestions, from what was recorded so far."""
        out: list[str] = []
        if not self.layers or not self.records[self.layers[0]]["grad_rms"]:
            return out
        if self._nonfinite:
            out.append(
                f"Gradients became NaN or infinite in {', '.join(sorted(self._nonfinite))}: lower "
                "the learning rate, scale the inputs, or clip gradients (clip_grad_norm=1.0)."
            )
        ratios = [
            self.gradient_ratio(e) for e in range(len(self.records[self.layers[0]]["grad_rms"]))
        ]
        early = ratios[0]
        if len(self.layers) >= 2 and math.isfinite(early) and early < VANISHING_RATIO:
            per = ", ".join(f"{n}: {self.records[n]['grad_rms'][0]:.1e}" for n in self.layers)
            out.append(
                f"Vanishing gradients: the first layer's gradient is {early:.0e} times the last "
                f"layer's ({per}; RMS in the first epoch), so the early layers barely learn. Try "
                "ReLU-family activations with He initialisation, Glorot initialisation for "
                "sigmoid/tanh, fewer layers, or batch normalisation."
            )
        for n in self.layers:
            g = self.records[n]["grad_rms"]
            if g and math.isfinite(g[-1]) and g[-1] > EXPLODING_RMS:
                out.append(
                    f"Exploding gradients in {n} (RMS {g[-1]:.2g}): lower the learning rate or clip "
                    "gradients (clip_grad_norm=1.0)."
                )
                break
        for n in self.layers:
            d = self.records[n]["dead_fraction"]
            if d and math.isfinite(d[-1]) and d[-1] > DEAD_FRACTION:
                out.append(
                    f"{d[-1]:.0%} of the ReLU units after {n} are dead (zero for every sample): lower "
                    "the learning rate, use LeakyReLU/ELU, or He initialisation."
                )
            s = self.records[n]["saturated_fraction"]
            if s and math.isfinite(s[-1]) and s[-1] > SATURATED_FRACTION:
                out.append(
                    f"{s[-1]:.0%} of the sigmoid/tanh units after {n} are saturated (slope near 0): "
                    "scale the inputs, use Glorot initialisation or a ReLU-family activation."
                )
        ur = [
            self.records[n]["update_ratio"][-1]
            for n in self.layers
            if self.records[n]["update_ratio"]
        ]
        ur = [u for u in ur if math.isfinite(u)]
        if ur and max(ur) > 0.5:
            out.append(
                f"Weights change by up to {max(ur):.0%} per epoch: the learning rate may be too high."
            )
        if self.trainer is not None and hasattr(self.trainer, "_fit_inputs"):
            scaling = input_scaling_advice(self.trainer._fit_inputs)
            if scaling:
                out.append(scaling)
        return out

    def plot(self) -> Any:
        """Per-layer gradient RMS across epochs, and per-layer activation distributions."""
        from ..plots import require_matplotlib

        Figure = require_matplotlib()
        fig = Figure(figsize=(11, 4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        for n in self.layers:
            g = self.records[n]["grad_rms"]
            ax1.plot(range(1, len(g) + 1), g, marker="o", ms=3, label=f"layer {n}")
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("gradient RMS (weights)")
        ax1.set_title("gradient flow per layer")
        ax1.legend(fontsize=8)
        data = [(n, st.sample) for n, (_, st) in self._act.items() if st.sample is not None]
        if data:
            ax2.violinplot([d for _, d in data], showmedians=True)
            ax2.set_xticks(
                range(1, len(data) + 1), labels=[f"after {n}" for n, _ in data], fontsize=8
            )
            ax2.set_title("activation distributions (last batch)")
        else:
            ax2.set_title("no activations recorded")
        return fig
