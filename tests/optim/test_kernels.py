"""The optional compiled Adam loop (numba) gives bitwise the numbers of the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim
from chainrule.optim import _kernels

numba = pytest.importorskip("numba", reason="the fast extra (numba) is part of the dev install")


def trajectory(mode, dtype, opt_cls, **kw):
    previous = optim.set_kernels(mode)
    try:
        rng = np.random.default_rng(0)
        model = nn.mlp([40, 300, 250, 3], "relu", rng=0, dtype=dtype)  # 88 k parameters
        X = rng.normal(size=(64, 40)).astype(dtype)
        y = rng.integers(0, 3, 64)
        opt = opt_cls(model.parameters(), lr=1e-2, **kw)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(25):
            loss = loss_fn(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        state = opt.state_dict()["state"]
        moments = [a for s in state.values() for k, a in s.items() if k != "step"]
        return [p.data.copy() for p in model.parameters()], moments
    finally:
        optim.set_kernels(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "opt_cls,kw",
    [
        (optim.Adam, {}),
        (optim.Adam, {"weight_decay": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}),
        (optim.AdamW, {"weight_decay": 0.1}),
    ],
)
def test_compiled_adam_is_bitwise_the_numpy_update(dtype, opt_cls, kw):
    ref_p, ref_s = trajectory("numpy", dtype, opt_cls, **kw)
    got_p, got_s = trajectory("numba", dtype, opt_cls, **kw)
    assert len(ref_s) == len(got_s) > 0
    for a, b in zip(ref_p + ref_s, got_p + got_s):
        assert a.dtype == b.dtype == dtype
        assert a.tobytes() == b.tobytes()
    # and the run really moved: not a trivially equal pair
    assert not np.array_equal(
        ref_p[0], nn.mlp([40, 300, 250, 3], "relu", rng=0, dtype=dtype)[0].weight.data
    )


def test_auto_mode_uses_the_kernel_only_for_large_buffers():
    previous = optim.set_kernels("auto")
    try:
        assert _kernels.adam_kernel(_kernels.MIN_SIZE - 1) is None
        assert _kernels.adam_kernel(_kernels.MIN_SIZE) is not None
        assert _kernels.adam_kernel(_kernels.MIN_SIZE, np.float64) is not None
        optim.set_kernels("numpy")
        assert _kernels.adam_kernel(10**7) is None
    finally:
        optim.set_kernels(previous)


def test_set_kernels_rejects_unknown_modes():
    with pytest.raises(
        ValueError, match=r"mode must be one of 'auto', 'numba', 'numpy', got 'fast'"
    ):
        optim.set_kernels("fast")
    assert optim.get_kernels() in ("auto", "numba", "numpy")


def test_fit_with_compiled_kernels_matches_numpy_bitwise():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 300)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    out = []
    for mode in ("numpy", "numba"):
        previous = optim.set_kernels(mode)
        try:
            model = nn.mlp([300, 256, 4], "relu", rng=0)
            cr.fit(model, X, y, loss="cross_entropy", epochs=3, batch_size=32, seed=0, verbose=0)
            out.append(b"".join(p.data.tobytes() for p in model.parameters()))
        finally:
            optim.set_kernels(previous)
    assert out[0] == out[1]


def test_kernel_falls_back_when_caching_or_compiling_fails(monkeypatch):
    real_njit = numba.njit
    calls = []

    def no_cache(**kw):
        calls.append(kw["cache"])
        if kw["cache"]:
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(**kw)

    previous = optim.set_kernels("numba")
    try:
        monkeypatch.setattr(_kernels, "_compiled", {})
        monkeypatch.setattr(numba, "njit", no_cache)
        assert _kernels.adam_kernel(10) is not None  # compiled in memory instead
        assert calls == [True, False]

        def broken(**kw):
            raise RuntimeError("no compiler")

        monkeypatch.setattr(_kernels, "_compiled", {})
        monkeypatch.setattr(numba, "njit", broken)
        assert _kernels.adam_kernel(10) is None  # NumPy then
        w = nn.Parameter(np.ones(3, np.float32))
        opt = optim.Adam([w], lr=0.1)
        (w * w).sum().backward()
        opt.step()
        np.testing.assert_allclose(w.data, 0.9, rtol=1e-6)  # Adam's first step: w - lr·sign(g)
    finally:
        optim.set_kernels(previous)
