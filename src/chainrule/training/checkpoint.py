"""Checkpoints: everything a training run needs to continue bitwise-identically.

A checkpoint is a model file (see :mod:`chainrule.io`) whose ``chainrule.training`` entry holds
the epoch, the optimizer's hyperparameters and per-parameter state, the schedule, the state of
every random generator (the run's and each dropout layer's, with their sharing), the history
and the callbacks' state (early-stopping counters and best weights); arrays are stored as
tensors next to the weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import io as model_io

if TYPE_CHECKING:
    from .fit import Trainer

__all__ = ["pack", "restore_training_state", "training_state", "unpack"]

STATE_VERSION = 1


def pack(obj: Any, prefix: str, tensors: dict[str, np.ndarray]) -> Any:
    """Turn nested state into JSON, moving arrays into ``tensors`` under ``prefix`` names."""
    if isinstance(obj, np.ndarray):
        tensors[prefix] = np.asarray(obj, order="C")
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot store a state key of type {type(k).__name__}")
            items.append([k, pack(v, f"{prefix}/{k}", tensors)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.dtype):
        return {"__dtype__": obj.str}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a checkpoint")


def unpack(obj: Any, tensors: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack` (raises ModelFileError on anything unexpected)."""
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            name = obj["__tensor__"]
            if name not in tensors:
                raise model_io.ModelFileError(f"checkpoint refers to a missing tensor {name!r:.60}")
            return tensors[name].copy()
        if "__dict__" in obj:
            return {k: unpack(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        if "__dtype__" in obj:
            return np.dtype(str(obj["__dtype__"]))
        raise model_io.ModelFileError("checkpoint state has an unknown entry")
    return obj


def _module_rngs(model: Any) -> list[tuple[str, Any, Any]]:
    return [
        (name, m, m.rng)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "rng", None), np.random.Generator)
    ]


def training_state(tr: Trainer) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON part and the tensors of ``tr``'s training state."""
    tensors: dict[str, np.ndarray] = {}
    seen: dict[int, str] = {}
    rngs = {}
    for name, _, gen in _module_rngs(tr.model):
        if id(gen) in seen:
            rngs[name] = {"same_as": seen[id(gen)]}
        else:
            seen[id(gen)] = name
            rngs[name] = {"state": gen.bit_generator.state}
    state = {
        "version": STATE_VERSION,
        "epoch": tr.epoch,
        "optimizer": {
            "class": type(tr.optimizer).__name__,
            "state_dict": pack(tr.optimizer.state_dict(), "optimizer", tensors),
        },
        "rng": tr.rng.bit_generator.state,
        "module_rngs": rngs,
        "history": tr.history.to_dict(),
        "callbacks": [
            {"class": type(c).__name__, "state": pack(c.state_dict(), f"callbacks/{i}", tensors)}
            for i, c in enumerate(tr.callbacks)
        ],
        "trainer": {
            "best_loss": tr._best_loss,
            "no_improvement": tr._no_improvement,
            "last_finite": list(tr._last_finite),
            "best_epoch": tr.best_epoch,
        },
    }
    return state, tensors


def restore_training_state(tr: Trainer, path: str) -> None:
    """Load the checkpoint at ``path`` into ``tr``'s model, optimizer, generators, callbacks."""
    from .history import History

    mf = model_io.load_file(path)
    state = mf.training
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise model_io.ModelFileError(
            f"{path!r} is a model file without training state: resume needs a checkpoint "
            "written by ModelCheckpoint"
        )
    tensors = mf.training_tensors
    try:
        tr.model.load_state_dict(mf.model.state_dict())
    except ValueError as exc:
        raise ValueError(f"the checkpoint does not fit this model: {exc}") from None
    opt_state = state["optimizer"]
    if opt_state["class"] != type(tr.optimizer).__name__:
        raise ValueError(
            f"the checkpoint was written with optimizer {opt_state['class']}, this run uses "
            f"{type(tr.optimizer).__name__}"
        )
    tr.optimizer.load_state_dict(unpack(opt_state["state_dict"], tensors))
    tr.rng.bit_generator.state = state["rng"]
    mods = {name: m for name, m, _ in _module_rngs(tr.model)}
    for name, entry in state["module_rngs"].items():
        if name not in mods:
            continue
        if "same_as" in entry and entry["same_as"] in mods:
            mods[name].rng = mods[entry["same_as"]].rng
        elif "state" in entry:
            mods[name].rng.bit_generator.state = entry["state"]
    tr.history = History.from_dict(state["history"])
    tr.history.stop_reason = None
    used: set[int] = set()
    for saved in state["callbacks"]:
        for i, c in enumerate(tr.callbacks):
            if i not in used and type(c).__name__ == saved["class"]:
                c.load_state_dict(unpack(saved["state"], tensors))
                used.add(i)
                break
    t = state["trainer"]
    tr._best_loss = float(t["best_loss"])
    tr._no_improvement = int(t["no_improvement"])
    tr._last_finite = (
        float(t["last_finite"][0]),
        int(t["last_finite"][1]),
        int(t["last_finite"][2]),
    )
    tr.best_epoch = t["best_epoch"]
    tr.epoch = int(state["epoch"])
