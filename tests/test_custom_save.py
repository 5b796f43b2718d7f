"""Custom modules in model files and checkpoints, state-dict files (issue 15 point 5)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn import registry


@nn.register_module
class Block(nn.Module):
    def __init__(self, width, activation="tanh", *, dtype=np.float32, rng=None):
        super().__init__()
        self.lin = nn.Linear(width, width, rng=rng, dtype=dtype)
        self.activation = activation

    def forward(self, x):
        return cr.tanh(self.lin(x)) if self.activation == "tanh" else cr.relu(self.lin(x))


@nn.register_module
class Net(nn.Module):
    def __init__(self, n_in, n_out, widths=(4, 4), rng=None):
        super().__init__()
        self.inp = nn.Linear(n_in, widths[0], rng=rng)
        # registered modules nested in lists of lists and a dict of a Sequential
        self.blocks = [
            [Block(w, rng=rng) for w in widths[:1]],
            [Block(widths[-1], "relu", rng=rng)],
        ]
        self.heads = {"main": nn.Sequential(nn.Linear(widths[-1], n_out, rng=rng))}

    def forward(self, x):
        x = self.inp(x)
        for group in self.blocks:
            for b in group:
                x = b(x)
        return self.heads["main"](x)


@nn.register_module
class Wrapper(nn.Module):
    """A module passed as a constructor argument, with a ModuleList of registered blocks."""

    def __init__(self, backbone, extra=1):
        super().__init__()
        self.backbone = backbone
        self.tail = nn.ModuleList([Block(2) for _ in range(extra)])

    def forward(self, x):
        x = self.backbone(x)
        for t in self.tail:
            x = t(x)
        return x


class Unregistered(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2, rng=0)

    def forward(self, x):
        return self.lin(x)


def data(n=40):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def test_registered_custom_module_round_trips(tmp_path):
    model = Net(3, 2, widths=[5, 5], rng=0)
    X, y = data()
    cr.fit(model, X, y, loss="cross_entropy", epochs=2, verbose=0)
    cr.save(model, tmp_path / "net.chainrule")
    again = cr.load(tmp_path / "net.chainrule")
    assert type(again) is Net and not again.training
    np.testing.assert_array_equal(cr.predict(again, X), cr.predict(model, X))
    assert again.blocks[1][0].activation == "relu"


def test_architecture_records_the_constructor_arguments(tmp_path):
    model = Wrapper(nn.Sequential(nn.Linear(3, 2, rng=0), Block(2, "relu")), extra=2)
    arch = cr.io.describe(model)
    assert arch["type"] == "Wrapper"
    assert arch["config"]["extra"] == 2
    inner = arch["config"]["backbone"]["__module__"]
    assert inner["type"] == "Sequential"
    assert inner["config"]["layers"][1] == {
        "type": "Block",
        "config": {"width": 2, "activation": "relu"},
    }
    json.dumps(arch)  # plain JSON
    cr.save(model, tmp_path / "w.chainrule")
    again = cr.load(tmp_path / "w.chainrule")
    x = np.ones((3, 3), np.float32)
    np.testing.assert_array_equal(again(x).data, model(x).data)
    assert len(again.tail) == 2


def test_get_config_overrides_the_captured_arguments(tmp_path):
    @nn.register_module(name="test_custom_save.Scaled")
    class Scaled(nn.Module):
        def __init__(self, n, scale):
            super().__init__()
            self.lin = nn.Linear(n, n, rng=0)
            self.scale = float(scale)

        def forward(self, x):
            return self.lin(x) * self.scale

        def get_config(self):
            return {"n": self.lin.in_features, "scale": self.scale}

    model = Scaled(2, np.float32(3.0))
    cr.save(model, tmp_path / "s.chainrule")
    again = cr.load(tmp_path / "s.chainrule")
    assert type(again) is Scaled and again.scale == 3.0


def test_dtype_and_generator_arguments(tmp_path):
    model = Block(3, dtype=np.float64, rng=np.random.default_rng(0))
    assert cr.io.describe(model)["config"] == {
        "width": 3,
        "dtype": {"__dtype__": "float64"},
        "rng": None,
    }
    cr.save(model, tmp_path / "b.chainrule")
    again = cr.load(tmp_path / "b.chainrule")
    assert again.lin.weight.dtype == np.float64
    np.testing.assert_array_equal(again.lin.weight.data, model.lin.weight.data)


def test_unregistered_class_error_names_the_decorator(tmp_path):
    with pytest.raises(TypeError, match=r"Unregistered.*@cr\.nn\.register_module"):
        cr.save(Unregistered(), tmp_path / "u.chainrule")
    nested = Wrapper(Unregistered())
    with pytest.raises(TypeError, match=r"Unregistered.*register_module"):
        cr.save(nested, tmp_path / "u.chainrule")
    assert not (tmp_path / "u.chainrule").exists()

    class Sub(Block):  # a subclass of a registered class is not registered by inheritance
        pass

    with pytest.raises(TypeError, match="Sub is neither"):
        cr.io.describe(Sub(2))


def test_unserialisable_argument_is_named():
    @nn.register_module(name="test_custom_save.Fn")
    class WithFn(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

    with pytest.raises(TypeError, match=r"argument 'fn'.*get_config"):
        cr.io.describe(WithFn(np.tanh))


def test_registry_refuses_builtin_names_and_clashes():
    with pytest.raises(ValueError, match="chainrule layer"):

        @nn.register_module
        class Linear(nn.Module):
            pass

    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="another class is registered as 'Net'"):
        nn.register_module(name="Net")(Other)
    assert registry.registered()["Net"] is Net


def test_loading_a_file_naming_an_unregistered_class_fails_without_importing(tmp_path):
    model = Block(2)
    path = tmp_path / "b.chainrule"
    cr.save(model, path)
    saved = registry._REGISTERED.pop("Block")
    try:
        with pytest.raises(cr.ModelFileError, match=r"unknown layer 'Block'.*register"):
            cr.load(path)
    finally:
        registry._REGISTERED["Block"] = saved


def test_checkpoint_and_resume_with_a_custom_module(tmp_path):
    X, y = data()
    ckpt = str(tmp_path / "c.chainrule")

    def run(epochs, resume):
        model = Net(3, 2, rng=0)
        h = cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            optimizer="sgd",
            lr=0.1,
            epochs=epochs,
            seed=1,
            batch_size=8,
            verbose=0,
            callbacks=[cr.ModelCheckpoint(ckpt)],
            resume_from=ckpt if resume else None,
        )
        return model, h

    full, hf = run(4, False)
    os.remove(ckpt)
    run(2, False)
    resumed, hr = run(4, True)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v)
    assert hr.history["loss"] == hf.history["loss"]


def test_unsaveable_model_is_refused_when_fit_starts_not_after_an_epoch(tmp_path):
    X, y = data()
    model = Unregistered()
    w0 = model.lin.weight.data.copy()
    with pytest.raises(TypeError, match=r"checkpoints need a model file.*register_module"):
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            epochs=3,
            verbose=0,
            callbacks=[cr.ModelCheckpoint(tmp_path / "c.chainrule")],
        )
    np.testing.assert_array_equal(model.lin.weight.data, w0)  # not one step was taken


def test_state_dict_files(tmp_path):
    model = Unregistered()
    path = tmp_path / "w.safetensors"
    cr.save_state_dict(model, path)
    sd = cr.load_state_dict(path)
    assert list(sd) == ["lin.weight", "lin.bias"]
    other = Unregistered()
    other.lin.weight.data[...] = 0
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.lin.weight.data, model.lin.weight.data)
    # torch.save(model.state_dict(), path)'s habit: cr.save a dict, cr.load gives it back
    cr.save(model.state_dict(), tmp_path / "sd.chainrule")
    back = cr.load(tmp_path / "sd.chainrule")
    assert isinstance(back, dict) and list(back) == ["lin.weight", "lin.bias"]
    # a model file's weights
    full = nn.mlp([3, 2], rng=0)
    cr.save(full, tmp_path / "m.chainrule")
    assert list(cr.load_state_dict(tmp_path / "m.chainrule")) == ["0.weight", "0.bias"]
    # corruption is detected, garbage is a ModelFileError
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(cr.ModelFileError, match="SHA-256"):
        cr.load_state_dict(path)
    (tmp_path / "junk").write_bytes(b"\x00" * 5)
    with pytest.raises(cr.ModelFileError, match="not a valid safetensors"):
        cr.load_state_dict(tmp_path / "junk")
    with pytest.raises(TypeError, match="Module or a state dict"):
        cr.save_state_dict([1, 2], tmp_path / "x")


def test_state_dict_file_from_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tm = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    save_file(tm.state_dict(), str(tmp_path / "t.safetensors"))
    model = nn.mlp([3, 3, 2], rng=1)
    nn.from_torch_state_dict(model, cr.load_state_dict(tmp_path / "t.safetensors"))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model(x).data, tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


@nn.register_module
class Stack(nn.Sequential):
    """A registered subclass of a chainrule container records its own arguments."""

    def __init__(self, n, depth=2):
        super().__init__(*[nn.Linear(n, n, rng=i) for i in range(depth)])


def test_registered_subclass_of_sequential(tmp_path):
    model = Stack(3, depth=3)
    assert cr.io.describe(model) == {"type": "Stack", "config": {"n": 3, "depth": 3}}
    cr.save(model, tmp_path / "s.chainrule")
    again = cr.load(tmp_path / "s.chainrule")
    assert type(again) is Stack and len(again) == 3
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(again(x).data, model(x).data)


def test_gradient_flow_watches_a_partly_frozen_model_without_moving_it():
    X, y = data()
    model = nn.mlp([3, 4, 2], rng=0)
    model[0].requires_grad_(False)
    w0 = model[0].weight.data.copy()
    flow = cr.GradientFlow()
    cr.fit(model, X, y, loss="cross_entropy", epochs=2, verbose=0, callbacks=[flow])
    np.testing.assert_array_equal(model[0].weight.data, w0)
    assert flow.layers == ["0", "2"]


def test_module_dict_and_list_round_trip(tmp_path):
    model = nn.ModuleDict(
        {"enc": nn.ModuleList([nn.Linear(3, 3, rng=0), Block(3)]), "dec": nn.Linear(3, 1, rng=1)}
    )
    cr.save(model, tmp_path / "d.chainrule")
    again = cr.load(tmp_path / "d.chainrule")
    assert isinstance(again, nn.ModuleDict) and list(again) == ["enc", "dec"]
    assert isinstance(again["enc"], nn.ModuleList) and type(again["enc"][1]) is Block
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
