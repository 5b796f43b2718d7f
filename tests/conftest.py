"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], margin: float = 0.1):
    """Values of either sign with |x| > margin (kinks of relu, abs, clip sit at 0)."""
    x = rng.normal(size=shape)
    return np.sign(x) * (margin + np.abs(x)) + 0.0 * x
