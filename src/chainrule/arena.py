"""The parameter arena: parameters and their gradients as views of a few flat buffers.

An optimizer, the fused training step, a finiteness check and a gradient all-reduce all want
the model's parameters as a few long contiguous arrays instead of many small ones: an update
becomes a dozen ufunc calls for the whole model instead of a dozen per parameter, a check one
pass per buffer, an all-reduce one call per step (PyTorch DDP and Horovod reduce flat buckets
for the same reason). The arena owns those arrays; everybody else goes through its API.

Layout: one pair of buffers ``(data, grad)`` per floating dtype, in order of first appearance;
each parameter occupies one contiguous range ``[start, stop)`` of its dtype's pair, in the order
the parameters were given. Its ``.data`` *is* the view ``data[start:stop].reshape(shape)``
(updating the buffer updates the parameter), and ``backward()`` writes its first gradient into
``grad[start:stop]`` and sets ``.grad`` to that view (the engine hook :func:`grad_home`).

Gradients handed out are never written again (PyTorch's contract for ``zero_grad()``): a
gradient view, once it has been a ``.grad``, is *spent*. When a parameter whose view is spent
needs a new gradient (its ``.grad`` was set to None by ``zero_grad()``, by hand, or the fused
training step writes the next one), the arena first swaps in fresh gradient buffers — one
``np.empty`` per dtype — and every parameter gets a new view (:attr:`ParameterArena.grad_version`
increases; whoever keeps views, an optimizer's layout or the fused step, follows it). So an
array a user kept from ``p.grad`` keeps its values after ``zero_grad()`` (``set_to_none=True``,
the default) and the next ``backward()``; with ``zero_grad(set_to_none=False)``, or with no
``zero_grad()`` at all, ``.grad`` stays the same array and the next gradients are added into it
(``+=``), as in PyTorch. A training loop then makes one buffer per dtype per step, not one
array per parameter, and its gradients stay in one flat buffer per dtype.

The arena does not watch the parameters: :meth:`ParameterArena.ensure` compares and rebuilds.
It rebuilds when a parameter's ``.data`` is no longer its view (``model.to(np.float64)``, or a
``.data`` replaced by the user or laid out by another arena) or when the parameter list changed;
values (and gradients already computed) are copied into the new buffers, so a rebuild changes
no number. Only tensors whose class declares the gradient hook (``nn.Parameter``) and whose
dtype is floating are held; others (plain tensors) stay where they are and are not in
:attr:`ParameterArena.params`.

A gradient range holds a meaningful value only while the parameter's ``.grad`` is its view;
a parameter without a gradient this step (frozen with ``requires_grad=False``, or not reached
by the backward pass) has ``.grad is None`` and its range holds no meaningful value (fresh
buffers are not cleared). :meth:`ParameterArena.ready` says when every held parameter has its
gradient in place, so that one pass over :meth:`ParameterArena.grad_buffers` sees every
gradient.

Examples
--------
>>> import numpy as np
>>> import chainrule as cr
>>> model = cr.nn.mlp([3, 4, 2], rng=0)
>>> arena = cr.optim.ParameterArena(model.parameters())
>>> arena.ensure()  # lays the parameters out (True: it (re)built the buffers)
True
>>> [(d.dtype.name, d.size) for d, g in arena.buffers]  # one (data, grad) pair per dtype
[('float32', 26)]
>>> arena.view(model[0].weight).base is arena.buffers[0][0]
True
>>> _ = model.to(np.float64)
>>> arena.ensure(), arena.buffers[0][0].dtype.name
(True, 'float64')
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the arena needs only .data and .grad; tensor.py imports this module
    from .tensor import Tensor

__all__ = ["ParameterArena", "grad_home"]


def grad_home(t: Any) -> np.ndarray | None:
    """Engine hook: the array that becomes ``t``'s new gradient (``t.grad`` is None), or None.

    ``t``'s view of its arena's gradient buffer (see :class:`ParameterArena`) if it still
    matches ``t.data`` in shape and dtype, never one handed out before: the caller makes it
    ``t.grad`` (the view is spent from then on). None otherwise (then ``backward()`` allocates
    a new array, as for any tensor).
    """
    home: tuple[weakref.ref[ParameterArena], int] | None = getattr(t, "_grad_buf", None)
    if home is None:
        return None
    arena = home[0]()
    return None if arena is None else arena._claim(home[1], t)


def _holdable(p: Any) -> bool:
    """True if ``p`` can live in an arena: a floating tensor whose class has the hook slot."""
    return hasattr(type(p), "_grad_buf") and p.data.dtype.kind == "f"


class ParameterArena:
    """Flat parameter and gradient buffers, one pair per dtype, with a view per parameter.

    Parameters
    ----------
    params : iterable of Tensor, optional
        The parameters to hold, in layout order (an optimizer passes its groups' parameters,
        group after group, so that each group is one contiguous range per dtype). The buffers
        are built by the first :meth:`ensure`.

    Attributes
    ----------
    version : int
        Increases by one at every rebuild; whoever keeps something aligned with the layout
        (an optimizer's flat moment buffers) compares it to know when to follow.
    grad_version : int
        Increases whenever the gradient buffers are replaced (at every rebuild, and when a
        parameter whose view was handed out needs a new gradient: see the module docstring);
        whoever keeps gradient views (an optimizer's segments, the fused step) compares it.

    Notes
    -----
    An all-reduce of the gradients is one call per buffer::

        arena.ensure()
        if arena.ready():
            for g in arena.grad_buffers():
                comm.Allreduce(MPI.IN_PLACE, g)   # every gradient of this step, in place
    """

    def __init__(self, params: Iterable[Tensor] = ()) -> None:
        self._wanted: list[Any] = list(params)  # the list asked for (held or not)
        self._held: list[Any] = []  # the tensors laid out, in layout order
        self._views: list[np.ndarray] = []  # each held tensor's data view
        self._gviews: list[np.ndarray] = []  # and its gradient view
        self._where: dict[int, int] = {}  # id(tensor) -> position in _held
        self._spans: list[tuple[int, int, int]] = []  # (buffer, start, stop) per held tensor
        self._recipe: list[tuple[int, slice, tuple[int, ...] | None]] = []  # see _rebuild
        self._buffers: list[tuple[np.ndarray, np.ndarray]] = []
        self._spent: list[bool] = []  # per held tensor: its gradient view was handed out
        self._built = False
        # each held tensor's hook: (a weak reference to this arena, its position); weak, so
        # that a model does not keep an optimizer's arena alive (nor make a reference cycle)
        self._ref = weakref.ref(self)
        self.version = 0
        self.grad_version = 0
        # True while no code outside the library can see a gradient between two steps (a
        # Trainer's fit without user callbacks): spent views are then written again, which
        # saves a buffer per step (see private_steps)
        self._reuse = False

    # ----- what it holds -----
    @property
    def params(self) -> list[Tensor]:
        """The tensors laid out in the buffers, in layout order (a new list)."""
        return list(self._held)

    @property
    def buffers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(data, grad)`` per dtype: 1-D contiguous arrays (a new list, the same arrays)."""
        return list(self._buffers)

    @property
    def dtypes(self) -> list[np.dtype[Any]]:
        """The dtype of each buffer pair, in the order of :attr:`buffers`."""
        return [d.dtype for d, _ in self._buffers]

    def data_buffers(self) -> list[np.ndarray]:
        """The flat parameter buffers, one per dtype."""
        return [d for d, _ in self._buffers]

    def grad_buffers(self) -> list[np.ndarray]:
        """The flat gradient buffers, one per dtype (see :meth:`ready` for when they hold
        every gradient)."""
        return [g for _, g in self._buffers]

    def _index(self, p: Any) -> int | None:
        i = self._where.get(id(p))
        if i is None or self._held[i] is not p:
            return None
        return i

    def location(self, p: Any) -> tuple[int, int, int] | None:
        """``(buffer index, start, stop)`` of ``p``'s range, or None if ``p`` is not held."""
        i = self._index(p)
        return None if i is None else self._spans[i]

    def view(self, p: Any) -> np.ndarray | None:
        """``p``'s view of its data buffer, or None if ``p`` is not held or no longer lives
        there (its ``.data`` was replaced since the last rebuild)."""
        i = self._index(p)
        if i is None or p.data is not self._views[i]:
            return None
        return self._views[i]

    def grad_view(self, p: Any) -> np.ndarray | None:
        """``p``'s view of its gradient buffer, or None (as :meth:`view`)."""
        i = self._index(p)
        if i is None or p.data is not self._views[i]:
            return None
        return self._gviews[i]

    def segments(self, params: Iterable[Any]) -> list[tuple[int, int, int, list[Any]]]:
        """Split ``params`` into runs that are contiguous in one buffer.

        Returns ``(buffer index, start, stop, run)`` per maximal run of consecutive held
        parameters whose ranges follow each other in the same buffer; parameters not held
        are left out. For one parameter group of an optimizer there is one run per dtype.
        """
        out: list[tuple[int, int, int, list[Any]]] = []
        for p in params:
            span = self.location(p)
            if span is None:
                continue
            k, a, b = span
            if out and out[-1][0] == k and out[-1][2] == a:
                kk, start, _, run = out[-1]
                run.append(p)
                out[-1] = (kk, start, b, run)
            else:
                out.append((k, a, b, [p]))
        return out

    # ----- keeping it current -----
    def stale(self, params: Iterable[Any] | None = None) -> bool:
        """True if :meth:`ensure` would rebuild (with this parameter list, if given)."""
        if not self._built:
            return True
        if params is not None:
            ps = params if isinstance(params, (list, tuple)) else list(params)
            wanted = self._wanted
            if len(ps) != len(wanted) or any(a is not b for a, b in zip(ps, wanted)):
                return True
        return any(p.data is not v for p, v in zip(self._held, self._views))

    def set_params(self, params: Iterable[Any]) -> None:
        """Hold ``params`` (in this order) from the next :meth:`ensure` on; nothing is moved
        now, and nothing is rebuilt if the list is the one already held."""
        ps = params if isinstance(params, (list, tuple)) else list(params)
        wanted = self._wanted
        if len(ps) == len(wanted):
            for a, b in zip(ps, wanted):  # (a loop: an optimizer calls this at every step)
                if a is not b:
                    break
            else:
                return
        self._wanted = list(ps)  # a copy: the caller's list may change later
        self._built = False

    def ensure(self, params: Iterable[Any] | None = None) -> bool:
        """Make the buffers current; True if they were (re)built.

        Parameters
        ----------
        params : iterable of Tensor, optional
            The parameter list as it is now (an optimizer passes its groups' parameters at
            every step): if it differs from the one held, the arena adopts it and rebuilds
            (as :meth:`set_params` then :meth:`ensure`).

        A rebuild lays every holdable tensor out in new buffers of its current dtype, copies
        its values and its current gradient (if it has one of its shape) into them, points
        ``.data`` and ``.grad`` at the views, and increases :attr:`version`.
        """
        if params is not None:
            self.set_params(params)
        if self._built:
            for p, v in zip(self._held, self._views):
                if p.data is not v:
                    break
            else:
                return False
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        held: list[Any] = []
        seen: set[int] = set()
        for p in self._wanted:
            if id(p) not in seen and _holdable(p):
                seen.add(id(p))
                held.append(p)
        dtypes: list[np.dtype[Any]] = []
        for p in held:
            if p.data.dtype not in dtypes:
                dtypes.append(p.data.dtype)
        totals = [0] * len(dtypes)
        spans: list[tuple[int, int, int]] = []
        for p in held:
            k = dtypes.index(p.data.dtype)
            spans.append((k, totals[k], totals[k] + p.data.size))
            totals[k] += p.data.size
        buffers = [(np.empty(n, dt), np.zeros(n, dt)) for dt, n in zip(dtypes, totals)]
        views, gviews, spent = [], [], []
        for i, (p, (k, a, b)) in enumerate(zip(held, spans)):
            data, grad = buffers[k]
            view = data[a:b].reshape(p.data.shape)
            gview = grad[a:b].reshape(p.data.shape)
            np.copyto(view, p.data)
            p.data = view
            g = p.grad
            if g is not None and g.shape == view.shape:
                np.copyto(gview, g)  # a gradient already computed moves along (cast if need be)
                p.grad = gview
            spent.append(p.grad is gview)
            p._grad_buf = (self._ref, i)
            views.append(view)
            gviews.append(gview)
        # a tensor no longer held stops writing its gradient into this arena's buffers
        kept = {id(p) for p in held}
        for p in self._held:
            home = getattr(p, "_grad_buf", None)
            if id(p) not in kept and home is not None and home[0] is self._ref:
                p._grad_buf = None
        self._held, self._views, self._gviews, self._spans = held, views, gviews, spans
        self._recipe = [  # each view's (buffer, range, shape or None if 1-D), for _renew_grads
            (k, slice(a, b), None if v.ndim == 1 else v.shape) for v, (k, a, b) in zip(views, spans)
        ]
        self._spent = spent
        self._where = {id(p): i for i, p in enumerate(held)}
        self._buffers = buffers
        self._built = True
        self.version += 1
        self.grad_version += 1

    def _renew_grads(self) -> None:
        """Fresh gradient buffers (one ``np.empty`` per dtype) and a new view per tensor.

        The old buffers are left to whoever still holds a view (a user's kept ``.grad``, or a
        tensor whose ``.grad`` is a view not yet released: it keeps accumulating there and is
        no longer :meth:`ready` until its ``.grad`` is released).
        """
        grads = [np.empty(g.size, g.dtype) for _, g in self._buffers]
        # (a 1-D range needs no reshape: a third of the cost of a view, once per step)
        self._gviews = [
            grads[k][sl] if shape is None else grads[k][sl].reshape(shape)
            for k, sl, shape in self._recipe
        ]
        self._spent = [False] * len(self._gviews)
        self._buffers = [(d, g) for (d, _), g in zip(self._buffers, grads)]
        self.grad_version += 1

    def _claim(self, i: int, p: Any) -> np.ndarray | None:
        """Held tensor ``i``'s gradient view, never handed out before, now marked spent (the
        caller makes it ``p.grad``); None if it no longer fits ``p.data`` (shape, dtype)."""
        gv = self._gviews[i]
        if gv.shape != p.data.shape or gv.dtype != p.data.dtype:
            return None
        if self._spent[i] and not self._reuse:
            self._renew_grads()
        self._spent[i] = True
        return self._gviews[i]

    @contextlib.contextmanager
    def private_steps(self) -> Iterator[ParameterArena]:
        """A context for training steps between which no user code runs (a Trainer's ``fit``
        without callbacks of the user's): the gradient views are written again step after
        step instead of renewed. On entry, views handed out before are renewed once (a
        gradient the user kept before stays as it was); the views of the last step are handed
        out as usual, so the first step after the context renews them again.
        """
        if self._built and any(self._spent):
            self._renew_grads()
        self._reuse = True
        try:
            yield self
        finally:
            self._reuse = False
            self._spent = [True] * len(self._spent)

    def claim_grads(self, params: Iterable[Any]) -> list[np.ndarray | None]:
        """Gradient views for a step that writes every one of ``params``' gradients itself
        (the fused MLP step, which then sets each ``p.grad`` to its view); None for a tensor
        not held, or no longer living in its range.

        No view returned was handed out before: if one was, fresh buffers are swapped in
        first (see the module docstring), so no gradient a user kept is overwritten.
        """
        where, held, views = self._where, self._held, self._views
        idx = []
        renew = False
        for p in params:
            i = where.get(id(p), -1)
            if i < 0 or held[i] is not p or p.data is not views[i]:
                i = -1
            elif self._spent[i] and not self._reuse:
                renew = True
            idx.append(i)
        if renew:
            self._renew_grads()
        spent, gviews = self._spent, self._gviews
        out: list[np.ndarray | None] = []
        for i in idx:
            if i < 0:
                out.append(None)
            else:
                spent[i] = True
                out.append(gviews[i])
        return out

    def grad_views(self) -> list[np.ndarray]:
        """Every held tensor's gradient view, in layout order (as :attr:`params`)."""
        return list(self._gviews)

    # ----- gradients -----
    def ready(self) -> bool:
        """True if the buffers are current and every held tensor's ``.grad`` is its view.

        Then :meth:`grad_buffers` hold every gradient of this step (one pass, or one
        all-reduce, per buffer covers them all) and :meth:`data_buffers` every value.
        """
        if not self._built:
            return False
        for p, v, gv in zip(self._held, self._views, self._gviews):
            if p.data is not v or p.grad is not gv:
                return False
        return True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the held tensors' gradients, as ``Optimizer.zero_grad`` and PyTorch.

        ``set_to_none=True`` (the default): every ``.grad`` becomes None; the next
        ``backward()`` gives each tensor a *new* array (in fresh buffers if the views were
        handed out: see the module docstring), so an array kept from ``.grad`` before is never
        changed again. ``False``: every ``.grad`` that is not None is zeroed in place and stays
        the same array (the next ``backward()`` adds into it); one that is None stays None.
        """
        if set_to_none:
            for p in self._held:
                p.grad = None
            return
        if self.ready():  # every gradient is its view: one fill per buffer
            for _, g in self._buffers:
                g.fill(0)
            return
        for p in self._held:  # (a released view may be a user's: only live gradients)
            if p.grad is not None:
                p.grad[...] = 0

    def __getstate__(self) -> dict[str, Any]:
        # a copy (pickle, copy.deepcopy) gets a weak reference to itself, not to the original
        state = self.__dict__.copy()
        del state["_ref"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ref = weakref.ref(self)

    def __repr__(self) -> str:
        parts = ", ".join(f"{d.dtype.name}[{d.size}]" for d, _ in self._buffers)
        return f"ParameterArena({len(self._held)} tensors: {parts or 'not built'})"
