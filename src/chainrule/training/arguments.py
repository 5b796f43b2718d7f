"""How ``fit`` reads its arguments, for the tools that take the same ones.

:func:`chainrule.diagnostics.lr_find`, :func:`~chainrule.diagnostics.explain` and the numerics
checks accept a loss and data exactly as :func:`chainrule.fit` does; they resolve them here, so
that a name or an array means the same thing everywhere and a bad one fails with the same
message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import as_data as _as_data
from .evaluation import resolve_loss as _resolve_loss

__all__ = ["as_data", "resolve_loss"]


def resolve_loss(loss: Any) -> Any:
    """The loss module ``fit(loss=...)`` would use: a name from
    :data:`chainrule.training.fit.LOSSES` (``"mse"``, ``"cross_entropy"``, ...) builds that loss;
    a loss module or any callable ``loss(output, target)`` is returned as it is.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    TypeError
        For anything that is neither a name nor callable.

    Examples
    --------
    >>> from chainrule.training.arguments import resolve_loss
    >>> resolve_loss("mse")
    MSELoss(reduction='mean')
    """
    return _resolve_loss(loss)


def as_data(name: str, value: Any, allow_1d: bool = True, purpose: str = "train on") -> np.ndarray:
    """``value`` (an array, a Tensor or anything ``np.asarray`` takes) as a numeric ndarray
    with at least one sample, checked as ``fit`` checks ``X`` and ``y``.

    Parameters
    ----------
    name : str
        The argument's name, for the messages (``"X"``).
    value : array_like
    allow_1d : bool, default True
        False requires at least two dimensions (samples × features).
    purpose : str
        What the data is for, for the message about zero samples (``"train on"``).

    Raises
    ------
    TypeError
        If ``value`` is not array-like or not numeric.
    ValueError
        If it has no sample dimension or no samples.
    """
    return _as_data(name, value, allow_1d, purpose)
