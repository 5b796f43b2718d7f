"""Issue 19, point 4: data stays sharded. Under ``fit(..., distributed=True)`` and
``chainrule train --workers N`` each process reads only its rows of a memory-mapped file, and
its peak resident memory stays bounded as in the single-process large-data test
(``tests/training/test_large_data.py``: under half the file)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from .test_distributed import _cli, load, ok, rel, run

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


# ----- the command line: `chainrule train --data DIR|FILE --workers N` -----
def _converted(directory: Path, rows: int, cols: int) -> None:
    """A directory as `chainrule convert` writes it (X.npy, y.npy, preprocessing.json)."""
    from chainrule.data.tabular import TabularPreprocessor

    directory.mkdir()
    X = np.lib.format.open_memmap(
        directory / "X.npy", mode="w+", dtype=np.float32, shape=(rows, cols)
    )
    rng = np.random.default_rng(0)
    block = rng.normal(size=(min(rows, 4096), cols)).astype(np.float32)
    w = rng.normal(size=cols).astype(np.float32)
    y = np.empty(rows, np.int64)
    for k, start in enumerate(range(0, rows, len(block))):
        part = block[::-1] if k % 2 else block
        X[start : start + len(part)] = part[: rows - start]
        y[start : start + len(part)] = part[: rows - start] @ w > 0
    X.flush()
    del X
    np.save(directory / "y.npy", y)
    prep = TabularPreprocessor("label", "classification")
    prep.features = [
        {"name": f"f{i}", "kind": "numeric", "mean": 0.0, "std": 1.0} for i in range(cols)
    ]
    prep.classes, prep.fitted = ["no", "yes"], True
    (directory / "preprocessing.json").write_text(json.dumps(prep.to_dict()))


def _history(path: Path) -> np.ndarray:
    rows = path.read_text().splitlines()
    return np.array([[float(v) for v in r.split(",")[1:-2]] for r in rows[1:]])  # no lr, time


def _leftovers(*dirs: Path) -> list[str]:
    return [p.name for d in dirs for p in d.iterdir() if p.name.startswith(".chainrule-run-")]


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and pread as on Linux")
def test_chainrule_train_on_a_converted_directory_keeps_every_process_bounded(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    if free < 2 * 2**30:
        pytest.skip(f"needs 2 GiB of free disk for the 512 MiB test files, {free >> 20} MiB free")
    _converted(tmp_path / "conv", ROWS, COLS)
    train = "train --data conv --epochs 1 --batch-size 1024 --layers 8 --no-plots -q --out"
    ok(run(tmp_path, 0, "cli_rss", str(tmp_path / "one.npz"), "--cli", f"{train} one"))
    ok(run(tmp_path, 2, "cli_rss", str(tmp_path / "two.npz"), "--cli", f"{train} two"))
    one, two = load(tmp_path / "one.npz")["ranks"], load(tmp_path / "two.npz")["ranks"]
    # per process: VmHWM, ru_maxrss (MiB), tables read, exit status
    assert two.shape == (2, 4) and (two[:, 3] == 0).all() and (two[:, 2] == 0).all()
    assert (two[:, :2] < BOUND_MIB).all(), (two.tolist(), BOUND_MIB)
    assert one[0, 0] < BOUND_MIB, (one.tolist(), BOUND_MIB)
    np.testing.assert_allclose(
        _history(tmp_path / "two" / "history.csv"), _history(tmp_path / "one" / "history.csv"),
        rtol=2e-5,
    )  # fmt: skip
    assert _leftovers(tmp_path, tmp_path / "conv") == []  # the parts are removed


def _csv(path: Path, n: int = 600) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    label = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    lines = ["a,b,c,d,label"] + [
        ",".join(f"{v:.6f}" for v in X[i]) + f",{label[i]}" for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_chainrule_train_workers_reads_the_csv_on_rank_zero_only(tmp_path):
    _csv(tmp_path / "d.csv")
    train = "train --data d.csv --target label --epochs 3 --no-plots -q --early-stopping --out"
    ok(run(tmp_path, 0, "cli_rss", str(tmp_path / "one.npz"), "--cli", f"{train} one"))
    ok(run(tmp_path, 3, "cli_rss", str(tmp_path / "three.npz"), "--cli", f"{train} three"))
    ranks = load(tmp_path / "three.npz")["ranks"]
    assert ranks[:, 2].tolist() == [1, 0, 0]  # only rank 0 read the CSV
    assert load(tmp_path / "one.npz")["ranks"][0, 2] == 1
    # the validation rows split off as fit does: the single-process run, to float32 rounding
    np.testing.assert_allclose(
        _history(tmp_path / "three" / "history.csv"), _history(tmp_path / "one" / "history.csv"),
        rtol=2e-5,
    )  # fmt: skip
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    three = json.loads((tmp_path / "three" / "metrics.json").read_text())
    assert one["test"]["n"] == three["test"]["n"] == 150
    assert one["test"]["confusion_matrix"] == three["test"]["confusion_matrix"]
    assert abs(one["train"]["log_loss"] - three["train"]["log_loss"]) < 1e-5
    assert _leftovers(tmp_path) == []


def test_chainrule_convert_then_train_on_the_directory(tmp_path):
    _csv(tmp_path / "d.csv", 400)
    conv = _cli(tmp_path, "convert", "--data", "d.csv", "--target", "label", "--out", "conv")
    ok(conv)
    assert "400 rows, 4 inputs, classification of 'label'" in conv.stdout
    assert sorted(os.listdir(tmp_path / "conv")) == ["X.npy", "preprocessing.json", "y.npy"]
    train = ["train", "--data", "conv", "--epochs", "10", "--lr", "0.01", "--no-plots", "-q"]
    ok(_cli(tmp_path, *train, "--out", "one"))
    ok(_cli(tmp_path, *train, "--out", "two", "--workers", "2"))
    np.testing.assert_allclose(
        _history(tmp_path / "two" / "history.csv"), _history(tmp_path / "one" / "history.csv"),
        rtol=2e-5,
    )  # fmt: skip
    # the model file holds the preprocessing: it predicts from the CSV's own columns
    pred = _cli(tmp_path, "predict", "--model", "two", "--data", "d.csv")
    ok(pred)
    assert len(pred.stdout.strip().splitlines()) == 401
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 100 and metrics["test"]["accuracy"] > 0.8
    assert _leftovers(tmp_path, tmp_path / "conv") == []


def test_a_converted_directory_is_checked(tmp_path):
    _csv(tmp_path / "d.csv", 50)
    ok(_cli(tmp_path, "convert", "--data", "d.csv", "--target", "label", "--out", "conv"))
    wrong = _cli(tmp_path, "train", "--data", "conv", "--target", "a", "--out", "r")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "chainrule: error: --target 'a': 'conv' was converted for the target 'label'; leave "
        "--target out or convert again"
    )
    drop = _cli(tmp_path, "train", "--data", "conv", "--drop", "b", "--out", "r")
    assert drop.returncode == 2 and drop.stderr.strip() == (
        "chainrule: error: --drop applies when converting (chainrule convert --drop ...): "
        "'conv' is already converted"
    )
    (tmp_path / "conv" / "preprocessing.json").unlink()
    bare = _cli(tmp_path, "train", "--data", "conv", "--out", "r")
    assert bare.returncode == 2 and len(bare.stderr.strip().splitlines()) == 1
    assert "has X.npy and y.npy but no preprocessing.json" in bare.stderr
    again = _cli(tmp_path, "convert", "--data", "d.csv", "--target", "label", "--out", "conv")
    assert again.returncode == 2
    assert "already exists and is not an empty directory" in again.stderr
    assert not (tmp_path / "r").exists() and _leftovers(tmp_path, tmp_path / "conv") == []


def test_each_process_reads_exactly_its_part_of_every_shuffled_batch(tmp_path):
    from chainrule.training.parallel import _bounds

    X = np.random.default_rng(0).normal(size=(64, 5))
    np.save(tmp_path / "X.npy", X)
    for n in (2, 3):
        out = tmp_path / f"r{n}.npz"
        ok(run(tmp_path, n, "rows_read", str(out), "--data", str(tmp_path / "X.npy")))
        seen = load(out)
        # the run's shuffles (seed 3; nothing else draws from its generator), batches of 10
        rng = np.random.default_rng(3)
        orders = [rng.permutation(64) for _ in range(2)]
        for r in range(n):
            expected = [
                batch[slice(*_bounds(len(batch), n, r))]
                for order in orders
                for batch in np.split(order, range(10, 64, 10))
            ]
            # one pread per row, in batch order: this process's rows and no other
            assert seen[f"rank{r}"].tolist() == np.concatenate(expected).tolist(), (n, r)
