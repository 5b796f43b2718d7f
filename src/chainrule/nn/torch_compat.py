"""Weights from and to PyTorch: the same names, Linear's weight transposed.

chainrule's :class:`~chainrule.nn.Linear` stores its weight as ``(in_features, out_features)``
and computes ``x @ W + b``; PyTorch's ``nn.Linear`` stores ``(out_features, in_features)`` and
computes ``x @ W.T + b``. Every other layer (BatchNorm's weight, bias and running statistics)
has PyTorch's layout already. A square Linear weight has the same shape both ways, so only
these functions, which know which entries belong to a Linear, can convert it safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .layers import Linear
from .module import Module

__all__ = ["from_torch_state_dict", "to_torch_state_dict"]


def _linear_weights(model: Module) -> dict[str, Linear]:
    """Dotted names of every Linear weight in ``model``, with its layer."""
    return {
        (f"{name}.weight" if name else "weight"): m
        for name, m in model.named_modules()
        if isinstance(m, Linear)
    }


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if type(value).__module__.split(".")[0] == "torch":  # a torch.Tensor (torch not imported)
        value = value.detach().cpu().numpy()
    elif hasattr(value, "data") and isinstance(getattr(value, "data", None), np.ndarray):
        value = value.data  # a chainrule Tensor
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state dict entry '{name}' is not an array: {exc}") from None


def from_torch_state_dict(
    model: Module, state_dict: Mapping[str, Any], strict: bool = True
) -> Module:
    """Load a PyTorch state dict into ``model``, transposing each ``Linear`` weight.

    The model must have PyTorch's structure and names (``Sequential`` indices, attribute names
    of a custom module). Values may be ``torch.Tensor`` (moved to the CPU, detached) or NumPy
    arrays; floating values are converted to the dtype of the entry they fill (a float32
    PyTorch model loads into a float64 chainrule model). Everything is checked first, as
    :meth:`Module.load_state_dict` does: on any error the model is unchanged.

    Parameters
    ----------
    model : Module
        Filled in place, and returned.
    state_dict : mapping of str to torch.Tensor or array_like
        E.g. ``torch_model.state_dict()``.
    strict : bool, default True
        Missing or unexpected keys raise ``ValueError``.

    Returns
    -------
    Module
        ``model``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> model = cr.nn.Sequential(cr.nn.Linear(3, 2))
    >>> torch_like = {"0.weight": np.arange(6.0).reshape(2, 3), "0.bias": np.zeros(2)}
    >>> cr.nn.from_torch_state_dict(model, torch_like)[0].weight.data  # (in, out) = W_torch.T
    array([[0., 3.],
           [1., 4.],
           [2., 5.]], dtype=float32)
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a chainrule Module, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    linears = _linear_weights(model)
    current = model.state_dict()
    converted: dict[str, np.ndarray] = {}
    for name, value in state_dict.items():
        arr = _to_numpy(value, name)
        layer = linears.get(name)
        if layer is not None:
            torch_shape = (layer.out_features, layer.in_features)
            if arr.shape != torch_shape:
                raise ValueError(
                    f"state dict entry '{name}' has shape {arr.shape}; a PyTorch "
                    f"Linear({layer.in_features}, {layer.out_features}) weight has shape "
                    f"(out_features, in_features) = {torch_shape}"
                )
            arr = arr.T
        want = current[name].dtype if name in current else arr.dtype
        if (
            arr.dtype.kind in "biuf"
            and want != arr.dtype
            and (want.kind == "f" or arr.dtype.kind != "f")
        ):
            arr = arr.astype(want)  # a float never becomes an integer buffer silently
        converted[name] = np.asarray(arr, order="C")
    model.load_state_dict(converted, strict=strict)
    return model


def to_torch_state_dict(model: Module, *, tensors: bool = False) -> dict[str, Any]:
    """``model``'s state dict in PyTorch's layout: each ``Linear`` weight transposed to
    ``(out_features, in_features)``, every entry a contiguous copy.

    Parameters
    ----------
    model : Module
    tensors : bool, default False
        Return ``torch.Tensor`` values (imports torch) instead of NumPy arrays, ready for
        ``torch_model.load_state_dict``.

    Examples
    --------
    >>> import chainrule as cr
    >>> sd = cr.nn.to_torch_state_dict(cr.nn.mlp([3, 4, 2], rng=0))
    >>> {k: v.shape for k, v in sd.items()}
    {'0.weight': (4, 3), '0.bias': (4,), '2.weight': (2, 4), '2.bias': (2,)}
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a chainrule Module, got {type(model).__name__}")
    linears = _linear_weights(model)
    out: dict[str, Any] = {}
    for name, value in model.state_dict().items():
        out[name] = np.asarray(value.T if name in linears else value, order="C")
    if tensors:
        import torch

        out = {k: torch.from_numpy(v) for k, v in out.items()}
    return out
