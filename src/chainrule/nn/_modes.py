"""Evaluation mode for one call, with every sub-module's own mode given back afterwards.

``model.eval()`` then ``model.train(was_training)`` would put every sub-module in the root's
mode: a BatchNorm the user froze with ``model[1].eval()`` (fine-tuning) would come back in
training mode. :func:`eval_mode` remembers each module's flag and restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """``with eval_mode(model): ...`` runs the body with ``model.eval()``; afterwards (also on
    an exception) each module of ``model.modules()`` has its own ``training`` flag back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
