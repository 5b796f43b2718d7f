"""The Tensor.

A :class:`Tensor` wraps a NumPy array (``.data``). When it is produced by a primitive while
gradients are recorded, it holds the primitive's record (:class:`chainrule._primitive.Primitive`),
its inputs, attributes and what the forward saved: that is the whole graph.
:meth:`Tensor.backward` runs the backward pass of :mod:`chainrule._backward`.

This module is the engine's public face: it also re-exports the names that live in the modules
it was split into — graph recording on and off (:mod:`chainrule._grad_mode`), in-place version
counters (:mod:`chainrule._versions`) and the backward pass (:mod:`chainrule._backward`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._grad_mode import _F as _F
from ._grad_mode import _grad_mode as _grad_mode
from ._grad_mode import _GradMode as _GradMode
from ._grad_mode import _GradModeSwitch as _GradModeSwitch
from ._grad_mode import enable_grad as enable_grad
from ._grad_mode import is_grad_enabled as is_grad_enabled
from ._grad_mode import no_grad as no_grad
from ._grad_mode import set_grad_enabled as set_grad_enabled
from ._versions import _EPOCH as _EPOCH
from ._versions import _mark_modified as _mark_modified
from ._versions import mark_modified as mark_modified
from .arena import grad_home as grad_home

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
        ``data``), or None. When it is None (``zero_grad()``), the next ``backward()`` makes a
        new array, so an array kept from ``.grad`` before is never changed again; otherwise
        ``backward()`` adds into the same array (``+=``), as in PyTorch.
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


# ----- the backward pass (chainrule._backward imports Tensor: imported after the class) -----
from ._backward import Released as Released  # noqa: E402
from ._backward import ReleasedNode as ReleasedNode  # noqa: E402
from ._backward import _accumulate as _accumulate  # noqa: E402
from ._backward import _check_inplace as _check_inplace  # noqa: E402
from ._backward import _gather_outputs as _gather_outputs  # noqa: E402
from ._backward import _propagate as _propagate  # noqa: E402
from ._backward import _release as _release  # noqa: E402
from ._backward import _release_group as _release_group  # noqa: E402
from ._backward import _toposort as _toposort  # noqa: E402
from ._backward import run_backward as run_backward  # noqa: E402
from ._backward import unbroadcast as unbroadcast  # noqa: E402
