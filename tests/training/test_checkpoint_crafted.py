"""Issue 14, point 11: crafted checkpoints raise ModelFileError only, and a resume that fails
leaves the model (and the optimizer, generators, callbacks) untouched."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

import chainrule as cr
from chainrule import io as model_io
from chainrule import nn


def _data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


@pytest.fixture
def checkpoint(tmp_path):
    X, y = _data()
    path = tmp_path / "c.chainrule"
    model = nn.mlp([3, 4, 2], rng=0)
    cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        optimizer="adam",
        lr=0.01,
        epochs=3,
        seed=0,
        verbose=0,
        callbacks=[cr.ModelCheckpoint(path), cr.EarlyStopping(monitor="loss", patience=5)],
    )
    return path


def _crafted(src, dst, change) -> str:
    """A copy of checkpoint ``src`` whose training state is edited by ``change(state)``; the
    file is otherwise well formed (digest recomputed), as a hostile file would be."""
    mf = model_io.load_file(str(src))
    state = copy.deepcopy(mf.training)
    tensors = {k: v.copy() for k, v in mf.training_tensors.items()}
    change(state, tensors)
    model_io._write(str(dst), mf.model, extra=mf.extra, training=state, training_tensors=tensors)
    return str(dst)


def _set(*keys: Any, value: Any):
    def change(state, tensors):
        target = state
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return change


CRAFTED = {
    "no epoch": lambda s, t: s.pop("epoch"),
    "epoch -3": _set("epoch", value=-3),
    "epoch 1.5": _set("epoch", value=1.5),
    "epoch true": _set("epoch", value=True),
    "optimizer not a table": _set("optimizer", value=[1, 2]),
    "optimizer without class": lambda s, t: s["optimizer"].pop("class"),
    "optimizer state a number": _set("optimizer", "state_dict", value=7),
    "rng garbage": _set("rng", value={"bit_generator": "PCG64", "state": "x"}),
    "rng not a table": _set("rng", value=3),
    "module rngs a list": _set("module_rngs", value=[1]),
    "history a string": _set("history", value="h"),
    "history epochs text": _set("history", value={"epoch": ["x"], "history": {}}),
    "callbacks a number": _set("callbacks", value=5),
    "callback without state": _set("callbacks", value=[{"class": "EarlyStopping"}]),
    "callback state garbage": lambda s, t: s["callbacks"][1].__setitem__(
        "state", {"__dict__": [["wait", "zz"]]}
    ),
    "trainer missing": lambda s, t: s.pop("trainer"),
    "last_finite short": _set("trainer", "last_finite", value=[1.0]),
    "best_loss huge int": _set("trainer", "best_loss", value=10**400),
    "no_improvement negative": _set("trainer", "no_improvement", value=-1),
    "missing tensor": lambda s, t: t.clear(),
    "unknown entry": _set("optimizer", "state_dict", value={"__what__": 1}),
    "optimizer state for parameter 99": lambda s, t: s["optimizer"]["state_dict"]["__dict__"][0][1][
        "__dict__"
    ].append([99, {"__dict__": []}]),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoints_raise_model_file_error_and_change_nothing(case, checkpoint, tmp_path):
    path = _crafted(checkpoint, tmp_path / "bad.chainrule", CRAFTED[case])
    X, y = _data()
    model = nn.mlp([3, 4, 2], rng=1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(cr.ModelFileError) as info:
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            epochs=5,
            verbose=0,
            resume_from=path,
            callbacks=[cr.EarlyStopping(monitor="loss", patience=5)],
        )
    assert type(info.value) is cr.ModelFileError
    assert "bad.chainrule" in str(info.value)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_negative_epoch_is_refused_not_trained(checkpoint, tmp_path):
    path = _crafted(checkpoint, tmp_path / "neg.chainrule", _set("epoch", value=-3))
    X, y = _data()
    with pytest.raises(cr.ModelFileError, match=r"epoch must be an integer >= 0, got -3"):
        cr.fit(
            nn.mlp([3, 4, 2], rng=0),
            X,
            y,
            loss="cross_entropy",
            epochs=6,
            verbose=0,
            optimizer="adam",
            resume_from=path,
        )


def test_resume_with_another_optimizer_leaves_everything_untouched(checkpoint):
    X, y = _data()
    model = nn.mlp([3, 4, 2], rng=1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_before = json.dumps({k: str(v) for k, v in opt.state_dict()["param_groups"][0].items()})
    with pytest.raises(ValueError, match="written with optimizer Adam, this run uses SGD"):
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            optimizer=opt,
            epochs=5,
            verbose=0,
            resume_from=checkpoint,
        )
    for k, v in model.state_dict().items():  # the Adam run's weights were not loaded
        np.testing.assert_array_equal(v, before[k])
    assert opt.state == {}
    assert (
        json.dumps({k: str(v) for k, v in opt.state_dict()["param_groups"][0].items()})
        == opt_before
    )


def test_failure_while_applying_rolls_back(checkpoint, monkeypatch):
    # a failure after the weights were loaded (here: the optimizer) puts the weights back
    X, y = _data()
    model = nn.mlp([3, 4, 2], rng=1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    real = type(opt).load_state_dict
    calls = []

    def failing(self, sd):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("optimizer state refers to parameter 9, there are 4")
        real(self, sd)

    monkeypatch.setattr(type(opt), "load_state_dict", failing)
    with pytest.raises(cr.ModelFileError, match="parameter 9"):
        cr.fit(
            model,
            X,
            y,
            loss="cross_entropy",
            optimizer=opt,
            epochs=5,
            verbose=0,
            resume_from=checkpoint,
        )
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_a_sound_checkpoint_still_resumes_exactly(checkpoint, tmp_path):
    # the validation does not change what a good checkpoint restores
    X, y = _data()
    straight = nn.mlp([3, 4, 2], rng=0)
    h1 = cr.fit(
        straight,
        X,
        y,
        loss="cross_entropy",
        optimizer="adam",
        lr=0.01,
        epochs=5,
        seed=0,
        verbose=0,
        callbacks=[cr.EarlyStopping(monitor="loss", patience=5)],
    )
    resumed = nn.mlp([3, 4, 2], rng=7)
    h2 = cr.fit(
        resumed,
        X,
        y,
        loss="cross_entropy",
        optimizer="adam",
        lr=0.01,
        epochs=5,
        seed=0,
        verbose=0,
        callbacks=[cr.EarlyStopping(monitor="loss", patience=5)],
        resume_from=checkpoint,
    )
    assert h2.epoch == [1, 2, 3, 4, 5]
    assert h1.history["loss"] == h2.history["loss"]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("training", [[1, 2], "x", 5])
def test_training_state_that_is_not_a_table(training, tmp_path, capsys):
    from chainrule.cli import main

    path = tmp_path / "odd.chainrule"
    model_io._write(str(path), nn.mlp([2, 3, 2], rng=0), {}, training=training)
    X, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int64)
    with pytest.raises(cr.ModelFileError, match="without training state"):
        cr.fit(
            nn.mlp([2, 3, 2], rng=0), X, y, loss="cross_entropy", verbose=0, resume_from=str(path)
        )
    assert main(["info", "--model", str(path)]) == 0
    assert "training state unreadable" in capsys.readouterr().out
