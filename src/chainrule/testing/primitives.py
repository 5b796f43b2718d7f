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

from collections.abc import Callable
from typing import Any

import numpy as np

from .._primitive import PRIMITIVES, Primitive, check_registry
from ._cases import Case as Case
from ._cases import PrimitiveCheckError as PrimitiveCheckError
from ._cases import PrimitiveReport as PrimitiveReport
from ._cases import _cast as _cast
from ._cases import _describe as _describe
from ._cases import _differentiable as _differentiable
from ._cases import _forward as _forward
from ._cases import _is_float_array as _is_float_array
from ._cases import _pos as _pos
from ._cases import _relative as _relative
from ._cases import _rule as _rule
from ._checker import _Checker as _Checker

__all__ = ["PrimitiveCheckError", "PrimitiveReport", "check_primitive", "registered_primitives"]


def registered_primitives() -> list[Primitive]:
    """Every registered primitive, sorted by name (for ``pytest.mark.parametrize``)."""
    return [PRIMITIVES[k] for k in sorted(PRIMITIVES)]


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
    try:  # the record's own contract first: a rule per array input (also unregistered ones)
        check_registry([prim])
    except TypeError as exc:
        raise PrimitiveCheckError(f"check_primitive({prim.name!r}): {exc}") from None
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
