"""Real CSVs with gaps, identifiers and free text (issue 13, points 1 and 2).

The two Palmer Penguins files come from the installed ``palmerpenguins`` package; without it,
generated CSVs with the same traits (NA gaps in numbers and in a category, an identifier column,
a mostly-empty free-text column) are used.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.data.impute import DataNote, drop_missing_target, listing
from chainrule.data.tabular import Table, TabularPreprocessor, read_csv


def _package_file(name):
    try:
        import palmerpenguins
    except ImportError:
        return None
    p = Path(palmerpenguins.__file__).parent / "data" / name
    return p if p.exists() else None


def _generated(path, raw):
    """344 rows like the penguins: three species, NA gaps; raw adds an ID and comments."""
    rng = np.random.default_rng(0)
    species = np.array(["Adelie", "Chinstrap", "Gentoo"])[rng.integers(0, 3, 344)]
    centre = {
        "Adelie": (38.8, 18.3, 190),
        "Chinstrap": (48.8, 18.4, 196),
        "Gentoo": (47.5, 15.0, 217),
    }
    rows = []
    for i, s in enumerate(species):
        a, b, c = centre[s]
        bill = f"{rng.normal(a, 2.5):.1f}" if i not in (3, 34) else "NA"
        depth = f"{rng.normal(b, 0.8):.1f}" if i not in (3, 34) else "NA"
        flipper = f"{rng.normal(c, 6):.0f}" if i not in (3, 34) else "NA"
        sex = rng.choice(["male", "female"]) if i % 31 != 3 else "NA"
        island = rng.choice(["Biscoe", "Dream", "Torgersen"])
        if raw:
            ident = f"N{rng.integers(1, 120)}A{rng.integers(1, 3)}"
            comment = (
                ("Not enough blood for isotopes." if i % 6 == 0 else "NA")
                if i % 5
                else "Nest never observed with full clutch."
            )
            rows.append([s, island, ident, bill, depth, flipper, sex.upper(), comment])
        else:
            rows.append([s, island, bill, depth, flipper, sex, "2008"])
    header = (
        [
            "Species",
            "Island",
            "Individual ID",
            "Culmen Length (mm)",
            "Culmen Depth (mm)",
            "Flipper Length (mm)",
            "Sex",
            "Comments",
        ]
        if raw
        else [
            "species",
            "island",
            "bill_length_mm",
            "bill_depth_mm",
            "flipper_length_mm",
            "sex",
            "year",
        ]
    )
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def penguins(tmp_path):
    return _package_file("penguins.csv") or _generated(tmp_path / "penguins.csv", raw=False)


@pytest.fixture
def penguins_raw(tmp_path):
    return _package_file("penguins-raw.csv") or _generated(tmp_path / "penguins-raw.csv", raw=True)


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def quiet_fit(prep, table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        return prep.fit(table)


# ----- imputation: the numbers ------------------------------------------------------------------
def test_impute_learns_median_and_most_frequent_from_training_rows_only(penguins):
    table = read_csv(penguins)
    rows = np.arange(len(table))
    train = table.select(rows[rows % 4 != 0])
    prep = quiet_fit(TabularPreprocessor("species"), train)
    feats = {f["name"]: f for f in prep.features}
    bill = np.array(
        [float(v) if v != "NA" else np.nan for v in train.values["bill_length_mm"]], np.float64
    )
    gaps = np.isnan(bill)
    assert gaps.any()
    assert feats["bill_length_mm"]["median"] == np.median(bill[~gaps])
    assert feats["bill_length_mm"]["imputed"] == gaps.sum()
    filled = np.where(gaps, np.median(bill[~gaps]), bill)  # scaling learned after imputing
    assert feats["bill_length_mm"]["mean"] == pytest.approx(filled.mean(), rel=1e-12)
    assert feats["bill_length_mm"]["std"] == pytest.approx(filled.std(), rel=1e-12)
    sexes = [v for v in train.values["sex"] if v != "NA"]
    top = max(set(sexes), key=sexes.count)
    assert feats["sex"]["fill"] == top and "NA" not in feats["sex"]["categories"]
    # indicator inputs only where training values were missing; year had none
    names = prep.input_names()
    assert "bill_length_mm (missing)" in names and "year (missing)" not in names
    assert prep.n_inputs == len(names)


def test_transform_imputes_new_rows_the_same_way(penguins):
    table = read_csv(penguins)
    prep = quiet_fit(TabularPreprocessor("species"), table)
    f = {x["name"]: x for x in prep.features}["bill_length_mm"]
    names = prep.input_names()
    row = table.select(np.array([3]))  # row 4: every measurement and sex is NA
    X = prep.transform(row)[0]
    j = names.index("bill_length_mm")
    assert X[j] == np.float32((f["median"] - f["mean"]) / f["std"])
    assert X[names.index("bill_length_mm (missing)")] == 1.0
    fill = {x["name"]: x for x in prep.features}["sex"]["fill"]
    assert X[names.index(f"sex={fill}")] == 1.0
    full = prep.transform(table.select(np.array([0])))[0]
    assert full[names.index("bill_length_mm (missing)")] == 0.0


def test_preprocessing_round_trips_through_the_model_file(penguins, tmp_path):
    table = read_csv(penguins)
    prep = quiet_fit(TabularPreprocessor("species"), table)
    model = cr.nn.mlp([prep.n_inputs, 8, 3], rng=0)
    cr.save(model, tmp_path / "m.chainrule", extra={"preprocessing": prep.to_dict()})
    from chainrule.io import load_file

    back = TabularPreprocessor.from_dict(load_file(tmp_path / "m.chainrule").extra["preprocessing"])
    assert back.missing == "impute" and back.features == prep.features
    rows = table.select(np.arange(12))
    assert back.transform(rows).tobytes() == prep.transform(rows).tobytes()


def test_old_model_files_without_imputation_still_load_and_refuse_gaps(penguins):
    table = read_csv(penguins)
    d = quiet_fit(TabularPreprocessor("species"), table).to_dict()
    del d["missing"], d["ignored"]
    for f in d["features"]:
        for k in ("median", "fill", "imputed", "indicator"):
            f.pop(k, None)
    old = TabularPreprocessor.from_dict(d)
    assert old.missing == "error"
    complete = table.select(np.array([0, 1, 2]))
    assert old.transform(complete).shape == (3, old.n_inputs)
    with pytest.raises(
        ValueError, match=r"missing value in column 'bill_length_mm' at row 4 \(line 5\)"
    ):
        old.transform(table.select(np.array([3])))


def test_missing_modes_drop_and_error(penguins):
    table = read_csv(penguins)
    with pytest.raises(
        ValueError,
        match=r"missing value in column 'bill_length_mm' at row 4.*"
        "missing='impute' or 'drop'",
    ):
        TabularPreprocessor("species", missing="error").fit(table)
    with pytest.warns(DataNote, match=r"dropped 11 of 344 rows with missing values"):
        prep = TabularPreprocessor("species", missing="drop").fit(table)
    assert all(not f.get("imputed") for f in prep.features)
    assert "bill_length_mm (missing)" not in prep.input_names()
    with pytest.raises(ValueError, match="missing must be 'impute', 'drop' or 'error'"):
        TabularPreprocessor("species", missing="mean")


def test_rows_without_a_target_are_dropped_with_a_note_never_imputed():
    t = Table(
        ["x", "y"],
        {"x": np.array(["1", "2", "3"], object), "y": np.array(["a", "NA", "b"], object)},
        "t.csv",
    )
    with pytest.warns(DataNote, match="dropped 1 of 3 rows without a value in the target"):
        kept = drop_missing_target(t, "y")
    assert list(kept.values["y"]) == ["a", "b"]
    with pytest.raises(ValueError, match="targets are never imputed"):
        TabularPreprocessor("y").fit(t)


# ----- identifiers, free text, unseen categories -------------------------------------------------
def test_identifier_and_free_text_columns_are_left_out_with_one_note(penguins_raw):
    table = read_csv(penguins_raw)
    with pytest.warns(DataNote) as notes:
        prep = TabularPreprocessor("Species").fit(table)
    assert set(prep.ignored) == {"Individual ID", "Comments"}
    assert "Individual ID" not in prep.feature_names
    msg = [str(n.message) for n in notes if "left out" in str(n.message)]
    assert len(msg) == 1 and "'Individual ID' identifier-like" in msg[0]
    assert "'Comments' free text" in msg[0] and "--categorical" in msg[0]
    # the left-out columns may stay in new data
    prep.check_columns(table)
    # naming one as categorical overrides the guess
    forced = quiet_fit(TabularPreprocessor("Species", categorical=["Individual ID"]), table)
    assert "Individual ID" in forced.feature_names and "Comments" in forced.ignored


def test_unseen_categories_encode_as_zeros_counted_in_one_short_line(penguins_raw):
    table = read_csv(penguins_raw)
    rows = np.arange(len(table))
    train, test = table.select(rows[rows % 2 == 0]), table.select(rows[rows % 2 == 1])
    prep = quiet_fit(TabularPreprocessor("Species", categorical=["Individual ID"]), train)
    names = prep.input_names()
    cols = [j for j, n in enumerate(names) if n.startswith("Individual ID=")]
    known = set(train.values["Individual ID"])
    unseen = [i for i, v in enumerate(test.values["Individual ID"]) if v not in known]
    assert unseen
    with pytest.warns(DataNote) as notes:
        X = prep.transform(test)
    assert np.all(X[np.ix_(unseen, cols)] == 0)
    assert prep.last_unknown == {"Individual ID": len(unseen)}
    (line,) = [str(n.message) for n in notes]
    assert "\n" not in line and f"'Individual ID' in {len(unseen)} row(s)" in line
    n_distinct = len({test.values["Individual ID"][i] for i in unseen})
    if n_distinct > 5:
        assert f"and {n_distinct - 5} more" in line
    assert line.count(",") < 15


def test_listing_shows_at_most_ten_values():
    assert listing(list("abc")) == "a, b, c"
    text = listing([f"N{i}" for i in range(190)])
    assert text.endswith("… and 180 more") and text.count(",") == 9


def test_column_mismatch_messages_list_at_most_ten_names(penguins):
    table = read_csv(penguins)
    prep = quiet_fit(TabularPreprocessor("species"), table)
    wide = Table([f"c{i}" for i in range(40)], {f"c{i}": np.zeros(3) for i in range(40)}, "w.csv")
    with pytest.raises(ValueError, match=r"unknown columns: c0, .*c9 … and 30 more") as e:
        prep.check_columns(wide)
    assert str(e.value).count(",") < 30


# ----- the command line -----------------------------------------------------------------------
def test_cli_trains_on_penguins_with_gaps_and_predicts_gappy_rows(penguins, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(
        ["train", "--data", penguins, "--target", "species", "--out", out_dir, "-q", "--no-plots"],
        capsys,
    )
    assert code == 0, err
    assert "imputed training values: bill_length_mm" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9
    assert metrics["imputed"]["bill_length_mm"] >= 1
    code, out, err = run(["info", "--model", out_dir], capsys)
    assert code == 0 and "training values imputed with the median" in out
    assert "missing values: impute" in out
    # predict on raw rows with gaps: the model file's medians and indicators, as in Python
    code, out, err = run(["predict", "--model", out_dir, "--data", penguins], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 345
    mf = cr.io.load_file(out_dir / "model.chainrule")
    prep = TabularPreprocessor.from_dict(mf.extra["preprocessing"])
    table = read_csv(penguins)
    pred = cr.predict(mf.model, prep.transform(table)).argmax(axis=1)
    assert [ln.split(",")[0] for ln in lines[1:]] == prep.decode_classes(pred)


def test_cli_missing_drop_and_error(penguins, tmp_path, capsys):
    code, _, err = run(
        [
            "train",
            "--data",
            penguins,
            "--target",
            "species",
            "--missing",
            "drop",
            "--out",
            tmp_path / "d",
            "-q",
            "--no-plots",
            "--epochs",
            "5",
        ],
        capsys,
    )
    assert code == 0 and "note: " in err and "dropped 11 of 344 rows with missing values" in err
    code, _, err = run(
        [
            "train",
            "--data",
            penguins,
            "--target",
            "species",
            "--missing",
            "error",
            "--out",
            tmp_path / "e",
            "-q",
        ],
        capsys,
    )
    assert code == 2 and "missing value in column 'bill_length_mm'" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_trains_on_penguins_raw_with_no_flags(penguins_raw, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output directory runs/penguins-raw
    code, out, err = run(
        ["train", "--data", penguins_raw, "--target", "Species", "-q", "--no-plots"], capsys
    )
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("chainrule: note:")]
    assert any("'Individual ID'" in ln and "'Comments'" in ln for ln in notes)
    assert "test accuracy" in out
    metrics = json.loads((tmp_path / "runs" / "penguins-raw" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9
    assert set(metrics["left_out_columns"]) == {"Individual ID", "Comments"}


def test_cli_reports_unseen_categories_on_one_line(penguins_raw, tmp_path, capsys):
    code, _, err = run(
        [
            "train",
            "--data",
            penguins_raw,
            "--target",
            "Species",
            "--categorical",
            "Individual ID",
            "--out",
            tmp_path / "r",
            "-q",
            "--no-plots",
            "--epochs",
            "5",
        ],
        capsys,
    )
    assert code == 0, err
    unseen = [ln for ln in err.splitlines() if "unseen in training" in ln]
    assert len(unseen) == 1 and "encoded as all zeros" in unseen[0]
    assert "… and" in unseen[0]


def test_unknown_column_message_lists_at_most_ten_columns():
    wide = Table([f"c{i}" for i in range(40)], {f"c{i}": np.zeros(3) for i in range(40)}, "w.csv")
    with pytest.raises(ValueError, match=r"no column 'y'; its columns are: c0, .* … and 30 more"):
        wide.column("y")


def test_an_old_model_that_knew_na_as_a_category_still_encodes_it():
    old = TabularPreprocessor.from_dict(
        {
            "target": "y",
            "task": "classification",
            "features": [{"name": "c", "kind": "categorical", "categories": ["NA", "a", "b"]}],
            "drop": [],
            "classes": ["0", "1"],
            "scale_target": True,
            "target_mean": 0.0,
            "target_std": 1.0,
        }
    )
    t = Table(["c"], {"c": np.array(["b", "NA", "a"], object)}, "new.csv")
    assert old.transform(t).tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
