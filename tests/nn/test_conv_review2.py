"""Issue 18, second review: the defects an independent reviewer found, each checked against
PyTorch (or against the rule PyTorch follows) so that the old behaviour fails these tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn import init

torch = pytest.importorskip("torch")
F, TF = cr.nn.functional, torch.nn.functional


# ---------------------------------------------------------------------------------------------
# 1. nn.init: PyTorch's fans for conv kernels, PyTorch's default nonlinearity for kaiming_*
# ---------------------------------------------------------------------------------------------
def _torch_scale(torch_shape, fn, **kwargs):
    """The bound (uniform) or std (normal) torch.nn.init uses for a weight of ``torch_shape``."""
    t = torch.empty(torch_shape, dtype=torch.float64)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t)
    if fn == "xavier_uniform_":
        return kwargs.get("gain", 1.0) * math.sqrt(6.0 / (fan_in + fan_out))
    if fn == "xavier_normal_":
        return kwargs.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
    if fn == "lecun_normal_":
        return math.sqrt(1.0 / fan_in)
    fan = fan_in if kwargs.get("mode", "fan_in") == "fan_in" else fan_out
    gain = torch.nn.init.calculate_gain(
        kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0)
    )
    std = gain / math.sqrt(fan)
    return math.sqrt(3.0) * std if fn == "kaiming_uniform_" else std


INIT_CASES = [
    ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"a": math.sqrt(5), "nonlinearity": "leaky_relu"}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform_", {}),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"a": 0.2}),
    ("kaiming_normal_", {"nonlinearity": "tanh"}),
    ("xavier_uniform_", {"gain": 2.0}),
    ("xavier_normal_", {}),
    ("lecun_normal_", {}),
]


def _layers():
    return [
        (nn.Conv2d(3, 16, 3, rng=0), (16, 3, 3, 3)),
        (nn.Conv2d(4, 8, (3, 2), groups=2, rng=0), (8, 2, 3, 2)),
        (nn.Conv1d(5, 7, 4, rng=0), (7, 5, 4)),
        (nn.Linear(27, 144, rng=0), (144, 27)),  # chainrule (in, out) = torch's transpose
    ]


@pytest.mark.parametrize(("fn", "kwargs"), INIT_CASES)
def test_init_matches_torch_scale_for_conv_and_linear_weights(fn, kwargs):
    for layer, torch_shape in _layers():
        w = layer.weight
        getattr(init, fn)(w, rng=0, **kwargs)
        scale = _torch_scale(torch_shape, fn, **kwargs)
        draw = np.random.default_rng(0)
        if fn.endswith("uniform_"):
            expected = draw.uniform(-scale, scale, w.shape)
        else:
            expected = draw.normal(0.0, scale, w.shape)
        np.testing.assert_array_equal(w.data, expected.astype(np.float32), err_msg=f"{layer}")


def test_init_gain_table_has_torch_conv_names():
    for name in ("conv1d", "conv2d", "conv3d", "conv_transpose2d", "linear", "sigmoid"):
        assert init.calculate_gain(name) == torch.nn.init.calculate_gain(name) == 1
    for name, param in [("leaky_relu", None), ("leaky_relu", 0.3), ("tanh", None), ("selu", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param)
        )


def test_mlp_he_init_keeps_relu_gain():
    """The library's own He init (mlp, CLI --init he) names its nonlinearity: U(±√(6/fan_in))."""
    m = nn.mlp([6, 5, 2], activation="relu", init_scheme="he", rng=0)
    bound = math.sqrt(6.0 / 6)
    assert 0.8 * bound < np.abs(m[0].weight.data).max() <= bound


# ---------------------------------------------------------------------------------------------
# 2. adaptive average pooling keeps a NaN/inf in the bins that hold it (forward and backward)
# ---------------------------------------------------------------------------------------------
ADAPTIVE_CASES = [
    ((6, 6), (2, 2)),
    ((7, 5), (3, 4)),
    ((5, 9), (5, 2)),
    ((4, 4), (4, 4)),
    ((3, 8), (1, 3)),
]


@pytest.mark.parametrize(("size", "out"), ADAPTIVE_CASES)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_adaptive_avg_pool2d_nonfinite_stays_in_its_bins(size, out, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size))
    x[0, 1, size[0] - 1, 0] = bad
    g = rng.standard_normal((2, 3, *out))
    g[1, 2, 0, out[1] - 1] = bad
    t = cr.tensor(x, requires_grad=True)
    y = F.adaptive_avg_pool2d(t, out)
    y.backward(g)
    tt = torch.tensor(x, requires_grad=True)
    ty = TF.adaptive_avg_pool2d(tt, out)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert np.isfinite(y.data).sum() == np.isfinite(ty.detach().numpy()).sum() > 0


@pytest.mark.parametrize(("n", "out"), [(6, 3), (7, 3), (5, 4), (9, 2)])
def test_adaptive_avg_pool1d_nonfinite_stays_in_its_bins(n, out):
    x = np.arange(2.0 * n).reshape(1, 2, n)
    x[0, 0, 0] = np.nan
    x[0, 1, n - 1] = np.inf
    t = cr.tensor(x, requires_grad=True)
    y = F.adaptive_avg_pool1d(t, out)
    g = np.ones(y.shape)
    g[0, 0, out - 1] = -np.inf
    y.backward(g)
    tt = torch.tensor(x, requires_grad=True)
    ty = TF.adaptive_avg_pool1d(tt, out)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-12)


def test_adaptive_avg_pool2d_float32_and_identity_size_do_not_alias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 7, 10)).astype(np.float32)
    for out in [(3, 4), (7, 10), (7, 5)]:
        y = F.adaptive_avg_pool2d(x, out)
        assert y.dtype == np.float32
        ref = TF.adaptive_avg_pool2d(torch.tensor(x), out).numpy()
        np.testing.assert_allclose(y.data, ref, rtol=1e-5, atol=1e-6)
        assert not np.shares_memory(y.data, x)


# ---------------------------------------------------------------------------------------------
# 3. conv backward over a retained graph: a gradient array changed in place is read afresh
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize(
    "needs", [(True, True, True), (True, True, False), (True, False, True), (False, True, True)]
)
def test_conv_backward_twice_with_same_gradient_array_changed_in_place(d, needs):
    rng = np.random.default_rng(0)
    size = (5,) * d
    xa, wa, ba = (
        rng.standard_normal((2, 3, *size)),
        rng.standard_normal((4, 3, *(3,) * d)),
        rng.standard_normal(4),
    )
    fn, tfn = (F.conv2d, TF.conv2d) if d == 2 else (F.conv1d, TF.conv1d)
    ours = [cr.tensor(a, requires_grad=r) for a, r in zip((xa, wa, ba), needs)]
    theirs = [torch.tensor(a, requires_grad=r) for a, r in zip((xa, wa, ba), needs)]
    y, ty = fn(*ours), tfn(*theirs)
    g = rng.standard_normal(y.shape)
    y.backward(g, retain_graph=True)
    ty.backward(torch.tensor(g), retain_graph=True)
    g *= -3.0  # the same array, new values
    g[0] += 1.0
    y.backward(g, retain_graph=True)
    ty.backward(torch.tensor(g))
    for a, ta in zip(ours, theirs):
        if ta.requires_grad:
            np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
        else:
            assert a.grad is None


# ---------------------------------------------------------------------------------------------
# 5. loading mnist1d leaves NumPy's and Python's global generators as they were
# ---------------------------------------------------------------------------------------------
def test_mnist1d_load_leaves_global_generators_alone():
    pytest.importorskip("mnist1d")
    import random

    from chainrule.data import images

    images._mnist1d_arrays.cache_clear()  # generate, not reuse an earlier load
    np.random.seed(123)
    random.seed(7)
    expected = (np.random.rand(3), random.random())
    np.random.seed(123)
    random.seed(7)
    ds = cr.datasets.load("mnist1d")
    assert ds.extra["train"][0].shape == (4000, 1, 40)
    got = (np.random.rand(3), random.random())
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1]


# ---------------------------------------------------------------------------------------------
# 7. ceil_mode pooling with a window larger than the padded input: PyTorch's sizes and values
# ---------------------------------------------------------------------------------------------
POOL_CEIL_CASES = [  # (spatial size, kernel, stride, padding, dilation)
    ((2,), 3, None, 0, 1),
    ((2,), 3, 2, 1, 1),
    ((4,), 5, 3, 2, 1),
    ((3,), 2, 2, 0, 2),
    ((2, 3), 3, None, 0, 1),
    ((2, 3), (3, 2), (3, 4), 1, 1),
    ((5, 2), 3, 2, (1, 0), 1),
]


@pytest.mark.parametrize(
    ("size", "k", "s", "p", "dil", "kind"),
    [(*case, kind) for case in POOL_CEIL_CASES for kind in ("max", "avg_incl", "avg_excl")
     if kind == "max" or case[-1] == 1],  # average pooling has no dilation
)  # fmt: skip
def test_ceil_mode_pooling_with_kernel_larger_than_input_matches_torch(size, k, s, p, dil, kind):
    d = len(size)
    rng = np.random.default_rng(len(size) + sum(size))
    x = rng.standard_normal((2, 3, *size))
    name = ("max" if kind == "max" else "avg") + f"_pool{d}d"
    kw = {"stride": s, "padding": p, "ceil_mode": True}
    if kind == "max":
        kw["dilation"] = dil
    else:
        kw["count_include_pad"] = kind == "avg_incl"
    t = cr.tensor(x, requires_grad=True)
    y = getattr(F, name)(t, k, **kw)
    tt = torch.tensor(x, requires_grad=True)
    ty = getattr(TF, name)(tt, k, **kw)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))  # no window lies wholly in padding here (torch_oob.py)
    np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-12)


def test_pooling_with_no_window_is_still_refused_as_torch():
    x = np.zeros((1, 1, 2))
    with pytest.raises(RuntimeError):
        TF.max_pool1d(torch.tensor(x), 3)  # floor mode: no window
    with pytest.raises(ValueError, match=r"max_pool1d: the kernel .* larger than the padded input"):
        F.max_pool1d(x, 3)
    with pytest.raises(ValueError, match=r"avg_pool2d: the kernel .* larger than the padded input"):
        F.avg_pool2d(np.zeros((1, 1, 2, 2)), 3)
    with pytest.raises(RuntimeError, match="too small"):  # ceil mode, still no window in W
        TF.max_pool2d(torch.zeros(1, 1, 5, 1), 3, 2, (1, 0), ceil_mode=True)
    with pytest.raises(ValueError, match="max_pool2d: the kernel"):
        F.max_pool2d(np.zeros((1, 1, 5, 1)), 3, 2, (1, 0), ceil_mode=True)


# ---------------------------------------------------------------------------------------------
# 8. explain: the string form names a conv entry (3 or 4 indices), and lr= shows the update
# ---------------------------------------------------------------------------------------------
def _conv_net():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3, rng=1)
    )


def test_explain_string_form_names_conv_entries():
    from chainrule.diagnostics.explain import parse_weight

    assert parse_weight("0.weight[1,0,2,1]") == ("0.weight", (1, 0, 2, 1))
    assert parse_weight("3.weight[ 1, 0, 2 ]") == ("3.weight", (1, 0, 2))
    assert parse_weight("2.weight[3,1]") == ("2.weight", (3, 1))
    assert parse_weight("2.bias[1]") == ("2.bias", (1,))
    for bad in ("2.bias[1,2]", "2.weight[3]", "2.weight[1,2,3,4,5]", "2.weight[]"):
        with pytest.raises(ValueError, match=r"weight must look like .*Conv2d"):
            parse_weight(bad)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    m = _conv_net()
    by_string = cr.explain(m, X, y, "cross_entropy", "0.weight[1,0,2,1]")
    by_index = cr.explain(m, X, y, "cross_entropy", "0.weight", (1, 0, 2, 1))
    assert by_string.index == (1, 0, 2, 1) and by_string.total == by_index.total
    # the engine's gradient of that entry, against torch
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(32, 3)
    ).double()
    with torch.no_grad():
        tm[0].weight.copy_(torch.tensor(m[0].weight.data))
        tm[0].bias.copy_(torch.tensor(m[0].bias.data))
        tm[3].weight.copy_(torch.tensor(m[3].weight.data.T))
        tm[3].bias.copy_(torch.tensor(m[3].bias.data))
    TF.cross_entropy(tm(torch.tensor(X, dtype=torch.float64)), torch.tensor(y)).backward()
    assert by_string.total == pytest.approx(float(tm[0].weight.grad[1, 0, 2, 1]), rel=1e-9)


def test_explain_conv_with_lr_shows_the_sgd_update():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    m = _conv_net()
    before = m[0].weight.data.copy()
    e = cr.explain(m, X, y, "cross_entropy", "0.weight[1,0,2,1]", lr=0.1)
    w = m[0].weight.data[1, 0, 2, 1]
    assert e.updated == float(w - np.float32(0.1) * np.float32(e.engine_grad))
    assert "gradient-descent update: w - η·∂C/∂w" in str(e)
    np.testing.assert_array_equal(m[0].weight.data, before)  # the model is not changed
    b = cr.explain(m, X, y, "cross_entropy", "0.bias[0]", lr=0.5)
    assert b.updated == float(m[0].bias.data[0] - np.float32(0.5) * np.float32(b.engine_grad))
    assert "update: b - η·∂C/∂b" in str(b)
    assert "update" not in str(cr.explain(m, X, y, "cross_entropy", "0.bias[0]"))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        cr.explain(m, X, y, "cross_entropy", "0.weight[1,0,2,1]", lr=-1.0)


# ---------------------------------------------------------------------------------------------
# 9. predict / evaluate / the report's pictures / check_architecture give back each
#    sub-module's own train/eval mode (a frozen BatchNorm stays frozen)
# ---------------------------------------------------------------------------------------------
def _bn_net():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, rng=0), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(48, 2, rng=1),
    )  # fmt: skip


def _modes(m):
    return [sub.training for sub in m.modules()]


def test_predict_evaluate_report_and_arch_check_keep_submodule_modes(tmp_path):
    from chainrule.diagnostics.conv_pictures import conv_pictures_html
    from chainrule.nn.arch import check_architecture

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 2, 6)
    m = _bn_net()
    calls = [
        lambda: cr.predict(m, X),
        lambda: cr.evaluate(m, X, y, loss="cross_entropy"),
        lambda: conv_pictures_html(m, X[:1]),
    ]
    for mixed in ([True, True, False, True, True, True, True], [False, False, True, False, True,
                                                               False, True]):  # fmt: skip
        for call in calls:
            for sub, mode in zip(m.modules(), mixed):
                sub.training = mode
            call()
            assert _modes(m) == mixed
    flat = nn.Sequential(nn.Unflatten(1, (1, 6, 6)), *list(_bn_net()))
    flat.train()
    flat[2].eval()
    before = _modes(flat)
    check_architecture(flat, 36, 2)
    assert _modes(flat) == before


def test_predict_in_eval_mode_uses_running_statistics_and_no_dropout():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 1, 6, 6)).astype(np.float32)
    m = _bn_net()
    m[1].running_mean[...] = 0.3
    m.train()
    a = cr.predict(m, X)
    m.eval()
    b = cr.predict(m, X)
    np.testing.assert_array_equal(a, b)
    assert m[1].training is False


# ---------------------------------------------------------------------------------------------
# 11. smaller points: BatchNorm2d's repr, integer-like divisor_override, an avg_pool torch
#     reference that does not reuse the kernel's own divisor
# ---------------------------------------------------------------------------------------------
def test_batchnorm2d_repr_shows_affine_and_running_stats():
    assert repr(nn.BatchNorm2d(3)).startswith(
        "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    )
    r = repr(nn.BatchNorm2d(4, affine=False, track_running_stats=False))
    assert "affine=False" in r and "track_running_stats=False" in r


def test_avg_pool_divisor_override_takes_numpy_integers():
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    ref = TF.avg_pool2d(torch.tensor(x), 3, 2, 1, divisor_override=3).numpy()
    for d in (np.int64(3), np.int32(3), 3):
        np.testing.assert_allclose(F.avg_pool2d(x, 3, 2, 1, divisor_override=d).data, ref)
    for bad in (True, 2.0, np.float64(3), 0):
        with pytest.raises(ValueError, match="divisor_override must be a non-zero int"):
            F.avg_pool2d(x, 3, divisor_override=bad)


@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("include", [False, True])
def test_avg_pool_torch_reference_agrees_with_torch_avg_pool(ceil, include):
    from chainrule.nn import conv_ops

    x = np.random.default_rng(3).standard_normal((2, 2, 6, 7))
    k, s, p = (3, 2), (2, 3), (1, 1)
    ours = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=include)
    _, _, _, _, pads = conv_ops._pool_geometry("avg_pool2d", 2, x.shape[2:], k, s, p, 1, ceil)
    counted = (1, 1, 1, 1) if include else (0, 0, 0, 0)
    ref = conv_ops._torch_avg_pool2d(torch.tensor(x), kernel=k, stride=s,
                                     padding=conv_ops._as_pads(pads), counted=counted,
                                     divisor_override=None)  # fmt: skip
    real = TF.avg_pool2d(torch.tensor(x), k, s, p, ceil_mode=ceil, count_include_pad=include)
    np.testing.assert_allclose(ref.numpy(), real.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.data, real.numpy(), rtol=1e-12)


def test_arch_errors_name_the_public_layer_and_its_index(tmp_path):
    import json

    from chainrule.nn.arch import ArchitectureError, read_architecture

    path = tmp_path / "net.json"
    conv = {"type": "Conv2d", "config": {"in_channels": 1, "out_channels": 2, "kernel_size": 3,
                                         "bogus": 1}}  # fmt: skip
    path.write_text(
        json.dumps({"type": "Sequential", "config": {"layers": [{"type": "Flatten"}, conv]}})
    )
    with pytest.raises(ArchitectureError) as info:
        read_architecture(path)
    text = str(info.value)
    assert text.startswith("layer 1: invalid configuration for layer Conv2d: Conv2d() got an")
    assert "_ConvNd" not in text and "'bogus'" in text


def test_load_state_dict_with_torch_tensors_points_to_the_converter_without_blaming_linear():
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    m = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0))
    with pytest.raises(TypeError, match=r"'0\.weight' is a PyTorch tensor") as info:
        m.load_state_dict(tm.state_dict())
    assert "from_torch_state_dict" in str(info.value)
    assert "convolution and batch-norm entries are alike" in str(info.value)
    nn.from_torch_state_dict(m, tm.state_dict())
    np.testing.assert_array_equal(m[0].weight.data, tm[0].weight.detach().numpy())


def test_conv_layer_fans_are_pytorchs_with_groups():
    # GradientFlow reads Module.fans(): with groups, PyTorch's fan_out is O·Πk, not O/G·Πk
    for layer, torch_shape in _layers()[:3]:
        t = torch.empty(torch_shape, dtype=torch.float64)
        assert layer.fans() == torch.nn.init._calculate_fan_in_and_fan_out(t)
    assert nn.Conv2d(6, 12, 3, groups=3, rng=0).fans() == (2 * 9, 12 * 9)
