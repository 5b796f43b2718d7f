"""History: what happened in every epoch of a training run."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any

__all__ = ["History"]


class History:
    """Per-epoch records of a run, returned by :func:`chainrule.fit`.

    ``history.history`` maps each quantity (``"loss"``, ``"val_loss"``, metrics, ``"lr"``,
    ``"time"``) to a list with one value per epoch, as in Keras; ``history.epoch`` lists the
    epoch numbers (from 1). After ``fit``: ``stop_reason`` (``"epochs"``, ``"early_stopping"``,
    ``"converged"``, ``"diverged"``, ``"interrupted"``, ``"callback"``), ``best_epoch``,
    ``summary`` (the end-of-fit text) and ``message`` (what went wrong, if anything).
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.stop_reason: str | None = None
        self.best_epoch: int | None = None
        self.summary: str = ""
        self.message: str = ""

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record ``logs`` for ``epoch``; a quantity missing before is padded with NaN."""
        n = len(self.epoch)
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            self.history.setdefault(key, [math.nan] * n).append(float(value))
        for values in self.history.values():
            if len(values) < n + 1:
                values.append(math.nan)

    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def keys(self) -> list[str]:
        return list(self.history)

    def last(self, key: str, default: float = math.nan) -> float:
        values = self.history.get(key)
        return values[-1] if values else default

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: epochs, every series, and how the run ended."""
        return {
            "epoch": list(self.epoch),
            "history": {k: list(v) for k, v in self.history.items()},
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "summary": self.summary,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        h = cls()
        h.epoch = [int(e) for e in d.get("epoch", [])]
        h.history = {k: [float(x) for x in v] for k, v in d.get("history", {}).items()}
        h.stop_reason = d.get("stop_reason")
        h.best_epoch = d.get("best_epoch")
        h.summary = d.get("summary", "")
        h.message = d.get("message", "")
        return h

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """The table as CSV (header ``epoch,<keys>``); written atomically to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        keys = list(self.history)
        writer.writerow(["epoch", *keys])
        for i, e in enumerate(self.epoch):
            writer.writerow([e, *[repr(self.history[k][i]) for k in keys]])
        text = buf.getvalue()
        if path is not None:
            from ..io import atomic_write_text

            atomic_write_text(path, text)
        return text

    def plot(self, keys: list[str] | None = None) -> Any:
        """Plot the curves: one panel for the losses, one per metric (train and validation).

        Returns a ``matplotlib.figure.Figure`` (no pyplot state is touched); save it with
        ``fig.savefig("curves.png")``. Needs matplotlib (``pip install "chainrule[plots]"``).
        """
        try:
            from matplotlib.figure import Figure

            from ..plots import integer_epoch_ticks
        except ImportError:
            raise ImportError(
                "History.plot needs matplotlib: pip install 'chainrule[plots]'"
            ) from None
        base = keys or [
            k for k in self.history if not k.startswith("val_") and k not in ("lr", "time")
        ]
        fig = Figure(figsize=(5 * max(len(base), 1), 3.6), layout="constrained")
        axes = fig.subplots(1, max(len(base), 1), squeeze=False)[0]
        for ax, key in zip(axes, base):
            style = {"marker": "o", "ms": 3} if len(self.epoch) <= 12 else {}
            ax.plot(self.epoch, self.history[key], label=f"train {key}", **style)
            if f"val_{key}" in self.history:
                ax.plot(self.epoch, self.history[f"val_{key}"], label=f"validation {key}", **style)
            if self.best_epoch is not None:
                ax.axvline(self.best_epoch, color="grey", linestyle=":", label="best epoch")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.set_title(key)
            ax.legend()
            if key == "loss" and all(v > 0 for v in self.history[key] if not math.isnan(v)):
                ax.set_yscale("log")
            integer_epoch_ticks(ax, self.epoch)
        return fig

    def __repr__(self) -> str:
        return (
            f"History(epochs={len(self.epoch)}, keys={list(self.history)}, "
            f"stop_reason={self.stop_reason!r})"
        )
