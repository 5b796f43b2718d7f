"""Draw the computation graph behind a tensor: Graphviz DOT, and SVG or PNG pictures.

The graph can be drawn before or after ``backward()``. After it, as in PyTorch, the values of
the intermediate tensors are released but the structure stays: the drawing shows every
operation with its shape, the leaves (parameters) with their values and gradients, and marks
the released intermediate values. SVG is written by chainrule itself when Graphviz's ``dot``
program is not installed (a simple layered layout); PNG and PDF need ``dot``.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from typing import Any

import numpy as np

from ..tensor import Released, ReleasedNode, Tensor, run_backward

__all__ = ["draw_graph"]

ONLINE_VIEWER = "https://dreampuf.github.io/GraphvizOnline"

# What each primitive computes, in a few symbols (shown under the operation's name).
_MEANING = {
    "add": "a + b",
    "sub": "a − b",
    "mul": "a · b (elementwise)",
    "div": "a ÷ b (elementwise)",
    "neg": "−a",
    "pow": "a ** b",
    "matmul": "a @ b",
    "linear": "x @ W + b",
    "exp": "eᵃ",
    "log": "ln a",
    "sqrt": "√a",
    "abs": "|a|",
    "relu": "max(a, 0)",
    "leaky_relu": "a if a > 0 else slope·a",
    "sigmoid": "1 / (1 + e⁻ᵃ)",
    "tanh": "tanh a",
    "softmax": "eᵃ / Σ eᵃ",
    "log_softmax": "a − log Σ eᵃ",
    "softmax_cross_entropy": "−log softmax(logits)[target], per row",
    "sum": "Σ a",
    "mean": "Σ a ÷ n",
    "max": "max a",
    "reshape": "same values, new shape",
    "transpose": "axes swapped",
    "getitem": "a[index]",
    "conv1d": "Σ_c,k W[o,c,k]·x[c, s·t+d·k] + b[o]",
    "conv2d": "Σ_c,i,j W[o,c,i,j]·x[c, s·y+d·i, s·x+d·j] + b[o]",
    "max_pool1d": "max over each window",
    "max_pool2d": "max over each window",
    "avg_pool1d": "mean over each window",
    "avg_pool2d": "mean over each window",
    "adaptive_avg_pool1d": "mean over adaptive bins",
    "adaptive_avg_pool2d": "mean over adaptive bins",
}


class _Node:
    """One box of the drawing, whatever kind of object it came from."""

    def __init__(self, key: int, kind: str, op: str | None, shape: tuple[int, ...], dtype: Any):
        self.key, self.kind, self.op, self.shape, self.dtype = key, kind, op, shape, dtype
        self.value: np.ndarray | None = None
        self.grad: np.ndarray | None = None
        self.name: str | None = None
        self.inputs: list[_Node] = []
        self.children: list[Any] = []


def _summary(a: np.ndarray) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return "(empty)"
    if a.size == 1:
        return f"{a.reshape(-1)[0]:.4g}"
    lo, hi = float(a.min()), float(a.max())
    if lo == hi:
        return f"all {lo:.4g}"
    return f"mean {a.mean():.3g}, range [{lo:.3g}, {hi:.3g}]"


class _Const:
    """One use of a constant (a number, an array, or a released constant's shape)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def _collect(root: Tensor, grads: dict[int, np.ndarray] | None) -> tuple[list[_Node], bool]:
    """The graph as a list of nodes, inputs before outputs (iterative), and whether any part
    of it was released by ``backward()``."""
    nodes: dict[int, _Node] = {}
    order: list[_Node] = []
    released = False
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        obj, expanded = stack.pop()
        key = id(obj)
        if expanded:
            order.append(nodes[key])
            continue
        if key in nodes:
            continue
        children: list[Any] = []
        if isinstance(obj, Tensor):
            kind = "op" if obj.op is not None else ("leaf" if obj.requires_grad else "constant")
            node = _Node(key, kind, obj.op, tuple(obj.shape), obj.dtype)
            node.value = obj.data
            node.grad = grads.get(key) if grads is not None else obj.grad
            node.name = obj.name
            if obj.op is not None:
                children = list(obj._inputs or ())
                released = released or type(obj._inputs) is Released
        elif isinstance(obj, ReleasedNode):
            node = _Node(key, "released", obj.op, tuple(obj.shape), obj.dtype)
            children = list(obj.inputs)
        else:  # _Const: a number or array in a recorded graph, a shape tuple after release
            c = obj.obj
            shape = tuple(c) if isinstance(c, tuple) else tuple(np.shape(c))
            node = _Node(key, "constant", None, shape, getattr(c, "dtype", None))
            if not isinstance(c, tuple):
                node.value = np.asarray(c)
        # each use of a constant gets its own box; tensors and operations are shared
        children = [c if isinstance(c, (Tensor, ReleasedNode)) else _Const(c) for c in children]
        node.children = children
        nodes[key] = node
        stack.append((obj, True))
        for child in reversed(children):
            stack.append((child, False))
    for node in order:
        node.inputs = [nodes[id(c)] for c in node.children if id(c) in nodes]
        node.children = []
    return order, released


def _explain(node: _Node) -> str:
    """A note for the operations a mean loss adds (× weights, ÷ n), and others' meaning."""
    op = node.op or ""
    consts = [i for i in node.inputs if i.kind == "constant"]
    if op == "div" and consts and consts[-1].shape == ():
        value = consts[-1].value
        n = f"{float(value.reshape(-1)[0]):g}" if value is not None else "n"
        if node.inputs[0].op == "sum":
            return f"÷ {n}: the mean = sum ÷ n"
        return f"÷ {n}"
    if op == "mul" and consts and consts[-1].value is not None:
        c = np.asarray(consts[-1].value)
        if c.size and np.all(c == c.reshape(-1)[0]):
            v = float(c.reshape(-1)[0])
            if v == 1 and c.size > 1:
                return "× per-sample weights (all 1)"
            return f"× {v:g}" + (" (the mean's 1/n)" if 0 < v < 1 else "")
    if op == "mul" and consts and consts[-1].value is None and consts[-1].shape == node.shape:
        return "× a constant (per-sample weights in a loss)"
    return _MEANING.get(op, "")


def _lines(node: _Node) -> list[str]:
    dtype = f" {node.dtype}" if node.dtype is not None else ""
    if node.kind == "leaf":
        head = node.name or "parameter"
    elif node.kind == "constant":
        head = "constant"
    else:
        head = node.op or "?"
    lines = [head]
    if node.kind in ("op", "released"):
        meaning = _explain(node)
        if meaning:
            lines.append(meaning)
    lines.append(f"shape {tuple(node.shape)}{dtype}")
    if node.value is not None:
        lines.append(f"value {_summary(node.value)}")
    elif node.kind == "released":
        lines.append("value released by backward()")
    if node.grad is not None:
        lines.append(f"grad {_summary(node.grad)}")
    return lines


def _gradients(root: Tensor, order: list[_Node], objects: dict[int, Any]) -> dict[int, np.ndarray]:
    """Every node's gradient of ``root``, computed without touching any tensor's ``.grad``."""
    tensors = [objects[n.key] for n in order if isinstance(objects.get(n.key), Tensor)]
    saved = []
    for t in tensors:
        g = t.grad
        saved.append((t, g, None if g is None else g.copy(), t._retain))
        t.grad = None
        if t.op is not None:
            t._retain = True
    try:
        seed = np.ones(root.shape, dtype=root.dtype)
        run_backward([root], [seed], retain_graph=True)
        return {id(t): t.grad.copy() for t in tensors if t.grad is not None}
    finally:
        for t, g, copy, retain in saved:
            if g is not None and copy is not None:
                np.copyto(g, copy)  # the same buffer (it may be the optimizer's), old values
            t.grad = g
            t._retain = retain


def _dot(order: list[_Node], note: str) -> str:
    out = [
        "digraph chainrule {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    ids = {n.key: f"t{k}" for k, n in enumerate(order)}
    for n in order:
        label = "\\n".join(line.replace('"', '\\"') for line in _lines(n))
        if n.kind == "leaf":
            style = ', style=filled, fillcolor="#e8f0fe"'
        elif n.kind == "constant":
            style = ", shape=ellipse, fontsize=8"
        elif n.kind == "released":
            style = ", style=dashed"
        else:
            style = ""
        out.append(f'  {ids[n.key]} [label="{label}"{style}];')
        for i in n.inputs:
            out.append(f"  {ids[i.key]} -> {ids[n.key]};")
    if note:
        out.append(f'  note [shape=note, label="{note}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def _svg(order: list[_Node], note: str) -> str:
    """A layered left-to-right SVG drawing (no Graphviz): column = longest path from a source."""
    depth: dict[int, int] = {}
    for n in order:  # inputs come first
        depth[n.key] = 1 + max((depth[i.key] for i in n.inputs), default=-1)
    # sources (parameters, constants) sit just before their first consumer, not all at the left
    first_use: dict[int, int] = {}
    for n in order:
        for i in n.inputs:
            first_use[i.key] = min(first_use.get(i.key, depth[n.key]), depth[n.key])
    for n in order:
        if not n.inputs and n.key in first_use:
            depth[n.key] = first_use[n.key] - 1
    shift = -min(depth.values())
    columns: dict[int, list[_Node]] = {}
    for n in order:
        columns.setdefault(depth[n.key] + shift, []).append(n)
    char_w, line_h, pad, gap_x, gap_y = 6.6, 14, 8, 60, 18
    boxes: dict[int, tuple[float, float, float, float]] = {}
    x = 20.0
    height = 0.0
    for c in sorted(columns):
        col = columns[c]
        width = max(max(len(s) for s in _lines(n)) for n in col) * char_w + 2 * pad
        y = 20.0
        for n in col:
            h = len(_lines(n)) * line_h + 2 * pad
            boxes[n.key] = (x, y, width, h)
            y += h + gap_y
        height = max(height, y)
        x += width + gap_x
    total_w = x
    parts = []
    for n in order:
        x1, y1, _w1, h1 = boxes[n.key]
        for i in n.inputs:
            x0, y0, w0, h0 = boxes[i.key]
            parts.append(
                f'<line x1="{x0 + w0:.1f}" y1="{y0 + h0 / 2:.1f}" x2="{x1:.1f}" '
                f'y2="{y1 + h1 / 2:.1f}" stroke="#555" marker-end="url(#arrow)"/>'
            )
    fills = {"leaf": "#e8f0fe", "constant": "#f4f4f4", "released": "#ffffff", "op": "#ffffff"}
    for n in order:
        x0, y0, w0, h0 = boxes[n.key]
        dash = ' stroke-dasharray="4 3"' if n.kind == "released" else ""
        rx = 12 if n.kind == "constant" else 3
        parts.append(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w0:.1f}" height="{h0:.1f}" rx="{rx}" '
            f'fill="{fills[n.kind]}" stroke="#333"{dash}/>'
        )
        for k, line in enumerate(_lines(n)):
            weight = ' font-weight="bold"' if k == 0 else ""
            parts.append(
                f'<text x="{x0 + pad:.1f}" y="{y0 + pad + (k + 0.8) * line_h:.1f}"{weight}>'
                f"{html.escape(line)}</text>"
            )
    if note:
        parts.append(
            f'<text x="20" y="{height + 14:.1f}" fill="#9a3412">{html.escape(note)}</text>'
        )
        height += 24
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{height:.0f}" '
        f'font-family="Helvetica, Arial, DejaVu Sans, sans-serif" font-size="11">\n'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def draw_graph(
    root: Tensor,
    path: str | os.PathLike[str] | None = None,
    backward: bool = False,
    names: dict[str, Tensor] | None = None,
    renderer: str = "auto",
) -> str:
    """Return Graphviz DOT source for the graph that computed ``root``; optionally write a picture.

    One box per tensor: the operation that made it (with what it computes — a mean loss shows
    up as ``× weights``, ``sum`` and ``÷ n``), its shape and dtype, a summary of its value
    (``mean, range [min, max]``) and, once gradients exist, of its gradient. Leaves are the
    parameters (or ``names``); constants (data, targets, numbers) are ellipses. Edges point
    from inputs to outputs, the direction of the forward pass (backward runs them in reverse).

    Drawing after ``loss.backward()`` works, as in PyTorch: backward releases the intermediate
    values but keeps the structure, so the drawing shows every operation and shape, the
    parameters' values and gradients, and marks the released values (dashed boxes).

    Parameters
    ----------
    root : Tensor
        Usually the loss.
    path : str, optional
        Also write a picture: ``.dot`` / ``.gv`` (the DOT text); ``.svg`` (with Graphviz's
        ``dot`` when installed, otherwise drawn by chainrule itself); ``.png`` / ``.pdf`` need
        ``dot`` (a ``RuntimeError`` says how to get it, or to use ``.svg``).
    backward : bool
        Compute the gradient of ``root`` with respect to every node, for the drawing only: no
        tensor's ``.grad`` changes (call ``root.backward()`` yourself to keep gradients), so
        calling it twice gives the same picture. Needs the values: a graph already released by
        ``backward()`` raises ``ValueError``.
    names : dict, optional
        Labels for tensors, e.g. ``dict(model.named_parameters())``.
    renderer : {"auto", "graphviz", "builtin"}
        Who draws the SVG: Graphviz when available ("auto"), or chainrule's own layout.

    Returns
    -------
    str
        The DOT source.
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph needs a Tensor, got {type(root).__name__}")
    if not root.requires_grad:
        raise ValueError("this tensor has no recorded graph (nothing in it requires grad)")
    if renderer not in ("auto", "graphviz", "builtin"):
        raise ValueError(f"renderer must be 'auto', 'graphviz' or 'builtin', got {renderer!r}")
    order, released = _collect(root, None)
    grads = None
    if backward:
        if released:
            raise ValueError(
                "backward=True needs the graph's intermediate values, which backward() already "
                "released. Draw without backward=True (the structure and the parameters' "
                "gradients are still shown), or call backward(retain_graph=True) next time"
            )
        objects = _objects(root)
        grads = _gradients(root, order, objects)
        order, _ = _collect(root, grads)
    label_of = {id(t): n for n, t in (names or {}).items()}
    for n in order:
        if n.key in label_of:
            n.name = label_of[n.key]
    if released:
        note = "after backward(): dashed boxes are operations whose values were released"
    elif not any(n.grad is not None for n in order):
        note = "gradients not computed yet: call backward() (or draw_graph(..., backward=True))"
    else:
        note = ""
    dot = _dot(order, note)
    if path is not None:
        _write(os.fspath(path), dot, order, note, renderer)
    return dot


def _objects(root: Tensor) -> dict[int, Any]:
    found: dict[int, Any] = {}
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in found:
            continue
        found[id(obj)] = obj
        if isinstance(obj, Tensor) and obj.op is not None:
            stack.extend(obj._inputs or ())
    return found


def _write(p: str, dot: str, order: list[_Node], note: str, renderer: str) -> None:
    ext = os.path.splitext(p)[1].lower().lstrip(".")
    if ext in ("", "dot", "gv"):
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(dot)
        return
    exe = shutil.which("dot") if renderer != "builtin" else None
    if ext == "svg" and exe is None:
        if renderer == "graphviz":
            raise RuntimeError(
                "renderer='graphviz' needs Graphviz's 'dot' program (apt-get install graphviz, "
                "brew install graphviz or conda install graphviz); renderer='auto' draws the "
                "SVG without it"
            )
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(_svg(order, note))
        return
    if exe is None:
        stem = os.path.splitext(os.path.basename(p))[0]
        raise RuntimeError(
            f"writing .{ext} needs Graphviz's 'dot' program (apt-get install graphviz, brew "
            "install graphviz or conda install graphviz). Without it: draw_graph(..., "
            f"path='{stem}.svg') draws an SVG that any browser opens, or path='{stem}.dot' "
            f"writes the DOT text to paste into {ONLINE_VIEWER}"
        )
    subprocess.run([exe, f"-T{ext}", "-o", p], input=dot.encode(), check=True)
