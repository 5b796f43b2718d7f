"""CSV messages name the right place and the right cause (issue 14.13, CSV parts)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main


def test_line_numbers_after_quoted_fields_spanning_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        'x,note,y\n1,"a note\nover\nthree lines",0\n\n2,plain,1\nabc,"two\nlines",0\n3,ok,1\n'
    )
    table = cr.data.read_csv(path)
    with pytest.raises(ValueError, match=r"'abc' in numeric column 'x' at row 3 \(line 7\)"):
        cr.data.TabularPreprocessor("y", drop=["note"]).fit(table)
    with pytest.raises(ValueError, match=r"'abc' in numeric column 'x' at row 3 \(line 7\)"):
        cr.data.csv_to_npy(path, "y", tmp_path / "out", drop=["note"], chunk_rows=2)


def test_field_count_error_names_the_physical_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('x,y\n"multi\nline",1\n2,3,4\n')
    with pytest.raises(ValueError, match=r"row 2 \(line 4\) has 3 fields"):
        cr.data.read_csv(path)
    with pytest.raises(ValueError, match=r"row 2 \(line 4\) has 3 fields"):
        next(cr.data.read_csv_chunks(path))


def test_rows_of_the_test_split_are_named_as_in_the_file(tmp_path):
    # the issue: "row 51" reported for line 202 (the 51st row of the test split)
    lines = ["x,color,y"] + [f"{i},{'red' if i % 2 else 'blue'},{i % 2}" for i in range(300)]
    lines[201] = "two hundred,red,0"  # data row 201, line 202
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    table = cr.data.read_csv(path)
    train = table.select(np.r_[0:150])
    test = table.select(np.r_[150:300])
    prep = cr.data.TabularPreprocessor("y").fit(train)
    # (an unseen category is no longer an error: it encodes as zeros, issue 13)
    with pytest.raises(ValueError, match=r"'two hundred' in column 'x' at row 201 \(line 202\)"):
        prep.transform(test)


def test_thousands_separators_are_detected_not_made_categories(tmp_path):
    path = tmp_path / "d.csv"
    rows = [f'"{1000 + 37 * i:,}",{i % 2}' for i in range(60)]
    path.write_text("income,y\n" + "\n".join(rows) + "\n")
    table = cr.data.read_csv(path)
    with pytest.raises(ValueError, match="column 'income' holds numbers written with thousands"):
        cr.data.TabularPreprocessor("y").fit(table)
    with pytest.raises(ValueError, match="column 'income' holds numbers written with thousands"):
        cr.data.csv_to_npy(path, "y", tmp_path / "out")
    # declared categorical on purpose: accepted
    prep = cr.data.TabularPreprocessor("y", categorical=["income"]).fit(table)
    assert prep.features[0]["kind"] == "categorical"


def test_decimal_commas_are_detected_with_the_place(tmp_path):
    path = tmp_path / "d.csv"
    rows = [f"{i};{i},5;{i % 2}" for i in range(60)]
    rows[10] = "10;10;0"  # a plain number among decimal commas
    path.write_text("a;b;y\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"column 'b' .*decimal comma \('0,5' at row 1 \(line 2"):
        cr.data.TabularPreprocessor("y").fit(cr.data.read_csv(path))


def test_text_categories_are_still_categories(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "size,y\n"
        + "\n".join(
            f"{['1-3', 'a,b', 'big'][i % 3]},{i % 2}".replace("a,b", '"a,b"') for i in range(30)
        )
        + "\n"
    )
    prep = cr.data.TabularPreprocessor("y").fit(cr.data.read_csv(path))
    assert prep.features[0]["categories"] == ["1-3", "a,b", "big"]


def test_csv_renamed_npz_does_not_suggest_allow_pickle(tmp_path, capsys):
    path = tmp_path / "data.npz"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError) as info:
        cr.data.read_table(path)
    assert "allow_pickle" not in str(info.value)
    assert "neither" in str(info.value) and "CSV" in str(info.value)
    code = main(["train", "--data", str(path), "--target", "y", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "allow_pickle" not in err and len(err.strip().splitlines()) == 1
