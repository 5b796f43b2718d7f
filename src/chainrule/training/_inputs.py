"""Data given as batches (a PyTorch DataLoader, a generator, a list of ``(x, y)`` pairs), and
model outputs that are not one array: turned into what :func:`chainrule.fit` and
:func:`chainrule.predict` work on, or refused with a message that says what to pass."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..tensor import Tensor

__all__ = [
    "as_array",
    "as_data",
    "batches_to_arrays",
    "check_finite",
    "column_target",
    "is_batches",
    "single_output",
]


def as_array(value: Any) -> Any:
    """A torch.Tensor or chainrule Tensor as a NumPy array (torch is never imported)."""
    if isinstance(value, Tensor):
        return value.data
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def is_batches(X: Any) -> bool:
    """True if ``X`` looks like an iterable of batches rather than one array-like.

    Arrays, tensors and (nested) lists of numbers are data; a generator, an iterator, a
    DataLoader-like object (iterable, no ``__array__``, not a list or tuple) or a list whose
    first item is a tuple ``(x, y)`` or ``(x, y, w)`` of arrays are batches.
    """
    if isinstance(X, (np.ndarray, Tensor, str, bytes, dict)) or hasattr(X, "__array__"):
        return False
    if isinstance(X, (list, tuple)):
        if not X:
            return False
        first = X[0]
        return (  # a tuple (not a list: nested lists are rows of data) of arrays
            isinstance(first, tuple)
            and len(first) in (2, 3)
            and all(np.ndim(as_array(part)) >= 1 for part in first)
        )
    return isinstance(X, Iterable)


def batches_to_arrays(batches: Iterable[Any], purpose: str) -> tuple[Any, Any, Any, int]:
    """Concatenate ``(x, y)`` or ``(x, y, sample_weight)`` batches: ``(X, y, w, first size)``.

    ``purpose`` is "fit" (targets required) or "predict" (items may be ``x`` alone; targets
    are ignored).
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    for i, item in enumerate(batches):
        if isinstance(item, (tuple, list)) and len(item) in (2, 3):
            parts = [np.asarray(as_array(v)) for v in item]
        elif purpose == "predict":
            parts = [np.asarray(as_array(item))]
        else:
            raise TypeError(
                f"fit got an iterable of batches, but batch {i} is a {type(item).__name__}, not "
                "an (x, y) pair; pass arrays, fit(model, X, y, ...), or an iterable of (x, y) "
                "or (x, y, sample_weight) batches"
            )
        xs.append(parts[0])
        if len(parts) > 1:
            ys.append(parts[1])
        if len(parts) > 2:
            ws.append(parts[2])
    if not xs:
        raise ValueError(f"the iterable of batches given to {purpose} yielded no batch")
    X = np.concatenate(xs)
    y = np.concatenate(ys) if purpose == "fit" and len(ys) == len(xs) else None
    w = np.concatenate(ws) if purpose == "fit" and ws and len(ws) == len(xs) else None
    return X, y, w, len(xs[0])


def single_output(out: Any, fn: str) -> np.ndarray:
    """The array of a model's output; a tuple, list or dict is refused with its contents."""
    if isinstance(out, Tensor):
        return out.data
    if isinstance(out, (tuple, list, dict)):
        items = out.items() if isinstance(out, dict) else enumerate(out)
        shapes = ", ".join(
            f"[{k!r}]: shape {getattr(v, 'shape', type(v).__name__)}" for k, v in items
        )
        raise TypeError(
            f"{fn} needs a model that returns one array, but the model returned a "
            f"{type(out).__name__} of {len(out)} outputs ({shapes}); wrap it so forward() "
            f"returns the output to use (e.g. out[0]), or call the model under cr.no_grad()"
        )
    return np.asarray(out)


def as_data(name: str, value: Any, allow_1d: bool = True, purpose: str = "train on") -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.data
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"{name} must be array-like, got {type(value).__name__}: {exc}"
            ) from None
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {value.dtype}")
    if value.ndim == 0 or (not allow_1d and value.ndim < 2):
        raise ValueError(f"{name} must have a sample dimension, got shape {value.shape}")
    if len(value) == 0:
        raise ValueError(
            f"{name} has 0 samples (shape {value.shape}); there is nothing to {purpose}"
        )
    return value


def check_finite(name: str, arr: np.ndarray, doing: str = "training") -> None:
    if arr.dtype.kind != "f" or isinstance(arr, np.memmap):
        return  # a memory-mapped set is checked batch by batch instead of read in full here
    step = max(1, 2**24 // max(1, arr[0].size))
    for start in range(0, len(arr), step):
        chunk = arr[start : start + step]
        if not np.all(np.isfinite(chunk)):
            bad = np.argwhere(~np.isfinite(chunk))[0]
            row = start + int(bad[0])
            raise ValueError(
                f"{name} contains NaN or infinite values (first at row {row}"
                + (f", column {int(bad[1])}" if len(bad) > 1 else "")
                + f"); remove or impute them before {doing}"
            )


_CLASS_INDEX_TASKS = ("multiclass", "multiclass_logprob")  # targets are 1-D class indices


def column_target(loss_fn: Any, out: Any, y: Any) -> Any:
    """``y`` as the column ``(n, 1)`` when the model gives one output per sample ``(n, 1)``, ``y``
    has shape ``(n,)`` and ``loss_fn`` compares outputs with targets elementwise.

    Keras's habit, kept by :func:`chainrule.fit` and :func:`chainrule.evaluate` for every step
    plan alike: one target per sample may be given flat. The loss modules themselves stay as
    strict as PyTorch's (broadcasting ``(n, 1)`` against ``(n,)`` would compare every output with
    every target, so they refuse it). Class-index losses (cross-entropy, NLL) are left alone.
    """
    shape = getattr(out, "shape", None)
    if (
        shape is not None
        and len(shape) == 2
        and shape[1] == 1
        and isinstance(y, np.ndarray)
        and y.ndim == 1
        and len(y) == shape[0]
        and getattr(loss_fn, "task", None) not in _CLASS_INDEX_TASKS
    ):
        return y.reshape(-1, 1)
    return y
