"""Draw the computation graph behind a tensor as Graphviz DOT (SVG/PNG when ``dot`` exists)."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from ..tensor import Tensor, _toposort

__all__ = ["draw_graph"]


def _label(t: Tensor, names: dict[int, str]) -> str:
    head = names.get(id(t)) or (
        t.op if t.op is not None else ("parameter" if t.requires_grad else "constant")
    )
    text = f"{head}\\n{tuple(t.shape)} {t.dtype}"
    if t.grad is not None:
        norm = float(np.linalg.norm(np.asarray(t.grad, dtype=np.float64)))
        text += f"\\n‖grad‖ = {norm:.3g}"
    return text


def draw_graph(
    root: Tensor,
    path: str | os.PathLike[str] | None = None,
    backward: bool = False,
    names: dict[str, Tensor] | None = None,
) -> str:
    """Return Graphviz DOT source for the graph that computed ``root``.

    One node per tensor: the operation that made it (or "parameter" / "constant" for leaves)
    with its shape and dtype, and — once gradients exist — the norm of its gradient. Edges point
    from inputs to outputs, the direction of the forward pass (backward runs them in reverse).

    Parameters
    ----------
    root : Tensor
        Usually the loss. Its graph must still be recorded (draw before ``backward()``, or
        pass ``backward=True``).
    path : str, optional
        Also write the picture: ``.dot`` always; ``.svg`` / ``.png`` when Graphviz's ``dot``
        program is installed (otherwise a ``RuntimeError`` says so; the DOT text is returned).
    backward : bool
        Run ``root.backward()`` first (keeping every intermediate gradient), so that the
        drawing shows each tensor's gradient norm.
    names : dict, optional
        Labels for tensors, e.g. ``dict(model.named_parameters())``.

    Returns
    -------
    str
        The DOT source.
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph needs a Tensor, got {type(root).__name__}")
    if not root.requires_grad:
        raise ValueError("this tensor has no recorded graph (nothing in it requires grad)")
    try:
        nodes = _toposort([root])
    except RuntimeError:
        raise ValueError(
            "the graph was released by backward(); draw it before calling backward(), or call "
            "backward(retain_graph=True), or pass backward=True here"
        ) from None
    if backward:
        for n in nodes:
            if n.op is not None:
                n.retain_grad()
        root.backward(retain_graph=True)
    label_of = {id(t): n for n, t in (names or {}).items()}
    have_grads = any(n.grad is not None for n in nodes)
    lines = [
        "digraph chainrule {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    ids = {id(n): f"t{k}" for k, n in enumerate(nodes)}
    consts = 0
    for n in nodes:
        style = ', style=filled, fillcolor="#e8f0fe"' if n.op is None else ""
        lines.append(f'  {ids[id(n)]} [label="{_label(n, label_of)}"{style}];')
        for inp in n.inputs:
            if isinstance(inp, Tensor) and id(inp) in ids:
                lines.append(f"  {ids[id(inp)]} -> {ids[id(n)]};")
            elif isinstance(inp, (Tensor, np.ndarray)) or np.isscalar(inp):
                consts += 1
                shape = tuple(np.shape(inp.data if isinstance(inp, Tensor) else inp))
                lines.append(
                    f'  c{consts} [label="constant\\n{shape}", shape=ellipse, fontsize=8];'
                )
                lines.append(f"  c{consts} -> {ids[id(n)]};")
    if not have_grads:
        lines.append(
            '  note [shape=note, label="gradients not computed yet:\\ncall backward() (or draw_graph(..., backward=True))"];'
        )
    lines.append("}")
    dot = "\n".join(lines) + "\n"
    if path is not None:
        p = os.fspath(path)
        ext = os.path.splitext(p)[1].lower().lstrip(".")
        if ext in ("", "dot", "gv"):
            with open(p, "w", encoding="utf-8") as fh:
                fh.write(dot)
        else:
            exe = shutil.which("dot")
            if exe is None:
                raise RuntimeError(
                    f"writing .{ext} needs Graphviz's 'dot' program (apt-get install graphviz); "
                    "the DOT source was returned and can be saved as .dot"
                )
            subprocess.run([exe, f"-T{ext}", "-o", p], input=dot.encode(), check=True)
    return dot
