"""Primitives as records: what a differentiable operation is, in one place.

Every differentiable operation of chainrule is a :class:`Primitive`: a name, a forward function
on NumPy arrays, one backward rule (vector-Jacobian product) per input — as HIPS autograd's
``defvjp`` — and the facts the engine and the test suites need (its kind, whether it saves
values for its rules, how many outputs it has, which values its rules read, test inputs and
its PyTorch counterpart). :func:`apply` runs the forward and, when gradients are recorded,
returns tensors whose node *is* the record: ``backward()`` calls ``prim.vjps[i]`` only for
the inputs ``i`` that require a gradient (the gradient of the input data is never computed).

The contract
------------
``forward(*arrays, **attrs)``
    Inputs are positional arrays (or Python scalars); attributes (axis, shape, slope, ...) are
    keyword arguments. Returns the output array — a tuple of arrays when ``n_outputs != 1`` —
    or, when ``saves=True``, the pair ``(output, saved)``: ``saved`` is anything the rules
    want (JAX's residuals, PyTorch's ``ctx.save_for_backward``). With ``out_capable=True``
    the forward also accepts ``out=`` (an array to write into; NumPy's ufuncs do).
``rule(g, out, saved, *arrays, **attrs) -> gradient``
    ``vjps[i]`` maps ``g = ∂C/∂out`` to ``∂C/∂input_i``. ``out`` is the forward output,
    ``saved`` what the forward saved (``None`` if ``saves=False``), ``arrays`` are the input
    values. For several outputs ``g`` and ``out`` are tuples (``g[k]`` is ``None`` for an
    output that received no gradient). The result may be smaller than the input (the engine
    sums broadcast axes away, in :func:`chainrule.tensor.unbroadcast`) or of another float
    dtype (it is cast to the input's). ``None`` in ``vjps`` marks an input that is not
    differentiable (an integer index, a condition): asking for its gradient raises.
    Primitives with any number of inputs (``concatenate``, ``stack``) give instead
    ``vjp_argnum(i, g, out, saved, *arrays, **attrs)``.
In-place facts (read by ``backward()``'s version check, :func:`chainrule._backward._check_inplace`)
    ``reads_out``: some rule reads the forward output (changing it in place afterwards
    must raise). ``reads_inputs=False``: the rules use only the inputs' shapes and dtypes.
    ``needed_by[i]``: the inputs whose rules read input ``i`` (``x·y`` has ``((1,), (0,))``:
    ``x`` matters only if ``y`` needs a gradient), ``None`` for "every rule reads it".
Test facts (read by :func:`chainrule.testing.check_primitive`)
    ``examples(rng, dtype) -> list[Case]``, ``Case = (inputs, attrs)``: valid inputs of the
    given float dtype (away from kinks), including broadcasting pairs and empty shapes where
    the primitive allows them. ``torch(*tensors, **attrs)``: the PyTorch computation of the
    same value, when there is one (the oracle).

Adding a primitive
------------------
Write the forward as a named function, one rule per input, and register the record; the
function users call validates its arguments and calls :func:`apply`:

>>> import numpy as np, chainrule as cr
>>> from chainrule._primitive import Primitive, apply
>>> def _cube(a):
...     return a * a * a
>>> cube_p = Primitive(                       # unregistered: a doctest must not add to the registry
...     "cube", _cube, kind="elementwise",
...     vjps=(lambda g, out, saved, x: 3 * g * x * x,),  # d(x³)/dx = 3x²
... )
>>> x = cr.tensor([1.0, 2.0], requires_grad=True)
>>> y = apply(cube_p, x)
>>> y.primitive is cube_p, y.op
(True, 'cube')
>>> y.sum().backward()
>>> x.grad
array([ 3., 12.], dtype=float32)

In the library, the decorator :func:`primitive` builds the record around the forward and
registers it in :data:`PRIMITIVES`, so that :func:`check_registry` (run when
:mod:`chainrule.ops` is imported) and the ``check_primitive`` suite see it::

    @primitive("cube", kind="elementwise", vjps=(lambda g, out, saved, x: 3 * g * x * x,),
               examples=_cube_examples, torch=lambda x: x**3)
    def cube_p(a):
        return a * a * a

(the decorator returns the record; its forward stays reachable as ``cube_p.forward``).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._grad_mode import _grad_mode
from .tensor import Tensor

__all__ = [
    "KINDS",
    "PRIMITIVES",
    "Case",
    "Primitive",
    "apply",
    "check_registry",
    "defprimitive",
    "primitive",
    "registered",
]

Rule = Callable[..., Any]
Case = tuple[tuple[Any, ...], dict[str, Any]]
KINDS = frozenset(
    {"elementwise", "reduction", "movement", "contraction", "fused", "random", "state"}
)


@dataclass(frozen=True, eq=False, slots=True)
class Primitive:
    """A differentiable operation: forward, per-input backward rules and what they read.

    Parameters
    ----------
    name : str
        The operation's name (``Tensor.op``, graph drawings, error messages).
    forward : callable
        ``forward(*arrays, **attrs)`` (see the module docstring); a named function.
    vjps : tuple of callables or None
        One rule per input: ``rule(g, out, saved, *arrays, **attrs) -> ∂C/∂input``;
        ``None`` for an input that is not differentiable.
    kind : str
        ``"elementwise"``, ``"reduction"``, ``"movement"``, ``"contraction"``, ``"fused"``,
        ``"random"`` or ``"state"``.
    n_outputs : int or None, default 1
        Number of outputs; ``None`` when it depends on the attributes (``split``).
    saves : bool, default False
        The forward returns ``(output, saved)`` and the rules receive ``saved``.
    out_capable : bool, default False
        The forward accepts ``out=``.
    reads_out, reads_inputs, needed_by
        What the rules read, for the in-place version check (module docstring).
    vjp_argnum : callable, optional
        For a variable number of inputs: ``vjp_argnum(i, g, out, saved, *arrays, **attrs)``
        instead of ``vjps``.
    examples : callable, optional
        ``examples(rng, dtype) -> list[Case]`` for the ``check_primitive`` suite.
    torch : callable, optional
        The PyTorch counterpart ``torch(*tensors, **attrs)``, for the oracle tests.
    """

    name: str
    forward: Callable[..., Any]
    vjps: tuple[Rule | None, ...] = ()
    kind: str = "elementwise"
    n_outputs: int | None = 1
    saves: bool = False
    out_capable: bool = False
    reads_out: bool = False
    reads_inputs: bool = True
    needed_by: tuple[tuple[int, ...], ...] | None = None
    vjp_argnum: Rule | None = None
    examples: Callable[[np.random.Generator, Any], list[Case]] | None = None
    torch: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Primitive name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(
                f"Primitive {self.name!r}: kind must be one of {sorted(KINDS)}, got {self.kind!r}"
            )
        if not callable(self.forward) or getattr(self.forward, "__name__", "") == "<lambda>":
            raise TypeError(
                f"Primitive {self.name!r}: forward must be a named function (def or a NumPy "
                f"function), got {self.forward!r}"
            )
        vjps = tuple(self.vjps)
        object.__setattr__(self, "vjps", vjps)
        for i, rule in enumerate(vjps):
            if rule is not None and not callable(rule):
                raise TypeError(
                    f"Primitive {self.name!r}: vjps[{i}] must be a callable or None, got {rule!r}"
                )
        if self.vjp_argnum is not None and vjps:
            raise ValueError(f"Primitive {self.name!r}: give vjps or vjp_argnum, not both")
        if self.n_outputs is not None and self.n_outputs < 1:
            raise ValueError(
                f"Primitive {self.name!r}: n_outputs must be >= 1 or None, got {self.n_outputs}"
            )
        if self.needed_by is not None and vjps and len(self.needed_by) != len(vjps):
            raise ValueError(
                f"Primitive {self.name!r}: needed_by has {len(self.needed_by)} entries for "
                f"{len(vjps)} inputs"
            )

    def __repr__(self) -> str:
        return f"<Primitive {self.name} ({self.kind})>"

    def rule(self, i: int) -> Rule | None:
        """The rule for input ``i`` (``None``: not differentiable)."""
        if self.vjp_argnum is not None:
            argnum = self.vjp_argnum
            return lambda *args, **attrs: argnum(i, *args, **attrs)
        return self.vjps[i] if i < len(self.vjps) else None


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
PRIMITIVES: dict[str, Primitive] = {}


def _same_definition(a: Primitive, b: Primitive) -> bool:
    """Both records come from the same source definition (a re-run notebook cell, a reloaded
    module): same forward's module and qualified name."""
    fa, fb = a.forward, b.forward
    if not (inspect.isfunction(fa) and inspect.isfunction(fb)):
        return False  # a NumPy function: the library's own records are never replaced
    module = fa.__module__ or ""
    return (
        module == fb.__module__
        and fa.__qualname__ == fb.__qualname__
        and not (module == "chainrule" or module.startswith("chainrule."))
    )


def _register(prim: Primitive) -> Primitive:
    check_registry([prim])  # a primitive without its rules is refused now, not at backward()
    old = PRIMITIVES.get(prim.name)
    if old is not None and old is not prim and _same_definition(old, prim):
        # a redefinition (a re-run notebook cell) replaces the old record, as layers do
        PRIMITIVES[prim.name] = prim
        return prim
    if old is not None and old is not prim:
        raise ValueError(
            f"a primitive named {prim.name!r} is already registered ({old!r}); choose another "
            "name (or build an unregistered Primitive(...) for a test)"
        )
    PRIMITIVES[prim.name] = prim
    return prim


def defprimitive(name: str, forward: Callable[..., Any], **fields: Any) -> Primitive:
    """Build a :class:`Primitive` from ``forward`` and register it under ``name``.

    ``fields`` are the other fields of :class:`Primitive` (``vjps``, ``kind``, ...).
    """
    return _register(Primitive(name, forward, **fields))


def primitive(name: str, **fields: Any) -> Callable[[Callable[..., Any]], Primitive]:
    """Decorator form of :func:`defprimitive`: ``@primitive("exp", vjps=(...), kind=...)``.

    Returns the registered record (the decorated forward is its ``.forward``).
    """

    def wrap(forward: Callable[..., Any]) -> Primitive:
        return defprimitive(name, forward, **fields)

    return wrap


@contextmanager
def registered(prim: Primitive) -> Iterator[Primitive]:
    """Register ``prim`` for the duration of a ``with`` block (for tests of the registry)."""
    _register(prim)
    try:
        yield prim
    finally:
        if PRIMITIVES.get(prim.name) is prim:
            del PRIMITIVES[prim.name]


def _n_positional(fn: Callable[..., Any]) -> int | None:
    """Number of array inputs a forward takes (None: variadic or unknown)."""
    nin = getattr(fn, "nin", None)  # a NumPy ufunc
    if isinstance(nin, int):
        return nin
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "out":
            n += 1
    return n


def check_registry(prims: Any = None) -> None:
    """Check that every registered primitive has its backward rules.

    Raises ``TypeError`` naming the primitive if it has no rule at all, if the number of rules
    differs from the number of array inputs of its forward, or if ``out_capable`` is declared
    by a forward that takes no ``out=``.
    """
    for prim in PRIMITIVES.values() if prims is None else prims:
        if prim.vjp_argnum is None and not prim.vjps:
            raise TypeError(
                f"primitive {prim.name!r} has no backward rules (vjps is empty): give one rule "
                "per array input, vjps=(rule_0, rule_1, ...), None for an input that is not "
                "differentiable"
            )
        if prim.vjp_argnum is None:
            n = _n_positional(prim.forward)
            if n is not None and n != len(prim.vjps):
                raise TypeError(
                    f"primitive {prim.name!r}: its forward takes {n} array input(s) but "
                    f"{len(prim.vjps)} rule(s) are given (one per input, None for an input "
                    "that is not differentiable)"
                )
        if prim.out_capable and getattr(prim.forward, "nin", None) is None:
            try:
                params = inspect.signature(prim.forward).parameters
            except (TypeError, ValueError):
                continue
            if "out" not in params:
                raise TypeError(f"primitive {prim.name!r} is out_capable but takes no out=")


# ---------------------------------------------------------------------------------------------
# running a primitive
# ---------------------------------------------------------------------------------------------
class _Group:
    """The shared part of the outputs of one multi-output node.

    Each output is a Tensor whose node is the primitive; they share this group: the forward's
    outputs (``out`` of the rules), what it saved, and weak references to the output tensors,
    through which ``backward()`` gathers the gradient of every output before calling the rules
    once.
    """

    __slots__ = ("outs", "refs", "saved")

    def __init__(self, outs: tuple[np.ndarray, ...], saved: Any) -> None:
        self.outs: tuple[np.ndarray, ...] | None = outs
        self.saved = saved
        self.refs: list[weakref.ref[Tensor]] = []


def apply(prim: Primitive, *inputs: Any, **attrs: Any) -> Any:
    """Run ``prim`` on ``inputs`` and record the node if an input requires grad.

    ``inputs`` are Tensors, arrays or Python scalars (the forward receives arrays);
    ``attrs`` go to the forward and the rules as keyword arguments. Returns a Tensor, or a
    tuple of Tensors for a primitive with several outputs.
    """
    data = [x.data if isinstance(x, Tensor) else x for x in inputs]
    res = prim.forward(*data, **attrs) if attrs else prim.forward(*data)
    saved = None
    if prim.saves:
        res, saved = res
    if prim.n_outputs != 1:
        return _apply_multi(prim, inputs, attrs, res, saved)
    if type(res) is not np.ndarray:
        res = np.asarray(res)
    if _grad_mode.enabled:
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                return Tensor._make(res, prim, inputs, attrs or None, saved)
    return Tensor._const(res)


def _apply_multi(
    prim: Primitive, inputs: tuple[Any, ...], attrs: dict[str, Any], res: Any, saved: Any
) -> tuple[Tensor, ...]:
    outs = tuple(r if type(r) is np.ndarray else np.asarray(r) for r in res)
    if _grad_mode.enabled and any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        group = _Group(outs, saved)
        tensors = []
        for o in outs:
            t = Tensor._make(o, prim, inputs, attrs or None, None)
            t._group = group
            tensors.append(t)
        group.refs = [weakref.ref(t) for t in tensors]
        return tuple(tensors)
    return tuple(Tensor._const(o) for o in outs)
