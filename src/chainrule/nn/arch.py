"""Architecture files: a network described in JSON or TOML, in the form model files store
(``{"type": "Sequential", "config": {"layers": [{"type": "Conv2d", "config": {...}}, ...]}}``).

``chainrule info --model M --arch-out net.json`` writes one from a trained model and
``chainrule train --arch net.json`` trains a fresh network built from it. The same file may be
written in TOML (``net.toml``)::

    type = "Sequential"
    [[config.layers]]
    type = "Unflatten"
    config = {dim = 1, unflattened_size = [1, 8, 8]}
    [[config.layers]]
    type = "Conv2d"
    config = {in_channels = 1, out_channels = 16, kernel_size = 3, padding = 1}
    ...
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .module import Module, Sequential
from .registry import build_module, describe_module

__all__ = ["ArchitectureError", "check_architecture", "read_architecture", "write_architecture"]


class ArchitectureError(ValueError):
    """An architecture file that cannot be read, built, or fed the data's shape."""


def read_architecture(path: str | os.PathLike[str], rng: Any = None) -> Module:
    """Build the network an architecture file (``.json`` or ``.toml``) describes, with fresh
    weights drawn from ``rng`` (a seed or Generator) by each layer's own initialisation."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ArchitectureError(f"cannot read architecture file {path!r}: {exc.strerror}") from None
    try:
        if path.endswith(".toml"):
            import tomllib

            arch = tomllib.loads(raw.decode("utf-8"))
        else:
            arch = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchitectureError(f"architecture file {path!r} is not valid: {exc}") from None
    if isinstance(arch, dict) and "architecture" in arch and "type" not in arch:
        arch = arch["architecture"]
    model = build_module(arch, ArchitectureError)
    if rng is not None:
        gen = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        for m in model.modules():
            if (
                m is not model
                and hasattr(m, "reset_parameters")
                and any(True for _ in m.parameters())
            ):
                m.reset_parameters(gen)
    return model


def check_architecture_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, refused if it names a TOML file: architectures are read from JSON
    or TOML but written as JSON only (TOML has no null, which e.g. ``momentum=None`` needs)."""
    path = os.fspath(path)
    if path.lower().endswith(".toml"):
        raise ValueError(
            f"architecture files are written as JSON, not TOML: give a path ending in .json, "
            f"got {path!r} (chainrule train --arch reads either)"
        )
    return path


def write_architecture(model: Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s architecture (no weights) as JSON, atomically (a ``.toml`` path is
    refused: see :func:`check_architecture_path`)."""
    path = check_architecture_path(path)
    text = json.dumps(describe_module(model), indent=2) + "\n"
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_architecture(
    model: Module, n_inputs: int, n_outputs: int, dtype: Any = np.float32
) -> None:
    """Feed a batch of two rows of ``n_inputs`` features through ``model`` and check that it
    gives ``(2, n_outputs)``; a layer that fails is named with its index and both shapes."""
    from ..tensor import no_grad

    x: Any = np.zeros((2, n_inputs), dtype)
    layers = list(model) if type(model) is Sequential else [model]
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode comes back
    model.eval()
    try:
        with no_grad():
            for i, layer in enumerate(layers):
                shape = tuple(x.shape)
                try:
                    x = layer(x)
                except (ValueError, TypeError) as exc:
                    if i == 0:  # no layer before it: the rows of the data
                        raise ArchitectureError(
                            f"layer 0 ({type(layer).__name__}) cannot take the network's input, "
                            f"rows of {n_inputs} values (input shape {shape}): {exc}"
                            + (
                                "; a network for images or signals starts with Unflatten "
                                "(dim 1, unflattened_size [C, H, W] or [C, L])"
                                if len(shape) == 2
                                else ""
                            )
                        ) from None
                    raise ArchitectureError(
                        f"layer {i} ({type(layer).__name__}) cannot take the output of the layer "
                        f"before it: input shape {shape}: {exc}"
                    ) from None
    finally:
        for m, training in modes:
            m.training = training
    if tuple(x.shape) != (2, n_outputs):
        raise ArchitectureError(
            f"the network's output has shape {tuple(x.shape)} for 2 rows, but the data needs "
            f"(2, {n_outputs}) ({n_outputs} outputs): change the last layer"
        )
