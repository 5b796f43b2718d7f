"""Module: parameter discovery, state dicts, modes, repr; Sequential."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.layers = [nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1)]
        self.heads = {"a": nn.Linear(2, 1, rng=2)}
        self.extra = [nn.Parameter(np.zeros(2, np.float32))]

    def forward(self, x):
        h = x * self.scale
        for layer in self.layers:
            h = layer(h)
        return self.heads["a"](h) + self.extra[0].sum()


def test_parameters_found_in_attributes_lists_and_dicts_with_dotted_names():
    names = [n for n, _ in Block().named_parameters()]
    assert names == [
        "scale",
        "extra.0",
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
        "heads.a.weight",
        "heads.a.bias",
    ]
    assert Block().num_parameters() == 3 + 2 + 12 + 4 + 8 + 2 + 2 + 1


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(2, 2, rng=0)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_nested_sequential_names():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3, rng=0)), nn.Linear(3, 1, rng=0))
    assert [n for n, _ in model.named_parameters()] == [
        "0.0.weight",
        "0.0.bias",
        "1.weight",
        "1.bias",
    ]


def test_state_dict_round_trip_is_exact_and_copies():
    a, b = Block(), Block()
    for p in b.parameters():
        p.data[...] = 7.0
    state = a.state_dict()
    b.load_state_dict(state)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.data, pb.data)
    state["scale"][...] = -1  # the state dict is a copy: the model is unaffected
    assert a.scale.data[0] == 1.0


def test_load_state_dict_names_the_mismatch_and_changes_nothing():
    model = nn.mlp([4, 3, 2], rng=0)
    before = model.state_dict()
    bad = dict(before)
    bad["2.weight"] = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"'2\.weight' has shape \(5, 2\).*\(3, 2\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"missing keys.*0\.bias"):
        model.load_state_dict({k: v for k, v in before.items() if k != "0.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys.*'zzz'"):
        model.load_state_dict({**before, "zzz": np.zeros(1)})
    with pytest.raises(ValueError, match="dtype float64"):
        model.load_state_dict({k: v.astype(np.float64) for k, v in before.items()})
    model.load_state_dict({"0.bias": before["0.bias"]}, strict=False)


def test_train_eval_propagate_and_zero_grad():
    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Dropout(0.5, rng=0))
    model.eval()
    assert not model.training and not model[1].training
    model.train()
    assert model[1].training
    model(np.ones((3, 2))).sum().backward()
    assert model[0].weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_shows_layers_shapes_and_parameter_count():
    text = repr(nn.mlp([784, 256, 10], rng=0))
    assert "Linear(in_features=784, out_features=256, bias=True)" in text
    assert "(1): ReLU()" in text
    assert text.endswith(f"# {784 * 256 + 256 + 256 * 10 + 10:,} parameters")


def test_sequential_container_protocol():
    model = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU())
    assert len(model) == 2 and isinstance(model[0], nn.Linear)
    model.append(nn.Linear(3, 1, rng=0))
    assert len(model) == 3 and isinstance(model[-1], nn.Linear)
    assert isinstance(model[1:], nn.Sequential) and len(model[1:]) == 2
    assert model(np.ones((4, 2))).shape == (4, 1)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert nn.Sequential([nn.ReLU(), nn.Tanh()])[1].__class__ is nn.Tanh
    with pytest.raises(TypeError, match="Modules"):
        model.append(3)


def test_module_to_float64():
    model = nn.mlp([3, 4, 1], rng=0).to(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model(np.ones((2, 3), np.float64)).dtype == np.float64


def test_module_without_forward():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)


def test_parameter_must_be_float():
    with pytest.raises(TypeError, match="floating point"):
        nn.Parameter(np.arange(3))
    p = nn.Parameter([1.0, 2.0])
    assert p.requires_grad and p.dtype == np.float32 and isinstance(p, cr.Tensor)
