"""Model files: round trips, metadata, refusal of malformed files, atomic writes."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def model_with_everything():
    return nn.Sequential(
        nn.Linear(4, 8, rng=0),
        nn.BatchNorm1d(8),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.1, rng=0),
        nn.Sequential(nn.Linear(8, 6, rng=1), nn.GELU("tanh"), nn.ELU(0.5), nn.Softplus(2.0)),
        nn.Linear(6, 3, rng=2),
        nn.Sigmoid(),
        nn.Tanh(),
        nn.Identity(),
        nn.Softmax(axis=-1),
    )


def test_round_trip_rebuilds_architecture_weights_and_buffers(tmp_path):
    model = model_with_everything()
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    model(X)  # updates BatchNorm's running statistics
    model.eval()
    path = tmp_path / "m.chainrule"
    cr.save(model, path, extra={"classes": ["a", "b", "c"], "scale": [1.5, 2.0]})
    mf = cr.io.load_file(path)
    loaded = mf.model
    assert repr(loaded) == repr(model)
    assert mf.extra == {"classes": ["a", "b", "c"], "scale": [1.5, 2.0]}
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and v.tobytes() == v2.tobytes() and v.dtype == v2.dtype
    np.testing.assert_array_equal(cr.predict(model, X), cr.predict(loaded, X))
    assert not loaded.training


def test_float64_models_round_trip(tmp_path):
    model = nn.mlp([3, 4, 1], "tanh", rng=0, dtype=np.float64)
    cr.save(model, tmp_path / "m.chainrule")
    assert all(p.dtype == np.float64 for p in cr.load(tmp_path / "m.chainrule").parameters())


def test_custom_modules_and_nonfinite_weights_are_refused(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, rng=0)

    with pytest.raises(TypeError, match=r"Mine is neither a chainrule layer nor registered"):
        cr.save(Mine(), tmp_path / "x.chainrule")
    model = nn.mlp([2, 2], rng=0)
    model[0].weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"'0\.weight' contains NaN"):
        cr.save(model, tmp_path / "x.chainrule")
    assert not (tmp_path / "x.chainrule").exists()
    cr.save(model, tmp_path / "x.chainrule", allow_nonfinite=True)


def test_save_failures_raise_and_leave_nothing(tmp_path):
    model = nn.mlp([2, 2], rng=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cr.save(model, tmp_path / "missing" / "m.chainrule")
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PermissionError):
            cr.save(model, ro / "m.chainrule")
        ro.chmod(0o700)
        assert os.listdir(ro) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.chainrule"
    model = nn.mlp([2, 3], rng=0)
    cr.save(model, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    model[0].weight.data[...] = 7
    with pytest.raises(OSError, match="No space left"):
        cr.save(model, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.chainrule"]


def good_file(tmp_path):
    path = tmp_path / "good.chainrule"
    cr.save(nn.mlp([3, 4, 2], rng=0), path)
    return path, path.read_bytes()


def rewrite_header(data: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d[: len(d) // 2],
        lambda d: d[:5],
        lambda d: b"",
        lambda d: struct.pack("<Q", 2**63) + d[8:],
        lambda d: struct.pack("<Q", 0) + d[8:],
        lambda d: d[:8] + b"\xff\xfe" + d[10:],
        lambda d: d + b"trailing",
        lambda d: rewrite_header(
            d,
            lambda h: h["__metadata__"].update(
                {"chainrule.architecture": '{"type": "Evil", "config": {}}'}
            ),
        ),
        lambda d: rewrite_header(
            d, lambda h: h["__metadata__"].update({"chainrule.architecture": "{not json"})
        ),
        lambda d: rewrite_header(d, lambda h: h["__metadata__"].pop("chainrule.format")),
        lambda d: rewrite_header(
            d, lambda h: h[next(k for k in h if k != "__metadata__")].update({"dtype": "Q99"})
        ),
        lambda d: rewrite_header(
            d, lambda h: h[next(k for k in h if k != "__metadata__")].update({"shape": [-1, 2]})
        ),
        lambda d: rewrite_header(
            d,
            lambda h: h[next(k for k in h if k != "__metadata__")].update(
                {"shape": [2**62, 2**62]}
            ),
        ),
    ],
)
def test_malformed_files_raise_model_file_error(tmp_path, corrupt):
    path, data = good_file(tmp_path)
    path.write_bytes(corrupt(data))
    with pytest.raises(cr.ModelFileError):
        cr.load(path)


def test_single_bit_flips_in_tensor_data_are_detected(tmp_path):
    path, data = good_file(tmp_path)
    (n,) = struct.unpack("<Q", data[:8])
    rng = np.random.default_rng(0)
    for pos in rng.integers(8 + n, len(data), size=20):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        with pytest.raises(cr.ModelFileError, match=r"corrupted|malformed"):
            cr.load(path)


def test_not_a_model_file(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(cr.ModelFileError, match="not a chainrule model file"):
        cr.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        cr.load(tmp_path / "nope.chainrule")


def small_file(tmp_path):
    path = tmp_path / "small.chainrule"
    cr.save(nn.Sequential(nn.Linear(2, 2, rng=0), nn.Tanh()), path, extra={"classes": ["a", "b"]})
    return path, path.read_bytes()


def test_every_truncation_is_rejected(tmp_path):
    path, data = small_file(tmp_path)
    for k in range(len(data)):
        path.write_bytes(data[:k])
        with pytest.raises(cr.ModelFileError):
            cr.load(path)


def test_every_single_bit_flip_is_detected(tmp_path):
    """Header (lengths, JSON, metadata, digest) and tensor data: every bit of the file."""
    import time

    path, data = small_file(tmp_path)
    slowest = 0.0
    for pos in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            path.write_bytes(bytes(flipped))
            t = time.perf_counter()
            with pytest.raises(cr.ModelFileError):
                cr.load(path)
            slowest = max(slowest, time.perf_counter() - t)
    assert slowest < 1.0


def test_header_cap_and_lying_lengths(tmp_path):
    path, data = small_file(tmp_path)
    (n,) = struct.unpack("<Q", data[:8])
    for length in (0, n + 1, len(data), 2**63, cr.io.MAX_HEADER_BYTES + 1):
        path.write_bytes(struct.pack("<Q", length) + data[8:])
        with pytest.raises(cr.ModelFileError):
            cr.load(path)


def test_shape_times_itemsize_must_match_the_bytes(tmp_path):
    path, data = good_file(tmp_path)

    def grow(h):
        name = next(k for k in h if k != "__metadata__")
        h[name]["shape"] = [s + 1 for s in h[name]["shape"]]

    path.write_bytes(rewrite_header(data, grow))
    with pytest.raises(cr.ModelFileError):
        cr.load(path)


def test_the_load_path_never_executes_code():
    """Scan the code (not the docs) of the modules that read model files for pickle,
    eval/exec and dynamic imports."""
    import io as _io
    import tokenize
    from pathlib import Path

    root = Path(cr.__file__).parent
    load_path = [
        root / "io.py",
        root / "training" / "checkpoint.py",
        root / "nn" / "layers.py",
        root / "nn" / "module.py",
        root / "data" / "tabular.py",
        root / "sklearn.py",
    ]
    banned = {"pickle", "eval", "exec", "__import__", "importlib", "marshal", "shelve", "compile"}
    for path in load_path:
        tokens = list(tokenize.generate_tokens(_io.StringIO(path.read_text()).readline))
        for k, t in enumerate(tokens):
            if t.type != tokenize.NAME:
                continue
            name, line = t.string, t.start[0]
            # model.eval() and "def eval" are the Module method of that name, not the builtin
            is_attribute = k > 0 and tokens[k - 1].string in (".", "def")
            assert is_attribute or name not in banned, f"{path.name}:{line}: {name}"
            if name == "allow_pickle":
                nxt = [t.string for t in tokens if t.start[0] == line]
                assert "True" not in nxt, f"{path.name}:{line}: allow_pickle=True"


def test_regression_dtype_that_is_not_a_string(tmp_path):
    # found by atheris: a dtype given as a JSON list made the loader raise TypeError
    path, data = good_file(tmp_path)
    path.write_bytes(
        rewrite_header(
            data, lambda h: h[next(k for k in h if k != "__metadata__")].update({"dtype": ["F32"]})
        )
    )
    with pytest.raises(cr.ModelFileError):
        cr.load(path)
