"""GradientFlow names layers as they were built: channels and kernel for a convolution."""

from __future__ import annotations

import numpy as np

import chainrule as cr

nn = cr.nn


def test_conv_layers_are_labelled_by_channels_and_kernel():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, rng=0), nn.ReLU(), nn.Conv2d(16, 4, (3, 2), rng=1), nn.Flatten(),
        nn.Linear(4 * 4 * 5, 10, rng=2),
    )  # fmt: skip
    X = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    flow = cr.GradientFlow()
    cr.fit(model, X, np.arange(32) % 10, loss="cross_entropy", epochs=1, batch_size=16,
           verbose=0, callbacks=[flow])  # fmt: skip
    assert flow.labels == {
        "0": "0: Conv2d(1→16, 3×3)",
        "2": "2: Conv2d(16→4, 3×2)",
        "4": "4: Linear(80→10)",
    }


def test_conv1d_label():
    model = nn.Sequential(nn.Conv1d(2, 5, 4, rng=0), nn.Flatten(), nn.Linear(5 * 7, 3, rng=1))
    X = np.random.default_rng(0).standard_normal((12, 2, 10)).astype(np.float32)
    flow = cr.GradientFlow()
    cr.fit(model, X, np.arange(12) % 3, loss="cross_entropy", epochs=1, verbose=0,
           callbacks=[flow])  # fmt: skip
    assert flow.labels["0"] == "0: Conv1d(2→5, 4)"
