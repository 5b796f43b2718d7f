"""PyTorch weights in and out, data as batches, predict's messages and predict_proba
(issue 15 points 6, 10 and 11), with PyTorch as the oracle."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

torch = pytest.importorskip("torch")


def torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 4),  # square: the layout cannot be told from the shape
        torch.nn.Tanh(),
        torch.nn.Linear(4, 3),
        torch.nn.BatchNorm1d(3),
        torch.nn.ReLU(),
        torch.nn.Linear(3, 2),
    )


def ours():
    return nn.Sequential(
        nn.Linear(4, 4, rng=1),
        nn.Tanh(),
        nn.Linear(4, 3, rng=2),
        nn.BatchNorm1d(3),
        nn.ReLU(),
        nn.Linear(3, 2, rng=3),
    )


def test_from_torch_state_dict_gives_pytorchs_outputs():
    tm = torch_mlp()
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    tm.train()
    tm(torch.from_numpy(x))  # move the running statistics off their initial values
    tm.eval()
    model = ours()
    assert nn.from_torch_state_dict(model, tm.state_dict()) is model
    model.eval()
    expected = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-5, atol=1e-6)
    # NumPy arrays work as well, and a float32 PyTorch model fills a float64 chainrule model
    model64 = ours().to(np.float64)
    nn.from_torch_state_dict(model64, {k: v.numpy() for k, v in tm.state_dict().items()})
    model64.eval()
    np.testing.assert_allclose(model64(x.astype(np.float64)).data, expected, rtol=1e-5, atol=1e-6)


def test_to_torch_state_dict_gives_pytorch_our_outputs():
    model = ours()
    model.eval()
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    tm = torch_mlp()
    tm.load_state_dict(nn.to_torch_state_dict(model, tensors=True))
    tm.eval()
    np.testing.assert_allclose(
        tm(torch.from_numpy(x)).detach().numpy(), model(x).data, rtol=1e-5, atol=1e-6
    )
    sd = nn.to_torch_state_dict(model)
    assert isinstance(sd["0.weight"], np.ndarray) and sd["2.weight"].shape == (3, 4)


def test_from_torch_checks_before_writing():
    model = ours()
    before = model.state_dict()
    sd = torch_mlp().state_dict()
    sd["2.weight"] = sd["2.weight"].T  # given in chainrule's layout by mistake
    with pytest.raises(ValueError, match=r"'2.weight'.*\(out_features, in_features\) = \(3, 4\)"):
        nn.from_torch_state_dict(model, sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_the_square_weight_trap_is_closed():
    """load_state_dict cannot tell a square PyTorch weight by its shape: it refuses torch
    tensors outright and points to from_torch_state_dict."""
    tm = torch.nn.Sequential(torch.nn.Linear(3, 3))
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="from_torch_state_dict"):
        model.load_state_dict(tm.state_dict())


def test_fit_takes_a_dataloader_a_generator_and_a_list_of_batches():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    ref = nn.mlp([3, 8, 2], rng=0)
    h_ref = cr.fit(
        ref, X, y, loss="cross_entropy", batch_size=16, epochs=3, seed=0, shuffle=False, verbose=0
    )
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    sources = {
        "loader": lambda: torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False),
        "generator": lambda: ((X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)),
        "list": lambda: [(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)],
    }
    for name, make in sources.items():
        model = nn.mlp([3, 8, 2], rng=0)
        h = cr.fit(model, make(), loss="cross_entropy", epochs=3, seed=0, shuffle=False, verbose=0)
        assert h.history["loss"] == h_ref.history["loss"], name
        np.testing.assert_array_equal(cr.predict(model, make()), cr.predict(ref, X))


def test_fit_batches_of_the_wrong_kind_say_what_to_pass():
    model = nn.mlp([3, 2], rng=0)
    with pytest.raises(TypeError, match=r"batch 0 is a ndarray, not an \(x, y\) pair"):
        cr.fit(model, (np.zeros((4, 3)) for _ in range(2)), loss="mse", verbose=0)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 3, rng=0), nn.Linear(2, 1, rng=1)

    def forward(self, x):
        return self.a(x), self.b(x)


def test_predict_on_a_tuple_output_names_the_outputs():
    with pytest.raises(TypeError, match=r"tuple of 2 outputs \(\[0\]: shape \(4, 3\), \[1\]"):
        cr.predict(TwoOutputs(), np.zeros((4, 2), np.float32))


def test_predict_returns_logits_and_predict_proba_matches_torch():
    model = nn.mlp([3, 5, 4], rng=0)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32) * 30
    logits = cr.predict(model, x)
    p = cr.predict_proba(model, x)
    np.testing.assert_allclose(p, torch.softmax(torch.from_numpy(logits), dim=1).numpy(), rtol=1e-6)
    assert p.dtype == np.float32 and not np.allclose(logits.sum(axis=1), 1)
    binary = nn.mlp([3, 1], rng=0)
    big = np.array([[1e4, 0, 0], [-1e4, 0, 0], [0.5, 0.2, 0.1]], np.float32)
    z = cr.predict(binary, big)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        pb = cr.predict_proba(binary, big)
    np.testing.assert_allclose(pb, torch.sigmoid(torch.from_numpy(z)).numpy(), rtol=1e-6)
    assert pb.shape == (3, 1)


def test_nested_lists_of_numbers_stay_data_not_batches():
    from chainrule.training._inputs import is_batches

    assert not is_batches([[1.0, 2.0], [3.0, 4.0]])
    assert not is_batches([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert not is_batches(np.zeros((3, 2)))
    assert is_batches([(np.zeros((2, 2)), np.zeros(2))])
    assert is_batches(iter([]))
    model = nn.mlp([2, 1], rng=0)
    np.testing.assert_array_equal(
        cr.predict(model, [[1.0, 2.0], [3.0, 4.0]]),
        cr.predict(model, np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)),
    )
