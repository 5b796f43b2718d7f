"""Where the CLI writes: run directories as one unit, prediction files that replace nothing saved.

A run directory (``chainrule train --out DIR``) is built in a fresh hidden sibling directory
(``.DIR.<random>.partial``) and renamed into place only when every file in it has been written
and flushed. An existing non-empty ``DIR`` is refused unless ``overwrite=True``, which replaces
it as a whole (and only if it holds nothing but a run's files). A failure at any point — a full
disk, a file-size limit, Ctrl-C — removes the partial directory and leaves the previous run
exactly as it was; the error names the file that could not be written. Two runs into the same
``DIR`` cannot mix their files: each builds its own directory and only whole directories are
renamed.

A predictions file never replaces the input data or a model file (even with ``overwrite``), and
an existing file is refused unless ``overwrite=True``; it is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import struct
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from .io import MAX_HEADER_BYTES

__all__ = ["RUN_FILES", "RunDirectory", "check_run_out", "is_model_file", "predictions_path"]

# every file ``chainrule train`` may write into a run directory
RUN_FILES = frozenset(
    {
        "model.chainrule",
        "history.csv",
        "metrics.json",
        "curves.png",
        "confusion_matrix.png",
        "decision_boundary.png",
        "gradient_flow.png",
        "report.html",
    }
)
_RENAME_TRIES = 20


def is_model_file(path: str) -> bool:
    """True if ``path`` is a safetensors file (a chainrule model or checkpoint, or any other)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if not 2 <= n <= MAX_HEADER_BYTES:
                return False
            header = fh.read(min(n, 1 << 20))
    except OSError:
        return False
    if not header.startswith(b"{"):
        return False
    if b'"chainrule.' in header or b'"__metadata__"' in header:
        return True
    try:
        parsed = json.loads(header) if len(header) == n else None
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(
        isinstance(v, dict) and "dtype" in v and "data_offsets" in v for v in parsed.values()
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def predictions_path(
    out: str,
    *,
    overwrite: bool,
    protected: Sequence[tuple[str, str]],
    option: str = "--out",
    default_name: str = "predictions.csv",
    writing: str = "predictions",
) -> str:
    """The file ``chainrule predict --out OUT`` may write, or a ValueError saying why not.

    ``OUT`` naming an existing directory means ``OUT/predictions.csv``. ``protected`` lists
    ``(what, path)`` pairs (the input data, the model file) that are never written over, nor
    is any model file; another existing file only with ``overwrite``.
    """
    path = os.path.join(out, default_name) if os.path.isdir(out) else out
    if out.endswith(("/", os.sep)) and not os.path.isdir(out):
        raise ValueError(f"{option} {out!r}: no such directory")
    if os.path.lexists(path):
        for what, other in protected:
            if other and os.path.exists(other) and _same_file(path, other):
                raise ValueError(
                    f"{option} {path!r} is the {what}: {writing} never replace it; "
                    "choose another file"
                )
        if os.path.isdir(path):
            raise ValueError(f"{option} {path!r} is a directory; give a file name")
        if is_model_file(path):
            raise ValueError(
                f"{option} {path!r} is a model file: {writing} never replace it; "
                "choose another file"
            )
        if not overwrite:
            raise ValueError(
                f"{option} {path!r} already exists; add --overwrite to replace it, or choose "
                "another file"
            )
    return path


def _listing(entries: list[str]) -> str:
    shown = ", ".join(sorted(entries)[:4])
    return shown + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")


def check_run_out(out: str, *, overwrite: bool) -> None:
    """Refuse (ValueError) an ``--out`` that a new run may not take; called before training."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file, not a directory; choose a directory name")
    if not os.path.isdir(out):
        return
    entries = os.listdir(out)
    if not entries:
        return
    if not overwrite:
        raise ValueError(
            f"--out {out!r} already holds a run ({_listing(entries)}); add --overwrite to "
            "replace it as a whole, or choose another --out"
        )
    foreign = [e for e in entries if e not in RUN_FILES]
    if foreign:
        raise ValueError(
            f"--out {out!r} holds files that are not a chainrule run ({_listing(foreign)}): "
            "--overwrite only replaces a run directory; choose another --out"
        )
    cwd = os.path.realpath(os.getcwd())
    here = os.path.realpath(out)
    if cwd == here or cwd.startswith(here.rstrip(os.sep) + os.sep):
        raise ValueError(f"--out {out!r} is the current directory (or holds it): choose another")


class RunDirectory:
    """A run directory built aside and renamed into place by :meth:`commit`.

    Use as a context manager; :meth:`write` calls ``writer(staged_path)`` and returns the final
    path. Leaving the block with an exception removes the partial directory; an ``OSError``
    from a writer is re-raised naming the file that could not be written.
    """

    def __init__(self, out: str, *, overwrite: bool) -> None:
        check_run_out(out, overwrite=overwrite)
        self.out = out
        self.overwrite = overwrite
        parent = os.path.dirname(os.path.abspath(out))
        os.makedirs(parent, exist_ok=True)
        base = os.path.basename(os.path.abspath(out))
        self.parent = parent
        self.base = base
        self.staging = tempfile.mkdtemp(prefix=f".{base}.", suffix=".partial", dir=parent)
        self.committed = False

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)

    def final(self, name: str) -> str:
        return os.path.join(self.out, name)

    def write(self, name: str, writer: Callable[[str], Any]) -> str:
        """Write one file of the run with ``writer(path)``; returns its final path."""
        try:
            writer(os.path.join(self.staging, name))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OSError(
                f"could not write {self.final(name)}: {reason}; the previous contents of "
                f"{self.out!r} are untouched"
            ) from exc
        return self.final(name)

    def _sync(self) -> None:
        for name in os.listdir(self.staging):
            fd = os.open(os.path.join(self.staging, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(self.staging)

    def commit(self) -> None:
        """Rename the finished directory into place (replacing the old run if allowed)."""
        self._sync()
        for _ in range(_RENAME_TRIES):
            try:
                os.rename(self.staging, self.out)  # succeeds over a missing or empty directory
                break
            except OSError as exc:
                if not os.path.lexists(self.out):
                    raise OSError(
                        f"could not move the new run into {self.out!r}: {exc.strerror or exc}"
                    ) from exc
                if os.path.isdir(self.out) and not os.listdir(self.out):
                    continue  # it changed under us; try again
            try:  # e.g. another run got there first
                check_run_out(self.out, overwrite=self.overwrite)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} (it was filled while this run trained; this run was not saved)"
                ) from None
            old = os.path.join(self.parent, f".{self.base}.{secrets.token_hex(4)}.old")
            try:
                os.rename(self.out, old)
            except FileNotFoundError:
                continue
            try:
                os.rename(self.staging, self.out)
            except OSError:
                with contextlib.suppress(OSError):
                    os.rename(old, self.out)  # put the previous run back, then try again
                continue
            shutil.rmtree(old, ignore_errors=True)
            break
        else:
            raise OSError(f"could not move the new run into {self.out!r}: it kept changing")
        self.committed = True
        _fsync_dir(self.parent)


def _fsync_dir(path: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
