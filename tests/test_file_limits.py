"""Files that declare more than they hold are refused before anything is allocated (issue 14.10).

Each hostile file is opened in a subprocess whose address space is limited with
``resource.setrlimit(RLIMIT_AS)``: a refusal must come as the file error (ValueError /
ModelFileError), never as MemoryError, and well within the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.io import ModelFileError, tensor_digest

LIMIT_MIB = 512

RUN = r"""
import resource, sys, numpy as np, chainrule as cr
from chainrule.data import read_table
limit = int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    np.ones(limit // 8)  # the limit is in force: this alone cannot be allocated
    print("NOLIMIT")
except MemoryError:
    pass
for kind, path in zip(sys.argv[2::2], sys.argv[3::2]):
    try:
        read_table(path) if kind == "table" else cr.load(path)
        print("LOADED", path)
    except MemoryError:
        print("MemoryError", path)
    except Exception as exc:
        print(type(exc).__name__, str(exc).replace("\n", " "))
"""


def run_limited(files):
    args = [str(LIMIT_MIB)]
    for kind, path in files:
        args += [kind, str(path)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def npy_declaring(path, shape, dtype="<f8", payload=b""):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(payload)
    return path


def craft_model(path, arch, tensors=None):
    from safetensors.numpy import save as st_save

    tensors = {f"model/{k}": v for k, v in (tensors or {}).items()}
    meta = {
        "chainrule.format": "chainrule",
        "chainrule.version": "1",
        "chainrule.architecture": json.dumps(arch),
        "chainrule.extra": "{}",
    }
    meta["chainrule.sha256"] = tensor_digest(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))
    return path


def small_linear():
    return {"0.weight": np.zeros((2, 3), np.float32), "0.bias": np.zeros(3, np.float32)}


def seq(*layers):
    return {"type": "Sequential", "config": {"layers": list(layers)}}


@pytest.fixture
def hostile(tmp_path):
    files = {}
    files["npy"] = npy_declaring(tmp_path / "huge.npy", (200_000, 200_000), payload=b"\0" * 64)
    assert files["npy"].stat().st_size == 192
    files["npy_void"] = npy_declaring(tmp_path / "void.npy", (4,), dtype="|V2000000000")
    # a zip bomb: 640 MB of zeros deflated to a few hundred kB
    bomb = tmp_path / "bomb.npz"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("X.npy", "w", force_zip64=True) as fh,
    ):
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (80_000, 1_000)}
        )
        block = bytes(2**24)
        for _ in range(640_000_000 // len(block) + 1):
            fh.write(block)
    files["bomb"] = bomb
    lin = {"type": "Linear", "config": {"in_features": 2, "out_features": 3}}
    files["linear"] = craft_model(
        tmp_path / "linear.chainrule",
        seq({"type": "Linear", "config": {"in_features": 10**6, "out_features": 10**6}}),
        small_linear(),
    )
    files["bn"] = craft_model(
        tmp_path / "bn.chainrule",
        seq(lin, {"type": "BatchNorm1d", "config": {"num_features": 10**9}}),
        small_linear(),
    )
    files["dtype"] = craft_model(
        tmp_path / "dtype.chainrule",
        seq(
            {
                "type": "Linear",
                "config": {"in_features": 2, "out_features": 3, "dtype": "V2000000000"},
            }
        ),
        small_linear(),
    )
    files["slope"] = craft_model(
        tmp_path / "slope.chainrule",
        seq(lin, {"type": "LeakyReLU", "config": {"negative_slope": 10**400}}),
        small_linear(),
    )
    files["deep"] = craft_model(
        tmp_path / "deep.chainrule",
        seq(lin, *[{"type": "ReLU", "config": {}}] * 400_000),
        small_linear(),
    )
    return files


def test_hostile_files_are_refused_within_a_memory_limit(hostile):
    assert hostile["bomb"].stat().st_size < 3_000_000
    kinds = {"npy": "table", "npy_void": "table", "bomb": "table"}
    lines = run_limited([(kinds.get(k, "model"), p) for k, p in hostile.items()])
    assert "NOLIMIT" not in lines
    got = dict(zip(hostile, lines))
    assert len(lines) == len(hostile), lines
    for key, line in got.items():
        expected = "ValueError" if kinds.get(key) else "ModelFileError"
        assert line.startswith(expected + " "), (key, line)
    assert "declares an array of shape (200000, 200000)" in got["npy"]
    assert "holds only 64 bytes" in got["npy"]
    assert "zip bomb" in got["bomb"]
    assert "need 1,000,001,000,000 or more weights but the file holds 9" in got["linear"]
    assert "BatchNorm1d" in got["bn"]
    assert "dtype must be float32 or float64" in got["dtype"]
    assert "too large" in got["slope"]
    assert "more than 10000 layers" in got["deep"]


def test_the_bomb_really_exceeds_the_limit_without_the_check(hostile):
    # the same limit stops plain NumPy: the refusal above is the check's doing
    script = (
        "import resource, sys, numpy as np\n"
        f"limit = {LIMIT_MIB} * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "try:\n"
        "    np.load(sys.argv[1])['X']\n"
        "    print('LOADED')\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(hostile["bomb"])],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.stdout.strip() == "MemoryError"


def test_honest_files_still_load(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "x.npy", X)
    np.savez_compressed(tmp_path / "d.npz", X=X, y=np.arange(50) % 2)
    np.savez_compressed(tmp_path / "zeros.npz", X=np.zeros((4000, 1000)))  # 32 MB of zeros
    assert cr.data.read_table(tmp_path / "x.npy").columns == ["x0", "x1", "x2"]
    assert len(cr.data.read_table(tmp_path / "d.npz")) == 50
    assert len(cr.data.read_table(tmp_path / "zeros.npz")) == 4000
    model = cr.nn.Sequential(
        cr.nn.Linear(3, 4),
        cr.nn.BatchNorm1d(4),
        cr.nn.LeakyReLU(0.1),
        cr.nn.Linear(4, 2, bias=False, dtype=np.float64),
    )
    cr.save(model, tmp_path / "m.chainrule")
    assert repr(cr.load(tmp_path / "m.chainrule")) == repr(model)


def test_model_with_exactly_its_weights_passes_and_one_more_is_refused(tmp_path):
    ok = craft_model(
        tmp_path / "ok.chainrule",
        seq({"type": "Linear", "config": {"in_features": 2, "out_features": 3}}),
        small_linear(),
    )
    assert isinstance(cr.load(ok), cr.nn.Sequential)
    bad = craft_model(
        tmp_path / "bad.chainrule",
        seq({"type": "Linear", "config": {"in_features": 2, "out_features": 4}}),
        small_linear(),
    )
    with pytest.raises(ModelFileError, match="need 12 or more weights but the file holds 9"):
        cr.load(bad)


def test_cli_names_a_hostile_model_file_in_one_line(tmp_path, capsys):
    path = craft_model(
        tmp_path / "m.chainrule",
        seq({"type": "Linear", "config": {"in_features": 10**6, "out_features": 10**6}}),
        small_linear(),
    )
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    code = main(["predict", "--model", str(path), "--data", str(data)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "m.chainrule" in err
    huge = npy_declaring(tmp_path / "huge.npy", (200_000, 200_000))
    code = main(["train", "--data", str(huge), "--target", "x0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "declares an array" in err
