"""Issue 14, points 7, 8, 10 (command line) and 13 (standard input, broken pipe).

Every option is checked for type and range, the same from a flag and from a TOML config, and a
value that does not fit is refused with one line naming the option, the expectation and the
value — never coerced. Checks that would check nothing, and sizes that would exhaust memory,
are refused before any work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainrule._options import MAX_WIDTH, OPTIONS, check_option
from chainrule.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


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
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "run"
    assert (
        main(["train", "--dataset", "iris", "--epochs", "2", "--out", str(out), "-q", "--no-plots"])
        == 0
    )
    return out


# ----- point 7: flags ------------------------------
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--batch-size", "0"], "--batch-size must be >= 1 (an integer), got 0"),
        (["--batch-size", "-5"], "--batch-size must be >= 1 (an integer), got -5"),
        (["--epochs", "0"], "--epochs must be >= 1 (an integer), got 0"),
        (["--lr", "nan"], "--lr must be > 0 (a finite number), got nan"),
        (["--lr", "inf"], "--lr must be > 0 (a finite number), got inf"),
        (["--lr", "0"], "--lr must be > 0 (a finite number), got 0.0"),
        (["--seed", "-1"], "--seed must be >= 0 (an integer), got -1"),
        (["--dropout", "1"], "--dropout must be >= 0 and < 1 (a finite number), got 1.0"),
        (["--weight-decay", "-0.1"], "--weight-decay must be >= 0"),
        (["--val-split", "1"], "--val-split must be >= 0 and < 1"),
        (["--test-split", "0"], "--test-split must be > 0 and < 1"),
        (["--patience", "-1"], "--patience must be >= 0 (an integer), got -1"),
        (["--layers", "64,0"], "--layers must be positive integers"),
        (["--layers", "10000000000"], "--layers must be positive integers (at most 1,048,576)"),
        (["--activation", "swish"], "--activation must be one of"),
        (["--optimizer", "lbfgs"], "--optimizer must be one of"),
    ],
)
def test_bad_flags_are_refused(flags, expected, tmp_path, capsys):
    code, _, err = _run(
        ["train", "--dataset", "iris", "--out", tmp_path / "r", "-q", *flags], capsys
    )
    assert expected in _one_line_error(code, err)
    assert not (tmp_path / "r").exists()


# ----- point 7: TOML ------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'early_stopping = "false"',
            "early_stopping in {cfg} must be true or false, got the string 'false'",
        ),
        ('plots = "no"', "plots in {cfg} must be true or false, got the string 'no'"),
        ("report = 1", "report in {cfg} must be true or false, got 1"),
        ("seed = 1.5", "seed in {cfg} must be >= 0 (an integer), got 1.5"),
        ("epochs = 10.0", "epochs in {cfg} must be >= 1 (an integer), got 10.0"),
        ("lr = true", "lr in {cfg} must be > 0 (a finite number), got the boolean true"),
        ('lr = "0.1"', "lr in {cfg} must be > 0 (a finite number), got the string '0.1'"),
        ("drop = {a = 1}", "drop in {cfg} must be column names"),
        (
            "categorical = 5",
            "categorical in {cfg} must be column names: a comma-separated "
            "string or a list of strings, got 5",
        ),
        ("categorical = [1, 2]", "categorical in {cfg} must be column names"),
        ('activation = ["relu"]', "activation in {cfg} must be one of"),
        ('patience = "x"', "patience in {cfg} must be >= 0 (an integer), got the string 'x'"),
        ("batch_size = 0", "batch_size in {cfg} must be >= 1 (an integer), got 0"),
        ("layers = [64, 1.5]", "layers in {cfg} must be positive integers"),
        ("layers = true", "layers in {cfg} must be positive integers"),
        ('task = "clasification"', "task in {cfg} must be one of auto, classification"),
        ("target = 3", "target in {cfg} must be a non-empty string, got 3"),
    ],
)
def test_bad_config_values_are_refused(line, expected, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'dataset = "iris"\n{line}\n')
    code, _, err = _run(["train", "--config", cfg, "--out", tmp_path / "r", "-q"], capsys)
    assert expected.format(cfg=cfg) in _one_line_error(code, err)


def test_good_config_values_are_used_as_written(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'dataset = "iris"\nlayers = [7, 5]\nearly-stopping = false\nplots = false\n'
        "epochs = 3\nbatch_size = 16\nseed = 4\nlr = 1\ndrop = []\n"
    )
    code, _, err = _run(["train", "--config", cfg, "--out", tmp_path / "r", "-q"], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "r" / "metrics.json").read_text())["settings"]
    assert s["layers"] == [7, 5] and s["early_stopping"] is False and s["plots"] is False
    assert s["epochs"] == 3 and s["batch_size"] == 16 and s["seed"] == 4
    assert s["lr"] == 1.0 and isinstance(s["lr"], float)
    assert sorted(os.listdir(tmp_path / "r")) == ["history.csv", "metrics.json", "model.chainrule"]


def test_flag_overrides_a_bad_config_value_only_if_given(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('dataset = "iris"\nbatch_size = 0\n')
    code, _, err = _run(
        [
            "train",
            "--config",
            cfg,
            "--batch-size",
            "8",
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


def test_every_option_with_a_default_has_a_check():
    from chainrule.cli import DEFAULTS

    assert set(DEFAULTS) <= set(OPTIONS)
    for name, value in DEFAULTS.items():
        check_option(name, value)  # the defaults pass their own checks
    assert check_option("layers", "64, 32") == [64, 32]
    assert check_option("layers", 64) == [64]
    assert check_option("layers", [MAX_WIDTH]) == [MAX_WIDTH]
    with pytest.raises(TypeError, match=r"--lr must be > 0 \(a finite number\), got the boolean"):
        check_option("lr", True)


# ----- point 8: checks that would check nothing ------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gradcheck", "--rows", "0"], "--rows must be >= 1 and <= 100000 (an integer), got 0"),
        (["gradcheck", "--max-params", "0"], "--max-params must be >= 1 (an integer), got 0"),
        (["gradcheck", "--rows", "1000000000"], "--rows must be >= 1 and <= 100000"),
        (
            ["explain", "--dataset", "iris", "--weight", "0.weight[0,0]", "--rows", "-3"],
            "--rows must be >= 1 (an integer), got -3",
        ),
        (
            ["explain", "--dataset", "iris", "--weight", "0.weight[0,0]", "--rows", "0"],
            "--rows must be >= 1 (an integer), got 0",
        ),
        (
            ["explain", "--dataset", "iris", "--weight", "0.weight[0,0]", "--lr", "-1"],
            "--lr must be > 0",
        ),
    ],
)
def test_empty_checks_are_refused(args, expected, run_dir, capsys):
    code, out, err = _run([*args, "--model", run_dir], capsys)
    assert expected in _one_line_error(code, err)
    assert "OK" not in out


def test_gradcheck_still_checks_real_rows(run_dir, capsys):
    code, out, err = _run(
        ["gradcheck", "--model", run_dir, "--rows", "2", "--max-params", "7"], capsys
    )
    assert code == 0, err
    assert "OK: 7 sampled of " in out  # issue 16 point 13: how many of how many


# ----- point 10 (command line): sizes checked before allocating ------------------------------
def test_huge_layers_are_refused_before_allocating(tmp_path, capsys):
    code, _, err = _run(
        [
            "train",
            "--dataset",
            "iris",
            "--layers",
            "1000000,1000000",
            "--out",
            tmp_path / "r",
            "-q",
        ],
        capsys,
    )
    line = _one_line_error(code, err)
    assert "1,000,009,000,003 parameters" in line and "more than this machine's memory" in line


def test_lr_find_refuses_huge_layers(capsys):
    code, _, err = _run(["lr-find", "--dataset", "iris", "--layers", "1000000,1000000"], capsys)
    assert "parameters" in _one_line_error(code, err)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_model_that_is_a_device_is_refused(device, capsys):
    for cmd in (["info"], ["predict", "--dataset", "iris"]):
        code, _, err = _run([*cmd, "--model", device], capsys)
        assert "is not a regular file" in _one_line_error(code, err)


def test_out_of_memory_is_one_line(monkeypatch, run_dir, capsys):
    import chainrule.cli as cli

    def boom(*args, **kwargs):
        raise MemoryError("Unable to allocate 298. GiB for an array")

    monkeypatch.setattr(cli, "load_file", boom)
    code, _, err = _run(["info", "--model", run_dir], capsys)
    assert "out of memory (Unable to allocate 298. GiB" in _one_line_error(code, err)


# ----- point 13: standard input and pipes ------------------------------
def test_standard_input_is_refused_clearly(run_dir, tmp_path, capsys):
    code, _, err = _run(["predict", "--model", run_dir, "--data", "-"], capsys)
    assert "reading rows from standard input is not supported" in _one_line_error(code, err)
    code, _, err = _run(["train", "--data", "-", "--target", "y", "--out", tmp_path / "r"], capsys)
    assert "standard input is not supported" in _one_line_error(code, err)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = _run(["evaluate", "--model", run_dir, "--data", fifo], capsys)
    assert "is not a regular file (a pipe or device)" in _one_line_error(code, err)


@pytest.mark.parametrize("command", [["info"], ["predict", "--dataset", "iris"]])
def test_a_reader_that_leaves_ends_the_command_quietly(command, run_dir):
    # `chainrule info | head`: the reader closes the pipe; here it is closed before any write
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "chainrule", *command, "--model", str(run_dir)],
            env=dict(os.environ, PYTHONPATH=SRC),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""  # no "[Errno 32] Broken pipe", no "Exception ignored"
    assert proc.returncode == 141  # as a shell reports a command ended by SIGPIPE


def test_run_training_checks_settings_from_python():
    from chainrule.cli import TrainSettings, run_training

    with pytest.raises(ValueError, match=r"--batch-size must be >= 1 \(an integer\), got 0"):
        run_training(TrainSettings(dataset="iris", batch_size=0, verbose=0))
    with pytest.raises(TypeError, match="--early-stopping must be true or false, got the string"):
        run_training(TrainSettings(dataset="iris", early_stopping="false", verbose=0))  # type: ignore[arg-type]


def test_config_that_is_a_device_is_refused(capsys):
    code, _, err = _run(["train", "--config", "/dev/zero"], capsys)
    assert "is not a regular file" in _one_line_error(code, err)
