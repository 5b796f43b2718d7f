"""The accuracy targets on real data, with the CLI's default settings (seeds 0-4)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "real_data_targets.py"


def test_real_data_targets_with_default_cli_settings():
    spec = importlib.util.spec_from_file_location("real_data_targets", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.run([0, 1, 2, 3, 4])
    failed = {k: round(v["mean"], 4) for k, v in results.items() if not v["passed"]}
    assert not failed, f"below target: {failed}\n{module.table(results)}"
