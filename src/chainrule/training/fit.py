"""The training loop: forward pass, loss, backward pass, update — repeated until it stops.

:func:`fit` is the one call most users need; :class:`Trainer` holds the run's state (model,
optimizer, generator, history, callbacks) and is what callbacks see as ``self.trainer``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import io as model_io
from .._random import as_generator, use_generator
from .._validation import check_number
from ..nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from ..nn.module import Module
from ..optim import optimizers as optim_mod
from ..optim.clip import clip_grad_norm as _clip_grad_norm
from ..optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from ..tensor import Tensor, no_grad
from ._inputs import batches_to_arrays, is_batches, single_output
from .callbacks import Callback, CSVLogger, LearningRateScheduler, ModelCheckpoint, ProgressBar
from .history import History
from .metrics import get_metric

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "DivergenceError",
    "Trainer",
    "evaluate",
    "fit",
    "predict",
    "predict_proba",
]


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or weight (``on_nonfinite="raise"``).

    The model keeps its last finite weights; ``history`` holds the epochs so far.
    """

    def __init__(self, message: str, history: History | None = None) -> None:
        super().__init__(message)
        self.history = history


LOSSES: dict[str, Callable[[], Module]] = {
    "mse": MSELoss,
    "mean_squared_error": MSELoss,
    "l1": L1Loss,
    "mae": L1Loss,
    "huber": HuberLoss,
    "bce": BCELoss,
    "binary_crossentropy": BCELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "cross_entropy": CrossEntropyLoss,
    "categorical_crossentropy": CrossEntropyLoss,
    "sparse_categorical_crossentropy": CrossEntropyLoss,
    "nll": NLLLoss,
}

OPTIMIZERS: dict[str, type[optim_mod.Optimizer]] = {
    "sgd": optim_mod.SGD,
    "gd": optim_mod.SGD,
    "adam": optim_mod.Adam,
    "adamw": optim_mod.AdamW,
    "rmsprop": optim_mod.RMSprop,
    "adagrad": optim_mod.Adagrad,
}


class _StopEpochError(Exception):
    """Internal: leave the epoch at once (divergence under the "stop" policy)."""


def _resolve_loss(loss: Any) -> Any:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(
                f"unknown loss {loss!r}; choose from {sorted(LOSSES)} or a loss module"
            )
        return LOSSES[loss]()
    if not callable(loss):
        raise TypeError(
            f"loss must be a loss module, a callable or a name, got {type(loss).__name__}"
        )
    return loss


def _task_of(loss_fn: Any) -> str:
    if isinstance(loss_fn, (CrossEntropyLoss,)):
        return "multiclass"
    if isinstance(loss_fn, NLLLoss):
        return "multiclass_logprob"
    if isinstance(loss_fn, BCEWithLogitsLoss):
        return "binary_logits"
    if isinstance(loss_fn, BCELoss):
        return "binary_proba"
    return "regression"


def _outputs_to(kind: str, task: str, out: np.ndarray) -> np.ndarray:
    """Turn raw model outputs into what a metric of ``kind`` expects."""
    if kind == "value" or task == "regression":
        return out
    if task == "multiclass":
        if kind == "label":
            return out.argmax(axis=1)
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if task == "multiclass_logprob":
        return out.argmax(axis=1) if kind == "label" else np.exp(out)
    if task == "binary_logits":
        if kind == "label":
            return (out > 0).astype(np.int64)
        with np.errstate(over="ignore", under="ignore"):
            return 1 / (1 + np.exp(-out.astype(np.float64)))
    return (out > 0.5).astype(np.int64) if kind == "label" else out


def _as_data(name: str, value: Any, allow_1d: bool = True, purpose: str = "train on") -> np.ndarray:
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


def _check_target_width(loss_fn: Any, y: np.ndarray, outputs: int) -> None:
    """Targets of an elementwise loss need one value per model output: ``(n, outputs)``."""
    per_sample = y[0].size if len(y) else 0
    if per_sample != outputs or (outputs > 1 and y.shape[1:] != (outputs,)):
        want = f"({len(y)},) or ({len(y)}, 1)" if outputs == 1 else f"({len(y)}, {outputs})"
        raise ValueError(
            f"{type(loss_fn).__name__}: the model has {outputs} output(s) per sample, so y must "
            f"have shape {want}, got {y.shape}; give one target per output, or change the "
            "model's last layer"
        )


def _all_finite(a: np.ndarray) -> bool:
    """True if every element of the flat buffer ``a`` is finite.

    ``a·a`` (one BLAS dot product, no temporary array) is finite exactly when every element
    is, unless the sum of squares overflows; only then is the elementwise test run.
    """
    if a.ndim == 1 and a.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(float(np.dot(a, a))):
                return True
    return bool(np.isfinite(a).all())


def _file_position(X: np.memmap) -> int | None:
    """Byte position in its file of ``X[0]``, or None if rows cannot be read with ``pread``.

    A view of a memory map (``mm[2000:]``, ``mm[::-3]``) keeps its parent's ``offset``, which is
    where the *mapping* starts in the file, not where the view does: the view's first row is
    ``offset`` plus its distance from the mapped array's first byte. Each row must itself be
    one contiguous run of bytes (any row stride, negative too), and the mapping must show the
    file (not copy-on-write, ``mode="c"``, whose private writes ``pread`` would not see).
    """
    root: Any = X
    while isinstance(root.base, np.ndarray):
        root = root.base
    if (
        X.ndim == 0
        or getattr(root, "_mmap", None) is None
        or root.base is not root._mmap
        or getattr(X, "mode", None) == "c"
        or not isinstance(getattr(root, "offset", None), int)
        or not (X.ndim == 1 or X[:1].flags.c_contiguous)  # each row contiguous
        or X.strides[0] == 0
    ):
        return None
    return int(root.offset) + (X.ctypes.data - root.ctypes.data)


def _check_finite(name: str, arr: np.ndarray, doing: str = "training") -> None:
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


def compute_metrics(
    metrics: Sequence[tuple[str, Callable[..., float], str]], task: str, out: np.ndarray, y: Any
) -> dict[str, float]:
    """Evaluate resolved metrics on raw model outputs ``out`` against targets ``y``."""
    res = {}
    y = np.asarray(y)
    for name, fn, kind in metrics:
        pred = _outputs_to(kind, task, out)
        yy = y
        if kind == "label" and task in ("binary_logits", "binary_proba"):
            yy = (y > 0.5).astype(np.int64)
        if kind != "proba" and pred.ndim > yy.ndim and pred.size == yy.size:
            pred = pred.reshape(yy.shape)
        res[name] = float(fn(yy, pred))
    return res


def _callback_list(callbacks: Any) -> list[Any]:
    """``callbacks`` as a list: None means none (as in Keras), one Callback is a list of one."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        return list(callbacks)
    except TypeError:
        raise TypeError(
            "callbacks must be an iterable of Callback instances, a Callback or None, got "
            f"{type(callbacks).__name__}"
        ) from None


class Trainer:
    """State and loop of one training run; see :func:`fit` for the arguments."""

    def __init__(
        self,
        model: Module,
        loss: Any,
        optimizer: Any = "adam",
        *,
        lr: float | None = None,
        metrics: Sequence[Any] = (),
        callbacks: Iterable[Callback] | Callback | None = (),
        scheduler: Any = None,
        seed: Any = None,
        verbose: int = 1,
        on_nonfinite: str = "stop",
        clip_grad_norm: float | None = None,
        tol: float | None = None,
        n_iter_no_change: int = 10,
        distributed: bool = False,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"model must be a chainrule Module, got {type(model).__name__}")
        if on_nonfinite not in ("stop", "raise", "ignore"):
            raise ValueError(
                f"on_nonfinite must be 'stop', 'raise' or 'ignore', got {on_nonfinite!r}"
            )
        if clip_grad_norm is not None:
            check_number("clip_grad_norm", clip_grad_norm, low=0, low_inclusive=False)
        if tol is not None:
            check_number("tol", tol, low=0)
        check_number("n_iter_no_change", n_iter_no_change, low=1, integer=True)
        check_number("verbose", verbose, low=0, integer=True)
        self.model = model
        self.loss_fn = _resolve_loss(loss)
        self.task = _task_of(self.loss_fn)
        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters to train")
        if not any(p.requires_grad for p in params):
            raise ValueError(
                "every parameter of the model is frozen (requires_grad=False): there is nothing "
                "to train; unfreeze some with p.requires_grad_(True)"
            )
        self.dtype = params[0].dtype
        if isinstance(optimizer, str):
            if optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"unknown optimizer {optimizer!r}; choose from {sorted(OPTIMIZERS)} or an "
                    "Optimizer"
                )
            kwargs: dict[str, Any] = {} if lr is None else {"lr": lr}
            optimizer = OPTIMIZERS[optimizer](params, **kwargs)
        elif not isinstance(optimizer, optim_mod.Optimizer):
            raise TypeError(
                f"optimizer must be a chainrule Optimizer or a name, got {type(optimizer).__name__}"
            )
        elif lr is not None:
            for g in optimizer.param_groups:
                g["lr"] = lr
        self.optimizer = optimizer
        self.metrics = [get_metric(m) for m in metrics]
        cbs = _callback_list(callbacks)
        self.replicas: Any = None  # the processes of a data-parallel run (distributed.py)
        if distributed:
            from .. import distributed as dist  # the applications floor, only when asked for

            self.replicas = dist.replicas_for_fit(model, self.loss_fn)
            self.optimizer = optimizer = dist.plain_optimizer(optimizer)
            if not self.replicas.is_main:  # only rank 0 prints and writes files
                verbose = 0
                cbs = [c for c in cbs if not isinstance(c, (ProgressBar, CSVLogger))]
        for c in cbs:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(c).__name__}")
        if scheduler is not None:
            if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
                raise TypeError(
                    f"scheduler must be an lr_scheduler object, got {type(scheduler).__name__}"
                )
            cbs.insert(0, LearningRateScheduler(scheduler))
        if verbose and not any(isinstance(c, ProgressBar) for c in cbs):
            cbs.append(ProgressBar(verbose=verbose))
        self.callbacks = cbs
        self.rng = as_generator(seed, "seed")
        self.verbose = int(verbose)
        self.on_nonfinite = on_nonfinite
        self.clip = clip_grad_norm
        self.tol = tol
        self.n_iter_no_change = int(n_iter_no_change)
        self.history = History()
        self.stop_training = False
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.best_epoch: int | None = None
        self.restored_best = False
        self.resumed = False
        self.epoch = 0
        self.epochs = 0
        self.steps_per_epoch = 0
        self._best_loss = math.inf
        self._no_improvement = 0
        self._last_finite = (math.nan, 0, 0)
        self._pending: list[str] = []
        self._fd: tuple[str, int] | None = None  # the open file of a memory-mapped input
        self._params = params
        self._names = [n for n, _ in model.named_parameters()]

    # ----- data ------------------------------
    def _batch(self, X: np.ndarray, idx: Any) -> np.ndarray:
        if (
            isinstance(idx, np.ndarray)
            and X.dtype == self.dtype
            and type(X) is np.ndarray
            and X.flags.c_contiguous
        ):
            # gather the rows into a reused buffer (no allocation per batch)
            shape = (len(idx), *X.shape[1:])
            buf = self._xbuf.get(shape)
            if buf is None:
                buf = self._xbuf[shape] = np.empty(shape, X.dtype)
            return np.take(X, idx, axis=0, out=buf)
        if isinstance(X, np.memmap):
            xb = self._read_rows(X, idx)
        else:
            xb = X[idx]
        if xb.dtype != self.dtype:
            xb = xb.astype(self.dtype)
        return xb

    def _read_rows(self, X: np.memmap, idx: Any) -> np.ndarray:
        """Rows of a memory-mapped file, read with ``pread`` instead of through the mapping.

        Touching a mapping makes its pages resident in this process (whole large folios at a
        time on current kernels), so shuffled batches from a big ``.npy`` would soon count the
        entire file in the process's memory. Reading the rows with ``os.preadv`` straight into
        the batch buffer keeps the footprint to the batch itself; the data still comes from
        the kernel's page cache.
        """
        filename = getattr(X, "filename", None)
        start = _file_position(X)
        if filename is None or start is None or not hasattr(os, "preadv"):
            return np.array(X[idx])
        rows = np.arange(len(X))[idx] if not isinstance(idx, np.ndarray) else idx
        out = np.empty((len(rows), *X.shape[1:]), X.dtype)
        row_bytes = out[0].nbytes if len(rows) else 0
        row_stride = X.strides[0] if X.ndim else 0
        if self._fd is None or self._fd[0] != filename:
            if self._fd is not None:
                os.close(self._fd[1])
            self._fd = (filename, os.open(filename, os.O_RDONLY))
        fd = self._fd[1]
        view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        for k, r in enumerate(rows.tolist()):
            got = os.preadv(fd, [view[k * row_bytes : (k + 1) * row_bytes]], start + r * row_stride)
            if got != row_bytes:
                raise ValueError(f"{filename!r} ended early: row {r} is incomplete")
        return out

    # ----- checkpoints ------------------------------
    def request_checkpoint(self, path: str) -> None:
        """Write a checkpoint to ``path`` once the current epoch is completely handled."""
        self._pending.append(path)

    def save_checkpoint(self, path: str) -> None:
        """Write model, optimizer, schedule, generators, history and callbacks to ``path``."""
        from .checkpoint import training_state

        if self.replicas is not None and not self.replicas.is_main:
            return  # every process holds the same state: rank 0 writes it
        meta, tensors = training_state(self)
        model_io._write(path, self.model, extra={}, training=meta, training_tensors=tensors)

    def load_checkpoint(self, path: str) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (into this trainer's objects)."""
        from .checkpoint import restore_training_state

        restore_training_state(self, path)

    # ----- the loop ------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        epochs: int = 10,
        batch_size: int | None = 32,
        validation_data: tuple[Any, ...] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        sample_weight: Any = None,
        class_weight: Any = None,
        resume_from: str | None = None,
    ) -> History:
        if y is None and is_batches(X):  # a DataLoader, a generator, a list of (x, y)
            X, y, w_batches, batch_size = batches_to_arrays(X, "fit")
            if sample_weight is None:
                sample_weight = w_batches
        check_number("epochs", epochs, low=0, integer=True)
        if batch_size is not None:
            check_number("batch_size", batch_size, low=1, integer=True)
        check_number("validation_split", validation_split, low=0, high=1, high_inclusive=False)
        X = _as_data("X", X)
        _check_finite("X", X)
        if y is None:
            raise ValueError("y is required: fit trains against targets")
        y = _as_data("y", y)
        if len(y) != len(X):
            raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
        _check_finite("y", y)
        n = len(X)
        w = self._weights(y, n, sample_weight, class_weight)
        # validation data: given, or split off with the run's generator (stratified for labels)
        Xv = yv = wv = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(
                    "validation_data must be a tuple (X_val, y_val[, sample_weight_val])"
                )
            Xv = _as_data("validation X", validation_data[0])
            yv = _as_data("validation y", validation_data[1])
            if len(Xv) != len(yv):
                raise ValueError(
                    f"validation X and y have different numbers of samples: {len(Xv)} and {len(yv)}"
                )
            _check_finite("validation X", Xv)
            wv = None if len(validation_data) == 2 else np.asarray(validation_data[2], np.float64)
            train_idx = None
        elif validation_split > 0:
            train_idx, val_idx = self._split(y, validation_split)
            Xv, yv = X[val_idx], y[val_idx]
            wv = None if w is None else w[val_idx]
        else:
            train_idx = None
        if train_idx is not None:
            X, y = X[train_idx], y[train_idx]
            w = None if w is None else w[train_idx]
            n = len(X)
        if self.replicas is not None:
            self.replicas.check_data(X, y, w)
        bs = n if batch_size is None else min(int(batch_size), n)
        self.steps_per_epoch = math.ceil(n / bs)
        self.epochs = int(epochs)
        for c in self.callbacks:
            c.set_trainer(self)
        if resume_from is not None or any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            try:  # a checkpoint is a model file: find out now, not after the first epoch
                model_io.describe(self.model)
            except TypeError as exc:
                raise TypeError(f"checkpoints need a model file: {exc}") from None
        start_epoch = 1
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            self.resumed = True
            start_epoch = self.epoch + 1
        self._fit_inputs = X
        self._fit_targets = y
        self.stop_training = False
        from ._threads import blas_threads_for
        from .fastpath import FastMLP

        self.optimizer.prepare()
        self._fast = FastMLP.create(self.model, self.loss_fn, self.optimizer)
        if self._fast is not None and self._fast.kind == "multiclass":
            self._fast.check_targets(y)
        elif self._fast is not None:
            _check_target_width(self.loss_fn, y, self._fast.linears[-1].out_features)
        self._modules = list(self.model.modules())
        self._flat_now: list[Any] | None = None
        self._xbuf: dict[tuple[int, ...], np.ndarray] = {}
        self._fd = None
        logs: dict[str, Any] = {}
        self._snap = [np.empty_like(p.data) for p in self._params]
        for c in self.callbacks:
            c.on_train_begin(logs)
        try:
            # the divergence guard reports non-finite values itself: NumPy's overflow and
            # invalid-value warnings would only repeat it, batch after batch
            quiet = self.on_nonfinite != "ignore"
            with (
                blas_threads_for(self.model, bs),  # one BLAS thread for small steps
                use_generator(self.rng),  # dropout without its own generator follows the seed
            ):
                for epoch in range(start_epoch, self.epochs + 1):
                    try:
                        with (
                            np.errstate(over="ignore", invalid="ignore", divide="ignore")
                            if quiet
                            else contextlib.nullcontext()
                        ):
                            self._run_epoch(epoch, X, y, w, bs, shuffle, Xv, yv, wv)
                    except _StopEpochError:
                        break
                    if self.stop_training:
                        break
                else:
                    if self.stop_reason is None:
                        self.stop_reason = "epochs"
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            self.stop_detail = "interrupted by the user (Ctrl-C)"
        except DivergenceError:
            self._finish(logs)
            raise
        self._finish(logs)
        return self.history

    def _finish(self, logs: dict[str, Any]) -> None:
        if self._fd is not None:
            os.close(self._fd[1])
            self._fd = None
        for c in self.callbacks:
            c.on_train_end(logs)
        from .summary import summarize

        self.history.stop_reason = self.stop_reason
        self.history.best_epoch = self.best_epoch
        self.history.summary = summarize(self)
        if self.verbose:
            print(self.history.summary)

    def _weights(
        self, y: np.ndarray, n: int, sample_weight: Any, class_weight: Any
    ) -> np.ndarray | None:
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("sample_weight must be finite and non-negative")
        if class_weight is not None:
            labels = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
            classes, counts = np.unique(labels, return_counts=True)
            if class_weight == "balanced":
                cw = {c: n / (len(classes) * k) for c, k in zip(classes.tolist(), counts.tolist())}
            elif isinstance(class_weight, dict):
                cw = {k: float(v) for k, v in class_weight.items()}
                unknown = set(cw) - set(classes.tolist())
                if unknown:
                    raise ValueError(f"class_weight names classes not in y: {sorted(unknown)}")
            else:
                raise TypeError("class_weight must be a dict {class: weight} or 'balanced'")
            per = np.array([cw.get(v, 1.0) for v in labels.tolist()], dtype=np.float64)
            w = per if w is None else w * per
        return w

    def _split(self, y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        n_val = max(1, round(fraction * n))
        if n_val >= n:
            raise ValueError(f"validation_split={fraction} leaves no training samples out of {n}")
        labels = y if y.ndim == 1 and y.dtype.kind in "biu" else None
        if labels is not None:
            val: list[int] = []
            classes = np.unique(labels)
            for c in classes:
                members = np.flatnonzero(labels == c)
                members = members[self.rng.permutation(len(members))]
                take = round(len(members) * n_val / n)
                val.extend(members[:take].tolist())
            val_idx = np.sort(np.array(val, dtype=np.int64))
        if labels is None or len(val_idx) == 0:  # many small classes round to none: not stratified
            val_idx = np.sort(self.rng.permutation(n)[:n_val])
        mask = np.ones(n, bool)
        mask[val_idx] = False
        return np.flatnonzero(mask), val_idx

    def _run_epoch(
        self,
        epoch: int,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        bs: int,
        shuffle: bool,
        Xv: Any,
        yv: Any,
        wv: Any,
    ) -> None:
        self.epoch = epoch
        n = len(X)
        model, opt = self.model, self.optimizer
        for m in self._modules:  # model.train() without walking the tree every epoch
            m.training = True
        lr0 = float(opt.param_groups[0]["lr"])
        logs: dict[str, Any] = {}
        for c in self.callbacks:
            c.on_epoch_begin(epoch, logs)
        t0 = time.perf_counter()
        order = self.rng.permutation(n) if shuffle else None
        total_loss, total_weight = 0.0, 0.0
        keep_outputs = bool(self.metrics)
        fast = self._fast
        if fast is not None and (not fast.ready(opt) or fast.hooked(self._modules)):
            fast = None
        outputs: list[np.ndarray] = []
        rep, positions, seen_rows = self.replicas, [], 0
        for b, start in enumerate(range(0, n, bs)):
            idx = order[start : start + bs] if order is not None else slice(start, start + bs)
            if rep is not None:  # data-parallel: this process's rows of the global batch
                gidx = idx
                idx, lo, hi, rows = rep.split(gidx, n)
                scale, bw_global, mine = rep.weights(self.loss_fn, y, w, gidx, lo, hi)
                positions.append(np.arange(start + lo, start + hi))
                seen_rows = start + rows
            xb = self._batch(X, idx)
            yb = y[idx]
            wb = None if w is None else w[idx]
            for c in self.callbacks:
                c.on_batch_begin(b, logs)
            if rep is not None:  # each process's share, then the all-reduce (distributed.py)
                from ..distributed import replica_step

                lv, out_data = replica_step(self, xb, yb, wb, fast, (rows, lo, hi), scale, mine)
                if not math.isfinite(lv) and self.on_nonfinite != "ignore":
                    self._diverged(epoch, b, f"the loss is {lv}", xb)
            elif fast is not None:  # the fused MLP step: same maths, no graph (fastpath.py)
                lv = fast.step(xb, yb, wb)
                out_data = fast.output
                if not math.isfinite(lv) and self.on_nonfinite != "ignore":
                    self._diverged(epoch, b, f"the loss is {lv}", xb)
            else:
                out = model(xb)
                loss = (
                    self.loss_fn(out, yb, sample_weight=wb)
                    if wb is not None
                    else self.loss_fn(out, yb)
                )
                lv = loss.item()
                out_data = out.data
                if not math.isfinite(lv) and self.on_nonfinite != "ignore":
                    self._diverged(epoch, b, f"the loss is {lv}", xb)
                opt.zero_grad()
                loss.backward()
            if self.on_nonfinite != "ignore" and not self._grads_finite():
                name = next(
                    n
                    for n, p in zip(self._names, self._params)
                    if p.grad is not None and not np.all(np.isfinite(p.grad))
                )
                self._diverged(epoch, b, f"the gradient of '{name}' is not finite", xb)
            if self.clip is not None:
                _clip_grad_norm(self._params, self.clip)
            self._step(epoch, b, xb)
            bw = float(len(yb)) if wb is None else float(np.sum(wb))
            if rep is not None:
                bw = bw_global
            total_loss += lv * bw
            total_weight += bw
            self._last_finite = (lv, epoch, b)
            if keep_outputs:
                outputs.append(out_data.copy() if fast is not None else out_data)
            batch_logs = {"loss": lv, "size": len(yb) if rep is None else rows}
            for c in self.callbacks:
                c.on_batch_end(b, batch_logs)
            if self.stop_training:
                break
        logs["loss"] = total_loss / total_weight if total_weight > 0 else math.nan
        if keep_outputs and outputs:
            out_all = np.concatenate(outputs)
            if rep is not None:  # every process's rows, in the epoch's order
                out_all = rep.gather_rows(out_all, np.concatenate(positions), seen_rows)
            seen = len(out_all)
            ys = y[order[:seen]] if order is not None else y[:seen]
            logs.update(compute_metrics(self.metrics, self.task, out_all, ys))
        if Xv is not None:
            vbs = max(bs, 1024)
            val = evaluate(
                model,
                Xv,
                yv,
                self.loss_fn,
                [m[0] for m in self.metrics] or (),
                batch_size=vbs,
                sample_weight=wv,
                _metrics=self.metrics,
                _outputs=None if rep is None else rep.predict(model, Xv, vbs),
            )
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = lr0
        logs["time"] = time.perf_counter() - t0
        self._convergence(logs["loss"])
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)
        self.history.append(epoch, logs)
        for path in self._pending:
            self.save_checkpoint(path)
        self._pending.clear()

    def _flat_groups(self) -> list[Any] | None:
        """The optimizer's flat buffers, if every parameter lives in them right now."""
        flat = getattr(self.optimizer, "_flat", None)
        if not flat or any(f is None for f in flat):
            return None
        covered = sum(len(f.params) for f in flat)
        if covered != len(self._params) or not all(f.ready(self.optimizer) for f in flat):
            return None
        return list(flat)

    def _grads_finite(self) -> bool:
        flat = self._flat_now = self._flat_groups()
        if flat is not None:  # one pass per buffer instead of one per parameter
            return all(_all_finite(f.G) for f in flat)
        return all(p.grad is None or bool(np.isfinite(p.grad).all()) for p in self._params)

    def _step(self, epoch: int, batch: int, xb: np.ndarray) -> None:
        if self.on_nonfinite == "ignore":
            self.optimizer.step()
            return
        # the layout found by _grads_finite for this very batch (clipping does not change it)
        flat = self._flat_now if self._flat_now is not None else self._flat_groups()
        if flat is not None:
            if len(self._snap) != len(flat) or any(
                s.shape != f.P.shape for s, f in zip(self._snap, flat)
            ):
                self._snap = [np.empty_like(f.P) for f in flat]
            for s, f in zip(self._snap, flat):
                np.copyto(s, f.P)
            targets = [f.P for f in flat]
        else:
            if len(self._snap) != len(self._params) or any(
                s.shape != p.data.shape for s, p in zip(self._snap, self._params)
            ):
                self._snap = [np.empty_like(p.data) for p in self._params]
            for s, p in zip(self._snap, self._params):
                np.copyto(s, p.data)
            targets = [p.data for p in self._params]
        try:
            self.optimizer.step()
        except KeyboardInterrupt:
            self._restore_snapshot(targets)  # never leave a half-applied update
            raise
        if not all(_all_finite(t) for t in targets):
            # find the parameter before restoring the snapshot: afterwards every weight is finite
            name = next(
                (n for n, p in zip(self._names, self._params) if not np.all(np.isfinite(p.data))),
                None,
            )
            self._restore_snapshot(targets)
            what = f"'{name}'" if name is not None else "a parameter"
            self._diverged(epoch, batch, f"the optimizer's update made {what} non-finite", xb, "")

    def _restore_snapshot(self, targets: list[np.ndarray]) -> None:
        for s, t in zip(self._snap, targets):
            np.copyto(t, s)

    def _convergence(self, loss: float) -> None:
        if self.tol is None:
            return
        # scikit-learn's rule: count epochs whose loss is not below best - tol
        if loss > self._best_loss - self.tol:
            self._no_improvement += 1
        else:
            self._no_improvement = 0
        self._best_loss = min(self._best_loss, loss)
        if self._no_improvement > self.n_iter_no_change:
            self.stop_training = True
            self.stop_reason = "converged"
            self.stop_detail = (
                f"the training loss improved by less than tol={self.tol:g} for "
                f"{self.n_iter_no_change + 1} consecutive epochs"
            )

    def _locate_nonfinite(self, xb: np.ndarray) -> str:
        """Where non-finite values first appear: a weight, or a layer's output (Sequential)."""
        for name, p in zip(self._names, self._params):
            if not np.all(np.isfinite(p.data)):
                return f"; parameter '{name}' holds NaN or infinite values"
        from ..nn.module import Sequential

        if not isinstance(self.model, Sequential):
            return ""
        h: Any = xb
        with no_grad(), np.errstate(all="ignore"):
            for k, layer in enumerate(self.model):
                h = layer(h)
                data = h.data if isinstance(h, Tensor) else np.asarray(h)
                if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
                    return (
                        f"; the first non-finite values appear in the output of layer {k} "
                        f"({layer!r})"
                    )
        return "; every layer's output is finite, so the loss itself overflowed"

    def _diverged(
        self, epoch: int, batch: int, what: str, xb: np.ndarray, where: str | None = None
    ) -> None:
        last, le, lb = self._last_finite
        lr = float(self.optimizer.param_groups[0]["lr"])
        bad_input = xb.dtype.kind == "f" and not np.all(np.isfinite(xb))
        advice = (
            "the input batch itself contains NaN or infinite values: clean the data"
            if bad_input
            else f"lower the learning rate (now {lr:g}), scale the inputs (standardise each "
            "feature), or clip gradients (clip_grad_norm=1.0 in fit, --clip-grad-norm 1 on the "
            "command line)"
        )
        last_txt = (
            f"last finite loss {last:.6g} at epoch {le}, batch {lb}"
            if not math.isnan(last)
            else "no finite loss before it"
        )
        if where is None:
            where = "" if bad_input else self._locate_nonfinite(xb)
        msg = (
            f"training diverged at epoch {epoch}, batch {batch}: {what}{where} ({last_txt}). "
            f"The model keeps its last finite weights. Try: {advice}."
        )
        self.history.message = msg
        self.stop_reason = "diverged"
        self.stop_detail = msg
        if self.on_nonfinite == "raise":
            raise DivergenceError(msg, self.history)
        self.stop_training = True
        raise _StopEpochError


def fit(
    model: Module,
    X: Any,
    y: Any = None,
    *,
    loss: Any,
    optimizer: Any = "adam",
    lr: float | None = None,
    epochs: int = 10,
    batch_size: int | None = 32,
    validation_data: tuple[Any, ...] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: Any = None,
    metrics: Sequence[Any] = (),
    callbacks: Iterable[Callback] | Callback | None = (),
    scheduler: Any = None,
    verbose: int = 1,
    sample_weight: Any = None,
    class_weight: Any = None,
    tol: float | None = None,
    n_iter_no_change: int = 10,
    on_nonfinite: str = "stop",
    clip_grad_norm: float | None = None,
    resume_from: str | None = None,
    distributed: bool = False,
) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent and return its History.

    Each step: forward pass on a batch, the loss, one backward pass, one optimizer update.

    Parameters
    ----------
    model : Module
        Trained in place.
    X, y : array_like
        Inputs ``(n, ...)`` and targets (class indices for cross-entropy, values for
        regression). Batches are gathered by index: the data set is never copied per epoch (a
        memory-mapped ``.npy`` works); each batch is converted to the model's dtype.
        Or, with ``y`` omitted, ``X`` an iterable of ``(x, y)`` (or ``(x, y, sample_weight)``)
        batches — a PyTorch DataLoader, a generator, a list — as Keras accepts: the batches are
        read once and concatenated in memory (torch tensors become arrays), and the batch size
        is that of the first batch; ``shuffle`` then reshuffles every epoch as usual.
    loss : Module, callable or str
        E.g. ``nn.CrossEntropyLoss()``, or a name: mse, mae, huber, bce, bce_with_logits,
        cross_entropy, nll.
    optimizer : Optimizer or str, default "adam"
        An optimizer over ``model.parameters()``, or a name (sgd, adam, adamw, rmsprop,
        adagrad) created with ``lr``.
    lr : float, optional
        Learning rate (overrides the optimizer's).
    epochs : int, default 10
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int or None, default 32
        None trains on the full set each step (batch gradient descent); 1 is stochastic
        gradient descent. A smaller last batch is used as it is.
    validation_data : (X_val, y_val) or (X_val, y_val, w_val), optional
    validation_split : float, default 0
        Fraction of the training data held out for validation, chosen with ``seed`` (stratified
        for class labels).
    shuffle : bool, default True
        Shuffle the sample order every epoch with the run's generator.
    seed : int or Generator, optional
        Drives shuffling, the validation split and the masks of dropout layers built without
        a generator of their own (``nn.Dropout(p)``); the same seed gives bitwise-identical runs
        (with the same thread count). None draws the run's generator from chainrule's default
        generator (:func:`chainrule.manual_seed`). NumPy's global generator is never used.
    metrics : list of str or callables
        accuracy, precision, recall, f1, log_loss, mae, mse, rmse, r2, or ``f(y_true, y_pred)``;
        reported for training (``"accuracy"``) and validation (``"val_accuracy"``).
    callbacks : iterable of Callback, a Callback, or None
        EarlyStopping, ModelCheckpoint, LearningRateScheduler, ProgressBar, CSVLogger, or yours.
    scheduler : LRScheduler or ReduceLROnPlateau, optional
        Stepped after every epoch (ReduceLROnPlateau with ``val_loss``, or ``loss``).
    verbose : int, default 1
        0 silent; 1 progress bar on a terminal (one line per epoch in a pipe) and a summary.
    sample_weight : array_like (n,), optional
    class_weight : dict or "balanced", optional
        Per-class weights, multiplied into the sample weights. The reported epoch loss is the
        sample-weighted mean over the epoch's batches.
    tol, n_iter_no_change : float or None, int
        Convergence as scikit-learn: stop when the training loss has not improved by at least
        ``tol`` for more than ``n_iter_no_change`` consecutive epochs. None (default) disables it.
    on_nonfinite : {"stop", "raise", "ignore"}, default "stop"
        The divergence guard: a NaN or infinite loss, gradient or updated weight is caught in
        the step where it appears; "stop" ends training with a message (``history.message``),
        "raise" raises :class:`DivergenceError`; both keep the last finite weights.
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value every step.
    resume_from : str, optional
        A checkpoint written by ``ModelCheckpoint``: restores the weights, optimizer and
        schedule state, generators, history and callbacks, and continues so that the result is
        bitwise equal to an uninterrupted run. Everything is checked before anything changes:
        an unreadable or crafted checkpoint raises ``ModelFileError``, and a resume that fails
        leaves the model and optimizer as they were.
    distributed : bool, default False
        Data-parallel training on the processes started by ``mpiexec`` (the ``distributed``
        extra; :mod:`chainrule.distributed`): ``batch_size`` is the global batch, each process
        computes the gradient of its rows of every batch, one all-reduce sums them, and the
        result equals the single-process run with the same seed to rounding error (dropout
        masks, batch-norm statistics, uneven batches and weights included). Only rank 0 prints
        and writes checkpoints; every process returns the same History.

    Returns
    -------
    History
        Per-epoch ``loss``, ``val_loss``, metrics, ``lr`` and ``time``; ``stop_reason``,
        ``best_epoch`` and the end-of-fit ``summary``. Ctrl-C stops cleanly and returns it.

    Notes
    -----
    Speed: plain MLPs (Linear layers and elementwise activations, a common loss) train through
    a fused step without a graph, with the same formulas as ``backward()``. A model whose
    largest matrix product per step is below 2²¹ multiply-adds trains with one BLAS thread
    (as fast when the machine is idle, much steadier when it is busy; set the environment
    variable ``CHAINRULE_BLAS_THREADS=keep`` to leave the threads alone). With numba installed
    (``chainrule[fast]``), Adam on 64 Ki+ parameters runs as one compiled loop, bitwise equal
    to NumPy's (:func:`chainrule.optim.set_kernels`).

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)).astype(np.float32)
    >>> y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    >>> model = cr.nn.mlp([2, 16, 2], "tanh", rng=0)
    >>> h = cr.fit(model, X, y, loss="cross_entropy", lr=0.05, epochs=30, seed=0, verbose=0,
    ...            metrics=["accuracy"])
    >>> h.history["accuracy"][-1] > 0.9
    True
    """
    trainer = Trainer(
        model,
        loss,
        optimizer,
        lr=lr,
        metrics=metrics,
        callbacks=callbacks,
        scheduler=scheduler,
        seed=seed,
        verbose=verbose,
        on_nonfinite=on_nonfinite,
        clip_grad_norm=clip_grad_norm,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        distributed=distributed,
    )
    return trainer.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        validation_split=validation_split,
        shuffle=shuffle,
        sample_weight=sample_weight,
        class_weight=class_weight,
        resume_from=resume_from,
    )


def predict(model: Module, X: Any, batch_size: int | None = 4096) -> np.ndarray:
    """The model's raw outputs for ``X`` (logits for a classifier: see :func:`predict_proba`),
    in eval mode, batch by batch, without building a graph.

    The model's train/eval mode is restored afterwards. NaN or infinite inputs are refused.
    ``X`` may also be an iterable of batches (``x`` or ``(x, y)``: the targets are ignored).
    """
    if is_batches(X):  # a DataLoader, a generator, a list of (x, y): predict on the x's
        X = batches_to_arrays(X, "predict")[0]
    X = _as_data("X", X, purpose="predict")
    _check_finite("X", X, "predicting")
    if batch_size is not None:
        check_number("batch_size", batch_size, low=1, integer=True)
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    was_training = model.training
    model.eval()
    try:
        outs = []
        n = len(X)
        bs = n if batch_size is None else int(batch_size)
        with no_grad():
            for start in range(0, n, bs):
                xb = X[start : start + bs]
                if xb.dtype != dtype:
                    xb = xb.astype(dtype)
                outs.append(single_output(model(xb), "predict"))
        return np.concatenate(outs) if len(outs) > 1 else outs[0]
    finally:
        model.train(was_training)


def predict_proba(model: Module, X: Any, batch_size: int | None = 4096) -> np.ndarray:
    """Class probabilities from a model that outputs logits.

    ``softmax(z)_k = exp(z_k) / Σ_j exp(z_j)`` over the last axis when the model has several
    outputs (multi-class, trained with cross-entropy); ``σ(z) = 1 / (1 + exp(-z))`` when it
    has one (binary, trained with ``BCEWithLogitsLoss``) — the probability of class 1, shape
    ``(n, 1)``. Computed stably (no overflow for logits of any size), in the output's dtype.
    For a multi-label model (several independent sigmoid outputs) apply
    ``1 / (1 + np.exp(-cr.predict(model, X)))`` instead.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> model = cr.nn.mlp([2, 3], rng=0)
    >>> p = cr.predict_proba(model, np.zeros((4, 2), np.float32))
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1))
    ((4, 3), True)
    """
    z = predict(model, X, batch_size)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    with np.errstate(under="ignore"):  # a probability that rounds to 0 is right
        if z.ndim >= 2 and z.shape[-1] > 1:
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]
        e = np.exp(-np.abs(z))  # σ(z) from e^{-|z|} ≤ 1: never overflows
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)  # type: ignore[no-any-return]


def evaluate(
    model: Module,
    X: Any,
    y: Any,
    loss: Any = None,
    metrics: Sequence[Any] = (),
    batch_size: int | None = 4096,
    sample_weight: Any = None,
    _metrics: Any = None,
    _outputs: np.ndarray | None = None,
) -> dict[str, float]:
    """Loss (the sample-weighted mean over all of ``X``) and metrics, in eval mode."""
    X = _as_data("X", X, purpose="evaluate")
    y = _as_data("y", y, purpose="evaluate")
    if len(X) != len(y):
        raise ValueError(f"X and y have different numbers of samples: {len(X)} and {len(y)}")
    out = predict(model, X, batch_size) if _outputs is None else _outputs
    res: dict[str, float] = {}
    loss_fn = _resolve_loss(loss) if loss is not None else None
    if loss_fn is not None:
        with no_grad():
            if sample_weight is not None:
                res["loss"] = float(
                    loss_fn(Tensor._const(out), y, sample_weight=sample_weight).item()
                )
            else:
                res["loss"] = float(loss_fn(Tensor._const(out), y).item())
    task = _task_of(loss_fn) if loss_fn is not None else "regression"
    resolved = _metrics if _metrics is not None else [get_metric(m) for m in metrics]
    res.update(compute_metrics(resolved, task, out, y))
    return res
