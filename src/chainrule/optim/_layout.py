"""How an optimizer's parameters lie in its arena: segments (runs of parameters contiguous in
one flat buffer, updated by one ``_update`` call over their joint range, with the state
(moments) in flat arrays aligned with them) and the loose rest (updated one by one).

Used by :class:`~chainrule.optim.optimizers.Optimizer` (``_sync`` builds a :class:`_Layout`
whenever the arena is rebuilt); the arithmetic stays in each optimizer's ``_update``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..tensor import Tensor
    from .optimizers import Optimizer

__all__: list[str] = []


class _Segment:
    """One parameter group's parameters of one dtype: the contiguous range ``[a, b)`` of one
    arena buffer, with the optimizer's state for it in flat arrays of the same length."""

    def __init__(
        self, opt: Optimizer, group: dict[str, Any], k: int, a: int, b: int, params: list[Tensor]
    ) -> None:
        arena = opt.arena
        data, grad = arena.buffers[k]
        self.group, self.params = group, params
        self.k, self.a, self.b = k, a, b
        self.P, self.G = data[a:b], grad[a:b]
        dtype = data.dtype
        self.T1, self.T2 = np.empty(b - a, dtype), np.empty(b - a, dtype)
        fills = opt._state_fill(group)
        self.S = {name: np.full(b - a, fill, dtype) for name, fill in fills.items()}
        self.spans: list[tuple[int, int]] = []  # each parameter's range within the segment
        self.gviews: list[np.ndarray] = []
        where = {id(q): i for i, q in enumerate(arena.params)}
        positions = [where[id(p)] for p in params]  # in the arena's layout order
        self.positions = positions
        # (a segment's parameters follow each other in the arena: its views are one slice)
        consecutive = positions == list(range(positions[0], positions[0] + len(positions)))
        self.run = slice(positions[0], positions[0] + len(positions)) if consecutive else None
        for p in params:
            span = arena.location(p)
            gview = arena.grad_view(p)
            assert span is not None and gview is not None  # the arena was just made current
            pa, pb = span[1] - a, span[2] - a
            self.spans.append((pa, pb))
            self.gviews.append(gview)
            st = opt.state.get(id(p))
            if st is None:
                continue
            for name in fills:  # existing state moves in, converted to the buffers' dtype
                sview = self.S[name][pa:pb].reshape(p.data.shape)
                old = st.get(name)
                if isinstance(old, np.ndarray):
                    if old.shape != sview.shape:
                        raise ValueError(
                            f"optimizer state '{name}' has shape {old.shape}, its parameter "
                            f"now has shape {sview.shape}"
                        )
                    np.copyto(sview, old, casting="unsafe")
                st[name] = sview

    def follow_grads(self, grads: list[np.ndarray], views: list[np.ndarray]) -> None:
        """Point at the arena's current gradient buffers ``grads`` and views ``views`` (in
        layout order): it swaps in fresh ones rather than overwrite gradients it handed out
        (see :mod:`chainrule.arena`)."""
        self.G = grads[self.k][self.a : self.b]
        run = self.run
        self.gviews = views[run] if run is not None else [views[i] for i in self.positions]

    def _new_state(self, opt: Optimizer, p: Tensor, pa: int, pb: int) -> dict[str, Any]:
        """A parameter's state before its first update: views into the flat state buffers."""
        st: dict[str, Any] = {"step": 0}
        for name, arr in self.S.items():
            st[name] = arr[pa:pb].reshape(p.data.shape)
        opt.state[id(p)] = st
        return st

    def step(self, opt: Optimizer) -> None:
        """Update every parameter of the segment that has a gradient.

        Consecutive parameters whose gradient is in the arena and whose step counts agree are
        updated together, with one ``_update`` over their joint range (usually: the whole
        segment at once); a parameter with a gradient elsewhere is updated on its own.
        """
        group, state = self.group, opt.state
        run_a = run_b = -1  # the pending run [run_a, run_b) of flat updates, at step run_t
        run_t = 0
        for p, gview, (pa, pb) in zip(self.params, self.gviews, self.spans):
            g = p.grad
            if g is None:  # frozen or not reached: no step, no decay, no momentum
                continue
            st = state.get(id(p))
            if st is None:
                st = self._new_state(opt, p, pa, pb)
            t = st["step"] = st["step"] + 1
            if g is gview:
                if pa == run_b and t == run_t:
                    run_b = pb  # the next parameter of the pending run
                else:
                    self._flush(opt, run_a, run_b, run_t)
                    run_a, run_b, run_t = pa, pb, t
                continue
            self._flush(opt, run_a, run_b, run_t)  # a gradient the user put elsewhere:
            run_a = run_b = -1  # this parameter on its own
            arrays = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
            tmp = self.T1[pa:pb].reshape(p.data.shape)
            tmp2 = self.T2[pa:pb].reshape(p.data.shape)
            opt._update(p.data, g, arrays, t, group, tmp, tmp2)
        self._flush(opt, run_a, run_b, run_t)

    def _flush(self, opt: Optimizer, a: int, b: int, t: int) -> None:
        if a < 0:
            return
        # NOTE: measured on 2 cores, splitting this update across threads or into cache-sized
        # blocks was slower than one pass per ufunc over the whole buffer.
        if a == 0 and b == self.P.size:  # the whole segment (the usual case): no slicing
            opt._update(self.P, self.G, self.S, t, self.group, self.T1, self.T2)
            return
        S = {name: arr[a:b] for name, arr in self.S.items()}
        opt._update(self.P[a:b], self.G[a:b], S, t, self.group, self.T1[a:b], self.T2[a:b])


class _Layout:
    """The optimizer's parameters as the arena holds them (segments) and the rest (loose)."""

    def __init__(
        self, version: int, grad_version: int, segments: list[_Segment], loose: list[Any]
    ) -> None:
        self.version, self.segments, self.loose = version, segments, loose
        self.grad_version = grad_version  # the arena's, when the segments' views were taken

    def follow_grads(self, arena: Any) -> None:
        """Take the views of the arena's current gradient buffers (same layout, new arrays)."""
        grads, views = arena.grad_buffers(), arena.grad_views()
        for seg in self.segments:
            seg.follow_grads(grads, views)
        self.grad_version = arena.grad_version

    @classmethod
    def build(cls, opt: Optimizer) -> _Layout:
        arena = opt.arena
        segments: list[_Segment] = []
        loose: list[tuple[dict[str, Any], Tensor]] = []
        for group in opt.param_groups:
            for k, a, b, run in arena.segments(group["params"]):
                segments.append(_Segment(opt, group, k, a, b, run))
            held = {id(p) for _, _, _, run in arena.segments(group["params"]) for p in run}
            loose.extend((group, p) for p in group["params"] if id(p) not in held)
        return cls(arena.version, arena.grad_version, segments, loose)
