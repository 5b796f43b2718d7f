"""The convolution benchmark and targets harnesses run (tiny: timing is not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_conv_smoke(capsys):
    results = load("bench_conv").main(
        ["--quick", "--threads", "1", "--cases", "conv1d", "--systems", "chainrule,gemm"]
    )
    assert set(results) == {"conv1d"}
    assert results["conv1d"]["chainrule"] > 0 and results["conv1d"]["gemm"] > 0
    assert results["conv1d"]["rss_mb"]["chainrule"] > 0
    assert "GEMM share" in capsys.readouterr().out


def test_bench_conv_fit_system_runs_the_trainers_step():
    # the trainer's step with its own plan choice (the split step for LeNet on 2 cores)
    bench = load("bench_conv")
    results = bench.main(["--quick", "--threads", "2", "--cases", "lenet", "--systems", "fit"])
    assert results["lenet"]["fit"] > 0 and results["lenet"]["rss_mb"]["fit"] > 0


def test_bench_conv_models_are_the_same_in_both_systems():
    import numpy as np
    import pytest

    torch = pytest.importorskip("torch")
    bench = load("bench_conv")
    for case in ("lenet", "conv1d"):
        x, _ = bench._data(case)
        ours = bench.chainrule_model(case)(x).data
        theirs = bench.torch_model(case)(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
