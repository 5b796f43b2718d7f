"""Pictures of a convolutional network's first layer for the HTML report: its learned filters
(one tile per output channel) and its feature maps for one input.

Backpropagation's story is that a deep network's early layers learn simple features (edges,
blobs, strokes, bumps in a signal) that later layers combine. These two pictures let a reader
check it on their own run: the kernels of the first convolution, and what each of them
responds to in one example.

Every tile is a small PNG encoded here (no plotting library needed) and embedded as
``data:image/png;base64,...``: the report stays one offline file. Colours follow one
diverging scale per picture, ``blue = -s``, ``white = 0``, ``red = +s`` with
``s = max |value|`` over the whole picture, so tiles can be compared with each other.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from typing import Any

import numpy as np

from ..nn.conv import Conv1d, Conv2d
from ..nn.module import Module, Sequential
from ..nn.registry import activation_kind
from ..tensor import no_grad

__all__ = [
    "MAX_TILES",
    "conv_pictures_html",
    "diverging_rgb",
    "feature_map_tiles",
    "filter_tiles",
    "first_conv",
    "png_bytes",
]

MAX_TILES = 64  # a wider first layer shows its first 64 channels (the caption says so)
_TILE_PX = 64  # displayed size of a tile's longer side (pixels are scaled up, not smoothed)
_GAP = (200, 200, 200)  # the grey column between the input channels of one filter (NaN)


_Conv = Conv1d | Conv2d


def first_conv(model: Module) -> tuple[str, _Conv] | None:
    """The first Conv1d/Conv2d of ``model`` in definition order, with its dotted name
    (``"0"``, ``"features.0"``), or None for a network without convolutions."""
    for name, m in model.named_modules():
        if isinstance(m, (Conv1d, Conv2d)):
            return name, m
    return None


def filter_tiles(conv: _Conv) -> list[np.ndarray]:
    """One 2-D array per output channel (at most :data:`MAX_TILES`), the weights it applies.

    Conv2d: the kernel ``(KH, KW)``, its input channels side by side, separated by a NaN
    column when there are several (``(KH, C·KW + C - 1)``). Conv1d: ``(C, K)``, one row per
    input channel. ``C = in_channels / groups`` (the channels each filter reads).
    """
    w = np.asarray(conv.weight.data, dtype=np.float64)
    tiles = []
    for o in range(min(w.shape[0], MAX_TILES)):
        k = w[o]
        if k.ndim == 2:  # Conv1d: (C, K)
            tiles.append(k.copy())
            continue
        parts: list[np.ndarray] = []
        for c in range(k.shape[0]):
            if c:
                parts.append(np.full((k.shape[1], 1), np.nan))
            parts.append(k[c])
        tiles.append(np.concatenate(parts, axis=1))
    return tiles


def _as_batch(conv: _Conv, sample: Any) -> np.ndarray:
    x = np.asarray(getattr(sample, "data", sample))
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(
            f"sample must hold at least one input in the model's batch layout (e.g. X_test[:1]), "
            f"got shape {x.shape}"
        )
    x = x[:1]
    if x.dtype.kind == "f":
        x = x.astype(conv.weight.dtype, copy=False)
    return x


def _follower(model: Module, conv: _Conv) -> Module | None:
    """The elementwise activation right after ``conv`` in its Sequential, if there is one."""
    for m in model.modules():
        if isinstance(m, Sequential):
            layers = list(m)
            for i, layer in enumerate(layers[:-1]):
                if layer is conv:
                    nxt = layers[i + 1]
                    return nxt if activation_kind(nxt, inherited=True) is not None else None
    return None


def feature_map_tiles(
    model: Module, sample: Any
) -> tuple[list[np.ndarray], list[np.ndarray], str | None]:
    """Run ``model`` (in eval mode, without recording a graph) on the first input of
    ``sample`` and return ``(input_tiles, map_tiles, activation)``.

    ``input_tiles``: the first convolution's input, one 2-D array per channel (Conv1d: a
    ``(1, L)`` row). ``map_tiles``: its output channels (at most :data:`MAX_TILES`), after the
    elementwise activation that directly follows it in a Sequential (whose class name is
    ``activation``; None if there is none, then the raw convolution output).
    """
    found = first_conv(model)
    if found is None:
        raise ValueError(f"the model has no Conv1d/Conv2d layer: {type(model).__name__}")
    _, conv = found
    follow = _follower(model, conv)
    seen: dict[str, np.ndarray] = {}

    def keep(key: str) -> Any:
        def hook(mod: Module, inputs: Any, out: Any) -> None:
            if key not in seen:  # the first call (a shared layer may be called again)
                if key == "out":
                    seen["in"] = np.asarray(getattr(inputs[0], "data", inputs[0]))
                seen[key] = np.asarray(out.data, dtype=np.float64)

        return hook

    handles = [conv.register_forward_hook(keep("out"))]
    if follow is not None:
        handles.append(follow.register_forward_hook(keep("act")))
    x = _as_batch(conv, sample)
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode comes back
    model.eval()
    try:
        with no_grad():
            model(x)
    finally:
        for m, training in modes:
            m.training = training
        for h in handles:
            h.remove()
    if "out" not in seen:
        raise ValueError("the model's forward pass did not call its first convolution")
    maps = seen.get("act", seen["out"])
    inp = np.asarray(seen["in"], dtype=np.float64)
    if inp.ndim == conv.weight.ndim:  # batched: the one example
        inp, maps = inp[0], maps[0]

    def rows(a: np.ndarray) -> list[np.ndarray]:
        return [c[None, :] if c.ndim == 1 else c for c in a]

    return rows(inp), rows(maps[:MAX_TILES]), (type(follow).__name__ if "act" in seen else None)


def diverging_rgb(a: np.ndarray, scale: float) -> np.ndarray:
    """``(h, w, 3)`` uint8 colours of ``a`` on the scale ``[-scale, scale]``: blue for
    negative, white for 0, red for positive; NaN (a separator) is grey.

    With ``t = clip(v / scale, -1, 1)``: ``t ≥ 0 → (255, 255(1-t), 255(1-t))``,
    ``t < 0 → (255(1+t), 255(1+t), 255)``, rounded to the nearest integer.
    """
    a = np.asarray(a, dtype=np.float64)
    nan = np.isnan(a)
    a = np.where(nan, 0.0, a)
    t = np.clip(a / scale, -1.0, 1.0) if scale > 0 else np.sign(a)  # ±∞ is the scale's end
    fade = np.rint(255.0 * (1.0 - np.abs(t)))
    rgb = np.empty((*a.shape, 3))
    rgb[..., 0] = np.where(t >= 0, 255.0, fade)
    rgb[..., 1] = fade
    rgb[..., 2] = np.where(t >= 0, fade, 255.0)
    rgb[nan] = _GAP
    return rgb.astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A PNG file (8-bit RGB, no interlacing, filter 0 on every row) of an ``(h, w, 3)`` uint8
    array, written with the standard library (zlib) only."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, 3 * w)], axis=1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _scale(tiles: list[np.ndarray]) -> float:
    """The largest finite magnitude of the tiles (0 if none): the picture's colour scale."""
    values = [np.abs(t[np.isfinite(t)]).max(initial=0.0) for t in tiles]
    return float(max(values, default=0.0))


def _tiles_html(kind: str, label: str, tiles: list[np.ndarray], total: int) -> list[str]:
    """A row of tiles, ``data-picture=kind``; each an ``<img>`` scaled up without smoothing."""
    s = _scale(tiles)
    out = [
        f"<div class='tiles' data-picture='{kind}' data-tiles='{len(tiles)}' data-scale='{s:.6g}'>"
    ]
    for i, t in enumerate(tiles):
        h, w = t.shape
        zoom = max(1, _TILE_PX // max(h, w))
        data = base64.b64encode(png_bytes(diverging_rgb(t, s))).decode("ascii")
        out.append(
            f"<figure><img alt='{label} {i}' title='{label} {i}' width='{w * zoom}' "
            f"height='{h * zoom}' data-shape='{h}x{w}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{i}</figcaption></figure>"
        )
    out.append("</div>")
    if total > len(tiles):
        out.append(f"<p class='note'>The first {len(tiles)} of {total} channels are shown.</p>")
    out.append(f"<p class='note'>Colour scale: blue −{s:.3g}, white 0, red +{s:.3g}.</p>")
    return out


CSS = (
    "div.tiles{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-end}"
    "div.tiles figure{margin:0;text-align:center;font-size:75%;color:#555}"
    "div.tiles img{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccc}"
    "p.note{font-size:90%;color:#555}"
)


def conv_pictures_html(model: Module, sample: Any = None) -> list[str]:
    """The report's section about the first convolution of ``model`` (empty for a network
    without one): its filters, and — when ``sample`` (inputs in the model's batch layout, the
    first one is used) is given — that input and the feature maps it produces."""
    found = first_conv(model)
    if found is None:
        return []
    name, conv = found
    kind = type(conv).__name__
    w = conv.weight.data
    reads = "×".join(str(v) for v in w.shape[1:])
    parts = [
        "<h2>What the first layer learned</h2>",
        f"<p>Layer <code>{html.escape(name)}</code>, <code>{html.escape(repr(conv))}</code>: "
        f"{w.shape[0]} filters, one per output channel, each {reads} weights "
        f"(input channels × kernel{'' if conv.weight.ndim == 3 else ' rows × columns'}). "
        "Backpropagation trains the first layer to detect simple features — edges, blobs, "
        "strokes — that the later layers combine.</p>",
        f"<h3>Filters of {html.escape(kind)} <code>{html.escape(name)}</code></h3>",
        *_tiles_html("filters", "filter", filter_tiles(conv), w.shape[0]),
    ]
    if sample is None:
        return parts
    inputs, maps, act = feature_map_tiles(model, sample)
    after = f", after {html.escape(act)}" if act else ""
    parts += [
        "<h3>Feature maps for one input</h3>",
        "<p>The input as the first convolution receives it (one tile per channel):</p>",
        *_tiles_html("input", "input channel", inputs, len(inputs)),
        f"<p>The layer's output for it, one map per filter{after} (red: the filter's pattern "
        "is present there):</p>",
        *_tiles_html("feature-maps", "feature map", maps, conv.out_channels),
    ]
    return parts
