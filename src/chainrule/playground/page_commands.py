"""The playground's commands: what the page may ask of a session (play, pause, step, change
a setting, explain a link, show a neuron, export), and the messages that describe it.

Every ``_cmd_<name>`` runs on the session's training thread, between two steps (the page
sends ``{"type": name, ...}``; :meth:`Session.call` queues it). A setting that changes the
data or the network resets the session; any other (learning rate, activation, optimizer,
regularisation, batch size) applies in place: the weights stay.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..diagnostics.explain import explain
from ..io import save
from ..nn import ACTIVATIONS
from ..nn.layers import Linear
from ..nn.module import Sequential
from ..tensor import Tensor, enable_grad
from ._parts import SessionParts
from .data import load_csv
from .state import RESET_KEYS, PlaygroundState

__all__ = ["Commands"]


class Commands(SessionParts):
    """The :class:`Session`'s commands and messages (a mixin)."""

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
        self._last_frame, self._last_frame_cpu = time.perf_counter(), time.thread_time()
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
