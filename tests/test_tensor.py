"""Tensor construction, dtype policy, operators and the backward pass's semantics."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import chainrule as cr

# ----- construction and dtype policy ----------------------------------------------------------


def test_python_floats_and_lists_become_float32():
    assert cr.tensor(1.5).dtype == np.float32
    assert cr.tensor([1.0, 2.0]).dtype == np.float32
    assert cr.tensor([[1, 2], [3, 4]]).dtype == np.float32


def test_float_arrays_keep_their_dtype_and_integers_stay_integer():
    assert cr.tensor(np.zeros(3, np.float64)).dtype == np.float64
    assert cr.tensor(np.zeros(3, np.float32)).dtype == np.float32
    assert cr.tensor(np.arange(3)).dtype == np.arange(3).dtype
    assert cr.tensor(np.zeros(3), dtype=np.float32).dtype == np.float32


def test_tensor_copies_its_input():
    a = np.ones(3)
    t = cr.tensor(a)
    a[0] = 5
    assert t.data[0] == 1


def test_attributes():
    t = cr.tensor(np.zeros((2, 3)), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and t.grad is None
    assert t.requires_grad and t.is_leaf
    assert cr.tensor([[3.0]]).item() == 3.0
    assert isinstance(cr.tensor([1.0]).numpy(), np.ndarray)
    d = t.detach()
    assert not d.requires_grad and d.data is t.data


def test_requires_grad_on_integer_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        cr.tensor(np.arange(3), requires_grad=True)


def test_strings_are_rejected():
    with pytest.raises(TypeError, match="numeric"):
        cr.tensor(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        cr.tensor("abc")


def test_item_on_many_elements_raises():
    with pytest.raises(ValueError, match="one element"):
        cr.tensor([1.0, 2.0]).item()


# ----- operators ---------------------------------------------------------------------------


def test_scalar_operands_do_not_upcast_float32():
    x = cr.tensor([1.0, 2.0])
    for y in (x + 1, 1 + x, 2.0 - x, x * 0.5, x / 3, 3 / x, x**2, 2.0**x, -x):
        assert y.dtype == np.float32


def test_array_operands_take_the_tensors_float_dtype():
    x = cr.tensor([1.0, 2.0])
    assert (x + np.array([1.0, 2.0])).dtype == np.float32
    assert (np.array([1.0, 2.0]) * x).dtype == np.float32
    assert (x + np.float64(2.0)).dtype == np.float32


def test_reflected_operators_with_arrays():
    x = cr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    a = np.ones((4, 2))
    y = a @ x
    assert isinstance(y, cr.Tensor)
    np.testing.assert_allclose(y.data, a @ x.data)
    z = np.full((2, 3), 10.0) - x
    assert isinstance(z, cr.Tensor)
    np.testing.assert_allclose(z.data, 10 - x.data)
    (y.sum() + z.sum()).backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 4.0 - 1.0))


def test_comparisons_return_plain_bool_arrays():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (x > 1.5, x < 2, x >= 2, x <= 2, x == 2, x != 2):
        assert type(r) is np.ndarray and r.dtype == bool
    assert isinstance(x.argmax(), np.integer | np.ndarray)


def test_transpose_property_and_reshape_forms():
    x = cr.tensor(np.arange(6.0).reshape(2, 3))
    assert x.T.shape == (3, 2)
    assert x.reshape(3, 2).shape == (3, 2)
    assert x.reshape((6,)).shape == (6,)
    assert x.reshape(-1, 1).shape == (6, 1)


def test_no_grad_records_nothing():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.no_grad():
        y = w * 3
        assert not cr.is_grad_enabled()
    assert cr.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    z = w * 3
    assert z.requires_grad and z.op == "mul"


# ----- shape errors ------------------------------------------------------------------------


def test_matmul_shape_error_names_op_and_shapes():
    a = cr.tensor(np.ones((3, 4)))
    b = cr.tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"matmul.*\(3, 4\).*\(5, 2\)"):
        a @ b


def test_broadcast_error_names_op_and_shapes():
    a = cr.tensor(np.ones((3, 4)))
    b = cr.tensor(np.ones((3,)))
    with pytest.raises(ValueError, match=r"add.*\(3, 4\).*\(3,\)"):
        a + b
    with pytest.raises(ValueError, match=r"mul.*\(3, 4\).*\(2, 4\)"):
        a * np.ones((2, 4))


def test_missing_rule_is_not_implemented_naming_op():
    from chainrule._primitive import Primitive, apply

    mystery = Primitive("mystery", np.sort, vjps=(None,), kind="movement")
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = apply(mystery, x)
    with pytest.raises(NotImplementedError, match="mystery"):
        y.sum().backward()


def test_non_differentiable_argument_is_not_implemented():
    from chainrule import ops

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    cond = cr.tensor([0.0, 1.0], requires_grad=True)
    y = ops.apply(ops.where_p, cond, x, x)
    with pytest.raises(
        NotImplementedError, match=r"'where' is not differentiable with respect to argument 0"
    ):
        y.sum().backward()


# ----- backward semantics -------------------------------------------------------------------


def test_backward_non_scalar_without_seed_is_value_error():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="seed"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, -1.0]))
    np.testing.assert_allclose(x.grad, [2.0, -2.0])


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.tensor([1.0]).sum().backward()


def test_gradients_accumulate_across_calls_until_zeroed():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])  # 2 * 2x
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_fan_out_sums_paths():
    a = cr.tensor(3.0, requires_grad=True)
    (a + a).backward()
    assert a.grad == 2.0
    b = cr.tensor(2.0, requires_grad=True)
    (b * b * b).backward()  # d/db b^3 = 3 b^2 = 12
    assert b.grad == pytest.approx(12.0)


def test_diamond_graph():
    # x -> u = 2x, v = x^2 -> y = u * v = 2x^3;  dy/dx = 6x^2
    x = cr.tensor(np.array([1.5, -2.0]), requires_grad=True)
    u = x * 2
    v = x**2
    (u * v).sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data**2)


def test_ten_thousand_op_chain_has_no_recursion_limit():
    x = cr.tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001**10_000, rel=1e-9)


def test_second_backward_through_released_graph_raises():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (cr.tanh(x) * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first)


def test_intermediate_buffers_are_released_after_backward():
    x = cr.tensor(np.ones(1000), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h)
    y = cr.tanh(h).sum()
    del h
    gc.collect()
    assert ref() is not None  # still held by the graph
    y.backward()
    gc.collect()
    assert ref() is None


def test_gradients_have_the_dtype_and_shape_of_their_tensor():
    for dt in (np.float32, np.float64):
        w = cr.tensor(np.ones((3, 2), dt), requires_grad=True)
        b = cr.tensor(np.ones(2, dt), requires_grad=True)
        x = np.ones((5, 3), dt)
        ((x @ w + b) ** 2).mean().backward()
        assert w.grad.dtype == dt and w.grad.shape == (3, 2)
        assert b.grad.dtype == dt and b.grad.shape == (2,)


def test_mixed_precision_gradient_is_cast_back():
    a = cr.tensor(np.ones(3, np.float32), requires_grad=True)
    b = cr.tensor(np.ones(3, np.float64), requires_grad=True)
    y = (a * b).sum()
    assert y.dtype == np.float64
    y.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_retain_grad_on_intermediate():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    np.testing.assert_allclose(x.grad, 2 * h.data * 3)


def test_leaf_grad_owns_its_memory():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = cr.tensor([1.0, 2.0], requires_grad=True)
    (x + y).sum().backward()
    x.grad += 1
    np.testing.assert_allclose(y.grad, [1.0, 1.0])


def test_integer_index_tensor_is_not_differentiated():
    x = cr.tensor(np.arange(5.0), requires_grad=True)
    idx = cr.tensor(np.array([0, 0, 3]))
    x[idx].sum().backward()
    np.testing.assert_allclose(x.grad, [2, 0, 0, 1, 0])
