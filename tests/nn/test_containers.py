"""Modules in nested containers, ModuleList/ModuleDict, apply/requires_grad_/to, and
load_state_dict's inputs (issue 15 points 3 and 9; issue 16 point 3)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.h = [[nn.Linear(2, 3, rng=0), nn.Linear(3, 3, rng=1)], [nn.Linear(3, 2, rng=2)]]
        self.pairs = [(nn.Linear(2, 2, rng=3), nn.Dropout(0.5, rng=0))]
        self.heads = {"a": [nn.Linear(2, 1, rng=4)], "b": {"deep": nn.BatchNorm1d(2)}}

    def forward(self, x):
        for group in self.h:
            for layer in group:
                x = cr.tanh(layer(x))
        x = self.pairs[0][1](self.pairs[0][0](x))
        return self.heads["a"][0](self.heads["b"]["deep"](x))


def test_nested_lists_tuples_and_dicts_are_found_with_dotted_names():
    model = Nested()
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "h.0.0.weight",
        "h.0.0.bias",
        "h.0.1.weight",
        "h.0.1.bias",
        "h.1.0.weight",
        "h.1.0.bias",
        "pairs.0.0.weight",
        "pairs.0.0.bias",
        "heads.a.0.weight",
        "heads.a.0.bias",
        "heads.b.deep.weight",
        "heads.b.deep.bias",
    ]
    assert "heads.b.deep.running_mean" in model.state_dict()
    # eval() reaches the dropout and the batch norm inside containers
    model.eval()
    assert not model.pairs[0][1].training and not model.heads["b"]["deep"].training
    model.train()
    assert model.pairs[0][1].training


def test_nested_layers_are_trained_saved_and_restored(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 2)).astype(np.float32)
    y = rng.normal(size=(32, 1)).astype(np.float32)
    model = Nested()
    before = model.state_dict()
    cr.fit(model, X, y, loss="mse", epochs=2, verbose=0)
    after = model.state_dict()
    for k in ("h.0.1.weight", "h.1.0.weight", "pairs.0.0.bias", "heads.a.0.weight"):
        assert not np.array_equal(before[k], after[k]), k
    cr.save_state_dict(model, tmp_path / "w.safetensors")
    fresh = Nested()
    fresh.load_state_dict(cr.load_state_dict(tmp_path / "w.safetensors"))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)


def test_a_list_that_contains_itself_does_not_loop():
    m = nn.Module()
    loop: list = [nn.Linear(1, 1, rng=0)]
    loop.append(loop)
    m.items = loop
    assert [n for n, _ in m.named_parameters()] == ["items.0.weight", "items.0.bias"]


class WithContainers(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 3, rng=i) for i in range(2)])
        self.blocks.append(nn.Linear(3, 4, rng=5))
        self.heads = nn.ModuleDict({"cls": nn.Linear(4, 2, rng=6)})
        self.heads["reg"] = nn.Linear(4, 1, rng=7)

    def forward(self, x):
        for b in self.blocks:
            x = cr.relu(b(x))
        return self.heads["cls"](x), self.heads["reg"](x)


def test_module_list_and_dict_follow_pytorch():
    import torch

    m = WithContainers()
    tm = torch.nn.Module()
    tm.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)])
    tm.blocks.append(torch.nn.Linear(3, 4))
    tm.heads = torch.nn.ModuleDict({"cls": torch.nn.Linear(4, 2)})
    tm.heads["reg"] = torch.nn.Linear(4, 1)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert [n for n, _ in m.named_modules()] == [n for n, _ in tm.named_modules()]
    blocks = m.blocks
    assert len(blocks) == 3 and blocks[-1].out_features == 4
    assert isinstance(blocks[:2], nn.ModuleList) and len(blocks[:2]) == 2
    blocks.insert(0, nn.Linear(3, 3, rng=9))
    assert len(blocks) == 4 and blocks[0].in_features == 3
    del blocks[0]
    assert len(blocks) == 3
    assert list(m.heads.keys()) == ["cls", "reg"] and "reg" in m.heads
    assert [type(v).__name__ for v in m.heads.values()] == ["Linear", "Linear"]
    assert [k for k, _ in m.heads.items()] == list(m.heads)
    with pytest.raises(TypeError, match="takes Modules"):
        blocks.append(np.zeros(3))
    with pytest.raises(TypeError, match="takes Modules"):
        m.heads["x"] = 3
    with pytest.raises(NotImplementedError, match="iterate"):
        blocks(np.zeros((1, 3)))


def test_apply_requires_grad_zero_grad_and_to():
    model = nn.mlp([3, 4, 2], rng=0)
    seen: list[str] = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential"]  # children first, as PyTorch

    def init(m):
        if isinstance(m, nn.Linear):
            m.weight.data[...] = 0.5

    model.apply(init)
    assert np.all(model[2].weight.data == 0.5)
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model[0].requires_grad_()
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, False]
    x = np.ones((2, 3), np.float32)
    model(x).sum().backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is None
    model.zero_grad()
    assert model[0].weight.grad is None
    assert model.to("cpu") is model and model[0].weight.dtype == np.float32
    assert model.to(device="cpu") is model
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda")
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda:0")
    model.to(np.float64)
    assert model[0].weight.dtype == np.float64
    assert [type(c).__name__ for c in model.children()] == ["Linear", "ReLU", "Linear"]
    assert len(list(model.modules())) == 4


def test_to_accepts_a_torch_device():
    import torch

    model = nn.mlp([2, 2], rng=0)
    assert model.to(torch.device("cpu")) is model
    assert model.to(torch.float64)[0].weight.dtype == np.float64
    with pytest.raises(ValueError, match="CPU only"):
        model.to(torch.device("meta"))


def test_optimizer_given_the_model_says_pass_parameters():
    model = nn.mlp([2, 2], rng=0)
    with pytest.raises(TypeError, match=r"pass model\.parameters\(\)"):
        optim.Adam(model)
    with pytest.raises(TypeError, match=r"pass model\.parameters\(\)"):
        optim.SGD([model], lr=0.1)
    with pytest.raises(TypeError, match=r"'parameters'; call it: model\.parameters\(\)"):
        optim.SGD(model.parameters, lr=0.1)
    assert model.cpu() is model
    with pytest.raises(ValueError, match="CPU only"):
        model.cuda()


def test_load_state_dict_takes_python_lists_in_the_parameters_dtype():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
    model.load_state_dict(
        {
            "0.weight": [[0.15, 0.25], [0.20, 0.30]],
            "0.bias": [0.35, 0.35],
            "2.weight": [[0.40], [0.45]],
            "2.bias": [0.60],
        }
    )
    assert model[0].weight.dtype == np.float32
    np.testing.assert_array_equal(model[0].weight.data, np.float32([[0.15, 0.25], [0.2, 0.3]]))
    model.to(np.float64)
    model.load_state_dict({**model.state_dict(), "2.bias": [1]})
    assert model[2].bias.data.tolist() == [1.0]
    with pytest.raises(ValueError, match=r"'0\.weight' cannot be read"):
        model.load_state_dict({**model.state_dict(), "0.weight": [[1.0], [1.0, 2.0]]})


def test_load_state_dict_explains_the_transposed_layout_and_refuses_torch_tensors():
    import torch

    model = nn.mlp([3, 2], rng=0)
    sd = model.state_dict()
    with pytest.raises(ValueError, match=r"transpose.*\(in_features, out_features\).*from_torch"):
        model.load_state_dict({**sd, "0.weight": sd["0.weight"].T.copy()})
    tm = torch.nn.Linear(3, 3)
    square = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="from_torch_state_dict"):
        square.load_state_dict({"0." + k: v for k, v in tm.state_dict().items()})
