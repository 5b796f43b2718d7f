"""Model files: a JSON description of the architecture plus the weights, in safetensors format.

A chainrule model file is a single safetensors file. Its tensors are the model's parameters and
buffers (``model/<dotted name>``) and, in a checkpoint, the training state (``train/...``). Its
metadata holds, as JSON strings, the architecture (``chainrule.architecture``), anything the
caller attached (``chainrule.extra``: preprocessing, class names), the training state of a
checkpoint (``chainrule.training``) and a SHA-256 over every tensor (``chainrule.sha256``).

Loading never executes code: no pickle, no eval, no import by name. The architecture names
layers from a table held in the loading process: chainrule's layers (:data:`chainrule.nn.LAYERS`)
and the classes registered with ``@cr.nn.register_module``. The SHA-256 covers the tensors and
every metadata entry, so any single flipped bit is detected. Any malformed, truncated, corrupted or
foreign file raises :class:`ModelFileError`, and nothing else. Files are written atomically
(temporary file, fsync, rename): a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._model_limits import check_architecture
from .nn.module import Module
from .nn.registry import build_module, describe_module

__all__ = [
    "MAX_HEADER_BYTES",
    "ModelFile",
    "ModelFileError",
    "atomic_write_bytes",
    "atomic_write_text",
    "build",
    "describe",
    "load",
    "load_file",
    "load_state_dict",
    "register_loader",
    "save",
    "save_state_dict",
    "write_model_file",
]

FORMAT = "chainrule"
VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024  # the JSON header (architecture, metadata, offsets)
_MAX_DEPTH = 64
_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64"}


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, truncated, corrupted or not a chainrule file."""


@dataclass
class ModelFile:
    """What a model file holds: the rebuilt model, the caller's extra metadata and, for a
    checkpoint, the training state (JSON part and tensors)."""

    model: Module
    extra: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    training_tensors: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""


# ----- atomic writes ------------------------------
def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either the old one or the new one.

    The bytes go to a temporary file in the same directory, which is flushed and fsynced and
    then renamed over ``path`` (atomic on POSIX and Windows); the directory is fsynced so the
    rename survives a power cut. On any failure the temporary file is removed and the error
    propagates: nothing partial ever stands under the final name.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot save to {str(target)!r}: directory {str(directory)!r} does not exist"
        )
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


# ----- architecture ------------------------------
def describe(model: Module) -> dict[str, Any]:
    """The JSON-able description ``{"type": ..., "config": ...}`` that rebuilds ``model``.

    Raises TypeError naming the first module (at any depth) that is neither a chainrule layer
    nor registered with ``@cr.nn.register_module``.
    """
    return describe_module(model)


def build(arch: Any, _depth: int = 0) -> Module:
    """Rebuild a model from :func:`describe`'s output; raises ModelFileError if it is invalid."""
    return build_module(arch, ModelFileError, _depth, _MAX_DEPTH)


# ----- tensors ------------------------------
def tensor_digest(tensors: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order), and over every
    metadata entry but the digest itself: a single flipped bit anywhere is detected."""
    h = hashlib.sha256()
    for key in sorted(meta or {}):
        if key != "chainrule.sha256":
            h.update(key.encode("utf-8") + b"\0" + (meta or {})[key].encode("utf-8") + b"\0")
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")
        h.update(name.encode("utf-8") + b"\0")
        h.update(arr.dtype.str.encode() + b"\0" + repr(arr.shape).encode() + b"\0")
        h.update(arr.tobytes())
    return h.hexdigest()


def write_model_file(
    path: str | os.PathLike[str],
    model: Module,
    extra: dict[str, Any] | None,
    training: dict[str, Any] | None = None,
    training_tensors: dict[str, np.ndarray] | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """Write a model file (or, with ``training``, a checkpoint) to ``path``, atomically.

    The file holds ``model``'s architecture (:func:`describe`) and state dict
    (``model/<name>``), ``extra`` and ``training`` as JSON metadata, ``training_tensors`` as
    ``train/<name>``, and a SHA-256 over all of it. :func:`save` writes a model file with it;
    checkpoints (:meth:`chainrule.training.Trainer.save_checkpoint`) add the training state.

    Raises
    ------
    TypeError
        If a module of ``model`` is neither a chainrule layer nor registered.
    ValueError
        If a weight is NaN or infinite and ``allow_nonfinite`` is False, or if the tensors
        cannot be serialised.
    """
    from safetensors.numpy import save as st_save

    arch = describe(model)
    tensors: dict[str, np.ndarray] = {}
    for name, value in model.state_dict().items():
        arr = np.asarray(value, order="C")
        if not allow_nonfinite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"refusing to save: parameter '{name}' contains NaN or infinite values "
                "(pass allow_nonfinite=True to save it anyway)"
            )
        tensors[f"model/{name}"] = arr
    for name, value in (training_tensors or {}).items():
        tensors[f"train/{name}"] = np.asarray(value, order="C")
    meta = {
        "chainrule.format": FORMAT,
        "chainrule.version": str(VERSION),
        "chainrule.architecture": json.dumps(arch, allow_nan=False),
        "chainrule.extra": json.dumps(extra or {}, allow_nan=True),
    }
    if training is not None:
        meta["chainrule.training"] = json.dumps(training, allow_nan=True)
    meta["chainrule.sha256"] = tensor_digest(tensors, meta)
    try:
        data = st_save(tensors, metadata=meta)
    except Exception as exc:  # safetensors raises its own error type
        raise ValueError(f"could not serialise the model: {exc}") from None
    atomic_write_bytes(path, data)


_write = write_model_file  # the old private name, until every caller has moved


def save(
    model: Module,
    path: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """Save ``model`` (built from chainrule's layers) to ``path``, atomically.

    Parameters
    ----------
    model : Module or mapping
        A model built from chainrule's layers (e.g. ``Sequential`` / ``nn.mlp``) and modules
        registered with ``@cr.nn.register_module``. A mapping (``model.state_dict()``) is
        written with :func:`save_state_dict`.
    path : str or PathLike
        The file to write (conventionally ``*.chainrule`` or ``*.safetensors``).
    extra : dict, optional
        JSON-serialisable metadata stored with the model (preprocessing, class names, ...).
    allow_nonfinite : bool, default False
        Save even if a weight is NaN or infinite (refused by default).

    Examples
    --------
    >>> import os, tempfile, chainrule as cr
    >>> model = cr.nn.mlp([3, 4, 2], rng=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.chainrule")
    >>> cr.save(model, path)
    >>> cr.load(path)
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Linear(in_features=4, out_features=2, bias=True)
    )  # 26 parameters
    """
    if isinstance(model, Mapping):  # torch.save(model.state_dict(), path)'s habit
        save_state_dict(model, path)
        return
    if not isinstance(model, Module) and hasattr(model, "__chainrule_save__"):
        module, more = model.__chainrule_save__()  # a chainrule.sklearn estimator
        write_model_file(path, module, {**(extra or {}), **more}, allow_nonfinite=allow_nonfinite)
        return
    if not isinstance(model, Module):
        raise TypeError(f"save expects a chainrule Module or estimator, got {type(model).__name__}")
    write_model_file(path, model, extra, allow_nonfinite=allow_nonfinite)


def _read_header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"file is too short to be a model file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > MAX_HEADER_BYTES:
        raise ModelFileError(f"header length {n} is invalid (limit {MAX_HEADER_BYTES} bytes)")
    if 8 + n > len(data):
        raise ModelFileError(
            f"file is truncated: the header claims {n} bytes, only {len(data) - 8} follow"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ModelFileError("header must be a JSON object")
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ModelFileError(f"tensor {name!r:.60} has an unknown or missing dtype")
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape
        ):
            raise ModelFileError(f"tensor {name!r:.60} has an invalid shape")
        offsets = info.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= len(data) - 8 - n
        ):
            raise ModelFileError(f"tensor {name!r:.60} has invalid data offsets")
        total += offsets[1] - offsets[0]
    if total > len(data):
        raise ModelFileError("tensor data exceeds the file size")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFileError("not a chainrule model file: no chainrule metadata")
    return meta


def _json_field(meta: dict[str, str], key: str, required: bool = True) -> Any:
    raw = meta.get(key)
    if raw is None:
        if required:
            raise ModelFileError(f"model file lacks its {key!r} entry")
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"entry {key!r} is not valid JSON: {exc}") from None


def load_file(path: str | os.PathLike[str]) -> ModelFile:
    """Read a model or checkpoint file: the model, its extra metadata and any training state.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ModelFileError
        If the file is malformed, truncated, corrupted (checksum mismatch) or not a chainrule
        model file; the message starts with the file's name.
    """
    try:
        return _load_file(path)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot load {os.fspath(path)!r}: {exc}") from None


def _load_file(path: str | os.PathLike[str]) -> ModelFile:
    from safetensors.numpy import load as st_load

    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{str(p)!r} is a directory, not a model file")
    data = p.read_bytes()
    meta = _read_header(data)
    if meta.get("chainrule.format") != FORMAT:
        raise ModelFileError(f"{str(p)!r} is not a chainrule model file")
    if meta.get("chainrule.version") != str(VERSION):
        raise ModelFileError(
            f"model file version {meta.get('chainrule.version')!r:.20} is not supported "
            f"(this chainrule reads version {VERSION})"
        )
    try:
        tensors = st_load(data)
    except Exception as exc:  # SafetensorError and friends: the file is malformed
        raise ModelFileError(f"tensor data is malformed: {exc}") from None
    if tensor_digest(tensors, meta) != meta.get("chainrule.sha256"):
        raise ModelFileError(f"{str(p)!r} is corrupted: the tensors' SHA-256 does not match")
    arch = _json_field(meta, "chainrule.architecture")
    stored = sum(v.size for k, v in tensors.items() if k.startswith("model/"))
    check_architecture(arch, stored, ModelFileError)  # before anything is allocated
    model = build(arch)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(weights)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"weights do not fit the architecture: {exc}") from None
    model.eval()
    extra = _json_field(meta, "chainrule.extra", required=False) or {}
    if not isinstance(extra, dict):
        raise ModelFileError("entry 'chainrule.extra' must be a JSON object")
    training = _json_field(meta, "chainrule.training", required=False)
    train_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("train/")}
    return ModelFile(model, extra, training, train_tensors, str(p))


# ----- loaders registered from above ------------------------------
# A model file may hold more than a model: an estimator saved by chainrule.sklearn stores its
# module plus, under the extra key "sklearn_estimator", what rebuilds the estimator around it.
# Such faces live on a higher floor than this module, so they register how to rebuild their
# objects here (io imports nothing above it). The file only names a key; which code handles
# the key is decided by the loading process, never read from the file.
_LOADERS: dict[str, Callable[[Module, Any], Any]] = {}


def register_loader(key: str, loader: Callable[[Module, Any], Any]) -> None:
    """Let :func:`load` give back ``loader(model, extra[key])`` for a model file whose extra
    metadata holds ``key`` (instead of the bare model).

    ``chainrule.sklearn`` registers ``"sklearn_estimator"`` (and ``import chainrule``
    registers a stand-in that imports ``chainrule.sklearn`` when such a file is loaded, so a
    script that only loads an estimator file need not import the estimators). A loader raises
    KeyError, TypeError, ValueError, AttributeError or IndexError for a malformed entry;
    :func:`load` reports it as a ModelFileError. Registering a key again replaces its loader.

    Examples
    --------
    >>> import os, tempfile, chainrule as cr
    >>> def rebuild(model, info):
    ...     return type(model).__name__, info["scale"]
    >>> cr.io.register_loader("doc_scaled", rebuild)
    >>> path = os.path.join(tempfile.mkdtemp(), "scaled.chainrule")
    >>> cr.save(cr.nn.Linear(2, 1, rng=0), path, extra={"doc_scaled": {"scale": 3.0}})
    >>> cr.load(path)
    ('Linear', 3.0)
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if not callable(loader):
        raise TypeError(f"loader must be callable, got {type(loader).__name__}")
    _LOADERS[key] = loader


def load(path: str | os.PathLike[str]) -> Any:
    """Load the model saved in ``path`` (a model file or a checkpoint), in eval mode.

    A file saved from a ``chainrule.sklearn`` estimator gives back the fitted estimator (through
    the loader registered for it, see :func:`register_loader`); a file written by
    :func:`save_state_dict` (or ``cr.save(state_dict, path)``) gives back the dict.
    Raises ModelFileError for any malformed or corrupted file; never executes code from it.
    """
    if _format_of(path) == STATE_DICT_FORMAT:
        return load_state_dict(path)
    mf = load_file(path)
    for key, loader in list(_LOADERS.items()):
        info = mf.extra.get(key)
        if info is None:
            continue
        try:
            return loader(mf.model, info)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ModelFileError(
                f"cannot rebuild the {key} in {os.fspath(path)!r}: {exc}"
            ) from None
    return mf.model


# ----- state dicts (weights only, any module) ------------------------------
STATE_DICT_FORMAT = "chainrule.state_dict"


def save_state_dict(model_or_state: Any, path: str | os.PathLike[str]) -> None:
    """Write the weights of any module (or a state dict) to a safetensors file, atomically.

    The file holds one tensor per entry under its dotted name, and a SHA-256 over all of
    them; any safetensors reader opens it. Loading gives back the dict; put it into a model
    built by your code with ``model.load_state_dict(cr.load_state_dict(path))``. To save the
    architecture as well, register the class with ``@cr.nn.register_module`` and use
    :func:`save`.

    Parameters
    ----------
    model_or_state : Module or mapping of str to array_like
        A module (its ``state_dict()`` is written) or a state dict.
    path : str or PathLike

    Examples
    --------
    >>> import os, tempfile, chainrule as cr
    >>> model = cr.nn.mlp([3, 4, 2], rng=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
    >>> cr.save_state_dict(model, path)
    >>> model.load_state_dict(cr.load_state_dict(path))
    >>> list(cr.load_state_dict(path))
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """
    from safetensors.numpy import save as st_save

    if isinstance(model_or_state, Module):
        state: Mapping[str, Any] = model_or_state.state_dict()
    elif isinstance(model_or_state, Mapping):
        state = model_or_state
    else:
        raise TypeError(
            "save_state_dict expects a Module or a state dict (mapping of names to arrays), "
            f"got {type(model_or_state).__name__}"
        )
    tensors: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"state dict keys must be strings, got {name!r}")
        if type(value).__module__.split(".")[0] == "torch":
            value = value.detach().cpu().numpy()
        arr = np.asarray(
            getattr(value, "data", value) if not isinstance(value, np.ndarray) else value
        )
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"state dict entry '{name}' must be numeric, got dtype {arr.dtype}")
        tensors[name] = np.asarray(arr, order="C")
    meta = {
        "chainrule.format": STATE_DICT_FORMAT,
        "chainrule.version": str(VERSION),
        "chainrule.order": json.dumps(list(tensors)),  # safetensors sorts; keep the model's order
    }
    meta["chainrule.sha256"] = tensor_digest(tensors, meta)
    try:
        data = st_save(tensors, metadata=meta)
    except Exception as exc:  # safetensors raises its own error type
        raise ValueError(f"could not serialise the state dict: {exc}") from None
    atomic_write_bytes(path, data)


def load_state_dict(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a state dict (names to NumPy arrays) from a safetensors file.

    Reads files written by :func:`save_state_dict` (checking their SHA-256), any other
    safetensors file (e.g. ``safetensors.torch.save_file``; PyTorch's Linear weights then need
    :func:`chainrule.nn.from_torch_state_dict`), and chainrule model files (their weights).
    Never executes code. Raises ModelFileError for a malformed or corrupted file.
    """
    from safetensors.numpy import load as st_load

    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"cannot load {os.fspath(path)!r}: it is a directory")
    data = p.read_bytes()
    try:
        tensors = st_load(data)
    except Exception as exc:  # SafetensorError and friends: the file is malformed
        raise ModelFileError(
            f"cannot load {os.fspath(path)!r}: not a valid safetensors file: {exc}"
        ) from None
    meta = _metadata_of(data) or {}
    fmt = meta.get("chainrule.format")
    if fmt in (STATE_DICT_FORMAT, FORMAT) and tensor_digest(tensors, meta) != meta.get(
        "chainrule.sha256"
    ):
        raise ModelFileError(
            f"cannot load {os.fspath(path)!r}: corrupted, the tensors' SHA-256 does not match"
        )
    if fmt == FORMAT:
        with contextlib.suppress(ModelFileError):  # in the model's order, if it can be built
            return load_file(path).model.state_dict()
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    order = sorted(tensors)
    with contextlib.suppress(json.JSONDecodeError, TypeError, RecursionError):
        saved = json.loads(meta.get("chainrule.order", "null"))
        if isinstance(saved, list) and sorted(map(str, saved)) == order:
            order = [str(k) for k in saved]
    return OrderedDict((k, tensors[k]) for k in order)


def _header_of(data: bytes) -> dict[str, Any] | None:
    """The safetensors JSON header of ``data``, or None if it cannot be read."""
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > MAX_HEADER_BYTES or 8 + n > len(data):
        return None
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def _metadata_of(data: bytes) -> dict[str, str] | None:
    meta = (_header_of(data) or {}).get("__metadata__")
    return meta if isinstance(meta, dict) else None


def _format_of(path: str | os.PathLike[str]) -> str | None:
    """The ``chainrule.format`` entry of the file at ``path`` (None if unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_HEADER_BYTES:
                return None
            meta = _metadata_of(head + fh.read(n))
    except OSError:
        return None
    fmt = (meta or {}).get("chainrule.format")
    return fmt if isinstance(fmt, str) else None
