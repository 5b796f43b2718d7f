"""What a model file's architecture may ask for, checked before any layer is built.

Building ``Linear(10**6, 10**6)`` allocates 4 TB before the weights are compared with the file;
``BatchNorm1d(10**9)`` 16 GB; a dtype ``"V2000000000"`` 2 GB per element. :func:`check_architecture`
walks the architecture's JSON first and refuses (with :class:`~chainrule.io.ModelFileError`):

- more than ``MAX_MODULES`` layers in all (400 000 ReLUs took 8.8 s to build);
- a ``dtype`` that is not a floating-point type of at most 8 bytes;
- integers beyond ±2**53 in a layer's configuration (``negative_slope=10**400``);
- layers whose parameters and buffers would hold more elements than the file's model tensors
  do (each registered layer reports its count from its configuration:
  ``Module.config_elements``). Every parameter and buffer of a valid file is stored in it, so
  a valid file always passes, and the memory a file can make the loader allocate is bounded by
  the file's own size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .nn.registry import lookup

__all__ = ["MAX_MODULES", "check_architecture"]

MAX_MODULES = 10_000


def _elements(name: str, config: dict[str, Any]) -> int:
    """Number of elements the layer ``name`` allocates for its parameters and buffers, as the
    registered class reports it (:meth:`chainrule.nn.Module.config_elements`)."""
    cls = lookup(name)
    return 0 if cls is None else int(cls.config_elements(config))


def _check_values(name: str, value: Any, error: type[Exception]) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
            raise error(
                f"invalid configuration for layer {name}: an integer of {v.bit_length()} bits "
                "is too large"
            )
        elif isinstance(v, float) and not math.isfinite(v):
            raise error(f"invalid configuration for layer {name}: {v} is not a finite number")


def check_architecture(arch: Any, stored_elements: int, error: type[Exception]) -> None:
    """Refuse an architecture that would allocate more than the file holds (see module doc).

    Parameters
    ----------
    arch : the architecture JSON (``{"type": ..., "config": ...}``), as read from the file.
    stored_elements : the number of elements in the file's model tensors.
    error : the exception type to raise (``ModelFileError``).
    """
    total = 0
    modules = 0
    stack = [arch]
    while stack:
        node = stack.pop()
        modules += 1
        if modules > MAX_MODULES:
            raise error(f"the architecture has more than {MAX_MODULES} layers")
        if not isinstance(node, dict):
            continue  # build() names the problem
        name, config = node.get("type"), node.get("config", {})
        if not isinstance(name, str) or not isinstance(config, dict):
            continue
        if name == "Sequential":
            layers = config.get("layers")
            if isinstance(layers, list):
                stack.extend(layers)
            continue
        _check_values(name, config, error)
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and set(dtype) == {"__dtype__"}:  # a registered module's form
            dtype = dtype["__dtype__"]
        if dtype is not None:
            try:
                dt = np.dtype(dtype) if isinstance(dtype, str) else None
            except (TypeError, ValueError):
                dt = None
            if dt is None or dt.kind != "f" or dt.itemsize > 8:
                raise error(
                    f"invalid configuration for layer {name}: dtype must be float32 or float64, "
                    f"got {dtype!r:.40}"
                )
        total += _elements(name, config)
        if total > stored_elements:
            raise error(
                f"the architecture's layers need {total:,} or more weights but the file holds "
                f"{stored_elements:,} (first too large: {name} with {config!r:.80})"
            )
