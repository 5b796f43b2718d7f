"""The playground's data: TensorFlow Playground's 2-D data sets, its seven input features, and
uploaded CSV files read by the same loader and preprocessing as ``chainrule train``.

Built-in points live in the square ``[-6, 6]²``; classification labels are ``0..K-1`` (class 0
is drawn orange, class 1 blue), regression targets lie in ``[-1, 1]``. Every random choice
comes from one ``np.random.Generator`` seeded by the state's ``seed``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.impute import DataNote, drop_missing_target
from ..data.tabular import TabularPreprocessor, read_table, train_test_split
from .state import PlaygroundState

__all__ = ["DOMAIN", "N_POINTS", "PlaygroundData", "feature_columns", "load_csv", "make_data"]

DOMAIN = 6.0  # the input plane shown is [-DOMAIN, DOMAIN]²
N_POINTS = 500  # points per built-in data set (train + test)

# x ↦ feature, as the columns of the network's input (TensorFlow Playground's seven)
_FEATURE_FN = {
    "x1": lambda a, b: a,
    "x2": lambda a, b: b,
    "x1sq": lambda a, b: a * a,
    "x2sq": lambda a, b: b * b,
    "x1x2": lambda a, b: a * b,
    "sinx1": lambda a, b: np.sin(a),
    "sinx2": lambda a, b: np.sin(b),
}
FEATURE_LABELS = {
    "x1": "x₁",
    "x2": "x₂",
    "x1sq": "x₁²",
    "x2sq": "x₂²",
    "x1x2": "x₁x₂",
    "sinx1": "sin x₁",
    "sinx2": "sin x₂",
}


@dataclass
class PlaygroundData:
    """Training and test rows as the network sees them, and what the page draws.

    ``X_*`` are the network's inputs (float32); ``y_*`` are class indices (int64) or values
    (float32, shape ``(n, 1)``); ``P_*`` are the two coordinates drawn in the boundary view.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    P_train: np.ndarray
    P_test: np.ndarray
    task: str  # "classification" | "regression"
    n_classes: int  # 0 for regression
    input_names: list[str]
    domain: tuple[float, float, float, float]  # x-min, x-max, y-min, y-max of the view
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    # uploaded data: the preprocessing and the inputs held fixed when drawing the boundary
    preprocessor: Any = None
    fill: np.ndarray | None = None
    view: tuple[int, int] = (0, 1)

    def grid_inputs(self, state: PlaygroundState, size: int) -> np.ndarray:
        """Network inputs for a ``size × size`` grid over the view (row 0 at the top)."""
        x0, x1, y0, y1 = self.domain
        xs = np.linspace(x0, x1, size)
        ys = np.linspace(y1, y0, size)  # top row = largest y, as the page draws it
        gx, gy = np.meshgrid(xs, ys)
        if self.preprocessor is None:
            return feature_columns(np.stack([gx.ravel(), gy.ravel()], 1), state.features)
        assert self.fill is not None
        X = np.repeat(self.fill[None, :], size * size, axis=0)
        X[:, self.view[0]] = gx.ravel()
        X[:, self.view[1]] = gy.ravel()
        return X.astype(np.float32)


def feature_columns(points: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The network's inputs for 2-D points: one column per selected feature (float32)."""
    a, b = points[:, 0], points[:, 1]
    return np.stack([_FEATURE_FN[f](a, b) for f in features], axis=1).astype(np.float32)


def _points(state: PlaygroundState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow Playground's shapes (its ``dataset.ts``), generalised to ``classes`` > 2."""
    n, k, noise = N_POINTS, state.classes, state.noise / 100.0
    name = state.dataset
    if name == "circle":  # rings from the outside in: class 0 outermost (TFP: 1 inside, 0 out)
        radius = 5.0
        cls = np.arange(n) % k
        ring = k - 1 - cls  # 0 = the innermost ring
        width = radius / k
        lo = ring * width + np.where(ring > 0, 0.2 * width, 0.0)
        hi = (ring + 1) * width - np.where(ring < k - 1, 0.2 * width, 0.0)
        r = lo + (hi - lo) * rng.uniform(0, 1, n)
        t = rng.uniform(0, 2 * math.pi, n)
        pts = np.stack([r * np.sin(t), r * np.cos(t)], 1)
        pts += rng.uniform(-radius, radius, (n, 2)) * noise
        return pts, cls
    if name == "xor":
        pad = 0.3
        pts = rng.uniform(-5, 5, (n, 2))
        pts += np.where(pts > 0, pad, -pad)
        if k == 2:  # TFP's XOR: the sign of x₁·x₂
            cls = (pts[:, 0] * pts[:, 1] >= 0).astype(np.int64)
        else:  # 2k sectors around the origin, class c in sectors c and c + k
            angle = np.arctan2(pts[:, 1], pts[:, 0]) + math.pi
            cls = np.floor(angle / (2 * math.pi) * 2 * k).astype(np.int64) % k
        pts += rng.uniform(-5, 5, (n, 2)) * noise
        return pts, cls
    if name == "gauss":  # one blob per class
        std = math.sqrt(0.5 + 3.5 * noise / 0.5)
        cls = np.arange(n) % k
        if k == 2:
            centres = np.array([[-2.0, -2.0], [2.0, 2.0]])
        else:
            a = 2 * math.pi * np.arange(k) / k
            centres = 3.0 * np.stack([np.cos(a), np.sin(a)], 1)
        return centres[cls] + rng.normal(0, std, (n, 2)) * 0.5, cls
    if name == "spiral":
        per = n // k
        pts_l, cls_l = [], []
        for c in range(k):
            i = np.arange(per)
            r = i / per * 5
            t = 1.75 * i / per * 2 * math.pi + 2 * math.pi * c / k
            p = np.stack([r * np.sin(t), r * np.cos(t)], 1) + rng.uniform(-1, 1, (per, 2)) * noise
            pts_l.append(p)
            cls_l.append(np.full(per, c))
        return np.concatenate(pts_l), np.concatenate(cls_l)
    if name == "plane":  # a tilted plane, target in [-1, 1]
        pts = rng.uniform(-DOMAIN, DOMAIN, (n, 2))
        target = (pts[:, 0] + pts[:, 1]) / (2 * DOMAIN)
        pts += rng.uniform(-DOMAIN, DOMAIN, (n, 2)) * noise
        return pts, target
    if name == "multigauss":  # six bumps of either sign
        pts = rng.uniform(-DOMAIN, DOMAIN, (n, 2))
        centres = np.array(
            [[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]]
        )
        target = np.zeros(n)
        for cx, cy, sign in centres:
            target += sign * np.exp(-((pts[:, 0] - cx) ** 2 + (pts[:, 1] - cy) ** 2) / 2)
        target = np.clip(target, -1, 1)
        pts += rng.uniform(-DOMAIN, DOMAIN, (n, 2)) * noise
        return pts, target
    raise ValueError(f"dataset {name!r} is not a built-in data set")


def make_data(state: PlaygroundState) -> PlaygroundData:
    """A built-in data set as the state describes it (the same state gives the same points)."""
    rng = np.random.default_rng(state.seed)
    pts, target = _points(state, rng)
    order = rng.permutation(len(pts))
    pts, target = pts[order], target[order]
    n_train = max(1, min(len(pts) - 1, round(len(pts) * state.ratio / 100)))
    X = feature_columns(pts, state.features)
    y: np.ndarray
    if state.problem == "classification":
        y = target.astype(np.int64)
        k = state.classes
        names = [str(c) for c in range(k)]
    else:
        y = target.astype(np.float32).reshape(-1, 1)
        k, names = 0, []
    return PlaygroundData(
        X[:n_train],
        y[:n_train],
        X[n_train:],
        y[n_train:],
        pts[:n_train].astype(np.float32),
        pts[n_train:].astype(np.float32),
        state.problem,
        k,
        [FEATURE_LABELS[f] for f in state.features],
        (-DOMAIN, DOMAIN, -DOMAIN, DOMAIN),
        names,
        state.dataset,
    )


def load_csv(path: str, target: str | None, state: PlaygroundState) -> PlaygroundData:
    """An uploaded CSV file, read and preprocessed as ``chainrule train --data --target`` does.

    The rows are split by the state's ``ratio`` (stratified for classes, seeded by ``seed``),
    the preprocessing (scaling, one-hot categories, imputation) is fitted on the training rows
    only; ``target`` None means the last column. The boundary view shows inputs ``fx`` and
    ``fy``, the other inputs held at their training mean.
    """
    from .._run import check_classes

    table = read_table(path, target)
    if not table.columns:
        raise ValueError("the file has no columns")
    target = target or table.columns[-1]
    table.column(target)  # an unknown target names the columns
    table = drop_missing_target(table, target)
    if len(table) < 4:
        raise ValueError(f"{table.source} has only {len(table)} rows with a target: too few")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        probe = TabularPreprocessor(target).fit(table)
        strat = probe.task == "classification"
        if strat:
            check_classes(probe, table, target)
        labels = np.asarray([str(v) for v in table.column(target)], dtype=object)
        train_idx, test_idx = train_test_split(
            labels, 1 - state.ratio / 100, seed=state.seed, stratify=strat
        )
        train, test = table.select(train_idx), table.select(test_idx)
        prep = TabularPreprocessor(target).fit(train)
        X_train, X_test = prep.transform(train), prep.transform(test)
        y_train, y_test = prep.encode_target(train), prep.encode_target(test)
    X_train = np.asarray(X_train, np.float32)
    X_test = np.asarray(X_test, np.float32)
    names = list(prep.input_names())
    d = X_train.shape[1]
    if prep.task == "classification":
        k, classes = len(prep.classes or []), list(prep.classes or [])
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    else:
        k, classes = 0, []
        y_train = np.asarray(y_train, np.float32).reshape(-1, 1)
        y_test = np.asarray(y_test, np.float32).reshape(-1, 1)
    fx, fy = (state.fx, state.fy) if max(state.fx, state.fy) < d else (0, min(1, d - 1))
    if d == 1:
        fx = fy = 0
    lo = X_train.min(axis=0)
    hi = X_train.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    domain = (
        float(lo[fx] - pad[fx]),
        float(hi[fx] + pad[fx]),
        float(lo[fy] - pad[fy]),
        float(hi[fy] + pad[fy]),
    )
    return PlaygroundData(
        X_train,
        y_train,
        X_test,
        y_test,
        X_train[:, [fx, fy]].copy(),
        X_test[:, [fx, fy]].copy(),
        prep.task,
        k,
        names,
        domain,
        classes,
        os.path.basename(path),
        preprocessor=prep,
        fill=X_train.mean(axis=0).astype(np.float32),
        view=(fx, fy),
    )
