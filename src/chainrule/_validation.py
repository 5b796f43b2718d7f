"""One helper for the range checks of hyperparameters, so that every message reads the same."""

from __future__ import annotations

import math
from typing import Any


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise a ValueError/TypeError naming ``name`` unless ``value`` is a number in range.

    >>> check_number("lr", -1, low=0, low_inclusive=False)
    Traceback (most recent call last):
    ...
    ValueError: lr must be > 0, got -1
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or (
        not isinstance(value, (int, float)) and not hasattr(value, "__float__")
    ):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if integer and int(value) != value:
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be {kind}, got nan")
    if low is not None and (v < low or (v == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low:g}, got {value!r}")
    if high is not None and (v > high or (v == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high:g}, got {value!r}")
