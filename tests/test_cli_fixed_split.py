"""``chainrule train --dataset mnist1d`` tests on the data set's own 1 000 test signals (the
benchmark's split, as the README's figures), not on a re-split; ``--test-split`` re-splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule._run import TrainSettings, train_test_rows
from chainrule.cli import main

pytest.importorskip("mnist1d")


def _metrics(out):
    with open(f"{out}/metrics.json") as f:
        return json.load(f)


def test_mnist1d_keeps_its_own_split(tmp_path, capsys):
    out = str(tmp_path / "run")
    status = main(["train", "--dataset", "mnist1d", "--layers", "8", "--epochs", "1",
                   "--out", out, "-q", "--no-plots"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert _metrics(out)["test"]["n"] == 1000
    ds = cr.datasets.load("mnist1d")
    table_rows = np.arange(len(ds.X))
    train, test = train_test_rows(
        TrainSettings(dataset="mnist1d"), _Rows(len(table_rows)), "", True
    )
    np.testing.assert_array_equal(ds.X[test], ds.extra["test"][0][:, 0, :])
    np.testing.assert_array_equal(ds.X[train], ds.extra["train"][0][:, 0, :])


def test_an_explicit_test_split_re_splits(tmp_path, capsys):
    out = str(tmp_path / "run")
    status = main(["train", "--dataset", "mnist1d", "--layers", "8", "--epochs", "1",
                   "--test-split", "0.3", "--out", out, "-q", "--no-plots"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert _metrics(out)["test"]["n"] == 1500


class _Rows:
    """A stand-in table of ``n`` rows (test_split reads only the length for a fixed split)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n
