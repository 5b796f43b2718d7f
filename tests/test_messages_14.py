"""Issue 14, point 13 (the parts that are not CSV parsing): our words, not NumPy's."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.training import metrics as M


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    cls = (X[:, 0] > 0).astype(np.float64)
    files = {}
    for name, y in {
        "cls": cls,
        "reg": 2 * X[:, 0] + X[:, 1],
        "cls_inf": np.where(np.arange(120) == 3, np.inf, cls),
        "reg_inf": np.where(np.arange(120) == 7, -np.inf, X[:, 0]),
        "y_scalar": np.array(1.0),
        "y_two": np.zeros((120, 2)),
    }.items():
        files[name] = d / f"{name}.npz"
        np.savez(files[name], X=X, y=y)
    for task in ("cls", "reg"):
        out = d / f"model_{task}"
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(files[task]),
                    "--target",
                    "y",
                    "--epochs",
                    "2",
                    "--out",
                    str(out),
                    "-q",
                    "--no-plots",
                ]
            )
            == 0
        )
        files[f"model_{task}"] = out
    return files


def test_classification_of_a_continuous_target_says_so(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path = tmp_path / "cont.csv"
    rows = ["a,b,price"] + [f"{a:.5f},{b:.5f},{3 * a + b:.5f}" for a, b in rng.normal(size=(80, 2))]
    path.write_text("\n".join(rows) + "\n")
    code, _, err = _run(
        [
            "train",
            "--data",
            path,
            "--target",
            "price",
            "--task",
            "classification",
            "--out",
            tmp_path / "r",
            "-q",
        ],
        capsys,
    )
    line = _one_line_error(code, err)
    assert "--task classification: the target 'price' has 80 distinct values in 80 rows" in line
    assert "non-integer numbers such as" in line and "use --task regression" in line
    assert "0 samples" not in line


def test_classification_with_many_real_classes_still_trains(tmp_path, capsys):
    # integer labels, a few rows each: a genuine classification, not refused
    rng = np.random.default_rng(2)
    path = tmp_path / "many.csv"
    rows = ["a,label"] + [f"{rng.normal():.4f},{i % 30}" for i in range(120)]
    path.write_text("\n".join(rows) + "\n")
    code, _, err = _run(
        [
            "train",
            "--data",
            path,
            "--target",
            "label",
            "--task",
            "classification",
            "--epochs",
            "1",
            "--out",
            tmp_path / "r",
            "-q",
            "--no-plots",
        ],
        capsys,
    )
    assert code == 0, err


@pytest.mark.parametrize(("name", "shape"), [("y_scalar", "()"), ("y_two", "(120, 2)")])
def test_npz_targets_of_the_wrong_shape(name, shape, arrays, tmp_path, capsys):
    code, _, err = _run(
        ["train", "--data", arrays[name], "--target", "y", "--out", tmp_path / "r", "-q"], capsys
    )
    line = _one_line_error(code, err)
    assert f"y must hold one target per row (shape (120,)), got shape {shape}" in line
    code, _, err = _run(
        ["evaluate", "--model", arrays["model_cls"], "--data", arrays[name]], capsys
    )
    assert f"got shape {shape}" in _one_line_error(code, err)


@pytest.mark.parametrize("model", ["model_cls", "model_reg"])
@pytest.mark.parametrize(("data", "value", "row"), [("cls_inf", "inf", 4), ("reg_inf", "-inf", 8)])
def test_evaluate_and_explain_with_infinite_targets(model, data, value, row, arrays, capsys):
    for cmd in (["evaluate"], ["explain", "--weight", "0.weight[0,0]"]):
        code, _, err = _run([*cmd, "--model", arrays[model], "--data", arrays[data]], capsys)
        line = _one_line_error(code, err)
        assert f"the target column 'y' holds {value} at row {row}" in line


# ----- fit and metrics ------------------------------
def _X(n=40):
    return np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [8, None])
def test_mse_with_two_outputs_and_one_target_per_sample(batch_size):
    model = cr.nn.mlp([3, 4, 2], rng=0)
    with pytest.raises(
        ValueError,
        match=r"MSELoss: the model has 2 output\(s\) per sample, so y "
        r"must have shape \(40, 2\), got \(40,\)",
    ):
        cr.fit(model, _X(), np.zeros(40), loss="mse", epochs=1, verbose=0, batch_size=batch_size)


def test_one_output_and_two_targets_per_sample():
    with pytest.raises(ValueError, match=r"y must have shape \(40,\) or \(40, 1\), got \(40, 2\)"):
        cr.fit(
            cr.nn.mlp([3, 4, 1], rng=0),
            _X(),
            np.zeros((40, 2)),
            loss="bce_with_logits",
            epochs=1,
            verbose=0,
        )


def test_matching_shapes_still_train():
    X = _X()
    y = np.stack([X[:, 0], X[:, 1] - X[:, 2]], axis=1)
    model = cr.nn.mlp([3, 16, 2], "tanh", rng=0)
    h = cr.fit(model, X, y, loss="mse", lr=0.02, epochs=60, verbose=0, seed=0)
    assert h.history["loss"][-1] < 0.1 * h.history["loss"][0]
    h = cr.fit(cr.nn.mlp([3, 4, 1], rng=0), X, X[:, 0], loss="mse", epochs=1, verbose=0)
    assert len(h.history["loss"]) == 1


@pytest.mark.parametrize("metric", [M.accuracy, M.mae, M.mse, M.r2])
def test_metrics_refuse_scalars_and_mismatched_shapes(metric):
    name = metric.__name__
    with pytest.raises(ValueError, match=rf"{name}: y_true must have one value per sample"):
        metric(np.array(1), np.array(1))
    with pytest.raises(ValueError, match=rf"{name}: y_true has shape \(5, 2\) and y_pred \(5,\)"):
        metric(np.zeros((5, 2)), np.zeros(5))
    # (n,) against (n, 1) is the same thing
    assert metric(np.arange(5.0), np.arange(5.0).reshape(5, 1)) == metric(
        np.arange(5.0), np.arange(5.0)
    )


def test_a_text_target_with_one_value_per_row_is_refused(tmp_path, capsys):
    path = tmp_path / "ids.csv"
    path.write_text("a,name\n" + "".join(f"{i * 0.37:.2f},person{i}\n" for i in range(60)))
    code, _, err = _run(
        ["train", "--data", path, "--target", "name", "--out", tmp_path / "r", "-q"], capsys
    )
    line = _one_line_error(code, err)
    assert "has 60 distinct values in 60 rows" in line and "identifier or free text" in line
