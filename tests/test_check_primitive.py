"""The check_primitive contract over every registered primitive, and proof that it catches bugs.

A new primitive is tested here by registering it (with ``examples=``): the parametrisation
below runs over the whole registry at collection time.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr  # noqa: F401  (imports every module that registers primitives)
from chainrule._primitive import PRIMITIVES, Primitive, check_registry, registered
from chainrule.testing import (
    PrimitiveCheckError,
    check_primitive,
    registered_primitives,
)

try:  # the oracle: CI installs torch==2.13.0; without it the other checks still run
    import torch
except ImportError:  # pragma: no cover
    torch = None


def test_the_registry_is_complete_and_every_primitive_has_its_rules():
    check_registry()
    assert {"linear", "split", "dropout", "batch_norm_running_stats"} <= set(PRIMITIVES)
    assert [p.name for p in registered_primitives()] == sorted(PRIMITIVES)


@pytest.mark.parametrize("prim", registered_primitives(), ids=lambda p: p.name)
def test_primitive_passes_its_contract(prim):
    report = check_primitive(prim)
    assert report.cases > 0
    if any(rule is not None for rule in prim.vjps) or prim.vjp_argnum is not None:
        assert report.gradient_points > 0
    if prim.torch is not None and torch is not None:
        assert report.torch_cases > 0
    assert report.max_gradient_error <= 1.0


# ----- the suite catches wrong primitives -----------------------------------------------------
def _square(a):
    return a * a


def _square_examples(rng, dtype):
    return [((rng.standard_normal((3, 4)).astype(dtype),), {})]


def _check_fails(prim, *patterns, **kwargs):
    with registered(prim):
        assert PRIMITIVES[prim.name] is prim
        with pytest.raises(PrimitiveCheckError) as info:
            check_primitive(prim, **kwargs)
    assert prim.name not in PRIMITIVES  # the registry is left as it was
    message = str(info.value)
    assert f"check_primitive({prim.name!r})" in message
    for pattern in patterns:
        assert re.search(pattern, message), message
    return message


def test_a_wrong_rule_is_caught_naming_the_primitive_input_and_position():
    wrong = Primitive(
        "toy_wrong_square",
        _square,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: g * x,),  # should be 2·g·x
        examples=_square_examples,
    )
    message = _check_fails(
        wrong, r"gradient: input 0 at position \(\d+, \d+\)", "engine gradient", "central diff"
    )
    assert "float64[3, 4]" in message


def test_the_right_rule_passes_the_same_checks():
    pytest.importorskip("torch")
    right = Primitive(
        "toy_square",
        _square,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: 2 * g * x,),
        examples=_square_examples,
        torch=lambda x: x * x,
    )
    with registered(right):
        report = check_primitive(right)
    assert report.gradient_points == 12 and report.torch_cases == 1
    assert report.max_gradient_error < 0.01


def _mul(a, b):
    return a * b


def _mul_examples(rng, dtype):
    return [
        ((rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)), {})
    ]


def test_a_rule_wrong_only_under_broadcasting_is_caught_by_the_broadcast_cases():
    # the rule of b forgets that b may be broadcast: it returns g·a summed over everything
    def bad_b(g, out, saved, a, b):
        ga = g * a
        return ga if b.shape == ga.shape else np.full(b.shape, ga.sum() * 0.5, ga.dtype)

    prim = Primitive(
        "toy_bad_broadcast",
        _mul,
        kind="elementwise",
        vjps=(lambda g, out, saved, a, b: g * b, bad_b),
        examples=_mul_examples,
    )
    _check_fails(prim, r"broadcast variant 0", r"input 1 at position \(0, \d+\)")


def test_a_wrong_second_output_rule_is_caught_for_that_output():
    def two(a):
        return a * 2.0, a * a

    def rule(g, out, saved, a):
        g0, g1 = g
        total = np.zeros_like(a)
        if g0 is not None:
            total = total + 2.0 * g0
        if g1 is not None:
            total = total + g1 * a  # should be 2·a·g1
        return total

    prim = Primitive(
        "toy_two_outputs", two, kind="fused", n_outputs=2, vjps=(rule,), examples=_square_examples
    )
    _check_fails(prim, r"gradient: input 0 at position")  # both outputs together
    # and the first output alone passes: the per-output check names the broken one
    ok = Primitive(
        "toy_two_outputs_ok",
        two,
        kind="fused",
        n_outputs=2,
        vjps=(
            lambda g, out, saved, a: (
                (0 if g[0] is None else 2.0 * g[0]) + (0 if g[1] is None else 2 * a * g[1])
            ),
        ),
        examples=_square_examples,
    )
    with registered(ok):
        check_primitive(ok)


def test_a_silent_float64_upcast_is_caught():
    def upcast(a):
        return a.astype(np.float64) * 3.0

    prim = Primitive(
        "toy_upcast",
        upcast,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: 3.0 * g,),
        examples=_square_examples,
    )
    _check_fails(prim, r"float32: output 0 has dtype float64 for float32 inputs")


def test_a_float32_forward_that_loses_precision_is_caught():
    def lossy(a):
        if a.dtype == np.float32:  # a float32 path that goes through float16
            h = a.astype(np.float16)
            return (h * h).astype(np.float32)
        return a * a

    prim = Primitive(
        "toy_float16_inside",
        lossy,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: 2 * g * x,),
        examples=_square_examples,
    )
    _check_fails(prim, r"float32 forward: output 0 at position", r"relative error")


def test_a_disagreement_with_pytorch_is_caught():
    pytest.importorskip("torch")

    def softplus_wrong(a):
        return np.log1p(np.exp(a)) - 1e-6  # a constant offset: gradients stay right

    prim = Primitive(
        "toy_vs_torch",
        softplus_wrong,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: g / (1 + np.exp(-x)),),
        examples=_square_examples,
        torch=lambda x: torch.nn.functional.softplus(x),
    )
    _check_fails(prim, r"torch oracle forward: output 0 at position", r"PyTorch")


def test_an_empty_input_that_breaks_the_forward_is_caught():
    def needs_rows(a):
        return a - a.max()  # a shift by the maximum, which an empty array does not have

    def examples(rng, dtype):
        return [((np.zeros((0, 3), dtype),), {})]

    prim = Primitive(
        "toy_empty",
        needs_rows,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: g,),
        examples=examples,
    )
    _check_fails(prim, r"empty shapes")


def test_a_forward_that_writes_into_its_input_is_caught():
    def inplace(a):
        a *= 2.0
        return a

    prim = Primitive(
        "toy_inplace",
        inplace,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: 2.0 * g,),
        examples=_square_examples,
    )
    _check_fails(prim, r"changed its input 0 in place")


def test_a_primitive_without_examples_cannot_pass():
    prim = Primitive("toy_no_examples", _square, vjps=(lambda g, out, saved, x: 2 * g * x,))
    _check_fails(prim, r"has no examples")


def test_a_rule_reading_the_output_without_declaring_it_is_caught():
    # exp's rule g·out reads the forward output: reads_out=False would let an in-place
    # change of the output slip past backward()'s check
    prim = Primitive(
        "toy_exp_undeclared",
        np.exp,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: g * out,),
        reads_out=False,
        examples=_square_examples,
    )
    _check_fails(prim, r"in-place facts: the rule of input 0 reads the forward output")
    declared = Primitive(
        "toy_exp_declared",
        np.exp,
        kind="elementwise",
        vjps=(lambda g, out, saved, x: g * out,),
        reads_out=True,
        examples=_square_examples,
    )
    with registered(declared):
        check_primitive(declared, oracle=False)


def test_a_wrong_needed_by_declaration_is_caught():
    # x·y: the rule of x reads y and the rule of y reads x; the swapped declaration is wrong
    prim = Primitive(
        "toy_mul_swapped",
        np.multiply,
        kind="elementwise",
        vjps=(lambda g, out, saved, x, y: g * y, lambda g, out, saved, x, y: g * x),
        needed_by=((0,), (1,)),
        examples=_mul_examples,
    )
    _check_fails(prim, r"the rule of input 1 reads the value of input 0", r"inputs \(0,\)")
