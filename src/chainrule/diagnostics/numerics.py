"""Whole-model gradient checks, and backpropagation timed against finite differences."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_number
from ..nn.module import Module
from ..tensor import no_grad
from ..training.arguments import resolve_loss

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
    loss_fn = resolve_loss(loss)
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
    repeats: int = 5,
    warmup: int = 2,
) -> list[dict[str, float]]:
    """Time the full gradient by backpropagation against finite differences as models grow.

    Backpropagation: one forward pass and one backward pass give every gradient — the time
    *includes the forward pass*. Finite differences: two forward passes per parameter
    (central differences); for models with more than ``max_fd_params`` parameters they are
    timed on that many randomly chosen parameters and the total is extrapolated linearly
    (marked ``extrapolated``).

    Each measurement is repeated ``repeats`` times after ``warmup`` untimed runs (caches,
    allocator, BLAS threads) and the median is reported, with the fastest and slowest repeat,
    so that one slow run on a busy machine does not change the story.

    Returns
    -------
    list of dict
        Per model: ``parameters``, ``backprop_s`` (median, forward + backward),
        ``backprop_min_s``, ``backprop_max_s``, ``finite_diff_s`` (median, for all
        parameters), ``finite_diff_min_s``, ``finite_diff_max_s``, ``fd_params_timed``,
        ``extrapolated`` (1.0 or 0.0), ``ratio`` (median over median), ``repeats``.
    """
    from ..nn import mlp
    from ..nn.losses import MSELoss
    from ..training import blas_threads_for

    check_number("repeats", repeats, low=1, integer=True)
    check_number("warmup", warmup, low=0, integer=True)
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

        def backprop() -> None:
            model.zero_grad()
            loss_fn(model(X), y).backward()

        params = list(model.parameters())
        flat = [(p, idx) for p in params for idx in np.ndindex(p.shape)]
        k = min(len(flat), max_fd_params)
        picks = [flat[i] for i in rng.choice(len(flat), size=k, replace=False)]

        def finite_differences() -> None:
            with no_grad():
                for p, idx in picks:
                    orig = p.data[idx]
                    p.data[idx] = orig + 1e-6
                    loss_fn(model(X), y).item()
                    p.data[idx] = orig - 1e-6
                    loss_fn(model(X), y).item()
                    p.data[idx] = orig

        # both methods under the BLAS thread policy of a training step of this size
        with blas_threads_for(model, batch):
            bp = _timed(backprop, repeats, warmup)
            fd = [t / k * n for t in _timed(finite_differences, repeats, min(warmup, 1))]
        out.append(
            {
                "parameters": n,
                "backprop_s": float(np.median(bp)),
                "backprop_min_s": min(bp),
                "backprop_max_s": max(bp),
                "finite_diff_s": float(np.median(fd)),
                "finite_diff_min_s": min(fd),
                "finite_diff_max_s": max(fd),
                "fd_params_timed": float(k),
                "extrapolated": float(k < n),
                "ratio": float(np.median(fd) / np.median(bp)),
                "repeats": float(repeats),
            }
        )
    return out


def _timed(fn: Any, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def format_bench_grad(rows: list[dict[str, float]]) -> str:
    """The table of :func:`bench_grad` as text (medians; ``*`` marks extrapolated rows)."""
    lines = [
        f"{'parameters':>11} {'backprop (fwd+bwd)':>19} {'finite differences':>20} {'ratio':>9}"
    ]
    for r in rows:
        mark = " *" if r["extrapolated"] else ""
        lines.append(
            f"{int(r['parameters']):>11} {r['backprop_s'] * 1e3:>17.3f}ms "
            f"{r['finite_diff_s']:>18.4f}s{mark:<2} {r['ratio']:>7.0f}x"
        )
    reps = int(rows[0].get("repeats", 1)) if rows else 1
    lines.append(
        f"Times are medians of {reps} repeats after a warm-up. Backpropagation's time includes "
        "the forward pass: one forward and one backward pass give every gradient; finite "
        "differences need two forward passes per parameter."
    )
    if any(r["extrapolated"] for r in rows):
        timed = int(min(r.get("fd_params_timed", 0) for r in rows if r["extrapolated"]))
        lines.append(
            f"* extrapolated: finite differences timed on {timed} randomly chosen parameters and "
            "scaled to all of them (timing every parameter would take too long)."
        )
    return "\n".join(lines)


def bench_grad_figure(rows: list[dict[str, float]]) -> Any:
    """Seconds for the full gradient against parameter count; hollow markers are extrapolated."""
    from ..plots import require_matplotlib

    Figure = require_matplotlib()
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    n = np.array([r["parameters"] for r in rows])
    bp = np.array([r["backprop_s"] for r in rows])
    fd = np.array([r["finite_diff_s"] for r in rows])
    ext = np.array([bool(r["extrapolated"]) for r in rows])
    ax.loglog(n, bp, "o-", color="C0", label="backpropagation (forward + backward pass)")
    ax.loglog(n, fd, "-", color="C1")
    ax.loglog(
        n[~ext], fd[~ext], "s", color="C1", label="finite differences (2 forwards per parameter)"
    )
    if ext.any():
        ax.loglog(
            n[ext],
            fd[ext],
            "s",
            color="C1",
            markerfacecolor="white",
            label="finite differences, extrapolated",
        )
    reps = int(rows[0].get("repeats", 1)) if rows else 1
    ax.set_xlabel("number of parameters")
    ax.set_ylabel(f"seconds for the full gradient (median of {reps})")
    ax.set_title("why backpropagation")
    ax.legend(fontsize=8)
    return fig
