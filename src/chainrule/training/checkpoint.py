"""Checkpoints: everything a training run needs to continue bitwise-identically.

A checkpoint is a model file (see :mod:`chainrule.io`) whose ``chainrule.training`` entry holds
the epoch, the optimizer's hyperparameters and per-parameter state, the schedule, the state of
every random generator (the run's and each dropout layer's, with their sharing), the history
and the callbacks' state (early-stopping counters and best weights); arrays are stored as
tensors next to the weights.
"""

from __future__ import annotations

import copy
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


# what a crafted or damaged training state raises while it is read; all become ModelFileError
_MALFORMED = (KeyError, IndexError, AttributeError, TypeError, OverflowError, ValueError)


class _NotThisRunError(ValueError):
    """Internal: a sound checkpoint that does not fit this run (raised as ValueError)."""


def _generator_state(template: np.random.Generator, saved: Any) -> Any:
    """``saved`` checked as a state of ``template``'s bit generator (on a fresh one)."""
    probe = type(template.bit_generator)()
    probe.state = saved
    return probe.state


def _integer(name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise model_io.ModelFileError(
            f"the checkpoint's {name} must be an integer >= {low}, got {value!r:.60}"
        )
    return value


def _read_state(tr: Trainer, state: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """Everything the checkpoint holds, read and checked; nothing in ``tr`` is changed."""
    from .history import History

    out: dict[str, Any] = {"epoch": _integer("epoch", state["epoch"])}
    out["optimizer"] = unpack(state["optimizer"]["state_dict"], tensors)
    if not isinstance(out["optimizer"], dict):
        raise model_io.ModelFileError("the checkpoint's optimizer state is not a table")
    out["rng"] = _generator_state(tr.rng, state["rng"])
    mods = {name: m for name, m, _ in _module_rngs(tr.model)}
    out["module_rngs"] = []
    for name, entry in dict(state["module_rngs"]).items():
        if name not in mods:
            continue
        if "same_as" in entry and entry["same_as"] in mods:
            out["module_rngs"].append((name, "same_as", entry["same_as"]))
        elif "state" in entry:
            saved = _generator_state(mods[name].rng, entry["state"])
            out["module_rngs"].append((name, "state", saved))
    history = state["history"]
    if not isinstance(history, dict):
        raise model_io.ModelFileError("the checkpoint's history is not a table")
    out["history"] = History.from_dict(history)
    out["callbacks"] = [
        (str(saved["class"]), unpack(saved["state"], tensors)) for saved in state["callbacks"]
    ]
    t = state["trainer"]
    last = list(t["last_finite"])
    if len(last) != 3:
        raise model_io.ModelFileError("the checkpoint's last_finite must hold 3 numbers")
    out["trainer"] = {
        "_best_loss": float(t["best_loss"]),
        "_no_improvement": _integer("no_improvement", t["no_improvement"]),
        "_last_finite": (float(last[0]), int(last[1]), int(last[2])),
        "best_epoch": (
            None if t["best_epoch"] is None else _integer("best_epoch", t["best_epoch"])
        ),
    }
    return out


def _backup(tr: Trainer) -> dict[str, Any]:
    mods = _module_rngs(tr.model)
    return {
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "rng": tr.rng.bit_generator.state,
        "module_rngs": [(m, gen, gen.bit_generator.state) for _, m, gen in mods],
        "history": tr.history,
        "callbacks": [copy.deepcopy(c.state_dict()) for c in tr.callbacks],
        "trainer": {k: getattr(tr, k) for k in _TRAINER_FIELDS},
    }


def _restore_backup(tr: Trainer, b: dict[str, Any]) -> None:
    tr.model.load_state_dict(b["model"])
    tr.optimizer.load_state_dict(b["optimizer"])
    tr.rng.bit_generator.state = b["rng"]
    for m, gen, gen_state in b["module_rngs"]:
        m.rng = gen
        gen.bit_generator.state = gen_state
    tr.history = b["history"]
    for c, saved in zip(tr.callbacks, b["callbacks"]):
        c.load_state_dict(saved)
    for k, v in b["trainer"].items():
        setattr(tr, k, v)


_TRAINER_FIELDS = ("_best_loss", "_no_improvement", "_last_finite", "best_epoch", "epoch")


def _apply(tr: Trainer, mf: Any, parsed: dict[str, Any]) -> None:
    try:
        tr.model.load_state_dict(mf.model.state_dict())
    except ValueError as exc:
        raise _NotThisRunError(f"the checkpoint does not fit this model: {exc}") from None
    tr.optimizer.load_state_dict(parsed["optimizer"])
    tr.rng.bit_generator.state = parsed["rng"]
    mods = {name: m for name, m, _ in _module_rngs(tr.model)}
    for name, how, value in parsed["module_rngs"]:
        if how == "same_as":
            mods[name].rng = mods[value].rng
        else:
            mods[name].rng.bit_generator.state = value
    tr.history = parsed["history"]
    tr.history.stop_reason = None
    used: set[int] = set()
    for cls, cb_state in parsed["callbacks"]:
        for i, c in enumerate(tr.callbacks):
            if i not in used and type(c).__name__ == cls:
                c.load_state_dict(cb_state)
                used.add(i)
                break
    for k, v in parsed["trainer"].items():
        setattr(tr, k, v)
    tr.epoch = parsed["epoch"]


def restore_training_state(tr: Trainer, path: str) -> None:
    """Load the checkpoint at ``path`` into ``tr``'s model, optimizer, generators, callbacks.

    Everything is read and checked before anything is changed, and a failure while applying
    puts the previous state back: a resume that fails leaves the model, optimizer, generators,
    history and callbacks as they were. A checkpoint that cannot be read raises
    :class:`~chainrule.io.ModelFileError` (nothing else); one that does not fit this run (the
    model's shapes, another optimizer) raises ``ValueError`` saying so.
    """
    mf = model_io.load_file(path)
    state = mf.training
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise model_io.ModelFileError(
            f"{path!r} is a model file without training state: resume needs a checkpoint "
            "written by ModelCheckpoint"
        )
    try:
        saved_class = state["optimizer"]["class"]
        parsed = _read_state(tr, state, mf.training_tensors)
    except model_io.ModelFileError as exc:
        raise model_io.ModelFileError(f"{path!r}: {exc}") from None
    except _MALFORMED as exc:
        raise model_io.ModelFileError(
            f"{path!r} has a malformed training state ({type(exc).__name__}: {exc!s:.200})"
        ) from None
    if saved_class != type(tr.optimizer).__name__:
        raise ValueError(
            f"the checkpoint was written with optimizer {saved_class!s:.60}, this run uses "
            f"{type(tr.optimizer).__name__}"
        )
    backup = _backup(tr)
    try:
        _apply(tr, mf, parsed)
    except BaseException as exc:
        _restore_backup(tr, backup)
        if isinstance(exc, _NotThisRunError):
            raise ValueError(str(exc)) from None
        if isinstance(exc, _MALFORMED) and not isinstance(exc, model_io.ModelFileError):
            raise model_io.ModelFileError(
                f"{path!r} has a malformed training state ({type(exc).__name__}: {exc!s:.200})"
            ) from None
        raise
