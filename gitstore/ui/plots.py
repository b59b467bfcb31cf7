"""Small pictures of data, drawn here without a plotting library: a line plot as SVG text, an
image (a 2-D array) or a scatter (pairs of numbers, a spike raster) as PNG bytes (numpy and
zlib only). Every picture has a bounded size whatever the data's: long series are reduced to
their minimum and maximum per pixel column, large arrays to block means.
"""

from __future__ import annotations

import struct
import zlib
from html import escape
from typing import Any

__all__ = ["image_png", "line_svg", "scatter_png", "is_numeric_array"]

WIDTH, HEIGHT = 640, 240
#: an image is at most this many pixels on each side
MAX_SIDE = 480
# viridis at nine stops (matplotlib's, public domain): a perceptually even colour scale
_VIRIDIS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
            (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]


def is_numeric_array(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size > 0


def _finite(a: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    return a[np.isfinite(a)]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def line_svg(values: Any, title: str = "") -> str:
    """A line plot of a 1-D sequence of numbers, as SVG text (non-finite values are gaps in
    the scale, drawn at the bottom); more points than pixels become a min/max envelope."""
    import numpy as np

    y = np.asarray(values, dtype=np.float64).ravel()
    n = len(y)
    fin = _finite(y)
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    left, right, top, bottom = 56, 12, 14, 28
    pw, ph = WIDTH - left - right, HEIGHT - top - bottom
    y = np.where(np.isfinite(y), y, lo)
    if n > pw:  # one column per pixel: its minimum and maximum, in order
        edges = np.linspace(0, n, pw + 1).astype(np.int64)
        mins = np.minimum.reduceat(y, edges[:-1])
        maxs = np.maximum.reduceat(y, edges[:-1])
        xs = np.repeat(np.arange(pw, dtype=np.float64), 2)
        ys = np.empty(2 * pw)
        ys[0::2], ys[1::2] = mins, maxs
    else:
        xs = np.arange(n, dtype=np.float64) * (pw / max(n - 1, 1))
        ys = y
    px = left + xs
    py = top + ph - (ys - lo) / (hi - lo) * ph
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), py.tolist()))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfcfe" '
        'stroke="#c8ccd4"/>'
        f'<polyline fill="none" stroke="#2659b3" stroke-width="1" points="{points}"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_fmt(hi)}</text>'
        f'<text x="{left - 4}" y="{top + ph}" text-anchor="end">{_fmt(lo)}</text>'
        f'<text x="{left}" y="{HEIGHT - 10}">0</text>'
        f'<text x="{left + pw}" y="{HEIGHT - 10}" text-anchor="end">{n - 1}</text>'
        "</svg>")


def _colour(t: Any) -> Any:
    """RGB (uint8, shape + (3,)) of values in [0, 1] on the viridis scale."""
    import numpy as np

    stops = np.array(_VIRIDIS, dtype=np.float64)
    pos = np.clip(t, 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    frac = (pos - i)[..., None]
    return (stops[i] * (1 - frac) + stops[i + 1] * frac).round().astype(np.uint8)


def image_png(array: Any) -> bytes:
    """A 2-D array as a viridis image (rows top to bottom), reduced to block means so that
    neither side exceeds :data:`MAX_SIDE` pixels, and each side is at least 64 pixels (small
    arrays are scaled up by repeating pixels)."""
    import numpy as np

    a = np.asarray(array, dtype=np.float64)
    rows, cols = a.shape
    fy = fx = -(-max(rows, cols) // MAX_SIDE)  # one factor: the picture keeps its aspect
    if fy > 1 or fx > 1:
        pad_r, pad_c = (-rows) % fy, (-cols) % fx
        a = np.pad(a, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        with np.errstate(all="ignore"):
            blocks = a.reshape(a.shape[0] // fy, fy, a.shape[1] // fx, fx)
            good = np.isfinite(blocks)
            a = np.where(good, blocks, 0.0).sum(axis=(1, 3)) / np.maximum(good.sum(axis=(1, 3)), 1)
            a[good.sum(axis=(1, 3)) == 0] = np.nan
    fin = _finite(a)
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    with np.errstate(all="ignore"):
        t = (a - lo) / (hi - lo) if hi > lo else np.full(a.shape, 0.5)
    rgb = _colour(np.where(np.isfinite(t), t, 0.0))
    rgb[~np.isfinite(a)] = (255, 255, 255)
    up = max(1, 64 // max(1, min(rgb.shape[:2])))
    up = min(up, MAX_SIDE // max(rgb.shape[:2]) or 1)
    if up > 1:
        rgb = rgb.repeat(up, axis=0).repeat(up, axis=1)
    return _png(rgb)


def scatter_png(x: Any, y: Any) -> bytes:
    """Pairs of numbers as dots (a spike raster: times against neuron indices), on a
    :data:`WIDTH` × :data:`HEIGHT` canvas, every point drawn."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    canvas = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    if x.size:
        def scale(v: Any, n: int) -> Any:
            lo, hi = float(v.min()), float(v.max())
            if hi == lo:
                return np.full(v.shape, n // 2, dtype=np.int64)
            return ((v - lo) / (hi - lo) * (n - 1)).round().astype(np.int64)

        cx, cy = scale(x, WIDTH), (HEIGHT - 1) - scale(y, HEIGHT)
        canvas[cy, cx] = (38, 89, 179)
    return _png(canvas)


def _png(rgb: Any) -> bytes:
    """RGB uint8 pixels (rows, cols, 3) as PNG bytes (filter 0 on every row)."""
    import numpy as np

    rows, cols = rgb.shape[:2]
    raw = np.concatenate([np.zeros((rows, 1), dtype=np.uint8),
                          np.ascontiguousarray(rgb, dtype=np.uint8).reshape(rows, cols * 3)],
                         axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
