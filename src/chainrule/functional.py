"""Functional transforms: gradients of plain functions of arrays.

``cr.grad(fn)`` turns a function that returns a scalar Tensor into a function that returns
its gradients, in the style of JAX and HIPS autograd, with chainrule's reverse-mode engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tensor import HIGHER_ORDER_MESSAGE, Tensor, _as_array, enable_grad

__all__ = ["grad", "value_and_grad"]


class _Depth(threading.local):
    n = 0


_depth = _Depth()  # how many cr.grad calls are evaluating their function (this thread)


def _argnums(argnums: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    if argnums is None:
        return tuple(range(n))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for k in nums:
        if not -n <= k < n:
            raise ValueError(f"argnums {argnums!r} is out of range for a call with {n} arguments")
    return tuple(k % n for k in nums)


def value_and_grad(
    fn: Callable[..., Any], argnums: int | Sequence[int] | None = None
) -> Callable[..., tuple[float, Any]]:
    """Like :func:`grad`, but the returned function gives ``(value, gradients)``."""

    def wrapped(*args: Any) -> tuple[float, Any]:
        nums = _argnums(argnums, len(args))
        if _depth.n and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            # called inside another cr.grad with its differentiated inputs: cr.grad(cr.grad(f))
            raise NotImplementedError(HIGHER_ORDER_MESSAGE)
        inputs: list[Any] = list(args)
        for k in nums:
            arr = _as_array(args[k])
            if arr.dtype.kind != "f":
                raise TypeError(
                    f"grad: argument {k} must be floating point to be differentiated, "
                    f"got dtype {arr.dtype}"
                )
            inputs[k] = Tensor(np.array(arr, copy=True), requires_grad=True)
        _depth.n += 1
        try:
            with enable_grad():
                out = fn(*inputs)
        finally:
            _depth.n -= 1
        if not isinstance(out, Tensor):
            raise TypeError(f"grad: the function must return a Tensor, got {type(out).__name__}")
        if out.size != 1:
            raise ValueError(
                f"grad: the function must return a scalar (one element), got shape {out.shape}"
            )
        grads: list[np.ndarray] = []
        if out.requires_grad:
            out.backward()
        for k in nums:
            g = inputs[k].grad
            grads.append(np.zeros_like(inputs[k].data) if g is None else g)
        result: Any = grads[0] if isinstance(argnums, int) or len(nums) == 1 else tuple(grads)
        return out.item(), result

    return wrapped


def grad(fn: Callable[..., Any], argnums: int | Sequence[int] | None = None) -> Callable[..., Any]:
    """Return a function that computes the gradient of the scalar ``fn`` w.r.t. its arguments.

    Parameters
    ----------
    fn : callable
        Takes Tensors (built from the call's arrays) and returns a one-element Tensor.
    argnums : int, sequence of int or None, default None
        Which arguments to differentiate; None means all of them.

    Returns
    -------
    callable
        Called with arrays, returns one ndarray per differentiated argument: a single array if
        ``argnums`` is an int or the function has one argument, else a tuple.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.grad(lambda x: (x * x).sum())(np.array([1.0, 2.0]))
    array([2., 4.])
    """

    vg = value_and_grad(fn, argnums)

    def wrapped(*args: Any) -> Any:
        return vg(*args)[1]

    return wrapped
