"""What the parts of a playground session share: the attributes :class:`Session` sets, typed
once here for its frame-building and command halves (``frames.FrameBuilder``,
``page_commands.Commands``), and the methods each half calls on the other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..nn.module import Sequential
    from .data import PlaygroundData
    from .state import PlaygroundState

__all__: list[str] = []


class SessionParts:
    """The attributes of a :class:`~chainrule.playground.session.Session` (annotations only)."""

    state: PlaygroundState
    data: PlaygroundData
    csv: tuple[str, str | None] | None
    model: Sequential
    linears: list[int]  # positions of the Linear layers in the model
    n_outputs: int
    base_loss: Any
    optimizer: Any
    y_fit: np.ndarray
    y_fit_test: np.ndarray
    batch_idx: np.ndarray
    step: int
    epoch: int
    playing: bool
    loss_history: list[tuple[int, float | None, float | None]]
    steps_per_second: float
    frames_sent: int
    frame_cpu: float
    frame_share: float
    _steps_since: int
    _time_since: float
    _cpu_since: tuple[float, float]
    _last_frame: float
    _last_frame_cpu: float
    _diverged: str
    _grad_ema: dict[int, float]
    _grad_now: dict[int, float]
    _frame_inputs: tuple[Any, tuple[Any, ...], np.ndarray] | None

    if TYPE_CHECKING:  # defined by Session and FrameBuilder

        def _reset(self, rebuild_data: bool = True) -> None: ...
        def _one_step(self) -> None: ...
        def _optimizer(self) -> Any: ...
        def _new_trainer(self) -> None: ...
        def _forward_layers(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]: ...
