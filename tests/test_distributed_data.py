"""Issue 19, point 4: data stays sharded. Under ``fit(..., distributed=True)`` and
``chainrule train --workers N`` each process reads only its rows of a memory-mapped file, and
its peak resident memory stays bounded as in the single-process large-data test
(``tests/training/test_large_data.py``: under half the file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from .test_distributed import load, ok, rel, run

COLS = 4096
ROWS = 32_768  # float32: 512 MiB
VAL_ROWS = 4_096  # 64 MiB of validation data, memory-mapped as well
# the single-process test trains on a 2 GiB map under 1024 MiB: half the file; the same share
BOUND_MIB = (ROWS * COLS * 4 >> 20) // 2


def _write(path: Path, rows: int) -> None:
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, COLS))
    block = np.random.default_rng(0).normal(size=(4096, COLS)).astype(np.float32)
    for start in range(0, rows, 4096):
        X[start : start + 4096] = block * (1 + start / rows)
    X.flush()
    del X


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and pread as on Linux")
def test_peak_memory_per_process_stays_bounded_training_from_a_memory_map(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    if free < 2 * 2**30:
        pytest.skip(f"needs 2 GiB of free disk for the 576 MiB test files, {free >> 20} MiB free")
    _write(tmp_path / "big.npy", ROWS)
    _write(tmp_path / "val.npy", VAL_ROWS)
    data = ["--data", str(tmp_path / "big.npy"), "--val", str(tmp_path / "val.npy")]
    ok(run(tmp_path, 0, "peak_rss", str(tmp_path / "one.npz"), *data))
    ok(run(tmp_path, 2, "peak_rss", str(tmp_path / "two.npz"), *data, "--distributed"))
    ok(
        run(
            tmp_path, 2, "peak_rss", str(tmp_path / "loaded.npz"), *data, "--distributed",
            "--mode", "memory",
        )
    )  # fmt: skip
    ok(run(tmp_path, 2, "peak_rss", str(tmp_path / "noval.npz"), *data[:2], "--distributed"))
    one, two, loaded, noval = (
        load(tmp_path / f) for f in ("one.npz", "two.npz", "loaded.npz", "noval.npz")
    )
    # peaks: one row per process, (VmHWM, ru_maxrss) in MiB
    assert two["peaks"].shape == (2, 2)
    assert (two["peaks"] < BOUND_MIB).all(), (two["peaks"].tolist(), BOUND_MIB)
    # validation rows are read batch by batch too: 32 MiB of them per process cost no memory
    assert (two["peaks"] - noval["peaks"] < 12).all(), (two["peaks"], noval["peaks"])
    # (alone, the process is pytest's child: its ru_maxrss starts at pytest's, VmHWM does not)
    assert one["peaks"][0, 0] < BOUND_MIB, (one["peaks"].tolist(), BOUND_MIB)
    # the same data loaded instead of mapped really is larger than the bound, on every process
    assert (loaded["peaks"] > ROWS * COLS * 4 >> 20).all(), loaded["peaks"].tolist()
    # and the two processes trained the single-process model (float32 sums in another order)
    assert rel(one["weights"], two["weights"]) < 1e-5
    assert rel(two["weights"], loaded["weights"]) == 0.0
