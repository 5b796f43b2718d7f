"""A terminal gets one live bar over the epochs, a pipe one line per epoch; plain `chainrule`
prints the help; `chainrule train` holds out validation rows by default (issue 13, 5 and 9)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import main


def data(n=128):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X.sum(1) > 0).astype(np.int64)


def train(out, epochs=20, **kw):
    X, y = data()
    cr.fit(
        nn.mlp([3, 4, 2], rng=0),
        X,
        y,
        loss="cross_entropy",
        epochs=epochs,
        verbose=1,
        validation_split=0.25,
        metrics=["accuracy"],
        callbacks=[cr.ProgressBar(stream=out, **kw)],
    )
    return out.getvalue()


def epoch_lines(text):
    return [ln for ln in text.replace("\r", "\n").split("\n") if " - loss " in ln]


def test_terminal_shows_one_bar_over_all_epochs_without_a_line_per_epoch(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a terminal's width (rich reads it)
    text = train(io.StringIO(), force_terminal=True, slow_epoch=float("inf"))
    assert epoch_lines(text) == []  # 20 fast epochs: no flood
    final = text.rstrip().split("\r")[-1]
    assert "epoch 20/20" in final and "loss 0." in final and "(val 0." in final


def test_slow_epochs_leave_a_line_above_the_bar():
    text = train(io.StringIO(), epochs=4, force_terminal=True, slow_epoch=0.0)
    assert len(epoch_lines(text)) == 4


def test_plain_bar_without_rich_has_metrics_and_time_left(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    text = train(io.StringIO(), force_terminal=True, slow_epoch=float("inf"))
    frames = [f for f in text.split("\r") if f.strip()]
    assert len(frames) >= 2 and frames[-1].startswith("epoch 20/20 [")
    assert " left " in frames[1] and "accuracy 0." in frames[-1] and "(val 0." in frames[-1]
    assert epoch_lines(text) == []


def test_pipe_gets_one_line_per_epoch():
    text = train(io.StringIO(), epochs=5, force_terminal=False)
    lines = text.splitlines()
    assert [ln.split(" - ")[0] for ln in lines] == [f"epoch {i}/5" for i in range(1, 6)]
    assert "\r" not in text and "\x1b" not in text


def test_isatty_decides_when_not_forced():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert epoch_lines(train(Tty(), slow_epoch=float("inf"))) == []
    assert len(epoch_lines(train(io.StringIO()))) == 20


def test_a_real_pseudo_terminal_does_not_flood():
    pty = pytest.importorskip("pty")
    code = (
        "import numpy as np, chainrule as cr\n"
        "X = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)\n"
        "y = (X.sum(1) > 0).astype(np.int64)\n"
        "cr.fit(cr.nn.mlp([3, 4, 2], rng=0), X, y, loss='cross_entropy', epochs=60,\n"
        "       validation_split=0.2, batch_size=64)\n"
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "epoch 60/60" in text and "(val 0." in text
    # only epochs slower than a second get their own line: far fewer than 60 here
    assert len(epoch_lines(text)) < 10


def test_plain_chainrule_prints_the_help_and_the_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: chainrule")
    for command in ("train", "predict", "evaluate", "info", "datasets", "explain"):
        assert f"\n    {command}" in out


def test_train_holds_out_validation_rows_by_default(tmp_path, capsys):
    code = main(["train", "--dataset", "iris", "--epochs", "5", "--out", str(tmp_path / "r"), "-q"])
    assert code == 0
    header = (tmp_path / "r" / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_loss" in header and "val_accuracy" in header
    settings = json.loads((tmp_path / "r" / "metrics.json").read_text())["settings"]
    assert settings["val_split"] == 0.1
    # --val-split 0 turns it off
    code = main(
        [
            "train",
            "--dataset",
            "iris",
            "--epochs",
            "2",
            "--out",
            str(tmp_path / "s"),
            "-q",
            "--val-split",
            "0",
        ]
    )
    assert code == 0
    assert "val_loss" not in (tmp_path / "s" / "history.csv").read_text().splitlines()[0]


def test_curves_draw_train_and_validation_on_the_same_axes():
    pytest.importorskip("matplotlib")
    h = cr.History()
    for e in range(1, 4):
        h.append(e, {"loss": 1.0 / e, "val_loss": 1.2 / e})
    fig = h.plot()
    (ax,) = fig.axes
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels[:2] == ["train loss", "validation loss"]
