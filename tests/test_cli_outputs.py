"""Issue 14, points 1 and 2: nothing the CLI writes replaces what a user saved.

``predict --out`` never writes over the input or a model file and refuses an existing file
without ``--overwrite``; a run directory is built aside and renamed into place as one unit.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _digest(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def blobs(tmp_path):
    """A two-feature classification CSV (so plots include a decision boundary)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "blobs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "label"])
        for _ in range(80):
            a, b = rng.normal(size=2)
            w.writerow([f"{a:.4f}", f"{b:.4f}", "yes" if a + b > 0 else "no"])
    return path


@pytest.fixture
def trained(tmp_path, blobs, capsys):
    out = tmp_path / "run"
    code, _, err = _run(
        [
            "train",
            "--data",
            blobs,
            "--target",
            "label",
            "--epochs",
            "2",
            "--out",
            out,
            "-q",
            "--no-plots",
        ],
        capsys,
    )
    assert code == 0, err
    return out


# ----- point 1: predict --out ------------------------------
def test_predict_never_replaces_the_model_file(trained, blobs, capsys):
    model = trained / "model.chainrule"
    before = model.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = _run(
            ["predict", "--model", trained, "--data", blobs, "--out", model, *extra], capsys
        )
        assert code == 2
        assert "is the model file" in err and err.count("\n") == 1
    assert model.read_bytes() == before
    cr.load(str(model))  # still a model


def test_predict_never_replaces_another_model_file(trained, blobs, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    cr.save(cr.nn.mlp([2, 3, 2], rng=0), str(other))
    before = other.read_bytes()
    code, _, err = _run(
        ["predict", "--model", trained, "--data", blobs, "--out", other, "--overwrite"], capsys
    )
    assert code == 2 and "is a model file" in err
    assert other.read_bytes() == before


def test_predict_never_replaces_the_input(trained, blobs, tmp_path, capsys):
    before = blobs.read_bytes()
    link = tmp_path / "same_file.csv"
    os.link(blobs, link)  # a hard link is the same file under another name
    for target in (blobs, link):
        code, _, err = _run(
            ["predict", "--model", trained, "--data", blobs, "--out", target, "--overwrite"],
            capsys,
        )
        assert code == 2 and "is the input data" in err
    assert blobs.read_bytes() == before


def test_predict_refuses_an_existing_file_unless_overwrite(trained, blobs, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    out.write_text("my notes\n")
    code, _, err = _run(["predict", "--model", trained, "--data", blobs, "--out", out], capsys)
    assert code == 2 and "already exists; add --overwrite" in err
    assert out.read_text() == "my notes\n"
    code, _, err = _run(
        ["predict", "--model", trained, "--data", blobs, "--out", out, "--overwrite"], capsys
    )
    assert code == 0, err
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["prediction", "p(no)", "p(yes)"] and len(rows) == 81


def test_predict_out_directory_writes_predictions_csv(trained, blobs, tmp_path, capsys):
    d = tmp_path / "outdir"
    d.mkdir()
    code, out, err = _run(["predict", "--model", trained, "--data", blobs, "--out", d], capsys)
    assert code == 0, err
    assert (d / "predictions.csv").exists()
    assert str(d / "predictions.csv") in out
    assert sorted(os.listdir(d)) == ["predictions.csv"]  # no temporary files left behind
    # into the run directory itself: written beside the model, the model untouched
    model_bytes = (trained / "model.chainrule").read_bytes()
    code, _, err = _run(["predict", "--model", trained, "--data", blobs, "--out", trained], capsys)
    assert code == 0, err
    assert (trained / "predictions.csv").exists()
    assert (trained / "model.chainrule").read_bytes() == model_bytes


# ----- point 2: run directories ------------------------------
def test_existing_run_is_refused_without_overwrite(trained, blobs, capsys):
    before = _digest(trained)
    code, _, err = _run(
        ["train", "--data", blobs, "--target", "label", "--epochs", "1", "--out", trained, "-q"],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "already holds a run" in err and "add --overwrite" in err
    assert _digest(trained) == before


def test_overwrite_replaces_the_run_as_a_whole(tmp_path, blobs, capsys):
    out = tmp_path / "run"
    code, _, err = _run(
        ["train", "--data", blobs, "--target", "label", "--epochs", "2", "--out", out, "-q"],
        capsys,
    )
    assert code == 0, err
    assert {"confusion_matrix.png", "decision_boundary.png"} <= set(os.listdir(out))
    # a regression run into the same directory: no classification plot may stay behind
    code, _, err = _run(
        [
            "train",
            "--data",
            blobs,
            "--target",
            "a",
            "--drop",
            "label",
            "--epochs",
            "2",
            "--out",
            out,
            "-q",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(os.listdir(out)) == [
        "curves.png",
        "history.csv",
        "metrics.json",
        "model.chainrule",
    ]
    assert json.loads((out / "metrics.json").read_text())["task"] == "regression"
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".run.")]
    assert leftovers == []


def test_overwrite_refuses_a_directory_with_other_files(tmp_path, blobs, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, _, err = _run(
        [
            "train",
            "--data",
            blobs,
            "--target",
            "label",
            "--epochs",
            "1",
            "--out",
            out,
            "-q",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 2 and "not a chainrule run (thesis.tex)" in err
    assert (out / "thesis.tex").read_text() == "years of work"


def test_empty_out_directory_is_used(tmp_path, blobs, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code, _, err = _run(
        [
            "train",
            "--data",
            blobs,
            "--target",
            "label",
            "--epochs",
            "1",
            "--out",
            out,
            "-q",
            "--no-plots",
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["history.csv", "metrics.json", "model.chainrule"]


def _limit_file_size() -> None:  # as `ulimit -f 5`: no file may grow beyond 5 KiB
    resource.setrlimit(resource.RLIMIT_FSIZE, (5 * 1024, 5 * 1024))


def test_a_failed_write_leaves_the_previous_run_untouched(trained, blobs, tmp_path):
    before = _digest(trained)
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chainrule",
            "train",
            "--data",
            str(blobs),
            "--target",
            "label",
            "--layers",
            "200",
            "--epochs",
            "1",
            "--out",
            str(trained),
            "--overwrite",
            "-q",
        ],
        env=env,
        preexec_fn=_limit_file_size,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"could not write {trained / 'model.chainrule'}" in proc.stderr
    assert "File too large" in proc.stderr
    assert _digest(trained) == before
    assert sorted(os.listdir(tmp_path)) == ["blobs.csv", "run"]  # no partial directory left


def test_concurrent_runs_do_not_mix_their_files(tmp_path, blobs):
    out = tmp_path / "shared"
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chainrule",
                "train",
                "--data",
                str(blobs),
                "--target",
                "label",
                "--layers",
                str(width),
                "--epochs",
                str(epochs),
                "--out",
                str(out),
                "--overwrite",
                "-q",
                "--no-plots",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for width, epochs in ((7, 3), (11, 5))
    ]
    results = [(*p.communicate(timeout=600), p.returncode) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    metrics = json.loads((out / "metrics.json").read_text())
    model = cr.load(str(out / "model.chainrule"))
    history = (out / "history.csv").read_text().strip().splitlines()
    width = model[0].out_features
    # the model, the metrics and the history all come from the same run
    assert metrics["settings"]["layers"] == [width]
    assert metrics["epochs_run"] == len(history) - 1 == {7: 3, 11: 5}[width]
    assert sorted(os.listdir(tmp_path)) == ["blobs.csv", "shared"]


def test_concurrent_runs_without_overwrite_one_wins_whole(tmp_path, blobs):
    out = tmp_path / "shared"
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chainrule",
                "train",
                "--data",
                str(blobs),
                "--target",
                "label",
                "--layers",
                str(width),
                "--epochs",
                "2",
                "--out",
                str(out),
                "-q",
                "--no-plots",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for width in (7, 11)
    ]
    results = [(*p.communicate(timeout=600), p.returncode) for p in procs]
    # whether they overlapped or not, exactly one run is kept and the other is refused
    assert sorted(code for _, _, code in results) == [0, 2], results
    loser = next(err for _, err, code in results if code == 2)
    assert "already holds a run" in loser and loser.count("\n") == 1
    model = cr.load(str(out / "model.chainrule"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["layers"] == [model[0].out_features]
    assert sorted(os.listdir(tmp_path)) == ["blobs.csv", "shared"]


def test_plots_never_replace_a_model_or_the_data(trained, blobs, capsys):
    model = trained / "model.chainrule"
    before, data_before = model.read_bytes(), blobs.read_bytes()
    for args in (
        ["lr-find", "--data", blobs, "--target", "label", "--plot", model],
        ["lr-find", "--data", blobs, "--target", "label", "--plot", blobs],
        ["bench-grad", "--plot", model],
    ):
        code, _, err = _run(args, capsys)
        assert code == 2 and "never replace it" in err and err.count("\n") == 1
    assert model.read_bytes() == before and blobs.read_bytes() == data_before


def test_predict_out_dash_is_standard_output(trained, blobs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["predict", "--model", trained, "--data", blobs, "--out", "-"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "prediction,p(no),p(yes)" and len(out.splitlines()) == 81
    assert not (tmp_path / "-").exists()
