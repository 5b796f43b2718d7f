"""The engine's long modules were split along their seams: every old name still works.

``chainrule.tensor`` re-exports what moved to ``_grad_mode``, ``_versions`` and ``_backward``;
``chainrule.testing.primitives`` what moved to ``_cases`` and ``_checker``. The records built
from the tables in ``ops/elementwise.py`` and ``ops/reduction.py`` carry the same facts as the
hand-written ones did.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule._primitive import PRIMITIVES
from chainrule.ops._common import binary_cases, reduction_cases, unary_cases

# name -> the module it lives in now (each is still importable from chainrule.tensor)
MOVED_FROM_TENSOR = {
    "_GradMode": "_grad_mode",
    "_GradModeSwitch": "_grad_mode",
    "_grad_mode": "_grad_mode",
    "enable_grad": "_grad_mode",
    "is_grad_enabled": "_grad_mode",
    "no_grad": "_grad_mode",
    "set_grad_enabled": "_grad_mode",
    "_EPOCH": "_versions",
    "_mark_modified": "_versions",
    "mark_modified": "_versions",
    "Released": "_backward",
    "ReleasedNode": "_backward",
    "_accumulate": "_backward",
    "_check_inplace": "_backward",
    "_gather_outputs": "_backward",
    "_propagate": "_backward",
    "_release": "_backward",
    "_release_group": "_backward",
    "_toposort": "_backward",
    "run_backward": "_backward",
    "unbroadcast": "_backward",
}
STAYED_IN_TENSOR = [
    "Tensor",
    "tensor",
    "HIGHER_ORDER_MESSAGE",
    "_FLOAT_KINDS",
    "_Size",
    "_as_array",
    "_raw",
    "as_array",
    "as_tensor",
    "grad_home",
]


@pytest.mark.parametrize("name", sorted(MOVED_FROM_TENSOR))
def test_a_name_moved_out_of_tensor_is_the_same_object_there(name):
    tensor_module = importlib.import_module("chainrule.tensor")
    home = importlib.import_module(f"chainrule.{MOVED_FROM_TENSOR[name]}")
    assert getattr(tensor_module, name) is getattr(home, name)


def test_the_names_that_stayed_are_still_in_tensor_and_the_public_ones_in_all():
    tensor_module = importlib.import_module("chainrule.tensor")
    for name in STAYED_IN_TENSOR:
        assert hasattr(tensor_module, name), name
    for name in tensor_module.__all__:
        assert hasattr(tensor_module, name), name
    assert cr.no_grad is tensor_module.no_grad and cr.Tensor is tensor_module.Tensor


def test_grad_mode_and_version_counter_are_shared_not_copied():
    # the in-place machinery and apply() read the same objects as the re-exports
    from chainrule import _inplace, _primitive, _versions
    from chainrule.tensor import _EPOCH, _grad_mode

    assert _inplace._EPOCH is _EPOCH is _versions._EPOCH
    assert _primitive._grad_mode is _grad_mode is _inplace._grad_mode
    with cr.no_grad():
        assert not _grad_mode.enabled and not cr.is_grad_enabled()
    assert _grad_mode.enabled
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    before = _EPOCH[0]
    with cr.no_grad():
        y += 1.0  # an in-place change of a value the rule of mul does not read
    assert _EPOCH[0] == before + 1 and y._version == 1


@pytest.mark.parametrize(
    "module", ["chainrule._backward", "chainrule._versions", "chainrule._grad_mode"]
)
def test_each_split_module_imports_first_in_a_fresh_process(module):
    code = f"import {module}; import chainrule as cr; x = cr.tensor([2.0], requires_grad=True); "
    code += "(x * x).sum().backward(); assert x.grad.tolist() == [4.0]"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_backward_in_place_check_still_fires_after_the_split():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = cr.exp(x)  # exp's rule reads its output
    z = y.sum()
    with cr.no_grad():
        y += 1.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


def test_testing_primitives_reexports_what_moved():
    from chainrule.testing import _cases, _checker, primitives

    for name in ["Case", "PrimitiveCheckError", "PrimitiveReport", "_cast", "_describe", "_pos"]:
        assert getattr(primitives, name) is getattr(_cases, name)
    assert primitives._Checker is _checker._Checker
    assert cr.testing.PrimitiveCheckError is _cases.PrimitiveCheckError


UFUNC_TABLE = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "neg": np.negative,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
}


@pytest.mark.parametrize("name", sorted(UFUNC_TABLE))
def test_a_ufunc_record_of_the_table_has_the_facts_it_had_written_out(name):
    prim = PRIMITIVES[name]
    assert prim.forward is UFUNC_TABLE[name]
    assert prim.kind == "elementwise" and prim.out_capable and prim.n_outputs == 1
    assert len(prim.vjps) == prim.forward.nin
    assert prim.torch.__name__ == f"torch_{name}"
    if name in ("add", "sub", "mul"):
        assert prim.examples is binary_cases
    if name in ("neg", "exp", "tanh"):
        assert prim.examples is unary_cases


def test_sigmoid_and_relu_records_keep_their_own_forwards():
    assert not PRIMITIVES["sigmoid"].out_capable and PRIMITIVES["sigmoid"].reads_out
    assert PRIMITIVES["relu"].out_capable and PRIMITIVES["relu"].reads_out
    assert PRIMITIVES["relu"].forward.__name__ == "_relu_array"


@pytest.mark.parametrize(
    ("name", "fn", "torch_name"),
    [
        ("sum", np.sum, "sum"),
        ("mean", np.mean, "mean"),
        ("max", np.max, "amax"),
        ("min", np.min, "amin"),
    ],
)
def test_a_reduction_record_of_the_table_computes_numpys_value(name, fn, torch_name):
    prim = PRIMITIVES[name]
    assert prim.kind == "reduction" and prim.forward.__name__ == f"{name}_p"
    assert prim.torch.__name__ == f"torch_{torch_name}"
    assert prim.reads_out == (name in ("max", "min"))
    assert prim.reads_inputs == (name not in ("sum", "mean"))
    assert (prim.examples is reduction_cases) == (name == "sum")
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for axis in (None, 0, 1, (0, 1)):
        for keepdims in (False, True):
            got = prim.forward(a, axis=axis, keepdims=keepdims)
            want = fn(a, axis=axis, keepdims=keepdims)
            assert np.asarray(got).dtype == np.asarray(want).dtype
            assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
