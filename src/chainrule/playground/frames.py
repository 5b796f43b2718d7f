"""The playground's frames: what the page draws, built from the session's model, and how it
travels (binary frames over the WebSocket, one :class:`Listener` per open page).

A frame holds the losses, the weights and biases, each hidden unit's output over a
``NEURON_GRID²`` grid of the view and the output over a ``GRID²`` grid, with the live
gradient-flow warnings and the metrics (accuracy and confusion matrix, or R²). It is built
from one forward pass over the grid, the training and the test rows together, at most at
the session's frame rate (see :class:`chainrule.playground.session.Session`).
"""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._numerics import sigmoid, softmax
from ..diagnostics.flow import (
    DEAD_FRACTION,
    EXPLODING_RMS,
    SATURATED_FRACTION,
    SEVERE_VANISHING_RATIO,
    VANISHING_RATIO,
)
from ..nn.layers import Linear
from ..tensor import Tensor, no_grad
from ._parts import SessionParts

__all__ = ["FRAME_MAGIC", "GRID", "NEURON_GRID", "FrameBuilder", "Listener", "decode_frame"]

GRID = 40  # the output heat-map: GRID × GRID points over the view
NEURON_GRID = 20  # each neuron's heat-map (every second point of the output grid)
FRAME_MAGIC = b"CRPF"


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


class FrameBuilder(SessionParts):
    """The :class:`Session`'s frames (a mixin: its methods read the session's model and data)."""

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
            output = sigmoid(out).reshape(1, -1)  # the engine's stable σ and softmax
        else:
            output = softmax(out, axis=1).T
        weights = [self.model[k].weight.data for k in self.linears]
        biases = [self.model[k].bias.data for k in self.linears]
        now = time.perf_counter()
        if now - self._time_since >= 0.5:
            self.steps_per_second = self._steps_since / (now - self._time_since)
            cpu, (cpu0, frames0) = time.thread_time(), self._cpu_since
            self.frame_share = (self.frame_cpu - frames0) / max(cpu - cpu0, 1e-9)
            self._steps_since, self._time_since = 0, now
            self._cpu_since = (cpu, self.frame_cpu)
        if not self.loss_history or self.loss_history[-1][0] != self.step:
            self.loss_history.append((self.step, _finite(train_loss), _finite(test_loss)))
        header: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "trainLoss": _finite(train_loss),
            "testLoss": _finite(test_loss),
            "playing": self.playing,
            "stepsPerSecond": round(self.steps_per_second, 1),
            "frameShare": round(self.frame_share, 4),  # of the training thread's CPU time
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
