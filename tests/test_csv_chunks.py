"""CSV files read in chunks: the same preprocessing as reading them whole, in bounded memory."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr


def write_csv(path, rows, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*(f"x{i}" for i in range(8)), "color", "label"])
        for start in range(0, rows, 10_000):
            k = min(10_000, rows - start)
            X = rng.normal(size=(k, 8)) * np.arange(1, 9)
            colors = rng.choice(["red", "green", "blue"], k)
            labels = np.where(X[:, 0] + (colors == "red") > 0.5, "yes", "no")
            w.writerows(
                [*map(lambda v: f"{v:.6f}", x), c, lab] for x, c, lab in zip(X, colors, labels)
            )


def test_chunked_conversion_equals_whole_file_preprocessing(tmp_path):
    path = tmp_path / "small.csv"
    write_csv(path, 5_000)
    prep, X, y = cr.data.csv_to_npy(path, "label", tmp_path / "out", chunk_rows=700)
    table = cr.data.read_csv(path)
    ref = cr.data.TabularPreprocessor("label").fit(table)
    assert isinstance(X, np.memmap) and X.shape == (5_000, 8 + 3)
    np.testing.assert_allclose(X, ref.transform(table), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, ref.encode_target(table))
    assert prep.classes == ["no", "yes"] and prep.input_names()[-3:] == [
        "color=blue",
        "color=green",
        "color=red",
    ]
    model = cr.nn.mlp([X.shape[1], 16, 2], rng=0)
    h = cr.fit(
        model, X, y, loss="cross_entropy", epochs=3, lr=0.01, verbose=0, metrics=["accuracy"]
    )
    assert h["accuracy"][-1] > 0.9


RUN = r"""
import sys, chainrule as cr
path, out, mode = sys.argv[1:4]
if mode == "chunks":
    cr.data.csv_to_npy(path, "label", out, chunk_rows=20_000)
else:
    table = cr.data.read_csv(path)
    cr.data.TabularPreprocessor("label").fit(table).transform(table)
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_chunked_conversion_memory_is_bounded(tmp_path):
    path = tmp_path / "big.csv"
    write_csv(path, 400_000)  # ~40 MB of text
    peaks = {}
    for mode in ("chunks", "whole"):
        proc = subprocess.run(
            [sys.executable, "-c", RUN, str(path), str(tmp_path / "out"), mode],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        peaks[mode] = int(proc.stdout.strip().splitlines()[-1])
    assert peaks["chunks"] < 200, peaks
    assert peaks["whole"] > 2 * peaks["chunks"], peaks
