"""Graph recording on and off: ``no_grad``, ``enable_grad``, ``set_grad_enabled`` (per thread).

Primitives record a node only while ``_grad_mode.enabled`` is true (read by
:func:`chainrule._primitive.apply` and the in-place operators); everything here switches it.
The names are re-exported by :mod:`chainrule.tensor`, their public home.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled"]


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """Return whether primitives currently record the graph."""
    return _grad_mode.enabled


@contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    """Context manager that switches graph recording on or off (per thread)."""
    previous = _grad_mode.enabled
    _grad_mode.enabled = bool(mode)
    try:
        yield
    finally:
        _grad_mode.enabled = previous


_F = TypeVar("_F", bound=Callable[..., Any])


class _GradModeSwitch:
    """A context manager and decorator that sets the grad mode (PyTorch's ``no_grad`` shape).

    Usable as ``with cr.no_grad():``, ``@cr.no_grad()`` and ``@cr.no_grad``; nested and
    re-entrant uses restore the previous mode on exit (per thread).
    """

    _mode = False

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        if func is None:
            return self
        if not callable(func):
            raise TypeError(
                f"{cls.__name__}() takes no arguments (or decorates a function), got "
                f"{type(func).__name__}"
            )
        return self(func)

    def __init__(self, func: Any = None) -> None:
        self._previous: list[bool] = []

    def __call__(self, func: _F) -> _F:
        mode = self._mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> None:
        self._previous.append(_grad_mode.enabled)
        _grad_mode.enabled = self._mode

    def __exit__(self, *exc: Any) -> None:
        _grad_mode.enabled = self._previous.pop()


class no_grad(_GradModeSwitch):  # noqa: N801 - PyTorch's name
    """Context manager (or decorator) under which no graph is recorded.

    ``with cr.no_grad():``, ``@cr.no_grad()`` and ``@cr.no_grad`` all work, as in PyTorch.
    In-place updates of parameters (``p -= lr * p.grad``) belong under it.

    Examples
    --------
    >>> import chainrule as cr
    >>> w = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> with cr.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    _mode = False


class enable_grad(_GradModeSwitch):  # noqa: N801 - PyTorch's name
    """Context manager (or decorator) that turns graph recording back on inside ``no_grad``."""

    _mode = True
