"""Convolution and pooling: primitives against finite differences and PyTorch, layers, files,
messages and training (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule._primitive import PRIMITIVES, apply
from chainrule.nn import _conv_kernels as K

F = cr.nn.functional
torch = pytest.importorskip("torch")
TF = torch.nn.functional

CONV_PRIMS = [
    "conv1d",
    "conv2d",
    "max_pool1d",
    "max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
]


@pytest.fixture(params=["batched", "per_sample", "per_sample_one_by_one"])
def conv_layout(request, monkeypatch):
    """Run a test through each of the forward's two column layouts (and the per-sample one a
    sample at a time), whatever its channel counts would pick."""
    if request.param == "batched":
        monkeypatch.setattr(K, "_PER_SAMPLE_RATIO", float("inf"))
    else:
        monkeypatch.setattr(K, "_PER_SAMPLE_RATIO", 0.0)
    if request.param == "per_sample_one_by_one":
        monkeypatch.setattr(K, "_CHUNK_BYTES", 1)
    return request.param


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


# ---------------------------------------------------------------------------------------------
# the primitives' records: examples through the engine, against torch, in float64
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONV_PRIMS)
def test_registered_primitive_matches_torch_on_its_examples(name):
    prim = PRIMITIVES[name]
    assert prim.examples is not None and prim.torch is not None
    for inputs, attrs in prim.examples(np.random.default_rng(0), np.float64):
        ts = [cr.tensor(a, requires_grad=True) for a in inputs]
        out = apply(prim, *ts, **attrs)
        g = np.random.default_rng(1).standard_normal(out.shape)
        (out * g).sum().backward()
        tt = [torch.tensor(a, requires_grad=True) for a in inputs]
        ref = prim.torch(*tt, **attrs)
        ref.backward(torch.tensor(g))
        assert out.shape == tuple(ref.shape)
        assert rel_err(out.data, ref.detach().numpy()) <= 1e-10
        for t, r in zip(ts, tt):
            assert rel_err(t.grad, r.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("name", CONV_PRIMS)
def test_registered_primitive_gradchecks_on_its_examples(name):
    prim = PRIMITIVES[name]
    for inputs, attrs in prim.examples(np.random.default_rng(2), np.float64)[:3]:
        assert cr.gradcheck(lambda *xs: apply(prim, *xs, **attrs), *inputs, atol=1e-6)


@pytest.mark.parametrize("name", CONV_PRIMS)
def test_float32_follows_float64(name):
    prim = PRIMITIVES[name]
    for (i64, attrs), (i32, _) in zip(
        prim.examples(np.random.default_rng(3), np.float64),
        prim.examples(np.random.default_rng(3), np.float32),
    ):
        t64 = [cr.tensor(a, requires_grad=True) for a in i64]
        t32 = [cr.tensor(a, requires_grad=True) for a in i32]
        o64, o32 = apply(prim, *t64, **attrs), apply(prim, *t32, **attrs)
        assert o32.dtype == np.float32
        o64.sum().backward()
        o32.sum().backward()
        assert rel_err(o32.data, o64.data) < 1e-5
        for a, b in zip(t32, t64):
            assert a.grad.dtype == np.float32
            assert rel_err(a.grad, b.grad) < 1e-5


# ---------------------------------------------------------------------------------------------
# the functional interface against torch.nn.functional over random configurations
# ---------------------------------------------------------------------------------------------
def _random_conv(rng, d):
    groups = int(rng.choice([1, 1, 2, 3]))
    c = groups * int(rng.integers(1, 4))
    o = groups * int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, d))
    dil = tuple(int(v) for v in rng.integers(1, 3, d))
    if rng.random() < 0.25:
        stride, padding = 1, "same"
    else:
        stride = tuple(int(v) for v in rng.integers(1, 4, d))
        padding = tuple(int(v) for v in rng.integers(0, 3, d))
    span = [di * (ki - 1) + 1 for di, ki in zip(dil, k)]
    size = tuple(int(s + rng.integers(0, 6)) for s in span)
    n = int(rng.integers(1, 4))
    return n, c, o, k, stride, padding, dil, groups, size


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("seed", range(25))
def test_conv_matches_torch_forward_and_gradients(d, seed, conv_layout):
    rng = np.random.default_rng(seed)
    n, c, o, k, stride, padding, dil, groups, size = _random_conv(rng, d)
    x = rng.standard_normal((n, c, *size))
    w = rng.standard_normal((o, c // groups, *k))
    b = rng.standard_normal(o) if rng.random() < 0.7 else None
    args = (stride, padding, dil, groups)
    ours = [cr.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
    fn, tfn = (F.conv1d, TF.conv1d) if d == 1 else (F.conv2d, TF.conv2d)
    y = fn(*ours, *([None] if b is None else []), *args)
    ref = tfn(*theirs, *([None] if b is None else []), *args)
    g = rng.standard_normal(ref.shape)
    (y * g).sum().backward()
    ref.backward(torch.tensor(g))
    assert y.shape == tuple(ref.shape)
    assert rel_err(y.data, ref.detach().numpy()) <= 1e-10
    for a, r in zip(ours, theirs):
        assert rel_err(a.grad, r.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("seed", range(12))
def test_pools_match_torch_forward_and_gradients(seed):
    rng = np.random.default_rng(100 + seed)
    d = 1 + seed % 2
    k = tuple(int(v) for v in rng.integers(1, 4, d))
    stride = tuple(int(v) for v in rng.integers(1, 4, d))
    padding = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)
    ceil = bool(rng.random() < 0.4)
    size = tuple(int(v) for v in rng.integers(4, 9, d))
    x = rng.standard_normal((int(rng.integers(1, 3)), 3, *size))
    calls = [
        (f"max_pool{d}d", (k, stride, padding), {"ceil_mode": ceil}),
        (f"avg_pool{d}d", (k, stride, padding), {"ceil_mode": ceil}),
        (f"avg_pool{d}d", (k, stride, padding), {"ceil_mode": ceil, "count_include_pad": False}),
        (f"adaptive_avg_pool{d}d", (int(rng.integers(1, 5)),), {}),
    ]
    if d == 2:
        calls.append(("max_pool2d", (k, stride, padding, (1, 2)), {}))
        calls.append(("avg_pool2d", (k, stride, padding), {"divisor_override": 5}))
    for name, args, kw in calls:
        xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y = getattr(F, name)(xt, *args, **kw)
        ref = getattr(TF, name)(xr, *args, **kw)
        g = rng.standard_normal(ref.shape)
        (y * g).sum().backward()
        ref.backward(torch.tensor(g))
        assert y.shape == tuple(ref.shape), (name, args, kw)
        assert rel_err(y.data, ref.detach().numpy()) <= 1e-10, (name, args, kw)
        assert rel_err(xt.grad, xr.grad.numpy()) <= 1e-10, (name, args, kw)


def test_max_pool_ties_and_nan_follow_torch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 3.0  # a tie inside one overlapping window
    x[0, 0, 3, 3] = np.nan
    for args in [(2, 2), (3, 1), (2, 1, 1)]:
        xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ref = F.max_pool2d(xt, *args), TF.max_pool2d(xr, *args)
        np.testing.assert_array_equal(y.data, ref.detach().numpy())
        y.sum().backward()
        ref.sum().backward()
        np.testing.assert_array_equal(xt.grad, xr.grad.numpy())


def test_gradcheck_conv2d_over_strides_paddings_dilations_groups_and_batch_one(conv_layout):
    rng = np.random.default_rng(5)
    for n, c, o, hw, k, kw in [
        (1, 2, 4, (5, 6), 3, {"padding": "same"}),
        (2, 4, 4, (7, 5), 2, {"stride": 2, "padding": 1, "groups": 2}),
        (1, 3, 6, (6, 7), 3, {"dilation": (2, 1), "groups": 3}),  # depthwise, multiplier 2
        (2, 1, 2, (5, 5), 4, {"padding": "same", "dilation": 1}),  # even kernel, uneven pads
        (1, 2, 3, (9, 4), (3, 1), {"stride": (3, 1), "padding": "valid"}),
    ]:
        kk = (k, k) if isinstance(k, int) else k
        x = rng.standard_normal((n, c, *hw))
        w = rng.standard_normal((o, c // kw.get("groups", 1), *kk))
        b = rng.standard_normal(o)
        assert cr.gradcheck(lambda x, w, b, kw=kw: F.conv2d(x, w, b, **kw), x, w, b)


def test_gradcheck_conv1d_and_pools_on_odd_sizes(conv_layout):
    rng = np.random.default_rng(6)
    x1 = rng.standard_normal((1, 2, 9))
    w1 = rng.standard_normal((4, 1, 3))
    assert cr.gradcheck(lambda x, w: F.conv1d(x, w, None, 2, 1, 2, 2), x1, w1)
    assert cr.gradcheck(lambda x, w: F.conv1d(x, w, padding="same", groups=2), x1, w1)
    x2 = rng.standard_normal((1, 2, 7, 5))
    assert cr.gradcheck(lambda x: F.max_pool2d(x, 3, 2, 1), x2)
    assert cr.gradcheck(lambda x: F.avg_pool2d(x, (3, 2), 1, (1, 0), ceil_mode=True), x2)
    assert cr.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (3, 4)), x2)
    assert cr.gradcheck(lambda x: F.max_pool1d(x, 2, ceil_mode=True), x1)


def test_convolution_by_hand():
    # out[t] = Σ_k w[k] x[t + k]: x = 0..4, w = (1, -1)  ->  x[t] - x[t+1] = -1 everywhere
    x = cr.tensor(np.arange(5.0).reshape(1, 1, 5), requires_grad=True)
    w = cr.tensor(np.array([[[1.0, -1.0]]]), requires_grad=True)
    y = F.conv1d(x, w)
    np.testing.assert_array_equal(y.data, [[[-1.0, -1.0, -1.0, -1.0]]])
    y.sum().backward()
    # ∂/∂w[k] = Σ_t x[t + k]: (0+1+2+3, 1+2+3+4); ∂/∂x[i] = Σ_k w[k] over windows containing i
    np.testing.assert_array_equal(w.grad, [[[6.0, 10.0]]])
    np.testing.assert_array_equal(x.grad, [[[1.0, 0.0, 0.0, 0.0, -1.0]]])


def test_unbatched_input_and_dtype_preserved():
    x = np.ones((3, 8, 8), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 8, 8) and y.dtype == np.float32
    assert F.max_pool2d(x, 2).shape == (3, 4, 4)


def test_weight_gradient_is_computed_only_when_needed():
    # the data's gradient (col2im) is never computed for the first layer
    calls = []
    prim = PRIMITIVES["conv2d"]
    orig = prim.vjps

    def counted(*a, **k):
        calls.append(1)
        return K.conv2d_grad_input(*a, **k)

    object.__setattr__(prim, "vjps", (counted, *orig[1:]))
    try:
        w = cr.tensor(np.ones((3, 1, 3, 3)), requires_grad=True)
        F.conv2d(cr.tensor(np.ones((2, 1, 6, 6))), w).sum().backward()
        assert calls == [] and w.grad is not None
        x = cr.tensor(np.ones((2, 1, 6, 6)), requires_grad=True)
        F.conv2d(x, w).sum().backward()
        assert calls == [1]
    finally:
        object.__setattr__(prim, "vjps", orig)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: F.conv2d(np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3))), r"expected input with 2"),
        (lambda: F.conv2d(np.ones((1, 2, 2, 2)), np.ones((2, 2, 3, 3))), r"larger than the padded"),
        (
            lambda: F.conv2d(
                np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), stride=2, padding="same"
            ),
            r"'same' needs stride 1",
        ),
        (lambda: F.conv2d(np.ones((5, 5)), np.ones((2, 1, 3, 3))), r"4-D input"),
        (
            lambda: F.conv2d(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2),
            r"divisible by groups",
        ),
        (
            lambda: F.conv1d(np.ones((1, 2, 5)), np.ones((2, 2, 3)), stride=0),
            r"stride must be >= 1",
        ),
        (lambda: F.max_pool2d(np.ones((1, 1, 5, 5)), 2, padding=2), r"at most half"),
        (lambda: F.max_pool2d(np.ones((1, 1, 5, 5)), (2, 2, 2)), r"tuple of 2 ints"),
    ],
)
def test_functional_bad_arguments_raise(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------
def test_conv2d_layer_message_names_the_layer_and_both_shapes():
    conv = cr.nn.Conv2d(3, 16, kernel_size=3, rng=0)
    with pytest.raises(ValueError) as err:
        conv(np.zeros((32, 28, 28), np.float32))
    assert str(err.value) == (
        "Conv2d(3, 16, kernel_size=3) expected input of shape (N, 3, H, W), got (32, 28, 28)"
    )
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16, kernel_size=5\): the kernel \(5 x 5"):
        cr.nn.Conv2d(3, 16, kernel_size=5)(np.zeros((2, 3, 4, 4)))
    with pytest.raises(
        ValueError,
        match=r"Conv1d\(2, 4, kernel_size=3\) expected input of shape "
        r"\(N, 2, L\), got \(5, 3, 10\)",
    ):
        cr.nn.Conv1d(2, 4, 3)(np.zeros((5, 3, 10)))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\) expected input of shape \(N, 4, H, W"):
        cr.nn.BatchNorm2d(4)(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"MaxPool2d.*expected input of shape"):
        cr.nn.MaxPool2d(2)(np.zeros((2, 4)))


def test_conv_layers_match_torch_layers_with_copied_weights():
    rng = np.random.default_rng(0)
    for ours, theirs, shape in [
        (
            cr.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64),
            torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=torch.float64),
            (2, 4, 9, 9),
        ),
        (
            cr.nn.Conv1d(3, 5, 4, padding="same", dilation=2, dtype=np.float64),
            torch.nn.Conv1d(3, 5, 4, padding="same", dilation=2, dtype=torch.float64),
            (2, 3, 12),
        ),
    ]:
        theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(
            ours(x).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12
        )


def test_conv_init_is_pytorchs_bound():
    conv = cr.nn.Conv2d(6, 16, 5, rng=0)
    bound = 1 / np.sqrt(6 * 25)
    for p in (conv.weight.data, conv.bias.data):
        assert np.abs(p).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.95 * bound
    # U(-b, b) has standard deviation b/√3
    assert abs(conv.weight.data.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)
    a, b = cr.nn.Conv2d(3, 8, 3, rng=7), cr.nn.Conv2d(3, 8, 3, rng=7)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert cr.nn.Conv2d(4, 8, 3, groups=4).weight.shape == (8, 1, 3, 3)


@pytest.mark.parametrize("momentum", [0.2, None])  # None: the cumulative average
def test_batchnorm2d_matches_torch_in_training_and_eval(momentum):
    rng = np.random.default_rng(1)
    ours = cr.nn.BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64)
    ours.weight.data[:] = theirs.weight.data.numpy()[:] = [1.0, 2.0, 0.5]
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 6)) * 3 + 1
        xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        g = rng.standard_normal(x.shape)
        y, ref = ours(xt), theirs(xr)
        (y * g).sum().backward()
        ref.backward(torch.tensor(g))
        assert rel_err(y.data, ref.detach().numpy()) < 1e-12
        assert rel_err(xt.grad, xr.grad.numpy()) < 1e-10
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    assert int(ours.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_dropout2d_zeroes_whole_channels_and_scales():
    layer = cr.nn.Dropout2d(0.5, rng=0)
    x = np.ones((8, 16, 3, 3), np.float32)
    y = layer(x).data
    per_channel = y.reshape(8, 16, 9)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))  # constant per channel
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.3 < (y == 0).mean() < 0.7
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x)


def test_flatten_on_image_batches():
    x = cr.tensor(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    assert cr.nn.Flatten()(x).shape == (2, 60)


def _small_cnn(rng=0):
    return cr.nn.Sequential(
        cr.nn.Conv2d(1, 4, 3, padding=1, rng=rng),
        cr.nn.BatchNorm2d(4),
        cr.nn.ReLU(),
        cr.nn.MaxPool2d(2),
        cr.nn.Conv2d(4, 6, 3, padding="same", groups=2, rng=rng + 1),
        cr.nn.ReLU(),
        cr.nn.AvgPool2d(2),
        cr.nn.Dropout2d(0.1),
        cr.nn.Flatten(),
        cr.nn.Linear(24, 3, rng=rng + 2),
    )


def test_layers_state_dict_and_model_file_round_trip(tmp_path):
    model = _small_cnn()
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    model.train()
    model(x)  # move the running statistics
    path = tmp_path / "cnn.chainrule"
    cr.save(model, path)
    again = cr.load(path)
    model.eval()
    again.eval()
    np.testing.assert_array_equal(again(x).data, model(x).data)
    other = _small_cnn(rng=5)
    other.load_state_dict(model.state_dict())
    other.eval()
    np.testing.assert_array_equal(other(x).data, model(x).data)
    for layer in [
        cr.nn.Conv1d(2, 4, 3, stride=2, dilation=2, bias=False),
        cr.nn.MaxPool1d(3, 2, 1, ceil_mode=True),
        cr.nn.AvgPool1d(2),
        cr.nn.AdaptiveAvgPool2d((2, None)),
        cr.nn.AdaptiveAvgPool1d(1),
        cr.nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    ]:
        p = tmp_path / f"{type(layer).__name__}.chainrule"
        cr.save(cr.nn.Sequential(layer), p)
        got = cr.load(p)[0]
        assert type(got) is type(layer) and got.get_config() == layer.get_config()


def test_small_cnn_trained_by_fit_resumes_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (X[:, 0, 4:].mean(axis=(1, 2)) > 0)
    ckpt = str(tmp_path / "c.chainrule")

    def run(epochs, resume):
        model = _small_cnn()
        h = cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            optimizer="adam",
            lr=0.01,
            epochs=epochs,
            seed=3,
            batch_size=16,
            verbose=0,
            validation_split=0.0,
            callbacks=[cr.ModelCheckpoint(ckpt)],
            resume_from=ckpt if resume else None,
        )
        return model, h

    full, hf = run(4, False)
    (tmp_path / "c.chainrule").unlink()
    run(2, False)
    resumed, hr = run(4, True)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v)
    assert hr.history["loss"] == hf.history["loss"]
    assert hf.history["loss"][-1] < hf.history["loss"][0]


def test_changing_a_max_pool_output_in_place_before_backward_raises():
    x = cr.tensor(np.random.default_rng(0).standard_normal((1, 1, 4, 4)), requires_grad=True)
    y = F.max_pool2d(x, 2)
    z = y.sum()
    with cr.no_grad():
        y -= 1.0  # the arg-max is found from the output: changing it must be refused
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


def test_changing_a_conv_input_in_place_before_backward_raises(conv_layout):
    # the weight gradient reads the input (the per-sample layout builds its columns again
    # from it): a change in between must be refused, as in PyTorch, not give a wrong gradient
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((2, 1, 8, 8)))
    w = cr.tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    z = F.conv2d(x, w).sum()
    with cr.no_grad():
        x *= 2.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


def test_explain_a_conv_weight_is_the_sum_over_positions_and_samples_equal_to_the_engine():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 2, 7, 7)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    model = cr.nn.Sequential(
        cr.nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, rng=0), cr.nn.ReLU(),
        cr.nn.Conv2d(4, 4, 2, padding="same", dilation=2, rng=3), cr.nn.Flatten(),
        cr.nn.Linear(64, 3, rng=1),
    )  # fmt: skip
    before = {k: v.copy() for k, v in model.state_dict().items()}
    for weight, index in [("0.weight", (3, 0, 2, 0)), ("0.bias", 2), ("2.weight", (1, 3, 1, 1))]:
        e = cr.explain(model, X, y, "cross_entropy", weight, index)
        assert e.total == pytest.approx(e.engine_grad, rel=1e-12, abs=1e-15)
        assert len(e.per_sample) == 6 and e.engine_grad != 0.0
        assert "Σ_positions" in str(e)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    m1 = cr.nn.Sequential(cr.nn.Conv1d(1, 3, 4, stride=2, padding=1, rng=0), cr.nn.Flatten(),
                          cr.nn.Linear(15, 2, rng=1))  # fmt: skip
    x1 = rng.standard_normal((4, 1, 10)).astype(np.float32)
    e = cr.explain(m1, x1, rng.integers(0, 2, 4), "cross_entropy", "0.weight", (2, 0, 3))
    assert e.total == pytest.approx(e.engine_grad, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("d", [1, 2])
def test_padding_modes_match_torch_layers(mode, d, tmp_path):
    rng = np.random.default_rng(7)
    layer = cr.nn.Conv2d if d == 2 else cr.nn.Conv1d
    torch_layer = torch.nn.Conv2d if d == 2 else torch.nn.Conv1d
    for padding in (1, 2, "same", (1, 2) if d == 2 else (2,)):
        for k in (3, 4):
            ours = layer(2, 3, k, padding=padding, padding_mode=mode, rng=0, dtype=np.float64)
            theirs = torch_layer(2, 3, k, padding=padding, padding_mode=mode, dtype=torch.float64)
            with torch.no_grad():
                theirs.weight.copy_(torch.tensor(ours.weight.data))
                theirs.bias.copy_(torch.tensor(ours.bias.data))
            x = rng.standard_normal((2, 2, 6, 7) if d == 2 else (2, 2, 7))
            xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            y, ref = ours(xt), theirs(xr)
            g = rng.standard_normal(ref.shape)
            (y * g).sum().backward()
            ref.backward(torch.tensor(g))
            assert y.shape == tuple(ref.shape)
            assert rel_err(y.data, ref.detach().numpy()) <= 1e-12
            assert rel_err(xt.grad, xr.grad.numpy()) <= 1e-12
            assert rel_err(ours.weight.grad, theirs.weight.grad.numpy()) <= 1e-12
    assert f"padding_mode='{mode}'" in repr(ours)
    model = cr.nn.Sequential(ours)
    cr.save(model, tmp_path / "m.crm")
    np.testing.assert_array_equal(cr.load(tmp_path / "m.crm")(x).data, model(x).data)


def test_padding_mode_refusals_name_the_limit():
    with pytest.raises(ValueError, match="padding_mode must be one of 'zeros', 'reflect'"):
        cr.nn.Conv2d(1, 1, 3, padding_mode="mirror")
    conv = cr.nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect", rng=0)
    with pytest.raises(ValueError, match=r"needs padding smaller than the input size, got "
                                         r"padding \(3, 3\) on an axis of size 3"):  # fmt: skip
        conv(np.zeros((1, 1, 3, 5), np.float32))


def test_a_conv_input_changed_through_a_view_or_numpy_cannot_reach_the_weight_gradient(
    conv_layout,
):
    # no version counter sees a change made through an indexing view or the caller's NumPy
    # array; the weight gradient must still be that of the forward's input (review defect)
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal((4, 1, 12, 12)), rng.standard_normal((2, 1, 3, 3))
    for padding in (0, 1):
        ref_p = cr.tensor(w0, requires_grad=True)
        F.conv2d(cr.tensor(x0), ref_p, padding=padding).sum().backward()
        x = cr.tensor(x0.copy())
        w = cr.tensor(w0, requires_grad=True)
        z = F.conv2d(x, w, padding=padding).sum()
        with cr.no_grad():
            view = x[:, :]
            view *= 2.0
        z.backward()
        np.testing.assert_allclose(w.grad, ref_p.grad, rtol=1e-12)
        arr = x0.copy()
        w = cr.tensor(w0, requires_grad=True)
        z = F.conv2d(arr, w, padding=padding).sum()
        arr *= 2.0
        z.backward()
        np.testing.assert_allclose(w.grad, ref_p.grad, rtol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_on_unbatched_inputs_match_torch(mode):
    # the spatial axes are the last ones: (C, H, W) / (C, L) without a batch axis (review defect)
    rng = np.random.default_rng(3)
    for layer, torch_layer, shape, padding in [
        (cr.nn.Conv2d, torch.nn.Conv2d, (2, 6, 9), (1, 0)),
        (cr.nn.Conv2d, torch.nn.Conv2d, (2, 6, 9), (0, 2)),
        (cr.nn.Conv1d, torch.nn.Conv1d, (2, 9), 2),
    ]:
        ours = layer(2, 3, 3, padding=padding, padding_mode=mode, rng=0, dtype=np.float64)
        theirs = torch_layer(2, 3, 3, padding=padding, padding_mode=mode, dtype=torch.float64)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(ours.weight.data))
            theirs.bias.copy_(torch.tensor(ours.bias.data))
        x = rng.standard_normal(shape)
        y, ref = ours(x), theirs(torch.tensor(x))
        assert y.shape == tuple(ref.shape)
        assert rel_err(y.data, ref.detach().numpy()) <= 1e-12
