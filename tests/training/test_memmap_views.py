"""Training on any view of a memory-mapped array reads exactly that view's rows (issue 14.3)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.training.fit import Trainer


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    X[:2000] *= -1  # the first rows differ from the rest: reading them instead shows
    y = (X[:, 0] > 0).astype(np.int64)
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path, X, y


VIEWS = [
    np.s_[2000:],
    np.s_[1000:],
    np.s_[7:2900:3],
    np.s_[::-1],
    np.s_[2999:10:-7],
    np.s_[5:, 1:4],  # rows of a column slice: each row still one contiguous run
    np.s_[100:, ::2],  # rows not contiguous: read through the mapping
]


@pytest.mark.parametrize("view", VIEWS, ids=[str(v) for v in VIEWS])
def test_fit_on_a_view_of_a_memmap_equals_in_memory(saved, view):
    path, X, y = saved
    mm = np.load(path, mmap_mode="r")
    rows = view[0] if isinstance(view, tuple) else view
    results = []
    for data in (mm[view], np.array(X[view])):
        model = cr.nn.mlp([data.shape[1], 8, 2], "tanh", rng=0)
        cr.fit(
            model,
            data,
            y[rows],
            loss="cross_entropy",
            optimizer="sgd",
            lr=0.1,
            epochs=2,
            batch_size=64,
            seed=1,
            verbose=0,
        )
        results.append([p.data.tobytes() for p in model.parameters()])
    assert results[0] == results[1]


@pytest.mark.parametrize("view", VIEWS, ids=[str(v) for v in VIEWS])
def test_read_rows_is_bitwise_the_view(saved, view):
    path, X, _ = saved
    v = np.load(path, mmap_mode="r")[view]
    t = Trainer.__new__(Trainer)
    t._fd = None
    idx = np.random.default_rng(3).permutation(len(v))[:50]
    got = t._read_rows(v, idx)
    assert got.tobytes() == np.ascontiguousarray(X[view][idx]).tobytes()
    assert t._read_rows(v, slice(3, 9)).tobytes() == np.ascontiguousarray(X[view][3:9]).tobytes()


def test_slice_of_memmap_trains_as_well_as_in_memory(saved):
    # the reproduction: mm[2000:] read rows from the start of the file (43.5 % accuracy)
    path, X, y = saved
    mm = np.load(path, mmap_mode="r")
    model = cr.nn.mlp([5, 16, 2], "relu", rng=0)
    cr.fit(model, mm[2000:], y[2000:], loss="cross_entropy", lr=0.01, epochs=20, seed=0, verbose=0)
    with cr.no_grad():
        pred = model(cr.tensor(X[2000:])).data.argmax(1)
    assert (pred == y[2000:]).mean() > 0.97


def test_copy_on_write_map_is_read_through_the_mapping(saved):
    # mode="c": private writes are not in the file, so pread would read stale rows
    path, _, _ = saved
    mm = np.load(path, mmap_mode="c")
    mm[2000:2010] = 7.0
    t = Trainer.__new__(Trainer)
    t._fd = None
    assert np.all(t._read_rows(mm[2000:], np.arange(10)) == 7.0)
