"""What a forward pass costs (nn.cost.layer_flops), which the BLAS-thread policy reads: a
convolution inside a PyTorch-style Module (not a Sequential) and a custom layer that does not
report its cost are still seen."""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule import nn
from chainrule.nn.cost import layer_flops
from chainrule.training._threads import SMALL_STEP_MACS, largest_layer_flops


class _Net(nn.Module):
    """Features then classifier, registered in the order they run (PyTorch's habit)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, rng=0), nn.ReLU(), nn.Conv2d(8, 16, 3, rng=1), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 12 * 12, 10, rng=2))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_a_module_of_sequentials_costs_what_the_flat_sequential_costs():
    net = _Net()
    flat = nn.Sequential(*net.features, *net.classifier)
    shape = (64, 1, 28, 28)
    nested = layer_flops(net, shape)
    assert sorted(nested.values()) == sorted(layer_flops(flat, shape).values())
    # the second convolution: every output element is a dot product of 8·3·3 inputs
    assert nested["features.2"] == 64 * 16 * 24 * 24 * 8 * 9
    assert nested["classifier.1"] == 64 * 16 * 12 * 12 * 10
    assert largest_layer_flops(net, shape) >= SMALL_STEP_MACS  # big: BLAS threads left alone
    out = cr.predict(net, np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape == (2, 10)  # the guessed order is the order forward runs


class _Dense(nn.Module):
    """A layer of the user's that does not define flops()."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.w = nn.Parameter(np.zeros((n_in, n_out), np.float32))

    def forward(self, x):
        return x @ self.w


def test_a_layer_without_flops_counts_at_least_one_use_of_each_weight():
    costs = layer_flops(nn.Sequential(_Dense(2000, 2000)), (32, 2000))
    assert costs == {"0": 32 * 2000 * 2000}
    assert largest_layer_flops(nn.Sequential(_Dense(2000, 2000)), (32, 2000)) >= SMALL_STEP_MACS
    # a small one stays small
    assert largest_layer_flops(nn.Sequential(_Dense(10, 4)), (8, 10)) == 8 * 40 < SMALL_STEP_MACS
