"""The backward pass: topological sort, the reverse sweep and the in-place check.

:meth:`chainrule.tensor.Tensor.backward` validates its seed and calls :func:`run_backward`, which
sorts the graph topologically (iteratively, so a chain of any length works), walks it in
reverse and calls, for each node, the rules of the inputs that require a gradient — the chain
rule, one product per edge — accumulating (``+=``) into the ``.grad`` of the leaves. After the
sweep the graph's values are released (:class:`ReleasedNode`, :class:`Released`) unless
``retain_graph=True``. The names are re-exported by :mod:`chainrule.tensor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._versions import _EPOCH
from .arena import grad_home
from .tensor import Tensor

__all__ = ["Released", "ReleasedNode", "run_backward", "unbroadcast"]


def _check_inplace(node: Tensor, prim: Any, inputs: tuple[Any, ...]) -> None:
    """Raise if a value that ``prim``'s rules read was changed in place after ``node`` was made.

    What the rules read is declared by the record: ``reads_out``, ``reads_inputs`` and
    ``needed_by`` (see :mod:`chainrule._primitive`).
    """
    e = node._epoch
    op = prim.name
    if prim.reads_out:
        group = node._group
        outs = [node] if group is None else [r() for r in group.refs]
        for t in outs:
            if t is not None and getattr(t, "_mod", 0) > e:
                raise RuntimeError(
                    f"backward(): the output of '{op}' (shape {t.shape}), which its gradient "
                    f"needs, was modified by an in-place operation after it was used (it is at "
                    f"version {t._version}). Change a copy instead (y = y + v, not y += v), or "
                    "change it after backward()"
                )
    needed_by = prim.needed_by
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or getattr(x, "_mod", 0) <= e:
            continue
        # x itself became a new node (`x += v` recorded): this node's input is gone, whatever
        # the rule reads; otherwise only a changed value that the rule reads matters
        rebound = x._op is not None and x._epoch > e
        if not rebound and (
            not prim.reads_inputs
            or (
                needed_by is not None
                and not any(
                    isinstance(inputs[j], Tensor) and inputs[j].requires_grad for j in needed_by[i]
                )
            )
        ):
            continue
        raise RuntimeError(
            f"backward(): input {i} of '{op}' (a tensor of shape {x.shape}) was modified by an "
            f"in-place operation after it was used (it is at version {x._version}): the "
            "gradient would be computed from the new value. Change a copy instead "
            "(x = x + v, not x += v), or change it after backward()"
        )


def unbroadcast(g: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Reduce a gradient to ``shape`` by summing over the axes that broadcasting added.

    This is the one place where broadcasting is undone: if ``y = x + b`` broadcast ``b`` from
    shape ``(n,)`` to ``(m, n)``, then ``∂C/∂b = Σ_rows ∂C/∂y``. A gradient that is smaller
    than ``shape`` but broadcastable to it (a rule may return a scalar) is expanded.
    """
    g = np.asarray(g)
    if g.shape == shape:
        return g
    nd = len(shape)
    if g.ndim > nd:
        g = g.sum(axis=tuple(range(g.ndim - nd)))
    if g.ndim == nd:
        axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:
        g = np.broadcast_to(g, shape)
    return g


def _toposort(roots: Sequence[Tensor], members: list[Tensor] | None = None) -> list[Tensor]:
    """Nodes reachable from ``roots`` (that require grad), inputs before outputs.

    Iterative depth-first search with an explicit stack: no recursion limit. The outputs of a
    multi-output primitive are one vertex (the first one met stands for all of them); every
    output met is appended to ``members`` if given (backward keeps them alive until their
    node gathers their gradients).
    """
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        key = id(node)
        if key in seen:
            continue
        inputs = node._inputs
        if node._op is not None:
            if inputs is None or type(inputs) is Released:
                raise RuntimeError(
                    f"trying to backward through the graph a second time (op '{node.op}'): "
                    "its intermediate values were released after the first backward(). Pass "
                    "retain_graph=True to the first backward() if you need to go through it "
                    "again."
                )
            if node._group is not None:
                if members is not None:
                    members.append(node)
                key = id(node._group)
                if key in seen:
                    continue
        seen.add(key)
        stack.append((node, True))
        if inputs:
            for inp in inputs:
                if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in seen:
                    stack.append((inp, False))
    return order


def run_backward(
    roots: Sequence[Tensor], seeds: Sequence[np.ndarray], retain_graph: bool = False
) -> None:
    """Reverse-mode sweep from ``roots`` with seed gradients ``seeds``.

    For every node in reverse topological order the rules of its primitive turn the gradient
    of the output into gradients of the inputs (∂C/∂input = ∂C/∂out · ∂out/∂input) — only for
    the inputs that require a gradient; gradients arriving along several paths are summed.
    """
    members: list[Tensor] = []  # outputs of multi-output nodes: alive until gathered
    order = _toposort(roots, members)
    kept: dict[int, ReleasedNode] = {}  # the structure that outlives the released values
    grads: dict[int, Any] = {}
    for r, s in zip(roots, seeds):
        k = id(r)
        grads[k] = grads[k] + s if k in grads else s
    for node in reversed(order):
        prim = node._op
        if prim is None:
            g = grads.pop(id(node), None)
            if g is not None:
                _accumulate(node, g)
            continue
        inputs = node._inputs
        assert inputs is not None  # checked in _toposort
        group = node._group
        if group is None:
            g = grads.pop(id(node), None)
            if g is not None and node._retain:
                _accumulate(node, g)
            out, saved = node.data, node._saved
        else:
            g, out, saved = _gather_outputs(group, grads)
        if node._epoch != _EPOCH[0]:
            _check_inplace(node, prim, inputs)
        if g is not None:
            _propagate(prim, g, out, saved, inputs, node._attrs, grads)
        if not retain_graph:
            if group is None:
                node._inputs = _release(node, inputs, kept)
                node._attrs = node._saved = None
            else:
                _release_group(node, group, inputs, kept)


def _propagate(
    prim: Any,
    g: Any,
    out: Any,
    saved: Any,
    inputs: tuple[Any, ...],
    attrs: dict[str, Any] | None,
    grads: dict[int, Any],
) -> None:
    """Call the rule of every input of ``prim`` that requires grad; sum into ``grads``."""
    in_data = [x.data if isinstance(x, Tensor) else x for x in inputs]
    vjps = prim.vjps
    argnum = prim.vjp_argnum
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            continue
        if argnum is None:
            rule = vjps[i] if i < len(vjps) else None
            if rule is None:
                raise NotImplementedError(
                    f"'{prim.name}' is not differentiable with respect to argument {i} (its "
                    f"record has no rule for it: vjps[{i}] is None or missing), but that "
                    "argument requires grad; detach it, or give the primitive a rule for it"
                )
            gi = rule(g, out, saved, *in_data, **attrs) if attrs else rule(g, out, saved, *in_data)
        elif attrs:
            gi = argnum(i, g, out, saved, *in_data, **attrs)
        else:
            gi = argnum(i, g, out, saved, *in_data)
        if gi is None:
            raise NotImplementedError(
                f"'{prim.name}' is not differentiable with respect to argument {i} (its rule "
                "returned None), but that argument requires grad; detach it"
            )
        xd = x.data
        if getattr(gi, "shape", None) != xd.shape:
            gi = unbroadcast(gi, xd.shape)
        if gi.dtype != xd.dtype:
            gi = gi.astype(xd.dtype)
        k = id(x)
        prev = grads.get(k)
        grads[k] = gi if prev is None else prev + gi


def _gather_outputs(group: Any, grads: dict[int, Any]) -> tuple[Any, Any, Any]:
    """The gradients of every output of a multi-output node (None where none arrived)."""
    gs = []
    for ref in group.refs:
        t = ref()
        gk = None if t is None else grads.pop(id(t), None)
        if gk is not None and t._retain:
            _accumulate(t, gk)
        gs.append(gk)
    if all(gk is None for gk in gs):
        return None, group.outs, group.saved
    return tuple(gs), group.outs, group.saved


def _release_group(node: Tensor, group: Any, inputs: tuple[Any, ...], kept: Any) -> None:
    for ref in group.refs:
        t = ref()
        if t is not None:
            t._inputs = _release(t, inputs, kept)
            t._attrs = None
    group.outs = group.saved = None


class ReleasedNode:
    """An intermediate tensor as ``backward()`` keeps it after releasing the graph's values.

    Like PyTorch's ``grad_fn`` after its saved tensors are freed: the operation, the shape and
    dtype of its result, and its inputs — more ``ReleasedNode`` objects, the leaf tensors that
    require grad (parameters), or for a constant input (data, targets, a number) its shape as
    a tuple — the structure that :func:`chainrule.draw_graph` draws, but no arrays.
    """

    __slots__ = ("dtype", "inputs", "op", "shape")

    def __init__(self, op: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.op, self.shape, self.dtype = op, shape, dtype
        self.inputs: tuple[Any, ...] = ()


class Released(tuple):  # type: ignore[type-arg]
    """The inputs of a tensor whose graph ``backward()`` released (see :class:`ReleasedNode`)."""

    __slots__ = ()


def _release(node: Tensor, inputs: tuple[Any, ...], kept: dict[int, ReleasedNode]) -> Released:
    """Replace ``node``'s inputs by their structure, dropping every reference to their values."""
    out: list[Any] = []
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            if x._op is None:
                out.append(x)  # a leaf that requires grad (a parameter) stays itself
                continue
            stub = kept.get(id(x))  # x is in the sorted graph, alive until the sweep ends
            if stub is None:
                stub = kept[id(x)] = ReleasedNode(x._op.name, x.data.shape, x.data.dtype)
            out.append(stub)
        else:  # a constant (data, targets, a number): only its shape is kept
            arr = x.data if isinstance(x, Tensor) else x
            out.append(arr.shape if isinstance(arr, np.ndarray) else ())
    released = Released(out)
    own = kept.get(id(node))
    if own is not None:
        own.inputs = released
    return released


def _accumulate(leaf: Tensor, g: np.ndarray) -> None:
    if leaf.grad is None:
        # the engine hook: the leaf's view of a parameter arena's gradient buffer, one never
        # handed out before (a .grad a user kept is not written again), or None
        buf = grad_home(leaf)
        if buf is not None:
            np.copyto(buf, g)  # into the arena's flat gradient buffer
            leaf.grad = buf
        else:
            # own the memory: g may be a view of another gradient or a broadcast
            leaf.grad = np.array(g, dtype=leaf.data.dtype, copy=True)
    else:
        leaf.grad += g
