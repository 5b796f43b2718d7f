"""In-place operators ``+= -= *= /= **=`` and item assignment ``t[index] = v`` (PyTorch's rules).

- Under ``cr.no_grad()``, or when nothing involved requires grad, the tensor's array is changed
  in place (``p -= lr * p.grad`` updates the parameter itself, and every view of its memory).
- A leaf that requires grad cannot be changed in place while the graph is recorded: that raises
  PyTorch's error (the change would be invisible to the gradient).
- A tensor in the graph (not a leaf), or one combined with a tensor that requires grad, gets the
  operation *recorded*: ``y += v`` makes the object ``y`` stand for ``y + v`` in the graph, with
  the previous value kept for the gradient (the new value is a new array: views of the old one
  do not see the change).
- Every change bumps the tensor's version counter (``t._version``). ``backward()`` raises
  ``... was modified by an in-place operation after it was used`` when a rule would read a
  value changed after it was used (see ``tensor._check_inplace``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import ops
from .tensor import _EPOCH, Tensor, _grad_mode, _mark_modified

LEAF_MESSAGE = (
    "a leaf Variable that requires grad is being used in an in-place operation: {what} on a "
    "tensor with requires_grad=True (a parameter) would not be seen by its gradient. Do the "
    "update under `with cr.no_grad():` (as an optimizer step), or write `t = t {sym} v` to "
    "build a new tensor"
)


def _records(t: Tensor, other: Any) -> bool:
    """Whether an in-place change of ``t`` by ``other`` must go into the graph."""
    if not _grad_mode.enabled:
        return False
    if t.requires_grad:  # a leaf that requires grad is refused by the caller
        return True
    return isinstance(other, Tensor) and other.requires_grad


def _rebind(t: Tensor, result: Tensor) -> Tensor:
    """Make the object ``t`` the node ``result`` (its old identity moves to a new object)."""
    if result.dtype != t.dtype:
        if t.dtype.kind != "f":
            raise TypeError(
                f"in-place operation: result type {result.dtype} can't be cast to the tensor's "
                f"dtype {t.dtype}"
            )
        result = ops.astype(result, t.dtype)
    if result.shape != t.shape:
        raise ValueError(
            f"in-place operation: the result has shape {result.shape}, but the tensor has shape "
            f"{t.shape} (an in-place change cannot broadcast the tensor itself)"
        )
    _EPOCH[0] += 1
    t.data = result.data
    t._op = result._op
    t._inputs = result._inputs
    t._attrs = result._attrs
    t._saved = result._saved
    t._group = result._group
    t.requires_grad = True
    t._vers = t._version + 1
    t._mod = t._epoch = _EPOCH[0]
    return t


def _old_identity(t: Tensor) -> Tensor:
    """A new object that stands for ``t`` as it is now (the node of the recorded change)."""
    if t._op is None:
        return Tensor._const(t.data)
    old = Tensor._make(t.data, t._op, t._inputs or (), t._attrs, t._saved)
    group = t._group
    if group is not None:  # an output of a multi-output node: the old object takes its place
        old._group = group
        group.refs = [weakref.ref(old) if r() is t else r for r in group.refs]
    old._epoch = t._epoch
    old._mod = getattr(t, "_mod", 0)
    old._vers = t._version
    return old


def _inplace(name: str, sym: str, fn: Callable[..., Tensor], ufunc: Any) -> Callable[..., Any]:
    def method(self: Tensor, other: Any) -> Tensor:
        if _records(self, other):
            if self.requires_grad and self._op is None:
                raise RuntimeError(LEAF_MESSAGE.format(what=f"`{sym}=`", sym=sym))
            return _rebind(self, fn(_old_identity(self), other))
        value = other.data if isinstance(other, Tensor) else ops._coerce(other, self)
        try:
            ufunc(self.data, value, out=self.data)
        except TypeError:  # NumPy's casting error: e.g. an integer tensor /= 2
            raise TypeError(
                f"`{sym}=`: the result of {self.dtype} {sym} {np.result_type(value)} can't be "
                f"stored in place in a tensor of dtype {self.dtype}"
            ) from None
        except ValueError as exc:
            raise ValueError(
                f"`{sym}=`: cannot update a tensor of shape {self.shape} in place with an "
                f"operand of shape {np.shape(value)}: {exc}"
            ) from None
        _mark_modified((self,))
        return self

    method.__name__ = name
    method.__doc__ = f"``t {sym}= v`` in place (see :mod:`chainrule._inplace` for the rules)."
    return method


def _setitem(self: Tensor, index: Any, value: Any) -> None:
    """``t[index] = value`` in place (recorded in the graph when needed, as PyTorch)."""
    if _records(self, value):
        if self.requires_grad and self._op is None:
            raise RuntimeError(LEAF_MESSAGE.format(what="item assignment `t[i] = v`", sym="+"))
        _rebind(self, ops.setitem(_old_identity(self), index, value))
        return
    v = value.data if isinstance(value, Tensor) else value
    try:
        self.data[ops._norm_index(index)] = v
    except (IndexError, ValueError, TypeError) as exc:
        raise type(exc)(
            f"t[{index!r}] = value: cannot assign a value of shape {np.shape(v)} into a tensor of "
            f"shape {self.shape}: {exc}"
        ) from None
    _mark_modified((self,))


Tensor.__iadd__ = _inplace("__iadd__", "+", ops.add, np.add)
Tensor.__isub__ = _inplace("__isub__", "-", ops.sub, np.subtract)
Tensor.__imul__ = _inplace("__imul__", "*", ops.mul, np.multiply)
Tensor.__itruediv__ = _inplace("__itruediv__", "/", ops.div, np.true_divide)
Tensor.__ipow__ = _inplace("__ipow__", "**", ops.pow, np.power)
Tensor.__setitem__ = _setitem
