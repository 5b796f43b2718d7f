"""The chainrule command end to end: CSVs with string labels and categories, regression,
prediction on raw rows, every bad-input case (one line, exit status 2), the plots."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from chainrule.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def people(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(240):
        age = rng.uniform(20, 70)
        color = rng.choice(["red", "green", "blue"])
        income = rng.normal(50000, 15000)
        label = "approved" if (age > 45) != (color == "red") else "declined"
        rows.append([f"{age:.1f}", color, f"{income:.0f}", label])
    return write_csv(tmp_path / "people.csv", ["age", "color", "income", "decision"], rows)


@pytest.fixture
def houses(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        size = rng.uniform(40, 200)
        district = rng.choice(["north", "south"])
        price = 3000 * size + (50000 if district == "north" else 0) + rng.normal(0, 10000)
        rows.append([f"{size:.1f}", district, f"{price:.0f}"])
    return write_csv(tmp_path / "houses.csv", ["size", "district", "price"], rows)


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_classification_csv_with_strings_and_categories(people, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(
        [
            "train",
            "--data",
            people,
            "--target",
            "decision",
            "--out",
            out_dir,
            "--epochs",
            "150",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert "test accuracy" in out and "model.chainrule" in out and str(out_dir) in out
    for name in [
        "model.chainrule",
        "history.csv",
        "metrics.json",
        "curves.png",
        "confusion_matrix.png",
    ]:
        assert (out_dir / name).exists(), name
    for png in out_dir.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["test"]["accuracy"] > 0.9
    assert metrics["test"]["n"] == 60  # 25 % held out
    history = (out_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,accuracy") and len(history) == 151

    # predict on raw rows (no target column): original class names and probabilities
    new = write_csv(
        tmp_path / "new.csv",
        ["age", "color", "income"],
        [["60", "blue", "40000"], ["30", "red", "70000"], ["25", "green", "1"]],
    )
    preds = tmp_path / "preds.csv"
    code, out, err = run(["predict", "--model", out_dir, "--data", new, "--out", preds], capsys)
    assert code == 0, err
    rows = list(csv.reader(preds.open()))
    assert rows[0] == ["prediction", "p(approved)", "p(declined)"]
    assert [r[0] for r in rows[1:]] == ["approved", "approved", "declined"]
    assert all(abs(float(r[1]) + float(r[2]) - 1) < 1e-5 for r in rows[1:])

    code, out, _ = run(
        ["evaluate", "--model", out_dir / "model.chainrule", "--data", people, "--json"], capsys
    )
    assert code == 0 and json.loads(out)["accuracy"] > 0.9
    code, out, _ = run(["info", "--model", out_dir], capsys)
    assert code == 0
    assert "Linear(in_features=5, out_features=100" in out
    assert "color: categorical, one-hot over blue, green, red" in out
    assert "classes (2): approved, declined" in out


def test_train_regression_maps_predictions_back(houses, tmp_path, capsys):
    out_dir = tmp_path / "houses"
    code, out, err = run(
        [
            "train",
            "--data",
            houses,
            "--target",
            "price",
            "--out",
            out_dir,
            "-q",
            "--layers",
            "32,16",
            "--epochs",
            "150",
        ],
        capsys,
    )
    assert code == 0, err
    assert "test R²" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["test"]["r2"] > 0.9
    new = write_csv(
        tmp_path / "new.csv", ["size", "district"], [["100", "north"], ["100", "south"]]
    )
    code, out, _ = run(["predict", "--model", out_dir, "--data", new], capsys)
    values = [float(v) for v in out.splitlines()[1:]]
    assert 300_000 < values[0] < 400_000 and 40_000 < values[0] - values[1] < 60_000


def test_train_on_built_in_dataset_with_config(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('dataset = "moons"\nlayers = "16,16"\nepochs = 60\nearly-stopping = true\n')
    code, _, err = run(
        ["train", "--config", cfg, "--out", tmp_path / "m", "-q", "--epochs", "40"], capsys
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["settings"]["layers"] == [16, 16] and metrics["settings"]["epochs"] == 40
    assert metrics["settings"]["early_stopping"] is True
    assert (tmp_path / "m" / "decision_boundary.png").read_bytes()[:8] == PNG


def test_datasets_lists_sizes(capsys):
    code, out, _ = run(["datasets"], capsys)
    assert code == 0 and "digits" in out and "1797" in out and "regression" in out


BAD = [
    (["train", "--data", "{tmp}/missing.csv", "--target", "y"], "no such file"),
    (
        ["train", "--data", "{people}", "--target", "nope"],
        "has no column 'nope'; its columns are: age, color",
    ),
    (["train", "--data", "{people}"], "--target"),
    (["train", "--dataset", "digits", "--data", "{people}"], "exactly one of --dataset"),
    (["train", "--dataset", "mnist-9000"], "unknown data set"),
    (
        ["train", "--data", "{nonnum}", "--target", "y"],
        "non-numeric value 'abc' in numeric column 'x' at row 3",
    ),
    (
        ["train", "--data", "{nan}", "--target", "y", "--missing", "error"],
        "missing value in column 'x' at row 2",
    ),
    (["train", "--data", "{people}", "--target", "decision", "--layers", "64,x"], "--layers"),
    (
        ["train", "--data", "{people}", "--target", "decision", "--activation", "swish"],
        "--activation",
    ),
    (["train", "--data", "{people}", "--target", "decision", "--lr", "-1"], "lr must be > 0"),
    (["train", "--data", "{ragged}", "--target", "y"], "has 3 fields, the header has 2"),
    (["train", "--data", "{empty}", "--target", "y"], "empty"),
    (["predict", "--model", "{tmp}/nothing", "--data", "{people}"], "no such model file"),
    (["predict", "--model", "{corrupt}", "--data", "{people}"], "cannot load"),
    (["predict", "--model", "{model}", "--data", "{wrongcols}"], "missing columns: color"),
    (["evaluate", "--model", "{model}", "--data", "{nolabel}"], "no target column 'decision'"),
    (["info", "--model", "{corrupt}"], "cannot load"),
    (["train", "--config", "{tmp}/none.toml"], "no such config file"),
]


@pytest.fixture
def bad_files(tmp_path, people):
    files = {"tmp": tmp_path, "people": people}
    files["nonnum"] = write_csv(
        tmp_path / "nonnum.csv", ["x", "y"], [["1", "0"], ["2", "1"], ["abc", "0"], ["4", "1"]]
    )
    files["nan"] = write_csv(
        tmp_path / "nan.csv", ["x", "y"], [["1", "0"], ["", "1"], ["3", "0"], ["4", "1"]]
    )
    (tmp_path / "ragged.csv").write_text("x,y\n1,0\n2,1,5\n")
    files["ragged"] = tmp_path / "ragged.csv"
    (tmp_path / "empty.csv").write_text("")
    files["empty"] = tmp_path / "empty.csv"
    (tmp_path / "corrupt.chainrule").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    files["corrupt"] = tmp_path / "corrupt.chainrule"
    assert (
        main(
            [
                "train",
                "--data",
                str(people),
                "--target",
                "decision",
                "--out",
                str(tmp_path / "r"),
                "--epochs",
                "2",
                "-q",
                "--no-plots",
            ]
        )
        == 0
    )
    files["model"] = tmp_path / "r"
    files["wrongcols"] = write_csv(tmp_path / "w.csv", ["age", "income"], [["1", "2"]])
    files["newcat"] = write_csv(
        tmp_path / "c.csv", ["age", "color", "income"], [["1", "purple", "2"]]
    )
    files["nolabel"] = write_csv(
        tmp_path / "n.csv", ["age", "color", "income"], [["1", "red", "2"]]
    )
    return files


@pytest.mark.parametrize(
    "args,message", BAD, ids=[" ".join(a[:3]) + f"-{i}" for i, (a, _) in enumerate(BAD)]
)
def test_bad_input_prints_one_line_and_exits_2(args, message, bad_files, capsys):
    argv = [a.format(**bad_files) for a in args]
    code, _, err = run(argv + (["-q"] if argv[0] == "train" else []), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err


def test_module_and_console_script_entry_points(tmp_path, people):
    for cmd in (
        [sys.executable, "-m", "chainrule"],
        [
            sys.executable,
            "-c",
            "import sys; from chainrule.cli import _entry; sys.argv[0]='chainrule'; _entry()",
        ],
    ):
        proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "examples:" in proc.stdout and "train" in proc.stdout
        proc = subprocess.run(
            [*cmd, "train", "--data", str(tmp_path / "none.csv"), "--target", "y"],
            capture_output=True,
            text=True,
        )
        assert (
            proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        )


def test_diagnostic_commands(people, tmp_path, capsys):
    out_dir = tmp_path / "diag"
    code, out, err = run(
        [
            "train",
            "--data",
            people,
            "--target",
            "decision",
            "--out",
            out_dir,
            "--epochs",
            "20",
            "-q",
            "--gradient-flow",
            "--report",
        ],
        capsys,
    )
    assert code == 0, err
    assert (out_dir / "gradient_flow.png").read_bytes()[:8] == PNG
    html = (out_dir / "report.html").read_text()
    assert "Gradient flow" in html and "data:image/png;base64," in html
    assert "Gradient flow:" in out

    code, out, err = run(
        [
            "explain",
            "--model",
            out_dir,
            "--data",
            people,
            "--weight",
            "0.weight[1,2]",
            "--lr",
            "0.01",
        ],
        capsys,
    )
    assert code == 0, err
    assert "∂C/∂w for 0.weight[1,2]" in out and "engine gradient" in out and "update" in out

    code, out, _ = run(
        ["gradcheck", "--model", out_dir, "--data", people, "--max-params", "50"], capsys
    )
    assert code == 0 and "gradient check OK" in out
    code, out, _ = run(["gradcheck", "--model", out_dir, "--max-params", "50"], capsys)
    assert code == 0 and "random input rows" in out and "gradient check OK" in out

    code, out, _ = run(
        ["lr-find", "--data", people, "--target", "decision", "--plot", tmp_path / "lr.png"], capsys
    )
    assert code == 0 and "suggested learning rate" in out and "--lr" in out
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG

    code, out, _ = run(
        ["explain", "--model", out_dir, "--data", people, "--weight", "9.weight[0,0]"], capsys
    )
    assert code == 2
