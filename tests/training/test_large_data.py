"""Training from a memory-mapped .npy larger than the memory allowed: bounded RSS, same result."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

ROWS, COLS = 131_072, 4_096  # float32: 2 GiB

RUN = r"""
import sys, numpy as np, chainrule as cr
path, mode, out = sys.argv[1:4]
X = np.load(path, mmap_mode="r" if mode == "mmap" else None)
y = (np.arange(len(X)) % 2).astype(np.int64)
model = cr.nn.mlp([X.shape[1], 8, 2], "relu", rng=0)
cr.fit(model, X, y, loss="cross_entropy", optimizer="sgd", lr=0.01, epochs=1, batch_size=1024,
       seed=0, verbose=0)
np.savez(out, *[p.data for p in model.parameters()])
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's at fork)
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RSS accounting and madvise as on Linux")
def test_two_gigabyte_memmap_trains_in_bounded_memory_and_equals_in_memory(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    if free < 3 * 2**30:
        pytest.skip(f"needs 3 GiB of free disk for the 2 GiB test file, {free >> 20} MiB free")
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, COLS))
    rng = np.random.default_rng(0)
    block = rng.normal(size=(4096, COLS)).astype(np.float32)
    for start in range(0, ROWS, 4096):
        X[start : start + 4096] = block * (1 + start / ROWS)
    X.flush()
    del X
    results = {}
    for mode in ("mmap", "memory"):
        out = tmp_path / f"{mode}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", RUN, str(path), mode, str(out)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr
        results[mode] = (int(proc.stdout.strip().splitlines()[-1]), np.load(out))
    rss_mmap, w_mmap = results["mmap"]
    rss_mem, w_mem = results["memory"]
    assert rss_mmap < 1024, f"peak RSS {rss_mmap} MiB training from the memory map"
    assert rss_mem > 2048  # the same data in memory really is larger
    for k in w_mmap.files:
        assert w_mmap[k].tobytes() == w_mem[k].tobytes()
