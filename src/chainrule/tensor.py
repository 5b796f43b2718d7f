"""The Tensor and the backward pass.

A :class:`Tensor` wraps a NumPy array (``.data``). When it is produced by a primitive while
gradients are recorded, it holds the primitive's record (:class:`chainrule._primitive.Primitive`),
its inputs, attributes and what the forward saved: that is the whole graph.
:meth:`Tensor.backward` sorts the graph topologically (iteratively, so a chain of any length
works), walks it in reverse and calls, for each node, the rules of the inputs that require a
gradient — the chain rule, one product per edge — accumulating (``+=``) into the ``.grad`` of
the leaves.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from .arena import grad_home

__all__ = [
    "Tensor",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
    "set_grad_enabled",
    "tensor",
    "unbroadcast",
]

_FLOAT_KINDS = "f"


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


def _as_array(value: Any, dtype: Any = None) -> np.ndarray:
    """Convert user data to an ndarray following the dtype policy (see :func:`tensor`)."""
    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, (np.generic,)):
        arr = np.asarray(value)
    else:
        if isinstance(value, (str, bytes)):
            raise TypeError(f"tensor() expected numbers, got a {type(value).__name__}: {value!r}")
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"tensor() could not convert {type(value).__name__} to a numeric array: {exc}"
            ) from None
        if dtype is None and arr.dtype.kind in "iuf":
            # Python floats, ints and lists of them become float32 (the library default).
            arr = arr.astype(np.float32)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"tensor() expected a numeric (bool, integer or float) array, got dtype {arr.dtype}"
        )
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Create a leaf tensor.

    Parameters
    ----------
    data : ndarray, list, float or Tensor
        The value. Float arrays keep their dtype (float32 or float64); Python floats, ints and
        lists become float32; integer and bool arrays stay as they are (labels, indices).
    requires_grad : bool, default False
        Record operations on this tensor so that ``backward()`` fills its ``.grad``.
        Only floating-point tensors can require gradients.
    dtype : numpy dtype, optional
        Convert to this dtype.

    Returns
    -------
    Tensor
        A new leaf tensor that owns a copy of ``data``.

    Examples
    --------
    >>> import numpy as np, chainrule as cr
    >>> cr.tensor([1.0, 2.0]).dtype
    dtype('float32')
    >>> cr.tensor(np.zeros(3)).dtype
    dtype('float64')
    """
    arr = np.array(_as_array(data, dtype), copy=True)
    return Tensor(arr, requires_grad=requires_grad)


class Tensor:
    """An n-dimensional array that records how it was computed.

    Create tensors with :func:`chainrule.tensor`. Arithmetic operators follow NumPy's
    broadcasting; comparison operators return plain boolean arrays (they are not
    differentiable).

    Attributes
    ----------
    data : ndarray
        The value.
    grad : ndarray or None
        The accumulated gradient of the last ``backward()`` calls (same shape and dtype as
        ``data``), or None.
    requires_grad : bool
        Whether operations on this tensor are recorded.
    """

    __slots__ = (
        "__weakref__",
        "_attrs",
        "_base",
        "_epoch",
        "_group",
        "_inputs",
        "_mod",
        "_op",
        "_retain",
        "_saved",
        "_vers",
        "data",
        "grad",
        "name",
        "requires_grad",
    )

    # NumPy must hand binary operators with a Tensor to the Tensor (np_array @ x -> __rmatmul__).
    __array_ufunc__ = None
    __array_priority__ = 1000

    data: np.ndarray
    grad: np.ndarray | None
    requires_grad: bool
    _op: Any  # the Primitive record of the node that produced this tensor (None for a leaf)
    _inputs: tuple[Any, ...] | None
    _attrs: dict[str, Any] | None
    _saved: Any  # what the primitive's forward saved for its rules
    _group: Any  # for an output of a multi-output primitive: the shared _primitive._Group
    _retain: bool
    name: str | None
    # in-place bookkeeping (set lazily; read with getattr defaults where they may be unset)
    _epoch: int  # value of _EPOCH when this node was recorded
    _mod: int  # value of _EPOCH at this tensor's last in-place change
    _vers: int  # number of in-place changes (PyTorch's _version)
    _base: Tensor | None  # the tensor a detach() shares its data with

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        arr = data if isinstance(data, np.ndarray) else _as_array(data)
        self.data = arr
        self.grad = None
        self._op = None
        self._inputs = None
        self._attrs = None
        self._retain = False
        self.name = None
        self._vers = self._mod = 0
        self._base = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----- construction helpers used by the primitives (hot path: keep it short) -----
    @classmethod
    def _make(
        cls,
        data: np.ndarray,
        op: Any,
        inputs: tuple[Any, ...],
        attrs: dict[str, Any] | None,
        saved: Any = None,
    ) -> Tensor:
        t = object.__new__(cls)
        t.data = data
        t.grad = None
        t._retain = False
        t.name = None
        t._op = op
        t._inputs = inputs
        t._attrs = attrs
        t._saved = saved
        t._group = None
        t.requires_grad = True
        t._epoch = _EPOCH[0]  # for the in-place check in backward()
        return t

    @classmethod
    def _const(cls, data: np.ndarray) -> Tensor:
        t = object.__new__(cls)
        t.data = data
        t.grad = None
        t._retain = False
        t.name = None
        t._op = None
        t._inputs = None
        t._attrs = None
        t.requires_grad = False
        return t

    # ----- attributes -----
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> _Size:
        """The number of elements (NumPy's ``.size``); callable as PyTorch's ``size()``.

        ``x.size`` is an ``int`` (``x.size == 6``); ``x.size()`` is the shape and ``x.size(d)``
        the length of dimension ``d``, as PyTorch's ``Tensor.size``.
        """
        return _Size(self.data.size, self.data.shape)

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor has seen (PyTorch's ``_version``)."""
        return getattr(self, "_vers", 0)

    @property
    def is_leaf(self) -> bool:
        """True for tensors created by the user (not by a recorded primitive)."""
        return self._op is None

    @property
    def op(self) -> str | None:
        """Name of the primitive that produced this tensor (None for a leaf)."""
        op = self._op
        return None if op is None else op.name  # type: ignore[no-any-return]

    @property
    def primitive(self) -> Any:
        """The :class:`~chainrule._primitive.Primitive` that produced this tensor (None: leaf)."""
        return self._op

    @property
    def inputs(self) -> tuple[Any, ...]:
        """The recorded inputs of the primitive that produced this tensor (empty for a leaf)."""
        return self._inputs or ()

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (only floating-point tensors can require grad)."""
        if flag and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {self.data.dtype}; "
                "convert it first, e.g. cr.tensor(x, dtype=np.float32)"
            )
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor during ``backward()`` (as in PyTorch)."""
        self._retain = True
        return self

    def detach(self) -> Tensor:
        """Return a tensor sharing this one's data, cut from the graph.

        An in-place change of the result changes this tensor too and counts as one of its
        in-place changes (PyTorch shares the version counter the same way).
        """
        t = Tensor._const(self.data)
        t._base = self
        return t

    def numpy(self) -> np.ndarray:
        """Return the value as an ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float | int | bool:
        """Return the value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()  # type: ignore[no-any-return]

    def tolist(self) -> Any:
        return self.data.tolist()

    def astype(self, dtype: Any) -> Tensor:
        """Return a copy converted to ``dtype`` (differentiable between float dtypes)."""
        from . import ops

        return ops.astype(self, dtype)

    def zero_grad(self) -> None:
        self.grad = None

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    def __repr__(self) -> str:
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        if self._op is not None:
            extra += f", op={self.op}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous"
            )
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __format__(self, spec: str) -> str:
        # format(loss, ".4f") formats the number (PyTorch: of a 0-d tensor; here also of a
        # one-element tensor when a spec is given)
        if self.data.ndim == 0 or (spec and self.data.size == 1):
            return format(self.data.item(), spec)
        if spec:
            raise TypeError(
                f"format spec {spec!r} needs a one-element tensor, got shape {self.shape}; "
                "format x.numpy() or x.tolist() instead"
            )
        return str(self)

    def __int__(self) -> int:
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        # Lets np.asarray(t) read the value (the graph is not followed through NumPy calls).
        return self.data if dtype is None else self.data.astype(dtype)

    __hash__ = object.__hash__

    # ----- operators (defined in ops; installed by chainrule/ops/__init__.py) -----
    __add__: Callable[..., Tensor]
    __radd__: Callable[..., Tensor]
    __sub__: Callable[..., Tensor]
    __rsub__: Callable[..., Tensor]
    __mul__: Callable[..., Tensor]
    __rmul__: Callable[..., Tensor]
    __truediv__: Callable[..., Tensor]
    __rtruediv__: Callable[..., Tensor]
    __pow__: Callable[..., Tensor]
    __rpow__: Callable[..., Tensor]
    __matmul__: Callable[..., Tensor]
    __rmatmul__: Callable[..., Tensor]
    __neg__: Callable[..., Tensor]
    __pos__: Callable[..., Tensor]
    __getitem__: Callable[..., Tensor]
    # in place (chainrule._inplace) and PyTorch's names (chainrule._torch_names)
    __setitem__: Callable[..., None]
    __iadd__: Callable[..., Tensor]
    __isub__: Callable[..., Tensor]
    __imul__: Callable[..., Tensor]
    __itruediv__: Callable[..., Tensor]
    __ipow__: Callable[..., Tensor]
    __abs__: Callable[..., Tensor]
    __round__: Callable[..., Tensor]
    swapaxes: Callable[..., Tensor]
    permute: Callable[..., Tensor]
    view: Callable[..., Tensor]
    unsqueeze: Callable[..., Tensor]
    squeeze: Callable[..., Tensor]
    clamp: Callable[..., Tensor]
    pow: Callable[..., Tensor]
    std: Callable[..., Tensor]
    dim: Callable[..., int]
    numel: Callable[..., int]
    sum: Callable[..., Tensor]
    mean: Callable[..., Tensor]
    max: Callable[..., Tensor]
    min: Callable[..., Tensor]
    var: Callable[..., Tensor]
    reshape: Callable[..., Tensor]
    transpose: Callable[..., Tensor]
    exp: Callable[..., Tensor]
    log: Callable[..., Tensor]
    sqrt: Callable[..., Tensor]
    abs: Callable[..., Tensor]
    tanh: Callable[..., Tensor]
    sigmoid: Callable[..., Tensor]
    relu: Callable[..., Tensor]
    clip: Callable[..., Tensor]
    flatten: Callable[..., Tensor]
    argmax: Callable[..., np.ndarray]
    argmin: Callable[..., np.ndarray]
    split: Callable[..., tuple[Tensor, ...]]
    chunk: Callable[..., tuple[Tensor, ...]]

    @property
    def T(self) -> Tensor:  # noqa: N802 - NumPy's name
        """The tensor with its axes reversed (NumPy's ``.T``)."""
        return self.transpose()

    # comparisons give plain boolean arrays: they are not differentiable
    def __lt__(self, other: Any) -> np.ndarray:  # type: ignore[override]
        return self.data < _raw(other)

    def __le__(self, other: Any) -> np.ndarray:
        return self.data <= _raw(other)

    def __gt__(self, other: Any) -> np.ndarray:
        return self.data > _raw(other)

    def __ge__(self, other: Any) -> np.ndarray:
        return self.data >= _raw(other)

    def __eq__(self, other: Any) -> np.ndarray:  # type: ignore[override]
        return self.data == _raw(other)  # type: ignore[no-any-return]

    def __ne__(self, other: Any) -> np.ndarray:  # type: ignore[override]
        return self.data != _raw(other)  # type: ignore[no-any-return]

    # ----- the backward pass -----
    def backward(
        self, grad: Any = None, retain_graph: bool = False, create_graph: bool = False
    ) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires grad.

        The gradients are *accumulated* into each leaf's ``.grad`` (``+=``), as in PyTorch:
        zero them (``opt.zero_grad()``) between steps.

        Parameters
        ----------
        grad : array_like, optional
            The gradient of the final objective with respect to this tensor (the seed of the
            chain rule). Required unless this tensor has one element, in which case it is 1.
        retain_graph : bool, default False
            Keep the graph so that ``backward`` can run through it again. By default the
            graph's references to intermediate values are released.
        create_graph : bool, default False
            Higher-order gradients are not supported yet: True raises NotImplementedError.

        Raises
        ------
        RuntimeError
            If a value that a gradient rule needs was changed in place after it was used
            (``... was modified by an in-place operation after it was used``).
        """
        if create_graph:
            raise NotImplementedError(HIGHER_ORDER_MESSAGE)
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it was computed under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() needs a seed gradient for a non-scalar tensor of shape "
                    f"{self.shape}: call .sum() or .mean() first, or pass grad="
                )
            seed = np.ones(self.shape, dtype=self.dtype)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward() seed gradient has shape {seed.shape}, expected {self.shape}"
                )
            seed = seed.astype(self.dtype, copy=False)
        run_backward([self], [seed], retain_graph=retain_graph)


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


HIGHER_ORDER_MESSAGE = (
    "higher-order gradients (backward(create_graph=True), cr.grad of cr.grad) are not supported "
    "yet: chainrule's backward pass computes gradients as NumPy arrays, not as a graph that can "
    "be differentiated again. For a Hessian-vector product, use central differences of "
    "cr.grad: (grad(f)(x + eps*v) - grad(f)(x - eps*v)) / (2*eps)"
)


class _Size(int):
    """An element count that is also PyTorch's ``size()``: ``x.size == 6``, ``x.size() == (2, 3)``.

    # NOTE: ``x.size`` must stay NumPy's int (the documented API, used in arithmetic); PyTorch's
    # ``x.size()`` / ``x.size(dim)`` are the call of that int.
    """

    _shape: tuple[int, ...]

    def __new__(cls, n: int, shape: tuple[int, ...]) -> _Size:
        self = super().__new__(cls, n)
        self._shape = shape
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (int, (int(self),))  # copies and pickles are plain ints

    def __call__(self, dim: int | None = None) -> Any:
        if dim is None:
            return self._shape
        nd = len(self._shape)
        if not isinstance(dim, (int, np.integer)) or not -nd <= dim < nd:
            raise IndexError(f"size(): dim {dim!r} is out of range for a {nd}-D tensor")
        return self._shape[dim]


# ----- in-place changes: version counters -----
# _EPOCH[0] counts in-place changes anywhere; a node records it when created (``_epoch``), a
# tensor changed in place records it in ``_mod`` and counts its own changes in ``_vers``. In
# backward(), only a node older than the last in-place change is checked (one int comparison
# per node otherwise): its inputs (and output) must not have been changed after it was made.
_EPOCH = [0]


def _mark_modified(tensors: Any) -> None:
    """Record an in-place change of each tensor (and of the tensor a ``detach()`` came from)."""
    _EPOCH[0] += 1
    e = _EPOCH[0]
    for t in tensors:
        while t is not None:
            t._vers = getattr(t, "_vers", 0) + 1
            t._mod = e
            t = getattr(t, "_base", None)


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
                    f"no gradient rule for '{prim.name}' (argument {i}): it is not differentiable"
                )
            gi = rule(g, out, saved, *in_data, **attrs) if attrs else rule(g, out, saved, *in_data)
        elif attrs:
            gi = argnum(i, g, out, saved, *in_data, **attrs)
        else:
            gi = argnum(i, g, out, saved, *in_data)
        if gi is None:
            raise NotImplementedError(
                f"no gradient rule for '{prim.name}' (argument {i}): it is not differentiable"
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
        buf = grad_home(leaf)  # the engine hook: the leaf's view of a parameter arena, or None
        if buf is not None:
            np.copyto(buf, g)  # into the arena's flat gradient buffer
            leaf.grad = buf
        else:
            # own the memory: g may be a view of another gradient or a broadcast
            leaf.grad = np.array(g, dtype=leaf.data.dtype, copy=True)
    else:
        leaf.grad += g


# ----- public names for the floors above the engine ------------------------------
# (issue 17: a private name never crosses a floor; these are the engine's to keep stable)
def as_array(value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as an ndarray under the dtype policy of :func:`tensor` (a Tensor gives its
    data; Python floats and lists become float32; float and integer arrays keep their dtype).
    """
    return _as_array(value, dtype)


def as_tensor(x: Any) -> Tensor:
    """``x`` itself if it is a Tensor, else an unrecorded constant Tensor holding it (dtype
    policy of :func:`tensor`)."""
    return x if isinstance(x, Tensor) else Tensor._const(np.asarray(tensor(x).data))


def mark_modified(tensors: Any) -> None:
    """Record that each of ``tensors`` was changed in place (e.g. by an optimizer step), so
    that a backward pass through a graph that saved its old value fails loudly."""
    _mark_modified(tensors)
