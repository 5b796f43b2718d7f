"""Checkpoints: resume in a new process equals an uninterrupted run, bitwise; crash-safe saves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

RUN = r"""
import sys, numpy as np, chainrule as cr
from chainrule import nn, optim
mode, opt_name, ckpt, out = sys.argv[1:5]
rng = np.random.default_rng(0)
X = rng.normal(size=(160, 4)).astype(np.float32)
y = (X[:, 0] - X[:, 1] + 0.3 * X[:, 2] > 0).astype(np.int64)
model = nn.mlp([4, 16, 16, 2], "relu", dropout=0.3, rng=1)
if opt_name == "sgd":
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
else:
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
sched = optim.lr_scheduler.StepLR(opt, 2, gamma=0.7)
cbs = [cr.ModelCheckpoint(ckpt), cr.EarlyStopping(monitor="val_loss", patience=100)]
epochs = {"full": 6, "part": 3, "resume": 6}[mode]
h = cr.fit(model, X, y, loss="cross_entropy", optimizer=opt, scheduler=sched, epochs=epochs,
           batch_size=16, seed=3, validation_split=0.2, callbacks=cbs, verbose=0,
           metrics=["accuracy"], resume_from=ckpt if mode == "resume" else None)
arrays = {"w/" + k: v for k, v in model.state_dict().items()}
for i, st in opt.state_dict()["state"].items():
    for k, v in st.items():
        arrays[f"opt/{i}/{k}"] = np.asarray(v)
for k, v in h.history.items():
    arrays["h/" + k] = np.asarray(v)
arrays["lr_now"] = np.asarray(opt.param_groups[0]["lr"])
arrays["best"] = np.asarray(cbs[1].best)
np.savez(out, **arrays)
"""


def run(mode, opt, ckpt, out):
    proc = subprocess.run(
        [sys.executable, "-c", RUN, mode, opt, str(ckpt), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(out))


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_resume_in_a_new_process_is_bitwise_identical(tmp_path, opt):
    full = run("full", opt, tmp_path / "full.chainrule", tmp_path / "full.npz")
    run("part", opt, tmp_path / "part.chainrule", tmp_path / "part.npz")
    resumed = run("resume", opt, tmp_path / "part.chainrule", tmp_path / "resumed.npz")
    assert set(full) == set(resumed)
    for k in full:
        if k == "h/time":
            continue
        assert full[k].tobytes() == resumed[k].tobytes(), k
    assert len(full["h/loss"]) == 6


def test_resume_needs_a_checkpoint_and_a_matching_model(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = nn.mlp([3, 4, 2], rng=0)
    cr.save(model, tmp_path / "plain.chainrule")
    with pytest.raises(cr.ModelFileError, match="without training state"):
        cr.fit(
            model, X, y, loss="cross_entropy", verbose=0, resume_from=tmp_path / "plain.chainrule"
        )
    cr.fit(
        model,
        X,
        y,
        loss="cross_entropy",
        epochs=1,
        verbose=0,
        callbacks=[cr.ModelCheckpoint(tmp_path / "c.chainrule")],
    )
    with pytest.raises(ValueError, match="does not fit this model"):
        cr.fit(
            nn.mlp([3, 5, 2], rng=0),
            X,
            y,
            loss="cross_entropy",
            verbose=0,
            resume_from=tmp_path / "c.chainrule",
        )


SAVER = r"""
import sys, numpy as np, chainrule as cr
from chainrule import io
path, kind = sys.argv[1], sys.argv[2]
model = cr.nn.mlp([64, 256, 256, 10], rng=0)
i = 0
while True:
    i += 1
    for p in model.parameters():
        p.data[...] = i
    if kind == "model":
        cr.save(model, path, extra={"i": i})
    else:  # a checkpoint: weights plus training state (JSON and tensors)
        io._write(path, model, {"i": i}, training={"epoch": i},
                  training_tensors={"optimizer/m": np.full(50_000, i, np.float32)})
    print(i, flush=True)
"""


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_sigkill_during_save_leaves_a_loadable_file(tmp_path, kind):
    path = tmp_path / "m.chainrule"
    rng = np.random.default_rng(0)
    kills = 25  # per kind: 50 in all
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), kind], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one complete save
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        mf = cr.io.load_file(path)  # always loads: never a partial file under the final name
        i = mf.extra["i"]
        values = {float(v.ravel()[0]) for v in mf.model.state_dict().values()}
        assert values == {float(i)}  # one whole saved state, never a mix
        if kind == "checkpoint":
            assert mf.training == {"epoch": i}
            assert np.all(mf.training_tensors["optimizer/m"] == i)
    leftovers = [f for f in os.listdir(tmp_path) if f != "m.chainrule"]
    assert all(f.endswith(".tmp") for f in leftovers)  # only temporary files may be left
