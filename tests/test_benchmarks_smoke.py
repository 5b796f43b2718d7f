"""The benchmark harness runs (tiny sizes, no thresholds: timing is not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_overhead_benchmark_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_overhead", BENCH / "bench_overhead.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick"])
    assert set(results) == {"add (64,64)", "matmul (64,64)", "tanh (64,64)", "mlp step B=32"}
    assert all(r["chainrule"] > 0 for r in results.values())
    assert "speed-up" in capsys.readouterr().out
