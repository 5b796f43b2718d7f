"""The checks of :func:`~chainrule.testing.check_primitive`, one method each (the numbered
promises of :mod:`chainrule.testing.primitives`): gradients in float64, float32 against float64,
the PyTorch oracle, broadcasting, empty shapes, housekeeping and what the rules read."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._primitive import Primitive, apply
from ..tensor import Tensor, enable_grad
from ._cases import (
    PrimitiveCheckError,
    PrimitiveReport,
    _cast,
    _describe,
    _differentiable,
    _forward,
    _is_float_array,
    _pos,
    _relative,
)


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

        # rules must not write into what they are given: g is shared with the other branches
        # of the graph, out/saved/inputs with the other rules (the engine does not copy them)
        def frozen(a: Any) -> Any:
            if isinstance(a, np.ndarray):
                a = a.copy()
                a.flags.writeable = False
            elif isinstance(a, tuple):
                a = tuple(frozen(v) for v in a)
            return a

        ro_gs, ro_outs, ro_saved = frozen(gs), frozen(outs), frozen(saved)
        ro_inputs = frozen(tuple(inputs))
        for j in diff:
            g, o = (ro_gs, ro_outs) if multi else (ro_gs[0], ro_outs[0])
            try:
                with np.errstate(all="ignore"):
                    if prim.vjp_argnum is not None:
                        prim.vjp_argnum(j, g, o, ro_saved, *ro_inputs, **attrs)
                    else:
                        prim.vjps[j](g, o, ro_saved, *ro_inputs, **attrs)  # type: ignore[misc]
            except ValueError as exc:
                if "read-only" not in str(exc):
                    raise
                self.fail(
                    "in-place facts",
                    case,
                    f"the rule of input {j} writes into one of its arguments (g, out, saved or "
                    "an input): they are shared — g with the other branches of the graph, the "
                    "rest with the other rules — so compute into a new array instead",
                )
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
