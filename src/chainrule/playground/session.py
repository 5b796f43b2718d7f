"""One playground run: data, network, optimizer and the training thread that drives them.

The page talks to a :class:`Session` only through :meth:`Session.call` (commands run on the
training thread, between two steps, so nothing changes the model while a step runs) and
receives what the session broadcasts: JSON messages (state, data, network, explanations) and
binary *frames* (weights, losses, heat-maps). Training runs step by step through the trainer's
public step generator, :meth:`chainrule.Trainer.steps` (one epoch per call, over rows the
session has shuffled, so that it knows each step's batch); frames are throttled, never steps:
a frame is built at most ``fps`` times a second and only once every listener has sent the
previous one, and the steps in between run at full speed.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import math
import os
import queue
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from .. import optim
from ..diagnostics.explain import explain
from ..diagnostics.flow import (
    DEAD_FRACTION,
    EXPLODING_RMS,
    SATURATED_FRACTION,
    SEVERE_VANISHING_RATIO,
    VANISHING_RATIO,
)
from ..io import save
from ..nn import ACTIVATIONS, mlp
from ..nn.layers import Linear
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ..nn.module import Module, Sequential
from ..ops import abs as t_abs
from ..tensor import Tensor, enable_grad, no_grad
from ..training.fit import Trainer
from .data import load_csv, make_data
from .state import RESET_KEYS, PlaygroundState

__all__ = ["FRAME_MAGIC", "GRID", "NEURON_GRID", "Session", "decode_frame"]

GRID = 40  # the output heat-map: GRID × GRID points over the view
NEURON_GRID = 20  # each neuron's heat-map (every second point of the output grid)
FRAME_SHARE = 0.1  # at most this fraction of the training thread's CPU time goes to frames
FRAME_MAGIC = b"CRPF"
MOMENTUM = 0.9


def _make_trainer(model: Module, loss: Any, optimizer: Any, seed: int) -> Trainer:
    """The trainer whose public step generator (``Trainer.steps``) drives the playground."""
    return Trainer(model, loss, optimizer, seed=seed, verbose=0, on_nonfinite="stop")


def decode_frame(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a binary frame into its JSON header and its float32 arrays (as the page does).

    Layout: ``b"CRPF"``, a little-endian uint32 header length ``L``, ``L`` bytes of UTF-8 JSON
    (padded with spaces to a multiple of 4), then float32 arrays at the offsets (in floats)
    the header's ``"arrays"`` gives as ``name: [offset, length]``.
    """
    if data[:4] != FRAME_MAGIC:
        raise ValueError("not a playground frame")
    (n,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + n].decode())
    payload = np.frombuffer(data, dtype="<f4", offset=8 + n)
    arrays = {k: payload[o : o + m] for k, (o, m) in header["arrays"].items()}
    return header, arrays


def _encode_frame(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    offsets, chunks, at = {}, [], 0
    for name, a in arrays.items():
        flat = np.ascontiguousarray(a, dtype="<f4").ravel()
        offsets[name] = [at, int(flat.size)]
        chunks.append(flat.tobytes())
        at += flat.size
    header = {**header, "arrays": offsets}
    text = json.dumps(header, allow_nan=False, default=_json_default).encode()
    text += b" " * (-len(text) % 4)
    return FRAME_MAGIC + struct.pack("<I", len(text)) + text + b"".join(chunks)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class Listener:
    """Where a session's messages go (one per open page), called from the training thread.

    ``send`` hands a message over (a ``str`` of JSON or a ``bytes`` frame); ``busy`` is true
    while a frame handed over has not been sent yet (no new frame is built meanwhile).
    """

    def __init__(self, send: Callable[[str | bytes], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._frames = 0

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._frames > 0

    def deliver(self, msg: str | bytes) -> None:
        if isinstance(msg, bytes):
            with self._lock:
                self._frames += 1
        self._send(msg)

    def sent(self, msg: str | bytes) -> None:
        """The page's connection has sent ``msg`` (called by the server)."""
        if isinstance(msg, bytes):
            with self._lock:
                self._frames -= 1


class Session:
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
        self._last_frame = 0.0
        self._frame_cost = 0.0  # CPU seconds to build a frame (moving average)
        self._frame_inputs: tuple[Any, tuple[Any, ...], np.ndarray] | None = None
        self._steps_since = 0
        self._time_since = time.perf_counter()
        self.steps_per_second = 0.0
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

    def _frame_interval(self) -> float:
        """Seconds between frames: ``1/fps``, longer if frames cost more than FRAME_SHARE.

        A frame's cost is the training thread's CPU time (``time.thread_time``) for building
        it, not the wall-clock time: on a busy machine the wall clock also counts the time
        other programs had the core, which is no cost of drawing.
        """
        return max(1.0 / self.fps, self._frame_cost / FRAME_SHARE)

    def _train_until_frame(self) -> None:
        """Steps at full speed until a frame is due (or a command waits)."""
        due = self._last_frame + self._frame_interval()
        while self.playing and self._commands.empty() and not self._closed:
            self._one_step()
            if time.perf_counter() >= due and not self._busy():
                return

    def _busy(self) -> bool:
        return any(listener.busy for listener in self.listeners)

    def _maybe_frame(self) -> None:
        now = time.perf_counter()
        if not self.listeners or self._busy():
            return
        if self._dirty or (self.playing and now - self._last_frame >= self._frame_interval()):
            cpu = time.thread_time()
            frame = self.frame()
            self._last_frame = time.perf_counter()
            self._frame_cost = 0.8 * self._frame_cost + 0.2 * (time.thread_time() - cpu)
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
        self._gen: Iterator[dict[str, Any]] | None = None
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

    # ----- frames ------------------------------
    def _forward_layers(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each hidden layer's activations and the output, for inputs X (no graph)."""
        acts: list[np.ndarray] = []
        with no_grad():
            h: Any = Tensor(X)
            layers = list(self.model)
            for k, layer in enumerate(layers):
                h = layer(h)
                if k > 0 and isinstance(layers[k - 1], Linear) and k != len(layers) - 1:
                    acts.append(h.data)
        return acts, np.asarray(h.data)

    def _data_loss(self, out: np.ndarray, y: np.ndarray) -> float:
        with no_grad():
            return float(self.base_loss(Tensor(out), y).item())

    def frame(self) -> bytes:
        """The current picture: losses, weights, the output and each neuron over the view."""
        # weights that grew huge before a divergence stopped training give inf and NaN here:
        # the frame shows them (as null losses and warnings), NumPy need not warn
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return self._frame()

    def _frame(self) -> bytes:
        d = self.data
        n_grid, n_train = GRID * GRID, len(d.X_train)
        # one forward pass for the grid, the training and the test points together
        all_acts, all_out = self._forward_layers(self._inputs_to_draw())
        acts = [a[:n_grid] for a in all_acts]
        train_acts = [a[n_grid : n_grid + n_train] for a in all_acts]
        out = all_out[:n_grid]
        out_train, out_test = all_out[n_grid : n_grid + n_train], all_out[n_grid + n_train :]
        train_loss = self._data_loss(out_train, self.y_fit)
        test_loss = self._data_loss(out_test, self.y_fit_test)
        sub = np.arange(0, GRID, GRID // NEURON_GRID)
        neurons = [a.reshape(GRID, GRID, -1)[np.ix_(sub, sub)].transpose(2, 0, 1) for a in acts]
        if d.task == "regression":
            output = out.reshape(1, -1)
        elif self.n_outputs == 1:
            output = (1 / (1 + np.exp(-np.clip(out, -60, 60)))).reshape(1, -1)
        else:
            z = out - out.max(axis=1, keepdims=True)
            e = np.exp(z)
            output = (e / e.sum(axis=1, keepdims=True)).T
        weights = [self.model[k].weight.data for k in self.linears]
        biases = [self.model[k].bias.data for k in self.linears]
        now = time.perf_counter()
        if now - self._time_since >= 0.5:
            self.steps_per_second = self._steps_since / (now - self._time_since)
            self._steps_since, self._time_since = 0, now
        if not self.loss_history or self.loss_history[-1][0] != self.step:
            self.loss_history.append((self.step, _finite(train_loss), _finite(test_loss)))
        header: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "trainLoss": _finite(train_loss),
            "testLoss": _finite(test_loss),
            "playing": self.playing,
            "stepsPerSecond": round(self.steps_per_second, 1),
            "grid": GRID,
            "neuronGrid": NEURON_GRID,
            "outputs": int(output.shape[0]),
            "warnings": self._warnings(train_acts, train_loss),
            "dead": self._dead_units(train_acts),
            "metrics": self._metrics(out_train, out_test),
            "frames": self.frames_sent,
        }
        arrays = {
            "weights": np.concatenate([w.ravel() for w in weights]),
            "biases": np.concatenate([b.ravel() for b in biases]),
            "neurons": np.concatenate([n.ravel() for n in neurons]) if neurons else np.zeros(0),
            "output": output,
        }
        return _encode_frame(header, arrays)

    def _inputs_to_draw(self) -> np.ndarray:
        """The grid's, the training and the test rows, one array, built again only when the
        data, the features or the view change (not at every frame)."""
        d, st = self.data, self.state
        key = (st.features, d.view, d.domain)
        cached = self._frame_inputs
        if cached is None or cached[0] is not d or cached[1] != key:
            rows = np.concatenate([d.grid_inputs(st, GRID), d.X_train, d.X_test])
            self._frame_inputs = cached = (d, key, rows)
        return cached[2]

    def _metrics(self, out_train: np.ndarray, out_test: np.ndarray) -> dict[str, Any]:
        d = self.data
        if d.task == "regression":
            res: dict[str, Any] = {}
            for name, out, y in (("train", out_train, d.y_train), ("test", out_test, d.y_test)):
                ss = float(np.sum((y - y.mean()) ** 2))
                r2 = 1 - float(np.sum((out - y) ** 2)) / ss if ss > 0 else math.nan
                res[f"{name}R2"] = _finite(r2)
            return res
        k = max(d.n_classes, 2)

        def predict(out: np.ndarray) -> np.ndarray:
            return (out[:, 0] > 0).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)

        p_train, p_test = predict(out_train), predict(out_test)
        cm = np.zeros((k, k), np.int64)
        np.add.at(cm, (d.y_test, p_test), 1)
        return {
            "trainAccuracy": float(np.mean(p_train == d.y_train)),
            "testAccuracy": float(np.mean(p_test == d.y_test)) if len(p_test) else None,
            "confusion": cm.tolist(),
            "classes": d.class_names,
        }

    def _dead_units(self, train_acts: list[np.ndarray]) -> list[list[int]]:
        """Hidden units whose output is 0 for every training row (ReLU's dead units)."""
        if self.state.activation != "relu":
            return []
        return [
            [li, int(j)]
            for li, a in enumerate(train_acts)
            for j in np.flatnonzero(~np.any(a != 0, axis=0))
        ]

    def _warnings(self, train_acts: list[np.ndarray], train_loss: float) -> list[str]:
        """Gradient-flow findings, live, with the diagnostics' thresholds (diagnostics.flow)."""
        out = []
        if self._diverged or not math.isfinite(train_loss):
            return [self._diverged or "the training loss is not finite: lower the learning rate"]
        ema = self._grad_ema
        n = len(self.linears)
        if self.step >= 50 and n >= 3 and ema.get(0) is not None and ema.get(n - 1):
            ratio = ema[0] / ema[n - 1]
            # as diagnostics.flow: a small ratio matters while the loss is not falling, a
            # severe one whatever the loss does
            if ratio < SEVERE_VANISHING_RATIO or (ratio < VANISHING_RATIO and self._stalled()):
                out.append(
                    f"vanishing gradients: the first layer's gradient RMS is {ratio:.1e} of the "
                    f"output layer's ({ema[0]:.1e} against {ema[n - 1]:.1e}); the first layers "
                    "barely learn. Try relu or tanh, fewer layers, or Adam"
                )
        if self.state.optimizer != "adam":
            for li, g in self._grad_now.items():
                if g > EXPLODING_RMS:
                    out.append(
                        f"exploding gradients: layer {li + 1}'s gradient RMS is {g:.3g} "
                        f"(above {EXPLODING_RMS:g}); lower the learning rate"
                    )
                    break
        for li, a in enumerate(train_acts):
            if not a.size:
                continue
            if self.state.activation == "relu":
                dead = float(np.mean(~np.any(a != 0, axis=0)))
                if dead >= DEAD_FRACTION:
                    out.append(
                        f"dead units: {dead:.0%} of hidden layer {li + 1}'s ReLU units output 0 "
                        "for every training point (they get no gradient); lower the learning "
                        "rate or try leaky_relu"
                    )
            elif self.state.activation in ("sigmoid", "tanh"):
                lo, hi = (0.0, 1.0) if self.state.activation == "sigmoid" else (-1.0, 1.0)
                margin = 0.02 * (hi - lo)
                sat = float(np.mean(np.mean((a < lo + margin) | (a > hi - margin), axis=0) > 0.9))
                if sat >= SATURATED_FRACTION:
                    out.append(
                        f"saturated units: {sat:.0%} of hidden layer {li + 1}'s "
                        f"{self.state.activation} units sit at their limits for 90% of the "
                        "points, where their slope is ~0; lower the learning rate"
                    )
        return out

    def _stalled(self) -> bool:
        """The training loss has fallen by less than 10 % over the last 200 steps or more."""
        now = self.loss_history[-1] if self.loss_history else None
        if now is None or now[1] is None:
            return False
        past = [t for step, t, _ in self.loss_history if step <= now[0] - 200 and t is not None]
        return bool(past) and now[1] > 0.9 * past[-1]

    # ----- messages for the page ------------------------------
    def _network_message(self) -> dict[str, Any]:
        d = self.data
        return {
            "inputs": d.input_names,
            "layers": list(self.state.layers),
            "outputs": self.n_outputs,
            "task": d.task,
            "classes": d.class_names,
            "linearPositions": self.linears,
            "activation": self.state.activation,
        }

    def _data_message(self) -> dict[str, Any]:
        d = self.data
        return {
            "domain": list(d.domain),
            "train": np.round(d.P_train.astype(np.float64), 4).ravel().tolist(),
            "test": np.round(d.P_test.astype(np.float64), 4).ravel().tolist(),
            "trainY": np.asarray(d.y_train, np.float64).ravel().tolist(),
            "testY": np.asarray(d.y_test, np.float64).ravel().tolist(),
            "task": d.task,
            "nClasses": d.n_classes,
            "source": d.source,
            "inputs": d.input_names,
            "view": list(d.view),
            "csv": d.preprocessor is not None,
        }

    def hello(self) -> dict[str, Any]:
        """Everything a page that has just connected needs (state, data, network, losses)."""
        return {
            "type": "hello",
            "state": self.state.to_dict(),
            "hash": self.state.to_hash(),
            "data": self._data_message(),
            "network": self._network_message(),
            "history": self.loss_history,
            "playing": self.playing,
        }

    # ----- commands (run on the training thread) ------------------------------
    def _cmd_hello(self) -> dict[str, Any]:
        return self.hello()

    def _cmd_play(self) -> dict[str, Any]:
        self.playing = True
        self._diverged = ""
        self._last_frame = time.perf_counter()
        return {"type": "playing", "playing": True}

    def _cmd_pause(self) -> dict[str, Any]:
        self.playing = False
        return {"type": "playing", "playing": False, "step": self.step}

    def _cmd_step(self, n: int = 1) -> dict[str, Any]:
        self.playing = False
        for _ in range(int(n)):
            self._one_step()
        return {"type": "stepped", "step": self.step}

    def _cmd_reset(self) -> dict[str, Any]:
        self._reset(rebuild_data=False)
        return self.hello()

    def _cmd_set_hash(self, hash: str) -> dict[str, Any]:
        new = PlaygroundState.from_hash(hash)
        if new.dataset == "csv" and self.csv is None:
            raise ValueError("the link's dataset=csv needs an uploaded CSV file; upload one")
        return self._apply(new)

    def _cmd_set(self, key: str, value: str) -> dict[str, Any]:
        new = self.state.with_value(key, str(value))
        if new.dataset == "csv" and self.csv is None:
            raise ValueError("dataset=csv needs an uploaded CSV file; upload one")
        return self._apply(new)

    def _apply(self, new: PlaygroundState) -> dict[str, Any]:
        """Move to state ``new``: a reset if data or network change, in place otherwise."""
        old, self.state = self.state, new
        changed = {k for k in new.to_dict() if getattr(old, k) != getattr(new, k)}
        if self.data.preprocessor is not None and new.dataset == "csv":
            changed -= {"problem"}  # the uploaded file decides the problem
            if new.problem != self.data.task:
                self.state = new = replace(new, problem=self.data.task)
        if changed & RESET_KEYS:
            try:
                self._reset(rebuild_data=True)  # paused, as after the reset button
            except Exception:
                self.state = old
                raise
            return self.hello()
        if "activation" in changed:  # new activation modules between the same Linear layers
            act = ACTIVATIONS[new.activation]
            layers = [m if isinstance(m, Linear) else act() for m in self.model]
            self.model = Sequential(*layers)
        if "optimizer" in changed:  # the weights stay; the new optimizer starts its own state
            self.optimizer = self._optimizer()
        elif "lr" in changed:  # between two steps, as Trainer.steps allows
            for g in self.optimizer.param_groups:
                g["lr"] = new.lr
        if changed & {"activation", "optimizer", "reg", "regRate", "batchSize"}:
            self._new_trainer()  # the same weights (and optimizer state, unless replaced)
        if changed & {"fx", "fy"} and self.data.preprocessor is not None:
            d = self.data
            dd = load_csv(self.csv[0], self.csv[1], new) if self.csv else d
            d.view, d.domain, d.P_train, d.P_test = dd.view, dd.domain, dd.P_train, dd.P_test
            return self.hello()
        return {
            "type": "state",
            "state": new.to_dict(),
            "hash": new.to_hash(),
            "network": self._network_message(),
        }

    def _cmd_use_csv(self, path: str, target: str | None) -> dict[str, Any]:
        st = replace(self.state, dataset="csv", fx=0, fy=1)
        data = load_csv(path, target, st)  # errors leave the running session as it was
        self.csv = (path, target)
        self.data = data
        self.state = replace(st, problem=data.task)
        self._reset(rebuild_data=False)
        return self.hello()

    def _cmd_explain(self, layer: int, i: int, j: int) -> dict[str, Any]:
        """Link ``i -> j`` into Linear layer ``layer``: ``cr.explain`` on the current batch."""
        if not 0 <= layer < len(self.linears):
            raise ValueError(f"layer must be 0..{len(self.linears) - 1}, got {layer}")
        pos = self.linears[layer]
        idx = np.asarray(self.batch_idx)
        xb, yb = self.data.X_train[idx], self.y_fit[idx]
        e = explain(self.model, xb, yb, self.base_loss, f"{pos}.weight[{int(i)},{int(j)}]")
        reg = self.state.reg if self.state.regRate and self.state.reg != "none" else None
        return {
            "type": "explain",
            "weight": e.weight,
            "index": list(e.index),
            "layer": layer,
            "value": e.value,
            "dC_da": e.dC_da.tolist(),
            "da_dz": e.da_dz.tolist(),
            "dz_dw": e.dz_dw.tolist(),
            "perSample": e.per_sample.tolist(),
            "total": e.total,
            "engineGrad": e.engine_grad,
            "activation": e.activation,
            "isOutput": e.is_output,
            "loss": e.loss,
            "text": str(e),
            "batch": idx.tolist(),
            "step": self.step,
            "regularization": reg,
            "regRate": self.state.regRate,
            "lr": self.state.lr,
        }

    def _cmd_neuron(self, layer: int, j: int) -> dict[str, Any]:
        """Hidden unit ``j`` of layer ``layer`` (1-based; the output is the last layer):
        its activation's histogram over the training points, and its gradient on the batch."""
        n_hidden = len(self.state.layers)
        if not 1 <= layer <= n_hidden + 1:
            raise ValueError(f"layer must be 1..{n_hidden + 1}, got {layer}")
        d = self.data
        work = copy.deepcopy(self.model)
        work.zero_grad()
        acts, out = self._forward_layers(d.X_train)
        values = acts[layer - 1][:, j] if layer <= n_hidden else out[:, j]
        counts, edges = np.histogram(values[np.isfinite(values)], bins=20)
        # ∂C/∂a_j on the current batch: the activation's output keeps its gradient
        idx = np.asarray(self.batch_idx)
        layers = list(work)
        target_pos = self.linears[layer - 1] + (1 if layer <= n_hidden else 0)
        with enable_grad():
            h: Any = Tensor(d.X_train[idx])
            kept = None
            for k, m in enumerate(layers):
                h = m(h)
                if k == target_pos:
                    kept = h.retain_grad()
            c = self.base_loss(h, self.y_fit[idx])
            c.backward()
        assert kept is not None and kept.grad is not None
        g = np.asarray(kept.grad[:, j], np.float64)
        bias_grad = work[self.linears[layer - 1]].bias.grad
        return {
            "type": "neuron",
            "layer": layer,
            "unit": j,
            "counts": counts.tolist(),
            "edges": edges.tolist(),
            "mean": float(np.mean(values)),
            "gradMean": float(g.mean()),
            "gradRms": float(np.sqrt(np.mean(g * g))),
            "biasGrad": float(bias_grad[j]) if bias_grad is not None else None,
            "batch": len(idx),
            "step": self.step,
        }

    def _cmd_export_model(self) -> bytes:
        extra: dict[str, Any] = {
            "created_by": "chainrule playground",
            "playground": self.state.to_hash(),
        }
        if self.data.preprocessor is not None:
            extra["preprocessing"] = self.data.preprocessor.to_dict()
        else:
            extra["inputs"] = list(self.state.features)
        fd, path = tempfile.mkstemp(suffix=".chainrule")
        os.close(fd)
        try:
            save(self.model, path, extra=extra)
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            os.remove(path)

    def _cmd_export_data(self) -> str:
        """The training and test rows as one CSV (the network's inputs and the target)."""
        from .export import data_csv

        return data_csv(self)

    def _cmd_export_code(self) -> dict[str, str]:
        from .export import python_code, train_command

        return {"command": train_command(self), "python": python_code(self)}
