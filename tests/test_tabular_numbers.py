"""Preprocessing statistics: stable for any magnitude, the same whole-file and in chunks,
numeric labels as one class per number, wide headers checked in linear time (issue 14)."""

from __future__ import annotations

import csv
import json
from fractions import Fraction

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.data._moments import Moments, moments
from chainrule.training import metrics as M


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def exact_std(x):
    """Mean and population std of ``x`` in exact rational arithmetic (then rounded)."""
    fr = [Fraction(float(v)) for v in x]
    mean = sum(fr) / len(fr)
    var = sum((v - mean) ** 2 for v in fr) / len(fr)
    # sqrt of a huge rational: scale by a power of four to stay within float range
    k = 0
    while var > Fraction(10) ** 200:
        var /= 4**100
        k += 100
    return float(mean), float(var) ** 0.5 * 2.0**k


# ----- moments: stable for any finite magnitude (14.4) -----------------------------------
@pytest.mark.parametrize(
    "center, spread",
    [(0.0, 1.0), (1e9, 0.5), (1e200, 1e199), (0.0, 1e300), (1e308, 1e306), (-5e307, 1e307)],
)
def test_moments_match_exact_arithmetic(center, spread):
    x = center + spread * np.random.default_rng(0).uniform(-1, 1, 400)
    mean, std = moments(x)
    ref_mean, ref_std = exact_std(x)
    assert np.isfinite(mean) and np.isfinite(std)
    assert mean == pytest.approx(ref_mean, rel=1e-14, abs=1e-14 * ref_std)
    assert std == pytest.approx(ref_std, rel=1e-9)


def test_moments_in_chunks_equal_whole():
    x = 1e9 + np.random.default_rng(1).uniform(-0.5, 0.5, 10_000)
    m = Moments()
    for c in np.array_split(x, 37):
        m.update(c)
    whole = moments(x)
    assert m.result()[0] == pytest.approx(whole[0], rel=1e-15)
    assert m.result()[1] == pytest.approx(whole[1], rel=1e-12)
    assert whole[1] == pytest.approx(exact_std(x)[1], rel=1e-12)


def test_features_near_1e200_are_standardised_not_zeroed():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    table = cr.data.Table.from_arrays(np.c_[a * 1e200, a], y=a, target_name="y")
    prep = cr.data.TabularPreprocessor("y", task="regression").fit(table)
    X = prep.transform(table)
    assert np.all(np.isfinite(X))
    # the two columns are the same up to scale: standardised, they are equal
    np.testing.assert_allclose(X[:, 0], X[:, 1], rtol=1e-6, atol=1e-6)
    assert prep.features[0]["std"] == pytest.approx(1e200 * a.std(), rel=1e-12)


def test_values_whose_difference_overflows_are_standardised():
    x = np.array([1.7e308, -1.7e308, 0.0, 1e308])
    table = cr.data.Table.from_arrays(np.c_[x], y=np.array([0.0, 1.0, 2.0, 3.0]))
    prep = cr.data.TabularPreprocessor("target", task="regression").fit(table)
    z = prep.transform(table)[:, 0].astype(np.float64)
    mean, std = exact_std(x)
    exact = [float((Fraction(v) - Fraction(mean)) / Fraction(std)) for v in x]
    np.testing.assert_allclose(z, exact, rtol=1e-6)


def test_target_beyond_float64_range_is_refused_naming_the_column():
    table = cr.data.Table.from_arrays(
        np.c_[np.arange(6.0)], y=np.array([1.7e308, -1e308, 0, 1, 2, 3]), target_name="price"
    )
    with pytest.raises(ValueError, match=r"target column 'price' has values up to 1.7e"):
        cr.data.TabularPreprocessor("price", task="regression").fit(table)


def test_text_number_beyond_float64_is_refused_naming_the_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "y"], [["1", "0"], ["1e400", "1"], ["2", "0"]])
    table = cr.data.read_csv(path)
    with pytest.raises(ValueError, match=r"'1e400' in column 'a' at row 2 .*beyond the range"):
        cr.data.TabularPreprocessor("y").fit(table)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 1.0])
def test_regression_metrics_are_scale_equivariant(scale):
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    p = y + 0.1 * rng.normal(size=100)
    assert M.r2(y * scale, p * scale) == pytest.approx(M.r2(y, p), rel=1e-12)
    assert M.rmse(y * scale, p * scale) == pytest.approx(M.rmse(y, p) * scale, rel=1e-12)
    assert M.mae(y * scale, p * scale) == pytest.approx(M.mae(y, p) * scale, rel=1e-12)


def test_cli_regression_on_targets_near_1e300_gives_finite_predictions_and_metrics(
    tmp_path, capsys
):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 240))
    rows = [
        [repr(float(u * 1e200)), repr(float(v)), repr(float((u + v) * 1e300))] for u, v in zip(a, b)
    ]
    data = write_csv(tmp_path / "big.csv", ["a", "b", "y"], rows)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--target",
            "y",
            "--out",
            str(out),
            "--epochs",
            "60",
            "-q",
            "--no-plots",
            "--seed",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert np.isfinite([test["r2"], test["mae"], test["rmse"]]).all()
    assert test["r2"] > 0.9
    pred = tmp_path / "p.csv"
    assert main(["predict", "--model", str(out), "--data", str(data), "--out", str(pred)]) == 0
    values = np.loadtxt(pred, skiprows=1, delimiter=",", usecols=0)
    assert np.all(np.isfinite(values)) and np.abs(values).max() > 1e299


# ----- csv_to_npy equals whole-file preprocessing (14.5) -----------------------------------
def test_csv_to_npy_target_spread_is_stable_and_equals_whole_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n) * 1e6 + 1e12
    y = 1e9 + rng.uniform(-0.5, 0.5, n)
    path = write_csv(
        tmp_path / "d.csv", ["x", "y"], [[repr(float(u)), repr(float(v))] for u, v in zip(x, y)]
    )
    prep, _, _ = cr.data.csv_to_npy(path, "y", tmp_path / "out", task="regression", chunk_rows=256)
    ref = cr.data.TabularPreprocessor("y", task="regression").fit(cr.data.read_csv(path))
    assert prep.target_std == pytest.approx(0.2887, abs=2e-3)  # uniform(-0.5, 0.5): 1/sqrt(12)
    assert prep.target_std == pytest.approx(ref.target_std, rel=1e-12)
    assert prep.target_mean == pytest.approx(ref.target_mean, rel=1e-15)
    assert prep.features[0]["mean"] == pytest.approx(ref.features[0]["mean"], rel=1e-15)
    assert prep.features[0]["std"] == pytest.approx(ref.features[0]["std"], rel=1e-12)
    assert prep.target_std == pytest.approx(exact_std(y)[1], rel=1e-12)


def test_csv_to_npy_target_1e9_plus_minus_half(tmp_path):
    ys = [1e9 - 0.5, 1e9 + 0.5] * 50 + [1e9 - 0.25, 1e9 + 0.25] * 10
    rows = [[str(i % 7), repr(v)] for i, v in enumerate(ys)]
    path = write_csv(tmp_path / "d.csv", ["x", "y"], rows)
    prep, _, _ = cr.data.csv_to_npy(path, "y", tmp_path / "out", task="regression", chunk_rows=13)
    assert prep.target_std == pytest.approx(exact_std(ys)[1], rel=1e-12)
    assert prep.target_std == pytest.approx(0.21875**0.5, rel=1e-12)  # (100·0.25 + 20·0.0625)/120


def test_csv_to_npy_refuses_too_many_categories_like_whole_file(tmp_path):
    rows = [[f"id{i}", str(i % 2)] for i in range(3000)]
    path = write_csv(tmp_path / "d.csv", ["user", "y"], rows)
    with pytest.raises(ValueError, match=r"column 'user' has .*too many to one-hot encode .*200"):
        # declared categorical: whole-file reading would otherwise leave the identifier out
        cr.data.TabularPreprocessor("y", categorical=["user"]).fit(cr.data.read_csv(path))
    with pytest.raises(ValueError, match=r"column 'user' has .*too many to one-hot encode .*200"):
        cr.data.csv_to_npy(path, "y", tmp_path / "out", chunk_rows=500)
    assert not (tmp_path / "out" / "X.npy").exists()


def test_csv_to_npy_refuses_a_single_class_target(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [[str(i), "yes"] for i in range(50)])
    with pytest.raises(ValueError, match="single class"):
        cr.data.TabularPreprocessor("y").fit(cr.data.read_csv(path))
    with pytest.raises(ValueError, match="single class"):
        cr.data.csv_to_npy(path, "y", tmp_path / "out")


def test_csv_to_npy_refuses_an_empty_header_name(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["x", "", "y"], [["1", "2", "0"], ["2", "3", "1"]])
    with pytest.raises(ValueError, match=r"empty column name .column 2"):
        cr.data.read_csv(path)
    with pytest.raises(ValueError, match=r"empty column name .column 2"):
        cr.data.csv_to_npy(path, "y", tmp_path / "out")


# ----- numeric labels: one class per number (14.6) ----------------------------------------
def test_labels_equal_as_numbers_are_one_class(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    spellings = {0: ["0", "0.0", "0.00"], 1: ["1", "1.0", "1e0"]}
    rows = [[repr(float(v)), spellings[int(v > 0)][i % 3]] for i, v in enumerate(x)]
    path = write_csv(tmp_path / "d.csv", ["x", "label"], rows)
    prep = cr.data.TabularPreprocessor("label").fit(cr.data.read_csv(path))
    assert prep.task == "classification" and prep.classes == ["0", "1"]
    np.testing.assert_array_equal(prep.encode_target(cr.data.read_csv(path)), (x > 0).astype(int))
    chunked, _, Y = cr.data.csv_to_npy(path, "label", tmp_path / "out", chunk_rows=7)
    assert chunked.classes == ["0", "1"]
    np.testing.assert_array_equal(Y, (x > 0).astype(int))


def test_float_labels_keep_their_digits():
    table = cr.data.Table.from_arrays(
        np.c_[np.arange(8.0)],
        y=np.array(["0.5", "0.50", "2.5", "0.1234567", "0.1234568"] * 2, dtype=object)[:8],
    )
    prep = cr.data.TabularPreprocessor("target", task="classification").fit(table)
    assert prep.classes == ["0.1234567", "0.1234568", "0.5", "2.5"]


def test_cli_shows_canonical_class_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=240)
    rows = [
        [repr(float(v)), ["0", "0.0"][i % 2] if v < 0 else ["1", "1.0"][i % 2]]
        for i, v in enumerate(x)
    ]
    data = write_csv(tmp_path / "d.csv", ["x", "label"], rows)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--target",
            "label",
            "--out",
            str(out),
            "--epochs",
            "5",
            "-q",
            "--no-plots",
        ]
    )
    assert code == 0, capsys.readouterr().err
    pred = tmp_path / "p.csv"
    assert main(["predict", "--model", str(out), "--data", str(data), "--out", str(pred)]) == 0
    lines = pred.read_text().split()
    assert lines[0] == "prediction,p(0),p(1)"
    assert {line.split(",")[0] for line in lines[1:]} <= {"0", "1"}


# ----- wide headers (14.12) --------------------------------------------------------------
def test_duplicate_columns_in_a_wide_header_are_named(tmp_path):
    header = [f"c{i}" for i in range(100_000)] + ["c17", "c99999"]
    path = write_csv(tmp_path / "wide.csv", header, [["1"] * len(header)])
    with pytest.raises(ValueError, match=r"duplicate column names in the header: c17, c99999$"):
        cr.data.read_csv(path)
    with pytest.raises(ValueError, match=r"duplicate column names in the header: c17, c99999$"):
        next(cr.data.read_csv_chunks(path))
