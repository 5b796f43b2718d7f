"""Synthetic data sets with noise and a seed: xor, moons, circles, spirals, blobs, plane, sine.

Each returns ``(X, y)`` with float32 features; classification labels are int64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._random import as_generator
from .._validation import check_number

__all__ = ["blobs", "circles", "moons", "plane", "sine", "spirals", "xor"]


def _n(n_samples: Any) -> int:
    check_number("n_samples", n_samples, low=1, integer=True)
    return int(n_samples)


def _noise(noise: Any) -> float:
    check_number("noise", noise, low=0)
    return float(noise)


def _two_classes(
    X: np.ndarray, n0: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Label the first ``n0`` points 0 and the rest 1, add Gaussian noise, shuffle."""
    n = len(X)
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    X = X + rng.normal(scale=_noise(noise), size=X.shape)
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order]


def xor(
    n_samples: int = 400, noise: float = 0.1, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian clusters at (±1, ±1); label 1 where the signs differ (XOR)."""
    n, rng = _n(n_samples), as_generator(seed, "seed")
    corners = rng.integers(0, 2, size=(n, 2))
    X = (2.0 * corners - 1) + rng.normal(scale=_noise(noise), size=(n, 2))
    y = (corners[:, 0] ^ corners[:, 1]).astype(np.int64)
    return X.astype(np.float32), y


def moons(
    n_samples: int = 1000, noise: float = 0.2, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons`` geometry), labels 0/1."""
    n, rng = _n(n_samples), as_generator(seed, "seed")
    n0 = n // 2
    t0 = np.linspace(0, math.pi, n0)
    t1 = np.linspace(0, math.pi, n - n0)
    X = np.concatenate(
        [
            np.stack([np.cos(t0), np.sin(t0)], axis=1),
            np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1),
        ]
    )
    return _two_classes(X, n0, noise, rng)


def circles(
    n_samples: int = 1000, noise: float = 0.05, factor: float = 0.5, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """A circle inside a circle of radius 1 (inner radius ``factor``), labels 0 outer / 1 inner."""
    check_number("factor", factor, low=0, high=1, low_inclusive=False, high_inclusive=False)
    n, rng = _n(n_samples), as_generator(seed, "seed")
    n0 = n // 2
    t0 = np.linspace(0, 2 * math.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * math.pi, n - n0, endpoint=False)
    X = np.concatenate(
        [np.stack([np.cos(t0), np.sin(t0)], 1), factor * np.stack([np.cos(t1), np.sin(t1)], 1)]
    )
    return _two_classes(X, n0, noise, rng)


def spirals(
    n_samples: int = 900, n_classes: int = 3, noise: float = 0.2, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` interleaved spiral arms (the classic CS231n toy problem)."""
    check_number("n_classes", n_classes, low=2, integer=True)
    n, rng = _n(n_samples), as_generator(seed, "seed")
    y = np.arange(n) % n_classes
    r = np.linspace(0.05, 1.0, n)[rng.permutation(n)]
    t = y * (2 * math.pi / n_classes) + r * 4 + rng.normal(scale=_noise(noise), size=n)
    X = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
    return X.astype(np.float32), y.astype(np.int64)


def blobs(
    n_samples: int = 600,
    centers: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    seed: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian clusters with centres drawn uniformly from [-10, 10]."""
    check_number("centers", centers, low=1, integer=True)
    check_number("n_features", n_features, low=1, integer=True)
    check_number("cluster_std", cluster_std, low=0)
    n, rng = _n(n_samples), as_generator(seed, "seed")
    c = rng.uniform(-10, 10, size=(int(centers), int(n_features)))
    y = np.arange(n) % int(centers)
    X = c[y] + rng.normal(scale=cluster_std, size=(n, int(n_features)))
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order].astype(np.int64)


def plane(
    n_samples: int = 500, n_features: int = 3, noise: float = 0.1, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy linear regression target ``y = X·w + b + ε`` with random w, b."""
    check_number("n_features", n_features, low=1, integer=True)
    n, rng = _n(n_samples), as_generator(seed, "seed")
    X = rng.normal(size=(n, int(n_features)))
    w = rng.normal(size=int(n_features))
    y = X @ w + rng.normal() + rng.normal(scale=_noise(noise), size=n)
    return X.astype(np.float32), y.astype(np.float32)


def sine(
    n_samples: int = 500, noise: float = 0.1, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x) + ε`` for x uniform in [-π, π] (a 1-D regression curve)."""
    n, rng = _n(n_samples), as_generator(seed, "seed")
    x = rng.uniform(-math.pi, math.pi, size=(n, 1))
    y = np.sin(x[:, 0]) + rng.normal(scale=_noise(noise), size=n)
    return x.astype(np.float32), y.astype(np.float32)
