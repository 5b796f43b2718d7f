"""Figures for a training run: curves, a confusion matrix, a decision boundary.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state);
save it with ``fig.savefig(path)``. matplotlib is an optional extra: ``pip install
"chainrule[plots]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "confusion_matrix_figure",
    "decision_boundary_figure",
    "integer_epoch_ticks",
    "require_matplotlib",
]


def require_matplotlib() -> Any:
    """Import matplotlib's Figure class, with a clear message when it is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'chainrule[plots]'") from None
    return Figure


def integer_epoch_ticks(ax: Any, epochs: Sequence[int]) -> None:
    """Whole-number epoch ticks (no "1.5" on a 3-epoch run), every epoch for short runs."""
    from matplotlib.ticker import MaxNLocator

    epochs = list(epochs)
    if 0 < len(epochs) <= 12:
        ax.set_xticks(epochs)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def confusion_matrix_figure(cm: np.ndarray, labels: Sequence[str], title: str = "") -> Any:
    """Counts of true class (rows) against predicted class (columns), annotated."""
    Figure = require_matplotlib()
    k = len(labels)
    size = min(3 + 0.5 * k, 12)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(
        range(k),
        labels=list(labels),
        rotation=45 if k > 4 else 0,
        ha="right" if k > 4 else "center",
    )
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix")
    top = cm.max() if cm.size else 0
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    color="white" if cm[i, j] > top / 2 else "black",
                    fontsize=8,
                )
    return fig


def decision_boundary_figure(
    predict_class: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    feature_names: Sequence[str] = ("x0", "x1"),
    resolution: int = 200,
) -> Any:
    """The predicted class over the plane of two input features, with the points on top.

    ``predict_class`` maps raw feature rows ``(m, 2)`` to class indices.
    """
    Figure = require_matplotlib()
    X = np.asarray(X, dtype=np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-9)
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(g0, g1)
    zz = np.asarray(predict_class(np.stack([xx.ravel(), yy.ravel()], axis=1))).reshape(xx.shape)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    k = len(labels)
    ax.contourf(
        xx,
        yy,
        zz,
        levels=np.arange(k + 1) - 0.5,
        cmap="coolwarm" if k == 2 else "tab10",
        alpha=0.35,
    )
    scatter = ax.scatter(
        X[:, 0],
        X[:, 1],
        c=y,
        cmap="coolwarm" if k == 2 else "tab10",
        vmin=-0.5,
        vmax=k - 0.5 if k > 2 else 1,
        s=12,
        edgecolors="k",
        linewidths=0.3,
    )
    handles, _ = scatter.legend_elements()
    ax.legend(handles, list(labels)[: len(handles)], title="class", loc="best")
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title("decision boundary")
    return fig
