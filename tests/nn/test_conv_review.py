"""Issue 18 checked point by point as a reviewer would, against PyTorch: the conv family are
chainrule layers everywhere the registry matters (float64 models, model files, crafted files),
PyTorch's behaviour at the edges (Dropout2d on 3-D input, Flatten's end_dim, max pooling of
-inf windows, BatchNorm2d variants), and the tools around a model (GradientFlow,
gradcheck_model, draw_graph, the divergence guard, architecture errors) on a CNN."""

from __future__ import annotations

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.io import ModelFileError
from chainrule.nn.arch import ArchitectureError, check_architecture, read_architecture
from chainrule.nn.registry import LAYERS, spec_of
from tests.test_file_limits import craft_model, seq

torch = pytest.importorskip("torch")
F, TF = cr.nn.functional, torch.nn.functional

CONV_FAMILY = [
    "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "BatchNorm2d", "Dropout2d", "Unflatten",
]  # fmt: skip


def cnn(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=0, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding="same", groups=4, rng=1, dtype=dtype),  # depthwise
        nn.Tanh(),
        nn.Dropout2d(0.2),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3, rng=2, dtype=dtype),
    )


def images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2, 6, 6)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + (X[:, 1, :3].mean(axis=(1, 2)) > 0)
    return X, y


# ---------------------------------------------------------------------------------------------
# the conv family are chainrule layers, as the dense ones
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONV_FAMILY)
def test_conv_family_are_builtin_layers(name):
    cls = LAYERS[name]
    assert spec_of(cls).builtin and getattr(nn, name) is cls
    with pytest.raises(ValueError, match="is the name of a chainrule layer"):

        @nn.register_module(name=name)
        class Mine(nn.Module):
            def forward(self, x):
                return x


def test_a_cnn_converted_to_float64_saves_loads_and_describes_itself_in_float64(tmp_path):
    model = cnn()
    X, _ = images()
    model.train()
    model(X)  # move the running statistics
    model.to(np.float64)
    for i in (0, 1, 4, 9):
        assert model[i].get_config()["dtype"] == "float64"
    path = tmp_path / "m.chainrule"
    cr.save(model, path)
    again = cr.load(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    assert again[0].weight.dtype == np.float64 and again[1].running_var.dtype == np.float64
    model.eval()
    again.eval()
    x64 = X.astype(np.float64)
    out = again(x64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out.data, model(x64).data)
    # the architecture alone (info --arch-out) rebuilds float64 layers too
    arch = tmp_path / "net.json"
    cr.nn.arch.write_architecture(again, arch)
    rebuilt = read_architecture(arch, rng=0)
    assert rebuilt[0].weight.dtype == np.float64 and rebuilt[9].weight.dtype == np.float64
    assert json.loads(arch.read_text())["config"]["layers"][0]["config"]["kernel_size"] == [3, 3]


def test_a_crafted_conv_file_is_refused_before_anything_is_allocated(tmp_path):
    def craft(config, tensors):
        layers = [{"type": "Conv2d", "config": config}]
        return craft_model(tmp_path / "c.chainrule", seq(*layers), tensors)

    small = {"0.weight": np.zeros((2, 1, 3, 3), np.float32), "0.bias": np.zeros(2, np.float32)}
    # 10^5 · 10^5 · 100² weights would be 4·10^14 bytes: the count from the config refuses it
    huge = {"in_channels": 10**5, "out_channels": 10**5, "kernel_size": 100}
    with pytest.raises(ModelFileError, match=r"need 100,000,000,100,000 or more weights"):
        cr.load(craft(huge, small))
    ok = {"in_channels": 1, "out_channels": 2, "kernel_size": 3}
    assert isinstance(cr.load(craft(ok, small))[0], nn.Conv2d)
    one_more = {"in_channels": 1, "out_channels": 2, "kernel_size": [3, 4]}
    with pytest.raises(ModelFileError, match="need 26 or more weights but the file holds 20"):
        cr.load(craft(one_more, small))
    # the counts the loader uses, for grouped and bias-free convolutions
    assert nn.Conv2d.config_elements({"in_channels": 4, "out_channels": 8, "kernel_size": [3, 2],
                                      "groups": 2, "bias": False}) == 8 * 2 * 6  # fmt: skip
    assert nn.Conv1d.config_elements({"in_channels": 3, "out_channels": 5, "kernel_size": 4}) == 65
    assert nn.Conv1d.config_elements({"in_channels": "3", "out_channels": 5, "kernel_size": 4}) == 0


# ---------------------------------------------------------------------------------------------
# PyTorch's behaviour at the edges
# ---------------------------------------------------------------------------------------------
def test_dropout2d_on_a_3d_input_drops_whole_rows_per_sample_and_channel_as_pytorch():
    x = np.ones((64, 8, 5), np.float32)
    ours = nn.Dropout2d(0.5, rng=0)(x).data
    with pytest.warns(UserWarning, match="dropout2d"):
        theirs = torch.nn.Dropout2d(0.5)(torch.ones(64, 8, 5)).numpy()
    for y in (ours, theirs):  # the same structure: (N, C, L), one draw per (n, c)
        assert np.all(y.min(axis=2) == y.max(axis=2))
        kept = y[:, :, 0] > 0
        assert set(np.unique(y)) == {0.0, 2.0}
        assert 0.4 < kept.mean() < 0.6
        assert np.any(kept.any(axis=1) & ~kept.all(axis=1))  # channels of one sample differ
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, C, L\), got \(4, 5\)"):
        nn.Dropout2d()(np.ones((4, 5)))


def test_flatten_start_and_end_dim_as_pytorch():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for args in [(), (1,), (0,), (1, 2), (2, 3), (0, -2), (-3, -2)]:
        ours = nn.Flatten(*args)
        ref = torch.nn.Flatten(*args)(torch.tensor(x)).numpy()
        np.testing.assert_array_equal(ours(x).data, ref)
        assert ours.output_shape(x.shape) == ref.shape
        assert nn.Flatten.from_config(ours.get_config()).get_config() == ours.get_config()
    assert nn.Flatten().get_config() == {"start_dim": 1}  # old model files read the same


@pytest.mark.parametrize("seed", range(40))
def test_max_pool_of_windows_holding_minus_infinity_sends_the_gradient_where_pytorch_does(seed):
    rng = np.random.default_rng(seed)
    d = 1 + seed % 2
    k = int(rng.integers(2, 4))
    pad, stride, ceil = int(rng.integers(0, k // 2 + 1)), int(rng.integers(1, 3)), seed % 3 == 0
    x = rng.standard_normal((2, 2, *[int(rng.integers(k, 7)) for _ in range(d)]))
    x[rng.random(x.shape) < 0.6] = -np.inf  # whole windows of -inf, next to -inf padding
    xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    fn, tfn = (F.max_pool1d, TF.max_pool1d) if d == 1 else (F.max_pool2d, TF.max_pool2d)
    y, ref = fn(xt, k, stride, pad, ceil_mode=ceil), tfn(xr, k, stride, pad, ceil_mode=ceil)
    np.testing.assert_array_equal(y.data, ref.detach().numpy())
    g = rng.standard_normal(ref.shape)
    y.backward(g)  # (the sum of y·g would be -inf - inf)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-12, atol=1e-12)
    # every window's gradient arrives somewhere inside the input: nothing is lost to padding
    assert xt.grad.sum() == pytest.approx(g.sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    "kw", [{"affine": False}, {"track_running_stats": False}, {"eps": 1e-3, "momentum": 0.5}]
)
def test_batchnorm2d_variants_match_pytorch_in_training_and_eval(kw):
    rng = np.random.default_rng(3)
    ours, theirs = nn.BatchNorm2d(3, dtype=np.float64, **kw), torch.nn.BatchNorm2d(3, **kw).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 2)) * 2 + 1
        xt, xr = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        g = rng.standard_normal(x.shape)
        (ours(xt) * cr.tensor(g)).sum().backward()
        theirs(xr).backward(torch.tensor(g))
        np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-10, atol=1e-12)
    if theirs.track_running_stats:
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)  # fmt: skip


def test_kernel_larger_than_the_padded_input_says_so_for_every_layer():
    cases = [
        (nn.Conv1d(1, 2, 5, rng=0), (1, 1, 3), r"Conv1d\(1, 2, kernel_size=5\): the kernel \(5"),
        (nn.Conv2d(1, 2, (3, 5), padding=1, rng=0), (1, 1, 4, 2), r"larger than the padded"),
        (nn.Conv2d(1, 2, 3, dilation=3, rng=0), (1, 1, 6, 6), r"the kernel \(7 x 7, with dil"),
        (nn.MaxPool2d(5), (1, 1, 3, 3), r"max_pool2d: the kernel \(5 x 5.*padded input \(3 x 3"),
        (nn.AvgPool1d(4), (1, 1, 3), r"avg_pool1d: the kernel .*larger than the padded input"),
    ]
    for layer, shape, match in cases:
        with pytest.raises(ValueError, match=match):
            layer(np.zeros(shape, np.float32))
        with pytest.raises(RuntimeError):  # PyTorch refuses them too
            getattr(torch.nn, type(layer).__name__)(**_torch_args(layer))(
                torch.zeros(shape, dtype=torch.float32)
            )
    # "same" pads enough for any kernel, as PyTorch
    same = nn.Conv2d(1, 2, 5, padding="same", rng=0)
    assert same(np.zeros((1, 1, 2, 2), np.float32)).shape == (1, 2, 2, 2)


def _torch_args(layer):
    cfg = layer.get_config()
    cfg.pop("dtype", None)
    if "in_channels" in cfg:
        cfg["kernel_size"] = tuple(cfg["kernel_size"])
        cfg["padding"] = tuple(cfg["padding"]) if isinstance(cfg["padding"], list) else 0
        cfg["stride"], cfg["dilation"] = tuple(cfg["stride"]), tuple(cfg["dilation"])
    return cfg


# ---------------------------------------------------------------------------------------------
# the tools around a model, on a CNN
# ---------------------------------------------------------------------------------------------
def test_gradient_flow_watches_the_conv_layers_with_the_gradient_torch_computes():
    X, y = images()
    model = cnn()
    model[6].p = 0.0  # no dropout: a deterministic gradient to compare
    ref = _torch_copy(model)
    flow = cr.GradientFlow()
    cr.fit(model, X, y, loss="cross_entropy", optimizer="sgd", lr=0.1, epochs=1,
           batch_size=len(X), verbose=0, callbacks=[flow], validation_split=0.0)  # fmt: skip
    assert flow.layers == ["0", "4", "9"]
    assert flow.labels["0"] == "0: Conv2d(2→4, 3×3)" and flow.labels["4"] == "4: Conv2d(4→4, 3×3)"
    loss = TF.cross_entropy(ref(torch.tensor(X, dtype=torch.float64)), torch.tensor(y))
    loss.backward()
    for name, idx in [("0", 0), ("4", 4), ("9", 9)]:
        g = ref[idx].weight.grad.numpy()
        want = np.sqrt(np.mean(g * g))
        assert flow.records[name]["grad_rms"][0] == pytest.approx(want, rel=1e-4)
    assert flow.activations["0"] == "ReLU" and flow.activations["4"] == "Tanh"


def _torch_copy(model):
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 4, 3, padding="same", groups=4),
        torch.nn.Tanh(),
        torch.nn.Dropout2d(0.0),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    ).double()
    state = {}
    for k, v in model.state_dict().items():
        v = np.asarray(v, np.float64) if v.dtype.kind == "f" else v
        state[k] = torch.tensor(v.T.copy() if k == "9.weight" else v)  # Linear: (in, out)
    ref.load_state_dict(state)
    return ref


def test_gradcheck_model_passes_on_a_cnn_and_catches_a_wrong_conv_rule():
    from chainrule._primitive import PRIMITIVES

    X, y = images(6)
    model = cnn()
    result = cr.diagnostics.gradcheck_model(model, X, y, "cross_entropy", max_params=None)
    assert result.ok and result.n_checked == result.n_total == sum(
        p.size for p in model.parameters()
    )
    prim = PRIMITIVES["conv2d"]
    orig = prim.vjps

    def wrong(g, out, saved, *inputs, **attrs):  # the weight's rule, 1 % off
        return 1.01 * orig[1](g, out, saved, *inputs, **attrs)

    object.__setattr__(prim, "vjps", (orig[0], wrong, *orig[2:]))
    try:
        bad = cr.diagnostics.gradcheck_model(model, X, y, "cross_entropy", max_params=None)
    finally:
        object.__setattr__(prim, "vjps", orig)
    assert not bad.ok and bad.worst_parameter in ("0.weight", "4.weight")


def test_draw_graph_of_a_cnn_shows_the_conv_and_pool_operations_with_their_shapes():
    X, y = images(4)
    model = cnn()
    loss = F.cross_entropy(model(X), y)
    dot = cr.diagnostics.draw_graph(loss, backward=True)
    assert dot.count('label="conv2d\\n') == 2
    assert (
        'label="conv2d\\nΣ_c,i,j W[o,c,i,j]·x[c, s·y+d·i, s·x+d·j] + b[o]\\nshape (4, 4, 6, 6)'
        in dot
    )
    assert 'label="max_pool2d\\nmax over each window\\nshape (4, 4, 3, 3)' in dot
    assert 'label="adaptive_avg_pool2d\\nmean over adaptive bins\\nshape (4, 4, 2, 2)' in dot
    assert "parameter\\nshape (4, 2, 3, 3) float32" in dot  # the first kernel, with its gradient
    assert dot.count("grad mean") >= 10


def test_the_divergence_guard_stops_a_cnn_and_keeps_its_last_finite_weights():
    X, y = images()
    model = cnn()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    h = cr.fit(model, X, y, loss="cross_entropy", optimizer="sgd", lr=float("inf"), epochs=3,
               verbose=0, seed=0)  # fmt: skip
    assert h.stop_reason == "diverged"
    assert "the optimizer's update made '0.weight' non-finite" in h.message
    after = model.state_dict()
    for k in ("0.weight", "0.bias", "4.weight", "9.weight"):
        np.testing.assert_array_equal(after[k], before[k])
    assert all(np.all(np.isfinite(v)) for v in after.values())


def test_a_conv_that_cannot_take_the_layer_before_it_is_named_with_both_shapes(tmp_path):
    arch = {
        "type": "Sequential",
        "config": {"layers": [
            {"type": "Unflatten", "config": {"dim": 1, "unflattened_size": [1, 8, 8]}},
            {"type": "Conv2d", "config": {"in_channels": 3, "out_channels": 4, "kernel_size": 3}},
            {"type": "Flatten", "config": {}},
            {"type": "Linear", "config": {"in_features": 144, "out_features": 10}},
        ]},
    }  # fmt: skip
    path = tmp_path / "net.json"
    path.write_text(json.dumps(arch))
    model = read_architecture(path, rng=0)
    with pytest.raises(ArchitectureError) as err:
        check_architecture(model, 64, 10)
    assert str(err.value) == (
        "layer 1 (Conv2d) cannot take the output of the layer before it: input shape "
        "(2, 1, 8, 8): Conv2d(3, 4, kernel_size=3) expected input of shape (N, 3, H, W), got "
        "(2, 1, 8, 8)"
    )
    arch["config"]["layers"][1]["config"]["in_channels"] = 1
    path.write_text(json.dumps(arch))
    check_architecture(read_architecture(path, rng=0), 64, 10)  # 4·6·6 = 144 fits: no error


def test_lenet5_copied_from_pytorch_computes_and_trains_as_pytorch():
    """LeNet-5 (float64) with PyTorch's weights: logits, every parameter's gradient, and five
    SGD-with-momentum steps agree with PyTorch's to rounding."""
    torch.manual_seed(0)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10),
    ).double()  # fmt: skip
    ours = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).to(np.float64)  # fmt: skip
    nn.from_torch_state_dict(ours, ref.state_dict())
    rng = np.random.default_rng(0)
    opt = cr.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for step in range(5):
        X = rng.standard_normal((8, 1, 28, 28))
        y = rng.integers(0, 10, 8)
        loss = F.cross_entropy(ours(X), y)
        tloss = TF.cross_entropy(ref(torch.tensor(X)), torch.tensor(y))
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        if step == 0:
            assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
            for name, p in ours.named_parameters():
                g = p.grad.T if p.ndim == 2 else p.grad  # Linear is (in, out) here
                want = dict(ref.named_parameters())[name].grad.numpy()
                np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12, err_msg=name)
        opt.step()
        topt.step()
    theirs = nn.to_torch_state_dict(ours)
    for name, v in ref.state_dict().items():
        np.testing.assert_allclose(theirs[name], v.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_float64_cnn_with_batchnorm2d_and_dropout2d_resumes_bitwise(tmp_path):
    X, y = images(40)
    X = X.astype(np.float64)
    ckpt = str(tmp_path / "c.chainrule")

    def run(epochs, resume):
        model = cnn(np.float64)
        h = cr.fit(model, X, y, loss="cross_entropy", optimizer="adam", lr=0.01, epochs=epochs,
                   seed=3, batch_size=8, verbose=0, validation_split=0.0,
                   callbacks=[cr.ModelCheckpoint(ckpt)],
                   resume_from=ckpt if resume else None)  # fmt: skip
        return model, h

    full, hf = run(4, False)
    (tmp_path / "c.chainrule").unlink()
    run(2, False)
    resumed, hr = run(4, True)
    assert hr.history["loss"] == hf.history["loss"] and len(hf.history["loss"]) == 4
    for k, v in full.state_dict().items():
        got = resumed.state_dict()[k]
        assert got.dtype == v.dtype and np.array_equal(got, v), k
    assert full[0].weight.dtype == np.float64 and int(full[1].num_batches_tracked) == 20


def test_gradient_flow_counts_dead_feature_maps_per_channel():
    """A unit of a convolution is a channel: dead when zero at every position of every sample
    (one live position keeps a feature map alive)."""
    X, y = images(16)
    X[:, 0] = -1.0
    X[:, 0, 3, 3] = 1.0  # channel 2 below fires at output position (2, 2) only
    model = nn.Sequential(nn.Conv2d(2, 4, 3, rng=0), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64, 3, rng=1))  # fmt: skip
    model[0].bias.data[:2] = -100.0  # channels 0 and 1 never fire
    model[0].weight.data[3] = 0.0
    model[0].bias.data[3] = 0.0  # channel 3: exactly 0 everywhere, dead too
    model[0].weight.data[2] = 0.0
    model[0].weight.data[2, 0, 1, 1] = 1.0  # channel 2 copies the input: alive somewhere
    model[0].bias.data[2] = 0.0
    flow = cr.GradientFlow()
    cr.fit(model, X, y, loss="cross_entropy", optimizer="sgd", lr=1e-9, epochs=1, verbose=0,
           callbacks=[flow], validation_split=0.0)  # fmt: skip
    # per position it would be (3·36 + 35) / 144: the live feature map counted as 35 dead units
    assert flow.records["0"]["dead_fraction"][-1] == pytest.approx(3 / 4)
    assert any("75% of the ReLU units after 0: Conv2d" in w for w in flow.warnings)


def test_image_inputs_are_judged_unscaled_per_channel_not_per_pixel():
    from chainrule.training.summary import input_scaling_advice

    rng = np.random.default_rng(0)
    X = np.zeros((200, 2, 8, 8), np.float32)
    X[:, :, 2:6, 2:6] = rng.random((200, 2, 4, 4))  # digits-like: blank border, ink inside
    X[:3, 0, 0, 0] = 0.01  # a border pixel that is almost always 0
    assert input_scaling_advice(X.reshape(200, -1)) is not None  # as table rows: that pixel
    assert input_scaling_advice(X) is None  # as images: both channels are fine
    X[:, 1] *= 100.0
    advice = input_scaling_advice(X)
    assert advice is not None and "(1 of 2 channels; channel 1 has mean" in advice
    assert "standardise each channel" in advice
