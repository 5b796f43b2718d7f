"""``fit(memmap, validation_split=...)`` leaves the training rows in the file (read batch by
batch with ``pread``): the same weights as the same data in memory, and the peak memory of
the batches, not of the training set."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.training._rows import MemmapRows

ROWS, COLS = 16_384, 2_048  # float32: 128 MiB

RUN = r"""
import sys, numpy as np, chainrule as cr
path, mode, out = sys.argv[1:4]
X = np.load(path, mmap_mode="r" if mode == "mmap" else None)
y = (np.arange(len(X)) % 3).astype(np.int64)
model = cr.nn.mlp([X.shape[1], 8, 3], "relu", rng=0)
h = cr.fit(model, X, y, loss="cross_entropy", optimizer="adam", lr=1e-3, epochs=2,
           batch_size=512, validation_split=0.25, seed=0, verbose=0)
np.savez(out, val_loss=np.array(h.history["val_loss"]), *[p.data for p in model.parameters()])
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("memmap_split") / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, COLS))
    rng = np.random.default_rng(0)
    for start in range(0, ROWS, 2048):
        X[start : start + 2048] = rng.normal(size=(2048, COLS)).astype(np.float32)
    X.flush()
    del X
    return path


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM as on Linux")
def test_validation_split_of_a_memmap_trains_from_the_file(big, tmp_path):
    results = {}
    for mode in ("mmap", "memory"):
        out = tmp_path / f"{mode}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", RUN, str(big), mode, str(out)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        results[mode] = (int(proc.stdout.strip().splitlines()[-1]), np.load(out))
    (rss_mmap, w_mmap), (rss_mem, w_mem) = results["mmap"], results["memory"]
    for k in w_mem.files:  # the same rows, batches and validation: bitwise the same run
        assert w_mmap[k].tobytes() == w_mem[k].tobytes(), k
    # in memory the 128 MiB set is resident; from the file only the validation quarter (read
    # once, 32 MiB) and the batches are (before: the 96 MiB of training rows were copied too)
    assert rss_mem > 128 + 60, rss_mem
    assert rss_mmap < rss_mem - 90, (rss_mmap, rss_mem)


def test_memmap_rows_reads_the_rows_asked_for(tmp_path):
    path = tmp_path / "a.npy"
    a = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(path, a)
    mm = np.load(path, mmap_mode="r")
    tr = cr.Trainer(cr.nn.mlp([3, 2], rng=0), "mse", "sgd", verbose=0)
    rows = MemmapRows(mm, np.array([3, 1, 7, 19]), tr._read_rows)
    assert len(rows) == 4 and rows.shape == (4, 3) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[np.array([2, 0])], a[[7, 3]])
    np.testing.assert_array_equal(rows[1:3], a[[1, 7]])
    np.testing.assert_array_equal(rows[-1], a[19])
    np.testing.assert_array_equal(np.asarray(rows), a[[3, 1, 7, 19]])
