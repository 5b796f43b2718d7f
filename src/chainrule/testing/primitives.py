"""The contract every registered primitive must pass: :func:`check_primitive`.

As scikit-learn's ``parametrize_with_checks`` does for estimators, one function checks a
:class:`~chainrule._primitive.Primitive` record against what the engine promises of every
primitive, from the inputs its ``examples`` give:

1. **Gradients (float64).** For a random projection ``C = Σ_k Σ w_k ⊙ out_k`` of the outputs,
   the gradient the engine computes (``apply`` + ``backward()``, i.e. the record's rules, the
   broadcast reduction and the dtype cast) equals the central difference
   ``(C(x + h e_j) - C(x - h e_j)) / 2h`` of the *forward* at every checked position ``j`` of
   every differentiable input: ``|analytic - numeric| ≤ atol + rtol·|numeric|``. For a
   primitive with several outputs, each output's gradient alone (the others receive none)
   and all of them together.
2. **float32.** The same case in float32 gives float32 outputs and gradients (no silent
   upcast) that agree with float64 computed on the same values, to a float32 tolerance
   (relative to the largest magnitude of each result).
3. **The PyTorch oracle**, where the record names a counterpart (``torch=``): outputs and
   gradients in float64 agree to ``1e-10`` (relative to the largest magnitude).
4. **Broadcasting** for elementwise primitives with two or more array inputs: ``(m, 1)``
   against ``(1, n)`` and a 0-d operand against an array, through the gradient check.
5. **Empty shapes** (size-0 arrays) for elementwise primitives, and wherever the examples
   give them: forward and backward run without a warning and the gradients have the inputs'
   shapes and dtypes.
6. Housekeeping: the forward leaves its inputs unchanged, and an ``out_capable`` forward
   writes into ``out=`` exactly the value it returns otherwise.
7. **What the rules read.** A rule must not read a value the record says it does not
   (``reads_out``, ``reads_inputs``, ``needed_by``): calling it with that value changed must
   give the same gradient, or ``backward()``'s in-place check would miss a change of it.

A failure raises :class:`PrimitiveCheckError` naming the primitive, the check, the input, the
position in it and both values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._primitive import PRIMITIVES, Primitive, apply
from ..tensor import Tensor, enable_grad

__all__ = ["PrimitiveCheckError", "PrimitiveReport", "check_primitive", "registered_primitives"]

Case = tuple[tuple[Any, ...], dict[str, Any]]


class PrimitiveCheckError(AssertionError):
    """A primitive broke its contract (the message names the primitive, input and position)."""


@dataclass
class PrimitiveReport:
    """What :func:`check_primitive` checked, and the largest errors it saw."""

    name: str
    cases: int = 0
    gradient_points: int = 0
    max_gradient_error: float = 0.0  # |analytic - numeric| / (atol + rtol·|numeric|), ≤ 1
    max_float32_error: float = 0.0  # relative to the largest magnitude
    torch_cases: int = 0
    max_torch_error: float = 0.0  # relative to the largest magnitude
    broadcast_cases: int = 0
    empty_cases: int = 0
    notes: list[str] = field(default_factory=list)


def registered_primitives() -> list[Primitive]:
    """Every registered primitive, sorted by name (for ``pytest.mark.parametrize``)."""
    return [PRIMITIVES[k] for k in sorted(PRIMITIVES)]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _is_float_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _rule(prim: Primitive, i: int) -> Any:
    if prim.vjp_argnum is not None:
        return prim.vjp_argnum
    return prim.vjps[i] if i < len(prim.vjps) else None


def _differentiable(prim: Primitive, inputs: tuple[Any, ...]) -> list[int]:
    return [i for i, x in enumerate(inputs) if _is_float_array(x) and _rule(prim, i) is not None]


def _forward(prim: Primitive, inputs: Iterable[Any], attrs: dict[str, Any]) -> tuple[Any, ...]:
    """The forward's outputs as a tuple of arrays (``saved`` dropped)."""
    res = prim.forward(*inputs, **attrs)
    if prim.saves:
        res = res[0]
    if prim.n_outputs == 1:
        return (np.asarray(res),)
    return tuple(np.asarray(r) for r in res)


def _cast(inputs: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    return tuple(x.astype(dtype) if _is_float_array(x) else x for x in inputs)


def _describe(inputs: tuple[Any, ...], attrs: dict[str, Any]) -> str:
    parts = []
    for x in inputs:
        if isinstance(x, np.ndarray):
            parts.append(f"{x.dtype}{list(x.shape)}")
        else:
            parts.append(repr(x))
    text = f"inputs ({', '.join(parts)})"
    if attrs:
        text += f", attrs {attrs!r}"
    return text


def _pos(shape: tuple[int, ...], j: int) -> tuple[int, ...]:
    return tuple(int(p) for p in np.unravel_index(j, shape)) if shape else ()


def _relative(a: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """max |a - ref| over the largest |ref| (1 if all zero), and where it is largest."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return 0.0, 0
    diff = np.abs(a - ref)
    both_nan = np.isnan(a) & np.isnan(ref)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    finite = ref[np.isfinite(ref)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    j = int(np.argmax(diff))
    return float(diff[j]) / (scale if scale > 0 else 1.0), j


class _Checker:
    def __init__(self, prim: Primitive, settings: dict[str, Any]) -> None:
        self.prim = prim
        self.s = settings
        self.report = PrimitiveReport(prim.name)
        self.rng = np.random.default_rng(settings["seed"])

    def fail(self, what: str, case: str, detail: str) -> None:
        raise PrimitiveCheckError(f"check_primitive({self.prim.name!r}): {what}: {detail} ({case})")

    # ----- the engine's gradient of C = Σ w·out -------------------------------------------
    def engine(
        self,
        inputs: tuple[Any, ...],
        attrs: dict[str, Any],
        weights: list[np.ndarray | None],
        diff: list[int],
        case: str,
    ) -> tuple[tuple[np.ndarray, ...], dict[int, np.ndarray | None]]:
        args: list[Any] = list(inputs)
        leaves: dict[int, Tensor] = {}
        for i in diff:
            leaves[i] = Tensor(inputs[i].copy(), requires_grad=True)
            args[i] = leaves[i]
        with enable_grad():
            res = apply(self.prim, *args, **attrs)
        outs = res if isinstance(res, tuple) else (res,)
        if len(outs) != len(weights):
            self.fail(
                "outputs", case, f"apply() gave {len(outs)} output(s), expected {len(weights)}"
            )
        used = [(o, w) for o, w in zip(outs, weights) if w is not None]
        if diff and used:
            if len(used) == 1:
                o, w = used[0]
                if not o.requires_grad:
                    self.fail("gradient", case, "the output does not require grad")
                o.backward(w.astype(o.dtype))
            else:
                total = None
                for o, w in used:
                    term = (o * w.astype(o.dtype)).sum()
                    total = term if total is None else total + term
                assert total is not None
                total.backward()
        grads = {i: leaves[i].grad for i in diff}
        return tuple(o.data for o in outs), grads

    def objective(
        self, inputs: tuple[Any, ...], attrs: dict[str, Any], weights: list[np.ndarray | None]
    ) -> float:
        outs = _forward(self.prim, inputs, attrs)
        terms: list[float] = []
        for o, w in zip(outs, weights):
            if w is not None:
                terms.extend((np.asarray(o, np.float64) * w).reshape(-1).tolist())
        return math.fsum(terms)

    def weights_for(self, outs: tuple[np.ndarray, ...], only: int | None) -> list[Any]:
        return [
            None
            if only is not None and k != only
            else self.rng.standard_normal(o.shape).astype(np.float64)
            for k, o in enumerate(outs)
        ]

    # ----- 1. gradient check in float64 ----------------------------------------------------
    def gradcheck(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        inputs = _cast(inputs, np.float64)
        case = f"{label}: {_describe(inputs, attrs)}"
        diff = _differentiable(self.prim, inputs)
        outs = _forward(self.prim, inputs, attrs)
        n_out = len(outs)
        selections: list[int | None] = [None] if n_out == 1 else [None, *range(n_out)]
        for only in selections:
            weights = self.weights_for(outs, only)
            which = "" if only is None or n_out == 1 else f" of output {only}"
            _, grads = self.engine(inputs, attrs, weights, diff, case)
            for i in diff:
                x = inputs[i]
                g = grads[i]
                if g is None:
                    g = np.zeros_like(x)
                if g.shape != x.shape or g.dtype != x.dtype:
                    self.fail(
                        f"gradient{which}",
                        case,
                        f"input {i}: gradient of shape {g.shape} and dtype {g.dtype} for an "
                        f"input of shape {x.shape} and dtype {x.dtype}",
                    )
                self.compare_numeric(inputs, attrs, weights, i, g, case, which)

    def compare_numeric(
        self,
        inputs: tuple[Any, ...],
        attrs: dict[str, Any],
        weights: list[Any],
        i: int,
        g: np.ndarray,
        case: str,
        which: str,
    ) -> None:
        x = inputs[i]
        n = x.size
        k = self.s["max_points"]
        points = range(n) if n <= k else np.sort(self.rng.choice(n, k, replace=False))
        eps, atol, rtol = self.s["eps"], self.s["atol"], self.s["rtol"]
        for j in points:
            j = int(j)
            base = float(x.reshape(-1)[j])
            h = eps * max(1.0, abs(base))
            vals = []
            for step in (h, -h):
                xp = np.array(x, copy=True)
                xp.reshape(-1)[j] = base + step
                moved = (*inputs[:i], xp, *inputs[i + 1 :])
                vals.append(self.objective(moved, attrs, weights))
            numeric = (vals[0] - vals[1]) / (2 * h)
            analytic = float(g.reshape(-1)[j])
            bound = atol + rtol * abs(numeric)
            err = abs(analytic - numeric)
            if not err <= bound:  # also catches NaN
                self.fail(
                    f"gradient{which}",
                    case,
                    f"input {i} at position {_pos(x.shape, j)}: engine gradient "
                    f"{analytic!r}, central difference {numeric!r} (|difference| {err:.3g} > "
                    f"atol + rtol·|numeric| = {bound:.3g})",
                )
            self.report.gradient_points += 1
            self.report.max_gradient_error = max(self.report.max_gradient_error, err / bound)

    # ----- 2. float32 against float64 ------------------------------------------------------
    def float32(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        x32 = _cast(inputs, np.float32)
        if not any(_is_float_array(x) for x in x32):
            return
        x64 = _cast(x32, np.float64)  # the same values, computed in float64
        case = f"{label} in float32: {_describe(x32, attrs)}"
        diff = _differentiable(self.prim, x32)
        outs64 = _forward(self.prim, x64, attrs)
        weights = self.weights_for(outs64, None)
        w32 = [None if w is None else w.astype(np.float32).astype(np.float64) for w in weights]
        outs32, g32 = self.engine(x32, attrs, w32, diff, case)
        _, g64 = self.engine(x64, attrs, w32, diff, case)
        tol = self.s["float32_rtol"]
        # a dtype given as an attribute (astype) is the one asked for: not a silent upcast
        asked = any(
            isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic))
            for v in attrs.values()
        )
        for k, (o32, o64) in enumerate(zip(outs32, outs64)):
            if o64.dtype.kind == "f" and o32.dtype != np.float32 and not asked:
                self.fail(
                    "float32",
                    case,
                    f"output {k} has dtype {o32.dtype} for float32 inputs (a silent upcast)",
                )
            err, j = _relative(o32, o64)
            if not err <= tol:
                self.fail(
                    "float32 forward",
                    case,
                    f"output {k} at position {_pos(o64.shape, j)}: float32 "
                    f"{float(o32.reshape(-1)[j])!r}, float64 {float(o64.reshape(-1)[j])!r} "
                    f"(relative error {err:.3g} > {tol})",
                )
            self.report.max_float32_error = max(self.report.max_float32_error, err)
        for i in diff:
            a, b = g32[i], g64[i]
            if a is None or b is None:
                continue
            if a.dtype != np.float32:
                self.fail("float32 gradient", case, f"input {i}: gradient dtype {a.dtype}")
            err, j = _relative(a, b)
            if not err <= self.s["float32_grad_rtol"]:
                self.fail(
                    "float32 gradient",
                    case,
                    f"input {i} at position {_pos(b.shape, j)}: float32 "
                    f"{float(a.reshape(-1)[j])!r}, float64 {float(b.reshape(-1)[j])!r} "
                    f"(relative error {err:.3g} > {self.s['float32_grad_rtol']})",
                )
            self.report.max_float32_error = max(self.report.max_float32_error, err)

    # ----- 3. the PyTorch oracle -----------------------------------------------------------
    def oracle(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        import torch

        inputs = _cast(inputs, np.float64)
        case = f"{label} against PyTorch: {_describe(inputs, attrs)}"
        diff = _differentiable(self.prim, inputs)
        outs = _forward(self.prim, inputs, attrs)
        weights = self.weights_for(outs, None)
        ours, grads = self.engine(inputs, attrs, weights, diff, case)
        targs = [
            torch.tensor(x, requires_grad=i in diff) if isinstance(x, np.ndarray) else x
            for i, x in enumerate(inputs)
        ]
        with torch.enable_grad():
            res = self.prim.torch(*targs, **attrs)  # type: ignore[misc]
            touts = res if isinstance(res, (tuple, list)) else (res,)
            if len(touts) != len(ours):
                self.fail(
                    "torch oracle",
                    case,
                    f"PyTorch gave {len(touts)} output(s), chainrule {len(ours)}",
                )
            tol = self.s["torch_rtol"]
            for k, (o, t) in enumerate(zip(ours, touts)):
                tv = t.detach().numpy()
                if tv.shape != o.shape:
                    self.fail(
                        "torch oracle",
                        case,
                        f"output {k} has shape {o.shape}, PyTorch's {tuple(tv.shape)}",
                    )
                err, j = _relative(o, tv)
                if not err <= tol:
                    self.fail(
                        "torch oracle forward",
                        case,
                        f"output {k} at position {_pos(o.shape, j)}: chainrule "
                        f"{float(o.reshape(-1)[j])!r}, PyTorch {float(tv.reshape(-1)[j])!r} "
                        f"(relative error {err:.3g} > {tol})",
                    )
                self.report.max_torch_error = max(self.report.max_torch_error, err)
            if diff:
                total = sum(
                    (t * torch.tensor(w)).sum()
                    for t, w in zip(touts, weights)
                    if w is not None and t.requires_grad
                )
                tgrads = (
                    torch.autograd.grad(total, [targs[i] for i in diff], allow_unused=True)
                    if isinstance(total, torch.Tensor)
                    else [None] * len(diff)
                )
                for i, tg in zip(diff, tgrads):
                    ref = np.zeros_like(inputs[i]) if tg is None else tg.numpy()
                    got = grads[i]
                    mine = got if got is not None else np.zeros_like(inputs[i])
                    err, j = _relative(mine, ref)
                    if not err <= tol:
                        self.fail(
                            "torch oracle gradient",
                            case,
                            f"input {i} at position {_pos(ref.shape, j)}: chainrule "
                            f"{float(mine.reshape(-1)[j])!r}, PyTorch "
                            f"{float(ref.reshape(-1)[j])!r} (relative error {err:.3g} > {tol})",
                        )
                    self.report.max_torch_error = max(self.report.max_torch_error, err)
        self.report.torch_cases += 1

    # ----- 4. broadcasting and 5. empty shapes -----------------------------------------------
    def broadcast_variants(self, inputs: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        idx = [i for i, x in enumerate(inputs) if _is_float_array(x)]
        if len(idx) < 2:
            return []
        a, b = idx[0], idx[1]
        xa, xb = inputs[a], inputs[b]
        if xa.shape != xb.shape or xa.ndim == 0 or xa.size == 0:
            return []
        variants = []
        sliced = list(inputs)
        if xa.ndim >= 2:  # (m, 1) against (1, n)
            sliced[a] = np.ascontiguousarray(xa[..., :1])
            sliced[b] = np.ascontiguousarray(xb[:1])
        else:  # (n,) against (1,)
            sliced[b] = np.ascontiguousarray(xb[:1])
        variants.append(tuple(sliced))
        scalar = list(inputs)  # a 0-d operand against an array
        scalar[b] = np.array(xb.reshape(-1)[0])
        variants.append(tuple(scalar))
        return variants

    def empty(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        inputs = _cast(inputs, np.float64)
        case = f"{label}: {_describe(inputs, attrs)}"
        diff = _differentiable(self.prim, inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(all="raise"):
                try:
                    outs = _forward(self.prim, inputs, attrs)
                    weights = self.weights_for(outs, None)
                    _, grads = self.engine(inputs, attrs, weights, diff, case)
                except (Warning, FloatingPointError, ValueError, IndexError) as exc:
                    self.fail("empty shapes", case, f"{type(exc).__name__}: {exc}")
        for i in diff:
            g = grads[i]
            x = inputs[i]
            if g is not None and (g.shape != x.shape or g.dtype != x.dtype):
                self.fail(
                    "empty shapes",
                    case,
                    f"input {i}: gradient of shape {g.shape}, dtype {g.dtype} for an input of "
                    f"shape {x.shape}, dtype {x.dtype}",
                )
        self.report.empty_cases += 1

    def empty_variant(self, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        arrays = [x for x in inputs if isinstance(x, np.ndarray)]
        if not arrays:
            return None
        top = max(x.ndim for x in arrays)
        if top == 0:
            return None
        return tuple(x[:0] if isinstance(x, np.ndarray) and x.ndim == top else x for x in inputs)

    # ----- 6. housekeeping -------------------------------------------------------------------
    def housekeeping(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        inputs = _cast(inputs, np.float64)
        case = f"{label}: {_describe(inputs, attrs)}"
        before = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in inputs]
        outs = _forward(self.prim, inputs, attrs)
        for i, (x, b) in enumerate(zip(inputs, before)):
            if isinstance(x, np.ndarray) and not np.array_equal(x, b, equal_nan=True):
                self.fail("forward", case, f"the forward changed its input {i} in place")
        if self.prim.out_capable and len(outs) == 1:
            out = np.empty_like(outs[0])
            res = self.prim.forward(*inputs, out=out, **attrs)
            if self.prim.saves:
                res = res[0]
            if not np.array_equal(out, outs[0], equal_nan=True) or not np.array_equal(
                np.asarray(res), outs[0], equal_nan=True
            ):
                self.fail("out=", case, "forward(..., out=) wrote a different value")

    # ----- 7. what the rules read (the in-place facts of the record) --------------------------
    def declared_reads(self, inputs: tuple[Any, ...], attrs: dict[str, Any], label: str) -> None:
        """A rule must not read a value the record says it does not read (``reads_out``,
        ``reads_inputs``, ``needed_by``): ``backward()`` would not notice an in-place change of
        that value and would silently use the changed one."""
        prim = self.prim
        inputs = _cast(inputs, np.float64)
        diff = _differentiable(prim, inputs)
        if not diff:
            return
        case = f"{label}: {_describe(inputs, attrs)}"
        res = prim.forward(*inputs, **attrs)
        saved = None
        if prim.saves:
            res, saved = res
        multi = prim.n_outputs != 1
        outs = tuple(np.asarray(r) for r in res) if multi else (np.asarray(res),)
        gs = tuple(self.rng.standard_normal(o.shape) for o in outs)

        def call(j: int, out: tuple[np.ndarray, ...], ins: tuple[Any, ...]) -> np.ndarray:
            g, o = (gs, out) if multi else (gs[0], out[0])
            with np.errstate(all="ignore"):
                if prim.vjp_argnum is not None:
                    r = prim.vjp_argnum(j, g, o, saved, *ins, **attrs)
                else:
                    r = prim.vjps[j](g, o, saved, *ins, **attrs)  # type: ignore[misc]
            return np.asarray(r)

        def moved(a: np.ndarray) -> np.ndarray:
            return a * 1.5 + 0.25 if a.dtype.kind == "f" else a

        def same(a: np.ndarray, b: np.ndarray) -> bool:
            return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))

        base = {j: call(j, outs, inputs) for j in diff}
        if not prim.reads_out:
            other = tuple(moved(o) for o in outs)
            for j in diff:
                if not same(call(j, other, inputs), base[j]):
                    self.fail(
                        "in-place facts",
                        case,
                        f"the rule of input {j} reads the forward output, but the record "
                        "declares reads_out=False (an in-place change of the output after the "
                        "forward would go unnoticed by backward())",
                    )
        for i, x in enumerate(inputs):
            if not _is_float_array(x):
                continue
            if not prim.reads_inputs:
                readers: tuple[int, ...] = ()
            elif prim.needed_by is not None:
                readers = prim.needed_by[i]
            else:
                continue  # every rule may read every input
            changed = (*inputs[:i], moved(x), *inputs[i + 1 :])
            for j in diff:
                if j not in readers and not same(call(j, outs, changed), base[j]):
                    self.fail(
                        "in-place facts",
                        case,
                        f"the rule of input {j} reads the value of input {i}, but the record "
                        f"declares that only the rules of inputs {readers} read it "
                        "(reads_inputs/needed_by): an in-place change of it would go unnoticed",
                    )


# ---------------------------------------------------------------------------------------------
def check_primitive(
    prim: Primitive,
    *,
    seed: int = 0,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    float32_rtol: float = 1e-4,
    float32_grad_rtol: float = 1e-3,
    torch_rtol: float = 1e-10,
    max_points: int = 24,
    oracle: bool | None = None,
    examples: Callable[[np.random.Generator, Any], list[Case]] | None = None,
) -> PrimitiveReport:
    """Check one primitive record against the engine's contract (see the module docstring).

    Parameters
    ----------
    prim : Primitive
        The record (for instance ``chainrule._primitive.PRIMITIVES["exp"]``).
    seed : int
        Seeds the examples, the output projections and the sampled positions.
    eps : float
        Central-difference step, relative to ``max(1, |x_j|)``.
    atol, rtol : float
        Gradient criterion ``|analytic - numeric| ≤ atol + rtol·|numeric|`` (float64).
    float32_rtol, float32_grad_rtol : float
        float32 outputs and gradients against float64 on the same values, relative to the
        largest magnitude of each result.
    torch_rtol : float
        The oracle's tolerance (outputs and gradients), relative to the largest magnitude.
    max_points : int
        At most this many positions per input are differentiated numerically (chosen at
        random with ``seed``; all of them for smaller inputs).
    oracle : bool or None
        Compare with PyTorch: None (default) when the record has ``torch=`` and PyTorch is
        installed; True requires both.
    examples : callable, optional
        Use these cases instead of the record's ``examples`` (``examples(rng, dtype)``).

    Returns
    -------
    PrimitiveReport
        What was checked and the largest errors seen.

    Raises
    ------
    PrimitiveCheckError
        On the first broken promise, naming the primitive, the check, the input, the
        position and both values.

    Examples
    --------
    >>> from chainrule._primitive import PRIMITIVES
    >>> from chainrule.testing import check_primitive
    >>> report = check_primitive(PRIMITIVES["exp"], oracle=False)
    >>> report.gradient_points > 0
    True
    """
    source = examples if examples is not None else prim.examples
    if source is None:
        raise PrimitiveCheckError(
            f"check_primitive({prim.name!r}): the record has no examples; register it with "
            "examples=(rng, dtype) -> [(inputs, attrs), ...] so that it can be checked"
        )
    settings = {
        "seed": seed,
        "eps": eps,
        "atol": atol,
        "rtol": rtol,
        "float32_rtol": float32_rtol,
        "float32_grad_rtol": float32_grad_rtol,
        "torch_rtol": torch_rtol,
        "max_points": max_points,
    }
    c = _Checker(prim, settings)
    cases = list(source(np.random.default_rng(seed), np.float64))
    if not cases:
        raise PrimitiveCheckError(f"check_primitive({prim.name!r}): examples gave no case")
    use_torch = prim.torch is not None if oracle is None else oracle
    if use_torch:
        if prim.torch is None:
            raise PrimitiveCheckError(
                f"check_primitive({prim.name!r}): oracle=True but the record names no torch "
                "counterpart"
            )
        try:
            import torch  # noqa: F401
        except ImportError:
            if oracle:
                raise
            use_torch = False
            c.report.notes.append("PyTorch is not installed: oracle skipped")
    for n, (inputs, attrs) in enumerate(cases):
        inputs, attrs = tuple(inputs), dict(attrs)
        label = f"case {n}"
        try:
            _check_case(c, prim, inputs, attrs, label, use_torch)
        except PrimitiveCheckError:
            raise
        except Exception as exc:  # a forward or rule that raises breaks the contract too
            raise PrimitiveCheckError(
                f"check_primitive({prim.name!r}): {label} ({_describe(inputs, attrs)}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return c.report


def _check_case(
    c: _Checker,
    prim: Primitive,
    inputs: tuple[Any, ...],
    attrs: dict[str, Any],
    label: str,
    use_torch: bool,
) -> None:
    if any(isinstance(x, np.ndarray) and x.size == 0 for x in inputs):
        c.empty(inputs, attrs, label)
        c.housekeeping(inputs, attrs, label)
        c.report.cases += 1
        return
    c.housekeeping(inputs, attrs, label)
    c.declared_reads(inputs, attrs, label)
    c.gradcheck(inputs, attrs, label)
    c.float32(inputs, attrs, label)
    if use_torch:
        c.oracle(inputs, attrs, label)
    if prim.kind == "elementwise":
        for b, variant in enumerate(c.broadcast_variants(inputs)):
            c.gradcheck(variant, attrs, f"{label}, broadcast variant {b}")
            if use_torch:
                c.oracle(variant, attrs, f"{label}, broadcast variant {b}")
            c.report.broadcast_cases += 1
        empty = c.empty_variant(inputs)
        if empty is not None:
            c.empty(empty, attrs, f"{label}, empty variant")
    c.report.cases += 1
