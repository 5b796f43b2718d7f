"""Callbacks: code that runs at fixed points of :func:`chainrule.fit` (Keras's hooks).

A callback overrides any of ``on_train_begin(logs)``, ``on_train_end(logs)``,
``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch, logs)``
and ``on_batch_end(batch, logs)``. Epochs are numbered from 1, batches from 0 within an epoch.
During ``fit`` it can read ``self.model`` and ``self.trainer`` (optimizer, history) and stop
training by setting ``self.stop_training = True``. Callbacks run in the order given, and all
of them see (and may add to) the same ``logs`` dict. A callback whose state must survive a
resume implements ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .._validation import check_number

if TYPE_CHECKING:
    from ..nn.module import Module
    from .fit import Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
]

_MAX_KEYS = ("acc", "accuracy", "f1", "precision", "recall", "r2", "auc", "score")


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if name in _MAX_KEYS else "min"


class Callback:
    """Base class of callbacks; every hook does nothing by default."""

    trainer: Trainer | None = None
    model: Module | None = None

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.model = trainer.model

    @property
    def stop_training(self) -> bool:
        return bool(self.trainer is not None and self.trainer.stop_training)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if self.trainer is not None:
            self.trainer.stop_training = bool(value)
            if value and self.trainer.stop_reason is None:
                self.trainer.stop_reason = "callback"

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """State to keep in a checkpoint (JSON values and NumPy arrays)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    runs_user_code = True  # its hooks are the user's (they may keep a .grad: see Trainer)

    def __init__(self, **hooks: Any) -> None:
        valid = {
            "on_train_begin",
            "on_train_end",
            "on_epoch_begin",
            "on_epoch_end",
            "on_batch_begin",
            "on_batch_end",
        }
        for name, fn in hooks.items():
            if name not in valid:
                raise ValueError(f"unknown hook {name!r}; valid: {sorted(valid)}")
            setattr(self, name, fn)


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving; keep the best weights.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs (``"loss"``, ``"val_loss"``, ``"val_accuracy"``, ...).
    patience : int, default 5
        Epochs without improvement before stopping.
    min_delta : float, default 0
        An improvement must beat the best value by more than this (ties do not count).
    mode : {"auto", "min", "max"}
        "auto" maximises accuracy-like keys and minimises the rest.
    restore_best_weights : bool, default True
        At the end of training — whether it stops early, reaches the epoch limit or is
        interrupted — put back the weights of the best epoch.
    baseline : float, optional
        Stop if the quantity does not beat this within ``patience`` epochs.
    start_from_epoch : int, default 0
        Epochs to wait before monitoring (warm-up).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
        baseline: float | None = None,
        start_from_epoch: int = 0,
    ) -> None:
        check_number("patience", patience, low=0, integer=True)
        check_number("min_delta", min_delta, low=0)
        check_number("start_from_epoch", start_from_epoch, low=0, integer=True)
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = _mode_for(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.baseline = baseline
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        if self.baseline is not None:
            self.best = float(self.baseline)
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    def _improved(self, current: float) -> bool:
        if math.isnan(current):
            return False
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.trainer is None or not self.trainer.resumed:
            self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which fit does not log; logged: "
                f"{sorted(logs)}"
                + (
                    "; pass validation_data or validation_split for val_* keys"
                    if self.monitor.startswith("val_")
                    else ""
                )
            )
        if epoch <= self.start_from_epoch:
            return
        current = float(logs[self.monitor])
        if self._improved(current):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights and self.model is not None:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            if self.trainer is not None:
                self.trainer.stop_training = True
                self.trainer.stop_reason = "early_stopping"
                self.trainer.stop_detail = (
                    f"no improvement in {self.monitor} for {self.wait} epochs"
                )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.trainer is not None and self.best_epoch is not None:
            self.trainer.best_epoch = self.best_epoch
        if self.restore_best_weights and self.best_weights is not None and self.model is not None:
            last = (
                self.trainer.history.epoch[-1]
                if self.trainer and self.trainer.history.epoch
                else None
            )
            if last != self.best_epoch:
                self.model.load_state_dict(self.best_weights)
                if self.trainer is not None:
                    self.trainer.restored_best = True

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait = int(state["wait"])
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(Callback):
    """Save a checkpoint (model, optimizer, schedule, generators, history) after epochs.

    Parameters
    ----------
    filepath : str
        Where to write; may contain ``{epoch}`` and log keys, e.g. ``"ckpt-{epoch:03d}.chainrule"``.
    monitor : str, default "val_loss"
        With ``save_best_only``, the quantity that decides what "best" is.
    save_best_only : bool, default False
        Save only when ``monitor`` improves (the "best" checkpoint); otherwise every epoch
        (the "last" checkpoint, overwritten if the name has no ``{epoch}``).
    mode : {"auto", "min", "max"}

    A checkpoint is written after every callback has handled the epoch, so it holds a
    consistent state; ``fit(..., resume_from=filepath)`` continues from it. Files are written
    atomically, and never with non-finite weights.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = _mode_for(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: str | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(
                    f"ModelCheckpoint monitors {self.monitor!r}, which fit does not log; "
                    f"logged: {sorted(logs)}"
                )
            current = float(logs[self.monitor])
            better = current < self.best if self.mode == "min" else current > self.best
            if not better or math.isnan(current):
                return
            self.best = current
        try:
            path = self.filepath.format(epoch=epoch, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint filepath {self.filepath!r} cannot be formatted: {exc}"
            ) from None
        if self.trainer is not None:
            self.trainer.request_checkpoint(path)
        self.last_saved = path

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])


class LearningRateScheduler(Callback):
    """Step a learning-rate schedule during ``fit``.

    Parameters
    ----------
    scheduler : LRScheduler or ReduceLROnPlateau
    interval : {"epoch", "batch"}
        Step after every epoch (default) or every batch (warm-up, OneCycleLR).
    monitor : str, default "val_loss"
        For ReduceLROnPlateau, the logged quantity it watches ("loss" if there is no
        validation data).
    """

    def __init__(self, scheduler: Any, interval: str = "epoch", monitor: str = "val_loss") -> None:
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor

    def _plateau(self) -> bool:
        from ..optim.lr_scheduler import ReduceLROnPlateau

        return isinstance(self.scheduler, ReduceLROnPlateau)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interval == "batch" and not self._plateau():
            self.scheduler.step()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self._plateau():
            key = self.monitor if self.monitor in logs else "loss"
            self.scheduler.step(logs[key])
        elif self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])


def _fmt(logs: dict[str, Any]) -> str:
    parts = []
    for k, v in logs.items():
        if k in ("lr", "time") or not isinstance(v, (int, float)):
            continue
        parts.append(f"{k} {v:.4g}")
    return " - ".join(parts)


class ProgressBar(Callback):
    """Show progress: one live bar over the epochs on a terminal, one line per epoch otherwise.

    On a terminal the bar covers the whole run (it also moves within a long epoch) and shows
    the latest training and validation metrics, the rate and the time left; an epoch that
    takes at least ``slow_epoch`` seconds also leaves a line above the bar. In a pipe or a file
    every epoch is one plain line (no cursor control).

    Parameters
    ----------
    verbose : int, default 1
        0 silent; 1 progress; 2 one line per epoch even on a terminal.
    stream : file, default sys.stdout
        Where to write.
    force_terminal : bool, optional
        Treat ``stream`` as a terminal (True) or not (False) instead of asking ``isatty()``.
    slow_epoch : float, default 1.0
        On a terminal, epochs at least this long (seconds) are also printed as a line.

    The live bar uses ``rich`` when it is installed (``pip install "chainrule[progress]"``) and
    a plain carriage-return bar otherwise.
    """

    def __init__(
        self,
        verbose: int = 1,
        stream: IO[str] | None = None,
        force_terminal: bool | None = None,
        slow_epoch: float = 1.0,
    ) -> None:
        self.verbose = int(verbose)
        self.stream = stream
        self.force_terminal = force_terminal
        self.slow_epoch = float(slow_epoch)
        self._progress: Any = None
        self._task: Any = None
        self._last = 0.0
        self._live = False
        self._rich = False

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def _is_terminal(self) -> bool:
        if self.force_terminal is not None:
            return self.force_terminal
        try:
            return bool(self._out().isatty())
        except (AttributeError, ValueError):
            return False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._live = self.verbose == 1 and self._is_terminal()
        self._rich = False
        self._metrics = ""
        self._run_t0 = time.perf_counter()
        self._total = self.trainer.epochs if self.trainer is not None else 0
        self._first = (self.trainer.epoch + 1) if self.trainer is not None else 1
        self._rate = 0.0
        if self._live:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                console = Console(file=self._out(), force_terminal=True)
                self._progress = Progress(
                    TextColumn("{task.fields[label]}"),
                    BarColumn(bar_width=16),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[metrics]}"),
                    TextColumn("{task.fields[rate]:.0f} samples/s"),
                    console=console,
                    transient=False,
                )
                self._progress.start()
                self._task = self._progress.add_task(
                    "train",
                    total=self._total,
                    completed=self._first - 1,
                    metrics="",
                    rate=0.0,
                    label=f"epoch {self._first - 1}/{self._total}",
                )
                self._rich = True
            except ImportError:
                self._rich = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._t0 = time.perf_counter()
        self._seen = 0
        total = self.trainer.epochs if self.trainer is not None else 0
        self._label = f"{epoch}/{total}"

    def _draw(self, done: float) -> None:
        """Move the live bar to ``done`` epochs (a fraction within the current one)."""
        if self._rich:
            self._progress.update(
                self._task,
                completed=done,
                metrics=self._metrics,
                rate=self._rate,
                label=f"epoch {math.ceil(done)}/{self._total}",
            )
            return
        width = 16
        filled = int(width * done / max(self._total, 1))
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self._run_t0
        ran = done - (self._first - 1)
        left = elapsed / ran * (self._total - done) if ran > 0 else math.nan
        eta = "" if math.isnan(left) else f" {_duration(left)} left"
        self._out().write(
            f"\repoch {math.ceil(done)}/{self._total} [{bar}]{eta} {self._metrics} "
            f"{self._rate:.0f} samples/s\x1b[K"
        )
        self._out().flush()

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._live:
            return
        logs = logs or {}
        self._seen += int(logs.get("size", 0))
        now = time.perf_counter()
        steps = self.trainer.steps_per_epoch if self.trainer is not None else 0
        if now - self._last < 0.1 or batch + 1 >= steps:
            return  # at most ten redraws a second; the epoch's end redraws anyway
        self._last = now
        self._rate = self._seen / max(now - self._t0, 1e-9)
        self._draw(self._epoch - 1 + (batch + 1) / max(steps, 1))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.verbose == 0:
            return
        logs = logs or {}
        seconds = time.perf_counter() - self._t0
        line = f"epoch {self._label} - {_fmt(logs)} - {seconds:.2f}s"
        if not self._live:
            self._out().write(line + "\n")
            self._out().flush()
            return
        self._rate = self._seen / max(seconds, 1e-9)
        self._metrics = _brief(logs)
        if seconds >= self.slow_epoch:  # a slow epoch is worth a line of its own
            if self._rich:
                self._progress.console.print(line)
            else:
                self._out().write("\r\x1b[K" + line + "\n")
        now = time.perf_counter()
        if self._rich or now - self._last >= 0.1 or epoch >= self._total:
            self._last = now
            self._draw(float(epoch))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._live:
            return
        if self._rich and self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
            self._task = None
        else:
            self._out().write("\n")
            self._out().flush()


def _brief(logs: dict[str, Any]) -> str:
    """The latest metrics for the live bar: ``loss 0.31 (val 0.35) · accuracy 0.9 (val 0.88)``."""
    parts = []
    for k, v in logs.items():
        if k.startswith("val_") or k in ("lr", "time") or not isinstance(v, (int, float)):
            continue
        val = logs.get(f"val_{k}")
        parts.append(f"{k} {v:.4g}" + (f" (val {val:.4g})" if isinstance(val, float) else ""))
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class CSVLogger(Callback):
    """Append one CSV row per epoch (``epoch`` and every logged value) to ``filename``.

    The file is flushed after every row, so it can be followed while training runs;
    ``append=True`` continues an existing log (for a resumed run).
    """

    def __init__(
        self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._fh: IO[str] | None = None
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        exists = os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        resume = self.append or (self.trainer is not None and self.trainer.resumed)
        self._keys = None
        if resume and exists:
            with open(self.filename, encoding="utf-8") as fh:
                header = fh.readline().strip()
            self._keys = header.split(self.separator)[1:] if header else None
        self._fh = open(self.filename, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._fh is None:
            return
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._fh.write(self.separator.join(["epoch", *self._keys]) + "\n")
        row = [str(epoch)] + [repr(float(logs[k])) if k in logs else "" for k in self._keys]
        self._fh.write(self.separator.join(row) + "\n")
        self._fh.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
