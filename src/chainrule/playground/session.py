"""One playground run: data, network, optimizer and the training thread that drives them.

The page talks to a :class:`Session` only through :meth:`Session.call` (commands run on the
training thread, between two steps, so nothing changes the model while a step runs) and
receives what the session broadcasts: JSON messages (state, data, network, explanations) and
binary *frames* (weights, losses, heat-maps). Training runs step by step through the trainer's
public step generator, :meth:`chainrule.Trainer.steps` (one epoch per call, over rows the
session has shuffled, so that it knows each step's batch); frames are throttled, never steps:
a frame is built at most ``fps`` times a second and only once every listener has sent the
previous one, and the steps in between run at full speed.

This module holds the thread, the building of data, network and trainer, and the steps; a
session's frames are built by :class:`~chainrule.playground.frames.FrameBuilder` and its
commands answered by :class:`~chainrule.playground.page_commands.Commands`, both mixed into
:class:`Session`.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from .. import optim
from ..nn import mlp
from ..nn.layers import Linear
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ..nn.module import Module
from ..ops import abs as t_abs
from ..tensor import Tensor
from ..training.fit import Trainer
from .data import load_csv, make_data
from .frames import (  # re-exported: the server, the tests and the benchmark import them here
    FRAME_MAGIC,
    GRID,
    NEURON_GRID,
    FrameBuilder,
    Listener,
    decode_frame,
)
from .page_commands import Commands
from .state import PlaygroundState

__all__ = ["FRAME_MAGIC", "GRID", "NEURON_GRID", "Listener", "Session", "decode_frame"]

FRAME_SHARE = 0.08  # at most this fraction of the training thread's CPU time goes to frames
MOMENTUM = 0.9


def _make_trainer(model: Module, loss: Any, optimizer: Any, seed: int) -> Trainer:
    """The trainer whose public step generator (``Trainer.steps``) drives the playground."""
    return Trainer(model, loss, optimizer, seed=seed, verbose=0, on_nonfinite="stop")


class Session(FrameBuilder, Commands):
    """Data, network and training of one playground, on its own thread.

    Parameters
    ----------
    state : PlaygroundState
        The starting setup.
    fps : float
        At most this many frames a second while training.
    csv : (path, target) or None
        Start on this CSV file (target None: its last column).
    """

    _gen: Iterator[dict[str, Any]] | None  # the step generator of the epoch in progress

    def __init__(
        self,
        state: PlaygroundState | None = None,
        *,
        fps: float = 15.0,
        csv: tuple[str, str | None] | None = None,
    ) -> None:
        self.state = state or PlaygroundState()
        self.fps = float(fps)
        self.csv = csv
        self.playing = False
        self.step = 0
        self.epoch = 0
        self.listeners: list[Listener] = []
        self._commands: queue.Queue[tuple[str, dict[str, Any], concurrent.futures.Future[Any]]]
        self._commands = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dirty = True
        self._last_frame = 0.0  # wall-clock time at the end of the last frame
        self._last_frame_cpu = 0.0  # the training thread's CPU time then
        self._frame_cost = 0.0  # CPU seconds to build a frame (moving average)
        self._frame_inputs: tuple[Any, tuple[Any, ...], np.ndarray] | None = None
        self._steps_since = 0
        self._time_since = time.perf_counter()
        self.steps_per_second = 0.0
        self.frame_cpu = 0.0  # CPU seconds the training thread has spent building frames
        self.frame_share = 0.0  # of the training thread's CPU time, over the last ~0.5 s
        self._cpu_since = (time.thread_time(), 0.0)  # (thread CPU, frame_cpu) at _time_since
        self.frames_sent = 0
        self._diverged = ""
        if csv is not None:
            self.data = load_csv(csv[0], csv[1], replace(self.state, dataset="csv"))
            self.state = replace(self.state, dataset="csv", problem=self.data.task)
        self._reset(rebuild_data=csv is None)

    # ----- the thread ------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chainrule-playground", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the training thread (it ends after the step in progress) and wait for it."""
        self._closed = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("the playground's training thread did not stop")
        gen, self._gen = self._gen, None
        if gen is not None:  # end the trainer's step generator now, not at the exit
            getattr(gen, "close", lambda: None)()

    def call(self, kind: str, **args: Any) -> concurrent.futures.Future[Any]:
        """Run command ``kind`` on the training thread; the future holds its reply."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._commands.put((kind, args, fut))
        return fut

    def run_command(self, kind: str, **args: Any) -> Any:
        """Run a command right here (no thread started: tests and the benchmark)."""
        fut = self.call(kind, **args)
        self._drain(0.0)
        return fut.result(timeout=0)

    def _run(self) -> None:
        while not self._closed:
            self._drain(0.0 if self.playing else 0.02)
            try:
                if self.playing:
                    self._train_until_frame()
            except Exception as exc:  # never a dead thread behind a live page: say it, pause
                self.playing = False
                self._diverged = (
                    f"training stopped at step {self.step}: {type(exc).__name__}: {exc}"
                )
            self._maybe_frame()

    def _drain(self, timeout: float) -> None:
        try:
            kind, args, fut = (
                self._commands.get(timeout=timeout) if timeout else self._commands.get_nowait()
            )
        except queue.Empty:
            return
        while True:
            try:
                fut.set_result(getattr(self, f"_cmd_{kind}")(**args))
            except Exception as exc:  # the page shows the message; the session goes on
                fut.set_exception(exc)
            self._dirty = True
            try:
                kind, args, fut = self._commands.get_nowait()
            except queue.Empty:
                return

    def _frame_due(self) -> bool:
        """Whether the next frame is due: ``1/fps`` seconds after the last one, and once the
        training thread has had ``cost · (1/FRAME_SHARE − 1)`` CPU seconds since it.

        A frame's cost is the training thread's CPU time (``time.thread_time``) for building
        it, a moving average. Counting the thread's CPU time, not the wall clock, keeps frames
        to at most FRAME_SHARE of the training thread's time however busy the machine is: when
        other programs leave it half a core, frames come at most half as often as on an idle
        one, instead of taking twice the share.
        """
        return (
            time.perf_counter() - self._last_frame >= 1.0 / self.fps
            and time.thread_time() - self._last_frame_cpu
            >= self._frame_cost * (1.0 / FRAME_SHARE - 1.0)
        )

    def _train_until_frame(self) -> None:
        """Steps at full speed until a frame is due (or a command waits)."""
        while self.playing and self._commands.empty() and not self._closed:
            self._one_step()
            if not self._busy() and self._frame_due():
                return

    def _busy(self) -> bool:
        return any(listener.busy for listener in self.listeners)

    def _maybe_frame(self) -> None:
        if not self.listeners or self._busy():
            return
        if self._dirty or (self.playing and self._frame_due()):
            cpu = time.thread_time()
            frame = self.frame()
            self._last_frame, self._last_frame_cpu = time.perf_counter(), time.thread_time()
            spent = self._last_frame_cpu - cpu
            self.frame_cpu += spent
            self._frame_cost = 0.8 * self._frame_cost + 0.2 * spent
            self._broadcast(frame)
            self._dirty = False

    def _broadcast(self, msg: str | bytes) -> None:
        for listener in list(self.listeners):
            listener.deliver(msg)
        if isinstance(msg, bytes):
            self.frames_sent += 1

    # ----- building ------------------------------
    def _reset(self, rebuild_data: bool = True) -> None:
        st = self.state
        if rebuild_data:
            if st.dataset == "csv":
                if self.csv is None:
                    raise ValueError("dataset=csv: no CSV file has been uploaded; upload one first")
                self.data = load_csv(self.csv[0], self.csv[1], st)
            else:
                self.data = make_data(st)
        d = self.data
        self.n_outputs = d.n_classes if d.n_classes > 2 else 1
        widths = [d.X_train.shape[1], *st.layers, self.n_outputs]
        self.model = mlp(widths, st.activation, rng=st.seed)
        self.linears = [k for k, m in enumerate(self.model) if isinstance(m, Linear)]
        if d.task == "regression":
            self.base_loss: Any = MSELoss()
        elif self.n_outputs == 1:
            self.base_loss = BCEWithLogitsLoss()
        else:
            self.base_loss = CrossEntropyLoss()
        self.y_fit = self._fit_target(d.y_train)
        self.y_fit_test = self._fit_target(d.y_test)
        self.optimizer = self._optimizer()
        self.rng = np.random.default_rng(st.seed)
        self._new_trainer()
        self._order: np.ndarray = self.rng.permutation(len(d.X_train))
        self.batch_idx = self._order[: st.batchSize].copy()
        self.step = self.epoch = 0
        self.playing = False
        self._diverged = ""
        self._grad_ema: dict[int, float] = {}
        self._grad_now: dict[int, float] = {}
        self.loss_history: list[tuple[int, float | None, float | None]] = []
        self._dirty = True

    def _fit_target(self, y: np.ndarray) -> np.ndarray:
        if self.data.task == "classification" and self.n_outputs == 1:
            return y.astype(np.float32).reshape(-1, 1)  # BCE's targets: 0.0 / 1.0
        return y

    def _optimizer(self) -> Any:
        st, params = self.state, self.model.parameters()
        if st.optimizer == "adam":
            return optim.Adam(params, lr=st.lr)
        return optim.SGD(params, lr=st.lr, momentum=MOMENTUM if st.optimizer == "momentum" else 0.0)

    def _new_trainer(self) -> None:
        """A trainer for the current model, loss and optimizer; the epoch starts afresh.

        Without regularisation the loss is the loss module itself (the trainer may then use
        its fused MLP step plan); with it, :meth:`_loss` adds the penalty.
        """
        st = self.state
        loss = self.base_loss if st.reg == "none" or st.regRate == 0 else self._loss
        self.trainer = _make_trainer(self.model, loss, self.optimizer, st.seed)
        self._gen = None
        self._epoch_rows: np.ndarray | None = None

    def _loss(self, out: Tensor, y: Any) -> Tensor:
        """The data loss plus the regularisation penalty on the weights (not the biases).

        L1: ``λ Σ |w|`` (gradient ``λ sign w``); L2: ``λ/2 Σ w²`` (gradient ``λ w``), as
        TensorFlow Playground; the rate is read at every step, so it changes without a reset.
        """
        c = self.base_loss(out, y)
        st = self.state
        if st.reg == "none" or st.regRate == 0:
            return c
        for k in self.linears:
            w = self.model[k].weight
            c = c + st.regRate * (t_abs(w).sum() if st.reg == "l1" else 0.5 * (w * w).sum())
        return c

    # ----- training ------------------------------
    def _epoch(self) -> Iterator[dict[str, Any]]:
        """One epoch through ``Trainer.steps`` over freshly shuffled rows (batch ``b`` of the
        epoch is rows ``order[b·bs : (b+1)·bs]``)."""
        if self._epoch_rows is not None:  # a finished epoch: the next one is shuffled anew
            self._order = self.rng.permutation(len(self.data.X_train))
            self.epoch += 1
        self._epoch_rows = self._order
        X, y = self.data.X_train[self._order], self.y_fit[self._order]
        return self.trainer.steps(X, y, epochs=1, batch_size=self.state.batchSize, shuffle=False)

    def _one_step(self) -> None:
        """One training step (a new epoch begins when the last one has ended)."""
        logs = None
        for _ in range(2):
            if self._gen is None:
                self._gen = self._epoch()
            logs = next(self._gen, None)
            if logs is not None:
                break
            self._gen = None
            if self.trainer.stop_reason == "diverged":
                self.playing = False
                # the trainer's message counts epochs of its own call and advises fit's
                # options; the page says what happened in its own terms
                what = re.sub(
                    r"^training diverged at epoch \d+, batch \d+: ", "", self.trainer.stop_detail
                )
                what = what.split(";")[0].split(". ")[0]
                self._diverged = (
                    f"training stopped at step {self.step}: {what}. The weights are the last "
                    "finite ones: lower the learning rate and press play"
                )
                self._new_trainer()
                return
        if logs is None:
            return
        bs = self.state.batchSize
        assert self._epoch_rows is not None
        self.batch_idx = self._epoch_rows[logs["batch"] * bs : (logs["batch"] + 1) * bs]
        self.step += 1
        self._steps_since += 1
        for li, k in enumerate(self.linears):
            g = self.model[k].weight.grad
            if g is not None:
                flat = g.ravel()
                with np.errstate(over="ignore", invalid="ignore"):
                    rms = math.sqrt(float(np.dot(flat, flat)) / flat.size)
                self._grad_now[li] = rms
                old = self._grad_ema.get(li)
                self._grad_ema[li] = rms if old is None else 0.95 * old + 0.05 * rms
