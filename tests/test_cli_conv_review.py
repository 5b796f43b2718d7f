"""Issue 18, second review: the command line with image arrays and architecture files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.data.tabular import read_table


def _net(unflatten, in_features=512):
    layers = [
        {"type": "Conv2d", "config": {"in_channels": 1, "out_channels": 8, "kernel_size": 3,
                                      "padding": 1}},
        {"type": "ReLU"},
        {"type": "Flatten"},
        {"type": "Linear", "config": {"in_features": in_features, "out_features": 10}},
    ]  # fmt: skip
    if unflatten:
        layers.insert(0, {"type": "Unflatten", "config": {"dim": 1, "unflattened_size": unflatten}})
    return {"type": "Sequential", "config": {"layers": layers}}


def _digits_images(n=200):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 10
    X = rng.random((n, 8, 8)).astype(np.float32) * 0.2
    for k in range(10):  # a bright pixel per class: learnable
        X[y == k, k % 8, k // 8 + 2] += 1.0
    return X, y


# ---------------------------------------------------------------------------------------------
# 6. image arrays from NPY/NPZ: (N, C, H, W) and (N, H, W)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("four_d", [True, False])
def test_npz_images_read_as_rows_of_pixels_with_their_shape(tmp_path, four_d):
    X, y = _digits_images(20)
    arr = X[:, None] if four_d else X
    np.savez(tmp_path / "img.npz", X=arr, y=y)
    table = read_table(tmp_path / "img.npz", "y")
    assert table.image_shape == (1, 8, 8)
    assert table.columns == [f"x{i}" for i in range(64)] + ["y"]
    rows = np.stack([table.column(f"x{i}") for i in range(64)], axis=1)
    np.testing.assert_array_equal(rows, X.reshape(20, 64))  # C order: x{8r + c} = pixel (r, c)
    assert table.select(np.arange(3)).image_shape == (1, 8, 8)
    np.save(tmp_path / "img.npy", arr)
    assert read_table(tmp_path / "img.npy").image_shape == (1, 8, 8)


def test_npz_with_5d_or_1d_x_is_refused_naming_the_shapes(tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 1, 2, 2, 2)), y=np.zeros(4))
    with pytest.raises(
        ValueError, match=r"X must be 2-D .* \(N, C, H, W\) or \(N, H, W\); got shape"
    ):
        read_table(tmp_path / "bad.npz", "y")


@pytest.mark.parametrize("four_d", [True, False])
def test_cli_trains_a_conv_arch_on_npz_images_and_predicts_them(tmp_path, capsys, four_d):
    X, y = _digits_images()
    np.savez(tmp_path / "img.npz", X=X[:, None] if four_d else X, y=y)
    arch = tmp_path / "net.json"
    arch.write_text(json.dumps(_net([1, 8, 8])))
    out = str(tmp_path / "run")
    args = ["--data", str(tmp_path / "img.npz"), "--target", "y", "--arch", str(arch)]
    status = main(
        ["train", *args, "--epochs", "30", "--lr", "0.01", "--out", out, "-q", "--no-plots"]
    )
    assert status == 0, capsys.readouterr().err
    model = cr.load(out + "/model.chainrule")
    assert type(model[1]).__name__ == "Conv2d"
    acc = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"]
    assert acc > 0.9
    assert main(["evaluate", "--model", out, "--data", str(tmp_path / "img.npz")]) == 0


def test_cli_dense_model_on_npz_images_uses_the_pixels_as_features(tmp_path, capsys):
    X, y = _digits_images()
    np.savez(tmp_path / "img.npz", X=X[:, None], y=y)
    out = str(tmp_path / "run")
    status = main(["train", "--data", str(tmp_path / "img.npz"), "--target", "y", "--layers",
                   "16", "--epochs", "2", "--out", out, "-q", "--no-plots"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert cr.load(out + "/model.chainrule")[0].in_features == 64


def test_cli_conv_arch_without_unflatten_says_how_to_start_it(tmp_path, capsys):
    X, y = _digits_images(40)
    np.savez(tmp_path / "img.npz", X=X[:, None], y=y)
    arch = tmp_path / "net.json"
    arch.write_text(json.dumps(_net(None)))
    status = main(["train", "--data", str(tmp_path / "img.npz"), "--target", "y", "--arch",
                   str(arch), "--out", str(tmp_path / "r"), "-q", "--no-plots"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "layer 0 (Conv2d) cannot take the network's input, rows of 64 values" in err
    assert "starts with Unflatten" in err and "layer before it" not in err


# ---------------------------------------------------------------------------------------------
# 4. --arch gives the whole network: the --layers network's options are refused, and the run's
#    records describe the architecture, not an MLP that was never built
# ---------------------------------------------------------------------------------------------
def _digits_arch(tmp_path):
    arch = tmp_path / "net.json"
    arch.write_text(json.dumps(_net([1, 8, 8])))
    return str(arch)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--layers", "64,64"), ("--activation", "tanh"), ("--dropout", "0.5"),
     ("--batch-norm", None), ("--init", "glorot")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_arch_refuses_the_mlp_options(tmp_path, capsys, flag, value, command):
    args = [command, "--dataset", "digits", "--arch", _digits_arch(tmp_path), flag]
    args += [value] if value is not None else []
    if command == "train":
        args += ["--out", str(tmp_path / "r")]
    assert main([*args, "-q", "--no-plots"] if command == "train" else args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} cannot be used with --arch" in err
    assert not (tmp_path / "r").exists()


def test_arch_refuses_mlp_options_from_the_config_file(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('layers = "32"\n')
    status = main(["train", "--dataset", "digits", "--arch", _digits_arch(tmp_path), "--config",
                   str(cfg), "--out", str(tmp_path / "r"), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "'layers' in" in err and "--arch" in err


def test_arch_run_records_the_architecture_not_mlp_settings(tmp_path, capsys):
    out = tmp_path / "r"
    status = main(["train", "--dataset", "digits", "--arch", _digits_arch(tmp_path), "--epochs",
                   "1", "--out", str(out), "-q", "--no-plots", "--report"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["arch"].endswith("net.json")
    assert not {"layers", "activation", "init", "dropout", "batch_norm"} & set(settings)
    page = (out / "report.html").read_text()
    table = page[page.index("<h2>Settings</h2>") : page.index("<h2>How training ended</h2>")]
    assert "architecture" in table and "net.json: Unflatten" in table and "Conv2d(1, 8" in table
    assert "hidden layers" not in table and "He (Kaiming)" not in table
    assert "activation" not in table and "initialisation" not in table


def test_lr_find_uses_the_arch_network(tmp_path, capsys):
    status = main(["lr-find", "--dataset", "digits", "--arch", _digits_arch(tmp_path),
                   "--epochs", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "model: " in out and "net.json" in out and "hidden layers" not in out


def test_mlp_runs_still_record_their_options(tmp_path, capsys):
    out = tmp_path / "r"
    status = main(["train", "--dataset", "digits", "--layers", "16", "--epochs", "1", "--out",
                   str(out), "-q", "--no-plots"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert (
        settings["layers"] == [16] and settings["activation"] == "relu" and settings["arch"] is None
    )


# ---------------------------------------------------------------------------------------------
# 8. chainrule explain --weight names a conv entry
# ---------------------------------------------------------------------------------------------
def test_cli_explain_conv_weight_string_with_lr(tmp_path, capsys):
    out = str(tmp_path / "r")
    status = main(["train", "--dataset", "digits", "--arch", _digits_arch(tmp_path), "--epochs",
                   "1", "--out", out, "-q", "--no-plots"])  # fmt: skip
    assert status == 0
    capsys.readouterr()
    status = main(["explain", "--model", out, "--dataset", "digits", "--weight",
                   "1.weight[3,0,1,2]", "--rows", "8", "--lr", "0.01"])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0
    assert "∂C/∂w for 1.weight[3, 0, 1, 2]" in text and "gradient-descent update" in text
    assert main(["explain", "--model", out, "--dataset", "digits", "--weight",
                 "1.weight[3,0,1,9]"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside 1.weight of shape (8, 1, 3, 3)" in err


# ---------------------------------------------------------------------------------------------
# 10. --config takes arch like any other option (the flag overrides it)
# ---------------------------------------------------------------------------------------------
def test_config_file_takes_arch(tmp_path, capsys):
    arch = _digits_arch(tmp_path)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'dataset = "digits"\narch = {json.dumps(arch)}\nepochs = 1\n')
    out = tmp_path / "r"
    status = main(["train", "--config", str(cfg), "--out", str(out), "-q", "--no-plots"])
    assert status == 0, capsys.readouterr().err
    model = cr.load(str(out / "model.chainrule"))
    assert [type(m).__name__ for m in model][:2] == ["Unflatten", "Conv2d"]
    assert json.loads((out / "metrics.json").read_text())["settings"]["arch"] == arch
    cfg.write_text('arch = 3\ndataset = "digits"\n')
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arch" in err
