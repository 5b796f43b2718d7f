"""Callbacks: early stopping on scripted curves, checkpoints, progress output, CSV logs."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X.sum(axis=1) > 0).astype(np.int64)
    return X, y


class Script(cr.training.Callback):
    """Replace the logged val_loss by a scripted curve and remember each epoch's weights."""

    def __init__(self, curve):
        self.curve = curve
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.curve[epoch - 1]
        self.weights[epoch] = self.model.state_dict()


@pytest.mark.parametrize(
    "curve,patience,epochs,stop_epoch,best_epoch,min_delta",
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 6, 3, 1, 0.0),  # best first
        ([5.0, 4.0, 3.0, 3.5, 3.6, 1.0, 0.5], 2, 7, 5, 3, 0.0),  # best in the middle
        ([5.0, 4.0, 3.0, 2.0, 1.0], 2, 5, None, 5, 0.0),  # best last: the epoch limit
        ([3.0, 2.0, 2.0, 2.0, 5.0], 2, 5, 4, 2, 0.0),  # ties are not improvements
        ([3.0, 1.0, 2.0, 2.5], 5, 4, None, 2, 0.0),  # stopped by the epoch limit, best inside
        ([1.0, 0.95, 0.9, 0.85], 2, 4, 3, 1, 0.1),  # improvements below min_delta
    ],
)
def test_early_stopping_scripted(curve, patience, epochs, stop_epoch, best_epoch, min_delta):
    X, y = data()
    model = nn.mlp([3, 4, 2], rng=0)
    script = Script(curve)
    es = cr.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta)
    h = cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        epochs=epochs,
        lr=0.05,
        verbose=0,
        callbacks=[script, es],
        seed=0,
    )
    ran = stop_epoch if stop_epoch is not None else epochs
    assert len(h) == ran
    assert h.stop_reason == ("early_stopping" if stop_epoch else "epochs")
    assert h.best_epoch == best_epoch == es.best_epoch
    final = model.state_dict()
    for k, v in script.weights[best_epoch].items():
        np.testing.assert_array_equal(final[k], v)  # best weights, however training ended
    if best_epoch != ran:
        assert "restored" in h.summary


def test_early_stopping_without_restore_keeps_last_weights():
    X, y = data()
    model = nn.mlp([3, 4, 2], rng=0)
    script = Script([1.0, 2.0, 3.0])
    cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        epochs=3,
        verbose=0,
        callbacks=[script, cr.EarlyStopping(patience=5, restore_best_weights=False)],
    )
    for k, v in script.weights[3].items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


def test_early_stopping_on_accuracy_maximises_and_missing_key_errors():
    assert cr.EarlyStopping(monitor="val_accuracy").mode == "max"
    X, y = data()
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_loss'.*validation_data"):
        cr.fit(
            nn.mlp([3, 4, 2], rng=0),
            X,
            y,
            loss="cross_entropy",
            epochs=2,
            verbose=0,
            callbacks=[cr.EarlyStopping()],
        )


def test_model_checkpoint_best_and_last(tmp_path):
    X, y = data()
    model = nn.mlp([3, 4, 2], rng=0)
    script = Script([3.0, 1.0, 2.0, 4.0])
    best = cr.ModelCheckpoint(tmp_path / "best.chainrule", save_best_only=True)
    every = cr.ModelCheckpoint(str(tmp_path / "epoch-{epoch:02d}.chainrule"))
    cr.fit(model, X, y, loss="cross_entropy", epochs=4, verbose=0, callbacks=[script, best, every])
    assert sorted(os.listdir(tmp_path)) == ["best.chainrule"] + [
        f"epoch-0{i}.chainrule" for i in range(1, 5)
    ]
    saved = cr.load(tmp_path / "best.chainrule").state_dict()
    for k, v in script.weights[2].items():
        np.testing.assert_array_equal(saved[k], v)


def test_progress_in_a_pipe_is_one_plain_line_per_epoch():
    X, y = data()
    out = io.StringIO()
    cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=3,
        verbose=1,
        callbacks=[cr.ProgressBar(stream=out)],
        validation_split=0.25,
        metrics=["accuracy"],
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(
        line.startswith(f"epoch {i + 1}/3 - loss ") for i, line in enumerate(lines)
    )
    assert (
        "val_accuracy" in lines[0] and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    )


def test_progress_on_a_terminal_is_a_live_bar():
    X, y = data(256)
    out = io.StringIO()
    cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=2,
        verbose=1,
        callbacks=[cr.ProgressBar(stream=out, force_terminal=True)],
    )
    text = out.getvalue()
    assert "\x1b[" in text or "\r" in text  # cursor control: a live display
    assert "samples/s" in text and "epoch 2/2" in text


def test_progress_in_a_real_pseudo_terminal():
    pty = pytest.importorskip("pty")
    code = (
        "import numpy as np, chainrule as cr\n"
        "X = np.random.default_rng(0).normal(size=(512, 3)).astype(np.float32)\n"
        "y = (X.sum(1) > 0).astype(np.int64)\n"
        "cr.fit(cr.nn.mlp([3, 4, 2], rng=0), X, y, loss='cross_entropy', epochs=2, batch_size=8)\n"
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data_ = os.read(master, 65536)
        except OSError:
            break
        if not data_:
            break
        chunks.append(data_)
    proc.wait(timeout=120)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "epoch 2/2" in text and ("\x1b[" in text or "\r" in text)
    assert "Trained 2 epochs" in text


def test_silent_with_verbose_zero(capsys):
    X, y = data()
    cr.fit(nn.mlp([3, 4, 2], rng=0), X, y, loss="cross_entropy", epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_csv_logger(tmp_path):
    X, y = data()
    path = tmp_path / "log.csv"
    cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=3,
        verbose=0,
        callbacks=[cr.CSVLogger(path)],
        metrics=["accuracy"],
    )
    rows = path.read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,lr,time" and len(rows) == 4
    cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=2,
        verbose=0,
        callbacks=[cr.CSVLogger(path, append=True)],
        metrics=["accuracy"],
    )
    assert len(path.read_text().splitlines()) == 6


def test_callback_can_stop_training():
    X, y = data()

    class StopAt2(cr.training.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.stop_training = True

    h = cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=10,
        verbose=0,
        callbacks=[StopAt2()],
    )
    assert len(h) == 2 and h.stop_reason == "callback"
