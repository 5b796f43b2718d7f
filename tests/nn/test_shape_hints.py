"""A wrong input shape says what to do: Flatten before a Linear fed feature maps, the
in_features the layer before gives; a PyTorch state dict points to from_torch_state_dict."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr


def test_linear_fed_feature_maps_says_flatten_and_the_size_it_gives():
    lin = cr.nn.Linear(400, 120, rng=0)
    with pytest.raises(ValueError, match=re.escape("put nn.Flatten() before this layer")) as e:
        lin(np.zeros((8, 16, 5, 5), np.float32))
    assert "in_features" not in str(e.value)  # 16·5·5 = 400: Flatten alone fixes it
    with pytest.raises(ValueError, match=r"in_features=256 for what it gives"):
        lin(np.zeros((8, 16, 4, 4), np.float32))


def test_linear_with_the_wrong_in_features_names_the_right_one():
    with pytest.raises(ValueError, match=r"got shape \(8, 256\) — the layer before gives 256 "):
        cr.nn.Linear(400, 120, rng=0)(np.zeros((8, 256), np.float32))


def test_a_torch_state_dict_points_to_the_converter():
    torch = pytest.importorskip("torch")
    model = cr.nn.Sequential(cr.nn.Conv2d(1, 2, 3, rng=0))
    state = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match=r"cr\.nn\.from_torch_state_dict") as e:
        model.load_state_dict(state)
    assert "square Linear weight transposed" in str(e.value)


@pytest.mark.parametrize(
    ("layer", "shape", "hint"),
    [
        (lambda: cr.nn.Conv2d(1, 6, 5, rng=0), (8, 28, 28), r"X\[:, None\] gives \(N, 1, H, W\)"),
        (lambda: cr.nn.Conv1d(1, 4, 3, rng=0), (8, 40), r"X\[:, None\] gives \(N, 1, L\)"),
        (lambda: cr.nn.Conv2d(3, 6, 5, rng=0), (8, 32, 32, 3), r"X\.transpose\(0, 3, 1, 2\)"),
        (lambda: cr.nn.Conv2d(1, 6, 5, rng=0), (8, 784), r"nn\.Unflatten\(1, \(C, \.\.\.\)\)"),
    ],
)
def test_conv_input_shape_mistakes_say_what_to_do(layer, shape, hint):
    with pytest.raises(ValueError, match=r"expected input of shape \(N, \d, [HL]") as e:
        layer()(np.zeros(shape, np.float32))
    assert re.search(hint, str(e.value)), str(e.value)


def test_a_conv_shape_error_without_a_known_cause_adds_nothing():
    with pytest.raises(ValueError) as e:
        cr.nn.Conv2d(3, 16, 3, rng=0)(np.zeros((32, 28, 28), np.float32))
    assert str(e.value).endswith("expected input of shape (N, 3, H, W), got (32, 28, 28)")


@pytest.mark.parametrize("layer", ["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_momentum_none_is_the_cumulative_average(layer, tmp_path):
    # PyTorch's momentum=None: batch t enters with factor 1/t, so the running statistics are
    # the plain average of the batches' (mean; unbiased variance), and it survives a model file
    rng = np.random.default_rng(0)
    bn = getattr(cr.nn, layer)(3, momentum=None, dtype=np.float64)
    shape = (5, 3) if layer == "BatchNorm1d" else (5, 3, 2, 2)
    batches = [rng.standard_normal(shape) * (k + 1) + k for k in range(4)]
    for x in batches:
        bn(x)
    axes = (0,) if layer == "BatchNorm1d" else (0, 2, 3)
    np.testing.assert_allclose(
        bn.running_mean, np.mean([x.mean(axis=axes) for x in batches], axis=0), rtol=1e-12
    )
    np.testing.assert_allclose(
        bn.running_var, np.mean([x.var(axis=axes, ddof=1) for x in batches], axis=0), rtol=1e-12
    )
    assert "momentum=None" in repr(bn)
    model = cr.nn.Sequential(bn)
    cr.save(model, tmp_path / "m.crm")
    again = cr.load(tmp_path / "m.crm")
    assert again[0].momentum is None
    np.testing.assert_array_equal(again[0].running_var, bn.running_var)
