"""NumPy kernels of the convolution and pooling primitives: forward computations and their
per-input backward rules (vector-Jacobian products).

Everything works on 2-D images ``(N, C, H, W)``; the 1-D primitives view a signal
``(N, C, L)`` as an image of height 1 (no copy). Attributes are normalised by the caller:
``stride=(sh, sw)``, ``padding=(top, bottom, left, right)``, ``dilation=(dh, dw)``.

Layout (what makes it fast). The forward pass copies the receptive fields once into a
"columns" matrix laid out ``(G, C/G·KH·KW, N·OH·OW)`` — kernel offsets first, the batch and
the output pixels last — straight from a strided view of the (padded) input
(``np.lib.stride_tricks.as_strided``, one ``copyto``). Then

    forward        out_g   = W_g  @ cols_g            (one GEMM per group, batched)
    weight grad    ∂C/∂W_g = G_g  @ cols_gᵀ           (one GEMM, cols saved by the forward)
    input grad     cols'_g = W_gᵀ @ G_g,  col2im      (one GEMM + KH·KW strided adds)

where ``G_g`` is the output gradient as ``(O/G, N·OH·OW)``. The saved columns make the
weight gradient a single matrix product; col2im loops over the KH·KW kernel offsets only
(never over samples or pixels), each offset adding one strided block of the input gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def out_size(n: int, k: int, s: int, p_lo: int, p_hi: int, d: int) -> int:
    """Output length ``⌊(n + p_lo + p_hi - d·(k-1) - 1) / s⌋ + 1`` (PyTorch's formula)."""
    return (n + p_lo + p_hi - d * (k - 1) - 1) // s + 1


def _pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x`` (N, C, H, W) with ``pads`` rows/columns of ``value`` around it (a fresh array)."""
    t, b, left, r = pads
    if not (t or b or left or r):
        return x
    n, c, h, w = x.shape
    xp = np.empty((n, c, h + t + b, w + left + r), x.dtype)
    if t:
        xp[:, :, :t] = value
    if b:
        xp[:, :, h + t :] = value
    if left:
        xp[:, :, t : h + t, :left] = value
    if r:
        xp[:, :, t : h + t, w + left :] = value
    xp[:, :, t : h + t, left : w + left] = x
    return xp


def _offset_view(
    a: np.ndarray, kh: int, kw: int, oh: int, ow: int, stride: Pair, dilation: Pair
) -> np.ndarray:
    """The block of ``a`` (..., H, W) that kernel offset (kh, kw) meets: ``(..., oh, ow)``."""
    (sh, sw), (dh, dw) = stride, dilation
    r0, c0 = kh * dh, kw * dw
    return a[..., r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw]


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (stacked), computed as ``(bᵀ @ aᵀ)ᵀ`` when ``a`` has fewer rows than ``b`` has
    columns.

    # NOTE: OpenBLAS runs a product with few rows (a handful of output channels times tens of
    # thousands of pixels) at half the speed of its transpose (measured 2.1 vs 1.2 ms for
    # 16×150 @ 150×6400 in float32); the result is a transposed view, which its consumers copy
    # anyway.
    """
    if a.shape[-2] < b.shape[-1]:
        return np.matmul(b.swapaxes(-1, -2), a.swapaxes(-1, -2)).swapaxes(-1, -2)
    return np.matmul(a, b)


# ---------------------------------------------------------------------------------------------
# convolution (cross-correlation, as PyTorch)
# ---------------------------------------------------------------------------------------------
def _pad_chwn(x: np.ndarray, pads: Pads) -> np.ndarray:
    """``x`` (N, C, H, W) as a zero-padded ``(C, Hp, Wp, N)`` array (one transposing copy)."""
    t, b, left, r = pads
    n, c, h, w = x.shape
    if not (t or b or left or r):
        return np.ascontiguousarray(x.transpose(1, 2, 3, 0))
    xp = np.zeros((c, h + t + b, w + left + r, n), x.dtype)
    xp[:, t : t + h, left : left + w] = x.transpose(1, 2, 3, 0)
    return xp


def im2col(
    xp: np.ndarray, kh: int, kw: int, oh: int, ow: int, stride: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """Columns ``(G, C/G·KH·KW, OH·OW·N)`` of the padded input ``xp`` in ``(C, Hp, Wp, N)``
    layout: ``cols[g, (c, i, j), (y, x, n)] = xp[g·C/G + c, y·sh + i·dh, x·sw + j·dw, n]``.

    The batch is the fastest axis, so each copied run is ``OW·N`` contiguous values (stride 1)
    instead of ``OW``: NumPy's per-run overhead, not bandwidth, is what im2col/col2im cost in
    the NCHW order (measured 3.3 ms vs 0.6 ms for LeNet's second layer's col2im).
    """
    c, _, _, n = xp.shape
    cg = c // groups
    sc, sy, sx, sn = xp.strides
    (sh, sw), (dh, dw) = stride, dilation
    view = as_strided(
        xp,
        shape=(groups, cg, kh, kw, oh, ow, n),
        strides=(cg * sc, sc, dh * sy, dw * sx, sh * sy, sw * sx, sn),
        writeable=False,
    )
    cols = np.empty((groups, cg * kh * kw, oh * ow * n), xp.dtype)
    np.copyto(cols.reshape(view.shape), view)
    return cols


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    stride: Pair,
    padding: Pads,
    dilation: Pair,
    groups: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``out[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · xp[n, g(o)·C/G + c, y·sh + i·dh,
    x·sw + j·dw]``; returns ``(out, saved)``, saving the columns for the weight gradient."""
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    t, bt, left, r = padding
    oh = out_size(h, kh, stride[0], t, bt, dilation[0])
    ow = out_size(wd, kw, stride[1], left, r, dilation[1])
    og, p = o // groups, oh * ow
    if p >= _PER_SAMPLE_RATIO * w[0].size:  # many pixels per column: see _conv_per_sample
        return _conv_per_sample(x, w, b, oh, ow, stride, padding, dilation, groups)
    cols = im2col(_pad_chwn(x, padding), kh, kw, oh, ow, stride, dilation, groups)
    # out_gᵀ = cols_gᵀ @ W_gᵀ: (OH·OW·N, O/G) — the product's better orientation for BLAS (see
    # _mm) — then to NCHW; with rows of O/G ≥ a cache line, in two cache-friendly copies (rows
    # first, then one image at a time: measured 0.13 vs 0.53 ms for LeNet's second layer)
    yt = np.matmul(cols.transpose(0, 2, 1), w.reshape(groups, og, -1).transpose(0, 2, 1))
    src = yt.reshape(groups, p, n, og)
    out = np.empty((n, o, oh, ow), x.dtype)
    if og * x.itemsize >= 64:
        tmp = np.empty((n, p, groups, og), x.dtype)
        np.copyto(tmp, src.transpose(2, 1, 0, 3))
        src = tmp.transpose(2, 1, 0, 3)
    if b is None:
        np.copyto(out.reshape(n, groups, og, p), src.transpose(2, 0, 3, 1))
    else:  # the bias joins the last copy (no pass of its own)
        np.add(
            src.transpose(2, 0, 3, 1), b.reshape(groups, og, 1), out=out.reshape(n, groups, og, p)
        )
    return out, {"cols": cols, "g": None, "gm": None}


#: :func:`_conv_per_sample` is used when a sample's output pixels are at least this many
#: times the rows of the columns (C/G·KH·KW)
_PER_SAMPLE_RATIO = 4.0
#: bytes of columns built at a time by the per-sample layout (they stay in the L2 cache)
_CHUNK_BYTES = 1 << 20


def _conv_per_sample(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    oh: int,
    ow: int,
    stride: Pair,
    padding: Pads,
    dilation: Pair,
    groups: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The forward of :func:`conv2d_forward` with columns laid out per sample,
    ``(N, G, C/G·KH·KW, OH·OW)``: ``out[n]_g = W_g @ cols[n, g]`` is already NCHW.

    The columns are built a few samples at a time into one block that stays in the cache, and
    are not kept: the weight gradient builds them again the same way
    (:func:`_weight_grad_per_sample`) from the strided view of the padded input that is saved
    instead (``saved["view"]``).

    # NOTE: turning the batched layout's ``(OH·OW·N, O/G)`` product into NCHW is a gather
    # that can cost as much as the product (0.8 ms for LeNet's first layer, 6 channels). Per
    # sample there is no such copy. The per-sample products are small, so this pays when a
    # sample has many output pixels per row of the columns: forward + weight gradient, 2 BLAS
    # threads, batched/per-sample time: LeNet's first layer (784 pixels, 25 rows) 1.31, 3→8
    # channels 3×3 on 32×32 1.88, depthwise 3×3 on 16×16 1.57, 16→16 3×3 on 32×32 1.14; but
    # LeNet's second layer (100 pixels, 150 rows) 0.74, 16→32 3×3 on 16×16 (256, 144) 0.94,
    # 64→64 3×3 on 8×8 0.50. Hence the rule: pixels ≥ 4 × rows. Building the columns twice
    # in the cache instead of writing them to memory once and reading them back: the LeNet
    # step 1.025× (paired A/B, 2 BLAS threads), and 5 MB less memory for its first layer.
    """
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    og, k, p = o // groups, cg * kh * kw, oh * ow
    # the weight gradient reads this again: a private copy (the padded one is), so that a
    # change of the caller's array in between — through a view, which no version counter
    # sees — cannot reach the gradient
    xp = _pad(x, padding) if any(padding) else x.copy()
    sn, sc, sy, sx = xp.strides
    (sh, sw), (dh, dw) = stride, dilation
    view = as_strided(
        xp,
        shape=(n, groups, cg, kh, kw, oh, ow),
        strides=(sn, cg * sc, sc, dh * sy, dw * sx, sh * sy, sw * sx),
        writeable=False,
    )
    out = np.empty((n, groups, og, p), x.dtype)
    wm = w.reshape(groups, og, k)
    bias = None if b is None else b.reshape(groups, og, 1)
    for n0, blk in _column_blocks(view, k, p):
        res = np.matmul(wm, blk, out=out[n0 : n0 + len(blk)])
        if bias is not None:
            res += bias
    return out.reshape(n, o, oh, ow), {"view": view, "g": None, "gm": None}


def _column_blocks(view: np.ndarray, k: int, p: int) -> Any:
    """``(n0, block)`` for consecutive samples from ``n0``: their columns ``(B, G, k, p)``
    copied from ``view`` (N, G, Cg, KH, KW, OH, OW) into one reused block of about
    :data:`_CHUNK_BYTES` (valid until the next one is made)."""
    n, groups = view.shape[:2]
    step = max(1, _CHUNK_BYTES // max(1, groups * k * p * view.itemsize))
    buf = np.empty((min(step, n), groups, k, p), view.dtype)
    for n0 in range(0, n, step):
        part = view[n0 : n0 + step]
        blk = buf[: len(part)]
        np.copyto(blk.reshape(part.shape), part)
        yield n0, blk


def _weight_grad_per_sample(g: np.ndarray, view: np.ndarray, w: np.ndarray) -> np.ndarray:
    """∂C/∂W_g = Σ_n G[n]_g @ cols[n, g]ᵀ, the columns built again block by block."""
    n, o = g.shape[:2]
    groups = view.shape[1]
    k = w[0].size
    gs = g.reshape(n, groups, o // groups, -1)
    acc = np.zeros((groups, o // groups, k), g.dtype)
    for n0, blk in _column_blocks(view, k, gs.shape[-1]):
        acc += np.matmul(gs[n0 : n0 + len(blk)], blk.swapaxes(-1, -2)).sum(axis=0)
    return acc.reshape(w.shape)


def _grad_rows(g: np.ndarray, groups: int, saved: dict[str, Any], *, keep: bool) -> np.ndarray:
    """The output gradient (N, O, OH, OW) as ``(G, O/G, OH·OW·N)`` (one copy, shared by the
    input and weight gradients of one backward pass).

    The engine calls the input rule, then the weight rule, for those that require grad. The
    input rule (``keep=True``) always copies afresh and leaves its copy for the weight rule
    (``keep=False``), which takes it (if it was made from this very ``g``) and clears it. So
    the copy does not outlive the backward pass that made it — with ``retain_graph=True`` a
    second pass may bring the same array, changed in place. (Left open: a pass where only the
    input rule ran — a frozen weight — followed by a pass over the retained graph where only
    the weight rule runs — requires_grad switched from x to the weight in between — with the
    same array changed in place would still find that copy.)
    """
    if not keep:
        cached, gm = saved["g"], saved["gm"]
        saved["g"] = saved["gm"] = None
        if cached is g:
            return gm  # type: ignore[no-any-return]
    n, o, oh, ow = g.shape
    gm = np.empty((o, oh * ow, n), g.dtype)
    np.copyto(gm, g.reshape(n, o, oh * ow).transpose(1, 2, 0))
    gm = gm.reshape(groups, o // groups, oh * ow * n)
    if keep:
        saved["g"], saved["gm"] = g, gm
    return gm


def conv2d_grad_input(
    g: np.ndarray,
    out: Any,
    saved: dict[str, Any],
    x: np.ndarray,
    w: np.ndarray,
    b: Any = None,
    *,
    stride: Pair,
    padding: Pads,
    dilation: Pair,
    groups: int,
) -> np.ndarray:
    """∂C/∂x: ``cols' = Wᵀ @ G`` per group, then col2im (KH·KW strided adds), one kernel row
    at a time.

    # NOTE: a kernel row's columns (Cg·KW rows instead of Cg·KH·KW) are added into the input
    # gradient while they are still in the cache: LeNet's second layer 2.09 vs 2.33 ms with
    # 2 BLAS threads, 2.9 vs 3.4 ms with one (its whole columns are 3.8 MB).
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    _, _, oh, ow = g.shape
    gm = _grad_rows(g, groups, saved, keep=True)
    wm = w.reshape(groups, o // groups, cg, kh, kw)
    t, bt, left, r = padding
    (sh, sw), (dh, dw) = stride, dilation
    gxp = np.zeros((groups, cg, h + t + bt, wd + left + r, n), x.dtype)
    buf = np.empty((groups, cg * kw, oh * ow * n), x.dtype)
    for i in range(kh):
        wi = wm[:, :, :, i, :].reshape(groups, o // groups, cg * kw)
        gcols = np.matmul(wi.transpose(0, 2, 1), gm, out=buf).reshape(groups, cg, kw, oh, ow, n)
        r0 = i * dh
        for j in range(kw):
            c0 = j * dw
            gxp[:, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw] += gcols[
                :, :, j
            ]
    gx = np.empty((n, c, h, wd), x.dtype)
    np.copyto(gx, gxp.reshape(c, h + t + bt, wd + left + r, n)[:, t : t + h, left : left + wd]
              .transpose(3, 0, 1, 2))  # fmt: skip
    return gx


def conv2d_grad_weight(
    g: np.ndarray,
    out: Any,
    saved: dict[str, Any],
    x: Any,
    w: np.ndarray,
    b: Any = None,
    **attrs: Any,
) -> np.ndarray:
    """∂C/∂W = G @ colsᵀ per group (one GEMM over the batch and all output pixels)."""
    groups = attrs["groups"]
    if "view" in saved:  # the per-sample layout (_conv_per_sample)
        saved["g"] = saved["gm"] = None  # the input rule's copy is not used: let it go
        return _weight_grad_per_sample(g, saved["view"], w)
    gm = _grad_rows(g, groups, saved, keep=False)
    return _mm(gm, saved["cols"].transpose(0, 2, 1)).reshape(w.shape)


def conv2d_grad_bias(
    g: np.ndarray, out: Any, cols: Any, x: Any, w: Any, b: Any, **attrs: Any
) -> Any:
    """∂C/∂b[o] = Σ_{n,y,x} ∂C/∂out[n, o, y, x]."""
    return g.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------
def _windows(xp: np.ndarray, kernel: Pair, oh: int, ow: int, stride: Pair, dilation: Pair) -> Any:
    """The pooling windows of ``xp`` (N, C, Hp, Wp) as a ``(KH·KW, N, C, OH, OW)`` copy: one
    contiguous array per kernel offset, so that the per-offset work runs on contiguous data."""
    n, c = xp.shape[:2]
    kh, kw = kernel
    sn, sc, sy, sx = xp.strides
    (sh, sw), (dh, dw) = stride, dilation
    view = as_strided(
        xp,
        shape=(kh, kw, n, c, oh, ow),
        strides=(dh * sy, dw * sx, sn, sc, sh * sy, sw * sx),
        writeable=False,
    )
    return np.ascontiguousarray(view).reshape(kh * kw, n, c, oh, ow)


def max_pool2d_forward(
    x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pads, dilation: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """``out[n, c, y, x] = max_{i,j} xp[n, c, y·sh + i·dh, x·sw + j·dw]`` (padding is -∞);
    returns ``(out, windows)``: the windows are saved for the rule, which finds the arg-max."""
    _n, _c, h, wd = x.shape
    kh, kw = kernel
    t, bt, left, r = padding
    oh = out_size(h, kh, stride[0], t, bt, dilation[0])
    ow = out_size(wd, kw, stride[1], left, r, dilation[1])
    win = _windows(_pad(x, padding, -np.inf), kernel, oh, ow, stride, dilation)
    out = win[0].copy()
    for k in range(1, kh * kw):
        np.maximum(out, win[k], out=out)  # propagates NaN, as PyTorch
    return out, win


def max_pool2d_grad(
    g: np.ndarray,
    out: np.ndarray,
    win: np.ndarray,
    x: np.ndarray,
    *,
    kernel: Pair,
    stride: Pair,
    padding: Pads,
    dilation: Pair,
) -> np.ndarray:
    """The gradient goes to the arg-max of each window (summed where windows overlap).

    The arg-max is the first offset (row-major) holding the maximum, and for a window with a
    NaN its last NaN, as PyTorch's CPU kernel (it replaces the running maximum when
    ``v > max or isnan(v)``). Padding never takes it: a window whose maximum is -∞ gives its
    gradient to its first element inside the input, as PyTorch.
    """
    n, c, h, wd = x.shape
    kh, kw = kernel
    t, bt, left, r = padding
    oh, ow = g.shape[2:]
    nan_out = np.isnan(out)
    has_nan = bool(nan_out.any())
    inside = None  # (KH·KW, 1, 1, OH, OW): which window cells are input, not padding
    if any(padding) and bool(np.isneginf(out).any()):
        ones = np.ones((1, 1, h, wd), bool)
        inside = _windows(_pad(ones, padding, False), kernel, oh, ow, stride, dilation)
    hit = np.empty(out.shape, bool)
    taken = np.zeros(out.shape, bool)  # windows whose arg-max is already found
    disjoint = stride[0] >= (kh - 1) * dilation[0] + 1 and stride[1] >= (kw - 1) * dilation[1] + 1
    # windows that tile the input exactly (no padding, no gaps) write every cell once
    tiled = (stride, dilation, padding) == (kernel, (1, 1), (0, 0, 0, 0)) and (
        oh * kh, ow * kw) == (h, wd)  # fmt: skip
    shape = (n, c, h + t + bt, wd + left + r)
    gxp = np.empty(shape, x.dtype) if tiled else np.zeros(shape, x.dtype)
    last = kh * kw - 1
    for k in range(kh * kw):
        np.equal(win[k], out, out=hit)
        if inside is not None:
            hit &= inside[k]
        if k:
            np.greater(hit, taken, out=hit)  # hit and not taken
        if k < last:
            taken |= hit
        if has_nan:  # the last NaN of a window takes it
            later = np.zeros(out.shape, bool)
            for k2 in range(k + 1, kh * kw):
                later |= np.isnan(win[k2])
            hit |= np.isnan(win[k]) & ~later & nan_out
        blk = _offset_view(gxp, k // kw, k % kw, oh, ow, stride, dilation)
        if disjoint:
            np.multiply(g, hit, out=blk)
        else:
            blk += g * hit
    return gxp[:, :, t : t + h, left : left + wd]


def _avg_divisor(
    shape: tuple[int, int],
    kernel: Pair,
    stride: Pair,
    padding: Pads,
    counted: Pads,
    divisor_override: int | None,
    dtype: Any,
) -> Any:
    """The number each window's sum is divided by: ``divisor_override`` if given, else the
    number of the window's cells inside the counted region — the input grown by ``counted``
    (the padding with ``count_include_pad=True``, none otherwise). Cells added only to fit
    ``ceil_mode``'s last window are never counted (PyTorch's rule)."""
    if divisor_override is not None:
        return dtype.type(divisor_override)
    kh, kw = kernel
    if counted == padding:
        return dtype.type(kh * kw)
    h, w = shape
    t, b, left, r = padding
    ct, cb, cl, cr = counted
    mask = np.zeros((1, 1, h + t + b, w + left + r), np.float64)
    mask[..., t - ct : t + h + cb, left - cl : left + w + cr] = 1.0
    oh = out_size(h, kh, stride[0], t, b, 1)
    ow = out_size(w, kw, stride[1], left, r, 1)
    count = sum(
        _offset_view(mask, i, j, oh, ow, stride, (1, 1)) for i in range(kh) for j in range(kw)
    )
    return np.asarray(count, dtype)


def avg_pool2d_forward(
    x: np.ndarray,
    *,
    kernel: Pair,
    stride: Pair,
    padding: Pads,
    counted: Pads,
    divisor_override: int | None,
) -> np.ndarray:
    """``out[n, c, y, x] = Σ_{i,j} xp[n, c, y·sh + i, x·sw + j] / divisor`` (zero padding;
    the divisor of :func:`_avg_divisor`)."""
    _n, _c, h, wd = x.shape
    kh, kw = kernel
    t, bt, left, r = padding
    oh = out_size(h, kh, stride[0], t, bt, 1)
    ow = out_size(wd, kw, stride[1], left, r, 1)
    xp = _pad(x, padding)
    out = np.array(_offset_view(xp, 0, 0, oh, ow, stride, (1, 1)))
    for k in range(1, kh * kw):
        out += _offset_view(xp, k // kw, k % kw, oh, ow, stride, (1, 1))
    out /= _avg_divisor((h, wd), kernel, stride, padding, counted, divisor_override,
                        x.dtype)  # fmt: skip
    return out


def avg_pool2d_grad(
    g: np.ndarray,
    out: Any,
    x: np.ndarray,
    *,
    kernel: Pair,
    stride: Pair,
    padding: Pads,
    counted: Pads,
    divisor_override: int | None,
) -> np.ndarray:
    """Each window spreads ``∂C/∂out / divisor`` evenly over its elements."""
    n, c, h, wd = x.shape
    kh, kw = kernel
    t, bt, left, r = padding
    oh, ow = g.shape[2:]
    gd = g / _avg_divisor((h, wd), kernel, stride, padding, counted, divisor_override,
                          g.dtype)  # fmt: skip
    gxp = np.zeros((n, c, h + t + bt, wd + left + r), g.dtype)
    for k in range(kh * kw):
        _offset_view(gxp, k // kw, k % kw, oh, ow, stride, (1, 1))[...] += gd
    return gxp[:, :, t : t + h, left : left + wd]


def adaptive_matrix(n_in: int, n_out: int, dtype: Any) -> np.ndarray:
    """``P`` (n_out, n_in) with ``P[i, k] = 1/(e_i - s_i)`` for ``s_i ≤ k < e_i``,
    ``s_i = ⌊i·n_in/n_out⌋``, ``e_i = ⌈(i+1)·n_in/n_out⌉`` (PyTorch's adaptive bins)."""
    p = np.zeros((n_out, n_in), dtype)
    for i in range(n_out):
        s, e = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        p[i, s:e] = 1.0 / (e - s)
    return p


def adaptive_avg_pool2d_forward(x: np.ndarray, *, output_size: Pair) -> np.ndarray:
    """``out[n, c, i, j]`` = mean of ``x[n, c, s_i:e_i, s_j:e_j]`` over the bins of
    :func:`adaptive_matrix`, one axis after the other (a NaN or inf stays in the bins that hold
    it, as PyTorch; for output size 1 this is the mean over H and W)."""
    oh, ow = output_size
    if oh == 1 and ow == 1:
        return x.mean(axis=(2, 3), keepdims=True)
    out = _adaptive_mean(_adaptive_mean(x, 2, oh), 3, ow)
    return out.copy() if out is x else out


def adaptive_avg_pool2d_grad(g: np.ndarray, out: Any, x: np.ndarray, *, output_size: Pair) -> Any:
    """``∂C/∂x[n, c] = P_Hᵀ @ ∂C/∂out[n, c] @ P_W``: each bin's gradient divided by its size
    and added to the inputs of that bin (bins may overlap), one axis after the other."""
    oh, ow = output_size
    h, w = x.shape[2:]
    if oh == 1 and ow == 1:
        return np.broadcast_to(g / g.dtype.type(h * w), x.shape)
    grad = _adaptive_spread(_adaptive_spread(g, 3, w), 2, h)
    return grad.copy() if grad is g else grad


# ----- adaptive average pooling, one axis at a time (helpers of adaptive_avg_pool2d_*) -----
def _adaptive_bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins ``[⌊i·n_in/n_out⌋, ⌈(i+1)·n_in/n_out⌉)`` for ``i < n_out``."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _adaptive_mean(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Mean of each adaptive bin along ``axis``: ``Σ_j x[s_i + j] / |bin i|`` summed over the
    offsets ``j`` (one gather per offset, the bins that are shorter masked out — never a
    product with a dense 0/1 matrix, whose ``0·inf`` would spread a NaN to every bin)."""
    n_in = x.shape[axis]
    if n_out == n_in:
        return x
    starts, sizes, shape = _bin_arrays(n_in, n_out, x.ndim, axis)
    total = np.take(x, starts, axis=axis)
    for j in range(1, int(sizes.max())):
        part = np.take(x, np.minimum(starts + j, n_in - 1), axis=axis)
        short = sizes <= j
        if short.any():
            part = np.where(short.reshape(shape), x.dtype.type(0), part)
        total += part
    total /= sizes.astype(x.dtype).reshape(shape)
    return total


def _adaptive_spread(g: np.ndarray, axis: int, n_in: int) -> np.ndarray:
    """The transpose of :func:`_adaptive_mean`: ``g[i] / |bin i|`` added over bin ``i``."""
    n_out = g.shape[axis]
    if n_out == n_in:
        return g
    starts, sizes, shape = _bin_arrays(n_in, n_out, g.ndim, axis)
    scaled = g / sizes.astype(g.dtype).reshape(shape)
    grad_shape = list(g.shape)
    grad_shape[axis] = n_in
    grad = np.zeros(grad_shape, g.dtype)
    distinct = bool(np.all(np.diff(starts) > 0))  # no two bins start together (n_out <= n_in)
    for j in range(int(sizes.max())):
        bins = np.flatnonzero(sizes > j)
        cells = starts[bins] + j
        steps = np.diff(cells)
        at: Any
        if len(cells) == 1 or (steps[0] > 0 and np.all(steps == steps[0])):  # a strided slice
            step = int(steps[0]) if len(cells) > 1 else 1
            at = (slice(None),) * axis + (slice(int(cells[0]), int(cells[-1]) + 1, step),)
        else:
            at = (slice(None),) * axis + (cells,)
        part = scaled if len(bins) == n_out else np.take(scaled, bins, axis=axis)
        if distinct:
            grad[at] += part
        else:  # bins of an upsampling share cells: add every one
            np.add.at(grad, at, part)
    return grad


def _bin_arrays(n_in: int, n_out: int, ndim: int, axis: int) -> tuple[Any, Any, list[int]]:
    """Starts and sizes of the adaptive bins, and the shape that broadcasts them on ``axis``."""
    bins = _adaptive_bins(n_in, n_out)
    shape = [1] * ndim
    shape[axis] = n_out
    starts = np.array([b[0] for b in bins], np.intp)
    return starts, np.array([b[1] - b[0] for b in bins], np.intp), shape
