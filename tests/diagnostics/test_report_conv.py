"""Issue 18, point 3: the HTML report of a convolutional network shows the first layer's
learned filters (one tile per output channel) and its feature maps for one input; a dense
network's report does not change. The tiles are decoded here from the report's own PNGs and
compared with the model's weights and with PyTorch's convolution of the same input."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import main
from chainrule.diagnostics import conv_pictures

torch = pytest.importorskip("torch")


def decode_png(data: bytes) -> np.ndarray:
    """An independent reader of the PNGs the report embeds (8-bit RGB, filter 0 rows):
    checks the signature, every chunk's CRC and the header, returns ``(h, w, 3)`` uint8."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + n
    assert [t for t, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, comp, filt, interlace) == (8, 2, 0, 0, 0)
    raw = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(raw[:, 0] == 0)  # filter type 0 ("None") on every row
    return raw[:, 1:].reshape(h, w, 3)


def pictures(text: str) -> dict[str, list[np.ndarray]]:
    """``{data-picture: [decoded tile, ...]}`` of a report, in order."""
    out = {}
    for block in re.findall(r"<div class='tiles' data-picture='([^']+)'(.*?)</div>", text, re.S):
        kind, body = block
        srcs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", body)
        out[kind] = [decode_png(base64.b64decode(s)) for s in srcs]
    return out


def expected_colours(a: np.ndarray, s: float) -> np.ndarray:
    """Blue (negative) - white (0) - red (positive) on [-s, s], written out per channel."""
    t = np.clip(a / s, -1, 1)
    r = np.where(t >= 0, 255, 255 * (1 + t))
    g = 255 * (1 - np.abs(t))
    b = np.where(t >= 0, 255 * (1 - t), 255)
    return np.stack([r, g, b], axis=-1)


def small_cnn(c_in=1, c_out=5):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, rng=0),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c_out * 16, 3, rng=1),
    )


def data(c_in=1, n=60):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, c_in, 8, 8)).astype(np.float32)
    y = (X[:, 0, :, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (X[:, 0, :4].mean((1, 2)) > 0)
    return X, y


def report_text(tmp_path, model, X, y, sample, name="r.html", **kw):
    pytest.importorskip("matplotlib")
    flow = cr.GradientFlow()
    h = cr.fit(model, X, y, loss="cross_entropy", epochs=3, verbose=0, callbacks=[flow], seed=0)
    cr.diagnostics.write_report(tmp_path / name, h, flow, {"accuracy": 0.5},
                                       sample=sample, **kw)  # fmt: skip
    return (tmp_path / name).read_text(), flow


def test_report_of_a_trained_cnn_shows_its_filters_and_the_feature_maps_of_one_input(tmp_path):
    X, y = data()
    model = small_cnn()
    text, _ = report_text(tmp_path, model, X, y, X[7:9])  # the first of the two is shown
    pics = pictures(text)
    assert set(pics) == {"filters", "input", "feature-maps"}
    assert "src='http" not in text and "<script" not in text  # one offline file
    # filters: one 3x3 tile per output channel, coloured from the trained weights
    w = model[0].weight.data.astype(np.float64)  # (5, 1, 3, 3)
    assert len(pics["filters"]) == 5 and all(t.shape == (3, 3, 3) for t in pics["filters"])
    s = np.abs(w).max()
    for o, tile in enumerate(pics["filters"]):
        np.testing.assert_allclose(tile, expected_colours(w[o, 0], s), atol=1.0)
    strongest = np.unravel_index(np.abs(w).argmax(), w.shape)
    pure = [255, 0, 0] if w[strongest] > 0 else [0, 0, 255]
    assert pics["filters"][strongest[0]][strongest[2:]].tolist() == pure
    assert f"data-scale='{s:.6g}'" in text
    # the input: the sample's first example, one 8x8 channel
    (inp,) = pics["input"]
    x = X[7, 0].astype(np.float64)
    np.testing.assert_allclose(inp, expected_colours(x, np.abs(x).max()), atol=1.0)
    # feature maps: ReLU(conv(x)) per output channel, computed by torch with the same weights
    ref = torch.relu(
        torch.nn.functional.conv2d(
            torch.tensor(X[7:8], dtype=torch.float64),
            torch.tensor(w),
            torch.tensor(model[0].bias.data.astype(np.float64)),
            padding=1,
        )
    )[0].numpy()
    maps = pics["feature-maps"]
    assert len(maps) == 5 and all(m.shape == (8, 8, 3) for m in maps)
    for o, m in enumerate(maps):
        np.testing.assert_allclose(m, expected_colours(ref[o], ref.max()), atol=1.0)
    assert "after ReLU" in text and "5 filters, one per output channel, each 1×3×3" in text
    assert model.training  # the report's forward pass left the model as it was


def test_filters_of_several_input_channels_lie_side_by_side_and_conv1d_is_drawn_too(tmp_path):
    X, y = data(c_in=2)
    model = small_cnn(c_in=2, c_out=3)
    text, _ = report_text(tmp_path, model, X, y, X[:1])
    pics = pictures(text)
    w = model[0].weight.data.astype(np.float64)
    s = np.abs(w).max()
    for o, tile in enumerate(pics["filters"]):
        assert tile.shape == (3, 7, 3)  # channel 0 | grey column | channel 1
        np.testing.assert_allclose(tile[:, :3], expected_colours(w[o, 0], s), atol=1.0)
        np.testing.assert_allclose(tile[:, 4:], expected_colours(w[o, 1], s), atol=1.0)
        assert np.all(tile[:, 3] == [200, 200, 200])
    assert len(pics["input"]) == 2

    rng = np.random.default_rng(1)
    X1 = rng.standard_normal((40, 2, 20)).astype(np.float32)
    y1 = (X1[:, 0].mean(axis=1) > 0).astype(np.int64)
    m1 = nn.Sequential(nn.Conv1d(2, 4, 5, rng=0), nn.Tanh(), nn.Flatten(), nn.Linear(64, 2, rng=1))
    text1, _ = report_text(tmp_path, m1, X1, y1, X1[3:4], name="r1.html")
    p1 = pictures(text1)
    w1 = m1[0].weight.data.astype(np.float64)
    assert [t.shape for t in p1["filters"]] == [(2, 5, 3)] * 4  # input channels × taps
    for o, tile in enumerate(p1["filters"]):
        np.testing.assert_allclose(tile, expected_colours(w1[o], np.abs(w1).max()), atol=1.0)
    ref = torch.tanh(
        torch.nn.functional.conv1d(
            torch.tensor(X1[3:4], dtype=torch.float64),
            torch.tensor(w1),
            torch.tensor(m1[0].bias.data.astype(np.float64)),
        )
    )[0].numpy()
    assert [m.shape for m in p1["feature-maps"]] == [(1, 16, 3)] * 4
    s1 = np.abs(ref).max()
    for o, m in enumerate(p1["feature-maps"]):
        np.testing.assert_allclose(m[0], expected_colours(ref[o], s1), atol=1.0)
    assert "after Tanh" in text1


def test_without_a_sample_the_report_shows_the_filters_only_and_wide_layers_are_capped(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 70, 2, rng=0), nn.Flatten(), nn.Linear(70 * 9, 2, rng=1))
    parts = conv_pictures.conv_pictures_html(model)
    text = "\n".join(parts)
    pics = pictures(text)
    assert list(pics) == ["filters"] and len(pics["filters"]) == conv_pictures.MAX_TILES == 64
    assert "The first 64 of 70 channels are shown." in text
    # a model without a convolution adds nothing
    assert conv_pictures.conv_pictures_html(nn.mlp([4, 8, 2], rng=0)) == []


def test_a_dense_models_report_is_unchanged(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)).astype(np.float32), rng.integers(0, 2, 100)
    model = nn.mlp([4, 8, 2], rng=0)
    flow = cr.GradientFlow()
    h = cr.fit(model, X, y, loss="cross_entropy", epochs=3, verbose=0, callbacks=[flow])
    plain = cr.diagnostics.write_report(tmp_path / "a.html", h, flow, {"accuracy": 0.5})
    given = cr.diagnostics.write_report(
        tmp_path / "b.html", h, flow, {"accuracy": 0.5}, model=model, sample=X[:1]
    )

    def body(p):  # all but the time it was written
        with open(p) as fh:
            return [line for line in fh.read().splitlines() if not line.startswith("<p>written")]

    assert body(plain) == body(given)
    dense = "\n".join(body(given))
    assert "data-picture" not in dense and "div.tiles" not in dense


def test_the_png_tiles_are_read_by_pillow_as_well():
    pil = pytest.importorskip("PIL.Image")

    a = np.array([[-1.0, 0.0, 0.5], [np.nan, 1.0, -0.25]])
    rgb = conv_pictures.diverging_rgb(a, 1.0)
    img = pil.open(io.BytesIO(conv_pictures.png_bytes(rgb)))
    assert img.size == (3, 2) and img.mode == "RGB"
    got = np.asarray(img)
    np.testing.assert_array_equal(got, rgb)
    assert got[0, 0].tolist() == [0, 0, 255] and got[0, 1].tolist() == [255, 255, 255]
    assert got[1, 1].tolist() == [255, 0, 0] and got[1, 0].tolist() == [200, 200, 200]
    assert got[0, 2].tolist() == [255, 128, 128]  # half way to red: 255·(1 - 0.5) rounds to 128


def test_chainrule_train_report_of_an_arch_file_cnn_has_the_pictures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    net = tmp_path / "net.json"
    conv = {"in_channels": 1, "out_channels": 6, "kernel_size": 3, "padding": 1}
    arch = {
        "type": "Sequential",
        "config": {
            "layers": [
                {"type": "Unflatten", "config": {"dim": 1, "unflattened_size": [1, 8, 8]}},
                {"type": "Conv2d", "config": conv},
                {"type": "ReLU", "config": {}},
                {"type": "MaxPool2d", "config": {"kernel_size": 2}},
                {"type": "Flatten", "config": {}},
                {"type": "Linear", "config": {"in_features": 96, "out_features": 10}},
            ]
        },
    }
    net.write_text(json.dumps(arch))
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--arch", str(net), "--epochs", "2", "--seed", "0"]
    assert main([*args, "--out", str(out), "--report", "-q"]) == 0
    text = (out / "report.html").read_text()
    pics = pictures(text)
    model = cr.load(out / "model.chainrule")
    w = model[1].weight.data.astype(np.float64)
    assert len(pics["filters"]) == 6 and len(pics["feature-maps"]) == 6
    for o, tile in enumerate(pics["filters"]):
        np.testing.assert_allclose(tile, expected_colours(w[o, 0], np.abs(w).max()), atol=1.0)
    assert [p.shape for p in pics["input"]] == [(8, 8, 3)]  # the row unflattened to 1x8x8
    assert "Layer <code>1</code>, <code>Conv2d(1, 6, kernel_size=(3, 3)" in text


def test_colours_of_infinite_values_are_the_ends_of_the_scale_without_warnings():
    a = np.array([[np.inf, -np.inf, np.nan, 0.5, 0.0, -0.25]])
    s = conv_pictures._scale([a])
    assert s == 0.5  # the largest finite magnitude
    rgb = conv_pictures.diverging_rgb(a, s)
    assert rgb.tolist() == [[[255, 0, 0], [0, 0, 255], [200, 200, 200], [255, 0, 0],
                             [255, 255, 255], [128, 128, 255]]]  # fmt: skip
    assert conv_pictures.diverging_rgb(np.zeros((2, 2)), 0.0).tolist() == [[[255] * 3] * 2] * 2
