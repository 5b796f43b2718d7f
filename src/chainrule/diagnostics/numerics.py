"""Whole-model gradient checks, and backpropagation timed against finite differences."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.module import Module
from ..tensor import no_grad
from ..training.fit import _resolve_loss

__all__ = ["ModelGradcheck", "bench_grad", "gradcheck_model"]


@dataclass
class ModelGradcheck:
    """Result of :func:`gradcheck_model`."""

    ok: bool
    n_checked: int
    max_abs_error: float
    max_rel_error: float
    worst_parameter: str
    worst_index: tuple[int, ...]
    analytical: float
    numerical: float
    n_total: int | None = None  # how many parameter entries the model has (None: unknown)

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        if self.n_total is None or self.n_total == self.n_checked:
            what = f"all {self.n_checked:,} parameters".replace(",", " ")
        else:
            what = f"{self.n_checked:,} sampled of {self.n_total:,} parameters".replace(",", " ")
        return (
            f"gradient check {verdict}: {what} against float64 central "
            f"differences; largest error {self.max_abs_error:.2e} (relative {self.max_rel_error:.2e}) "
            f"at {self.worst_parameter}{list(self.worst_index)}: backprop {self.analytical:.10g}, "
            f"numerical {self.numerical:.10g}"
        )


def gradcheck_model(
    model: Module,
    X: Any,
    y: Any,
    loss: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    max_params: int | None = 2000,
    seed: Any = 0,
) -> ModelGradcheck:
    """Check every parameter's gradient (or a random ``max_params`` of them) in float64.

    A float64 copy of ``model`` (in eval mode, so dropout is off) computes the loss's
    gradient by backpropagation; each checked entry is compared with the central difference
    ``(C(w + ε) - C(w - ε)) / 2ε``. The model passed in is not modified.

    Returns
    -------
    ModelGradcheck
        ``ok``, the number checked (``n_checked``) of the model's ``n_total`` parameter
        entries, and the worst parameter and entry with both values.
    """
    work = copy.deepcopy(model).to(np.float64)
    work.eval()
    loss_fn = _resolve_loss(loss)
    Xd = np.asarray(X, dtype=np.float64)
    work.zero_grad()
    loss_fn(work(Xd), y).backward()
    entries: list[tuple[str, Any, tuple[int, ...]]] = []
    for name, p in work.named_parameters():
        for idx in np.ndindex(p.shape):
            entries.append((name, p, idx))
    n_total = len(entries)
    if max_params is not None and len(entries) > max_params:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(entries), size=max_params, replace=False)
        entries = [entries[k] for k in sorted(pick)]
    worst: tuple[float, float, str, tuple[int, ...], float, float] = (-1.0, 0.0, "", (), 0.0, 0.0)
    ok = True
    with no_grad():
        for name, p, idx in entries:
            orig = p.data[idx]
            p.data[idx] = orig + eps
            up = loss_fn(work(Xd), y).item()
            p.data[idx] = orig - eps
            down = loss_fn(work(Xd), y).item()
            p.data[idx] = orig
            num = (up - down) / (2 * eps)
            ana = float(p.grad[idx])  # type: ignore[index]
            err = abs(ana - num)
            if err > atol + rtol * abs(num):
                ok = False
            score = err / (atol + rtol * abs(num))
            if score > worst[0]:
                worst = (score, err, name, tuple(int(i) for i in idx), ana, num)
    _, err, name, idx, ana, num = worst
    rel = err / max(abs(num), 1e-300)
    return ModelGradcheck(ok, len(entries), err, rel, name, idx, ana, num, n_total)


def bench_grad(
    widths_list: list[list[int]] | None = None,
    batch: int = 32,
    max_fd_params: int = 200,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Time one backward pass against finite differences as the parameter count grows.

    Finite differences need two forward passes per parameter; for large models they are timed
    on ``max_fd_params`` parameters and extrapolated linearly (marked ``extrapolated``).
    Backpropagation computes every gradient "in a single pass rather than separate
    calculations for each parameter".
    """
    from ..nn.layers import mlp
    from ..nn.losses import MSELoss

    widths_list = widths_list or [
        [4, 8, 2],
        [16, 32, 4],
        [32, 96, 16],
        [100, 300, 32],
        [256, 384, 8],
    ]
    rng = np.random.default_rng(seed)
    out = []
    loss_fn = MSELoss()
    for widths in widths_list:
        model = mlp(widths, "tanh", rng=seed, dtype=np.float64)
        X = rng.normal(size=(batch, widths[0]))
        y = rng.normal(size=(batch, widths[-1]))
        n = model.num_parameters()
        t = time.perf_counter()
        reps = 5
        for _ in range(reps):
            model.zero_grad()
            loss_fn(model(X), y).backward()
        t_bp = (time.perf_counter() - t) / reps
        params = list(model.parameters())
        flat = [(p, idx) for p in params for idx in np.ndindex(p.shape)]
        k = min(len(flat), max_fd_params)
        picks = [flat[i] for i in rng.choice(len(flat), size=k, replace=False)]
        t = time.perf_counter()
        with no_grad():
            for p, idx in picks:
                orig = p.data[idx]
                p.data[idx] = orig + 1e-6
                loss_fn(model(X), y).item()
                p.data[idx] = orig - 1e-6
                loss_fn(model(X), y).item()
                p.data[idx] = orig
        t_fd = (time.perf_counter() - t) / k * n
        out.append(
            {
                "parameters": n,
                "backprop_s": t_bp,
                "finite_diff_s": t_fd,
                "extrapolated": float(k < n),
                "ratio": t_fd / t_bp,
            }
        )
    return out


def format_bench_grad(rows: list[dict[str, float]]) -> str:
    """The table of :func:`bench_grad` as text."""
    lines = [f"{'parameters':>11} {'backprop':>12} {'finite differences':>20} {'ratio':>9}"]
    for r in rows:
        mark = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(
            f"{int(r['parameters']):>11} {r['backprop_s'] * 1e3:>10.2f}ms "
            f"{r['finite_diff_s']:>18.3f}s {r['ratio']:>8.0f}x{mark}"
        )
    lines.append(
        "One backward pass gives every gradient; finite differences need two forward passes per "
        "parameter."
    )
    return "\n".join(lines)


def bench_grad_figure(rows: list[dict[str, float]]) -> Any:
    from ..plots import require_matplotlib

    Figure = require_matplotlib()
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    n = [r["parameters"] for r in rows]
    ax.loglog(n, [r["backprop_s"] for r in rows], "o-", label="backpropagation (one backward pass)")
    ax.loglog(
        n,
        [r["finite_diff_s"] for r in rows],
        "s-",
        label="finite differences (2 forwards per parameter)",
    )
    ax.set_xlabel("number of parameters")
    ax.set_ylabel("seconds for the full gradient")
    ax.set_title("why backpropagation")
    ax.legend(fontsize=8)
    return fig
