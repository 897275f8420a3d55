"""Which pixels a dense run asks about: a regular grid, or an adaptive set.

A grid is what a depth benchmark expects (even coverage, reproducible). The adaptive set
spends half its points on an even grid (coverage) and half where a dense map goes wrong:
near image edges, where depth steps usually are, and inside a user's target box. Both return
pixel centres (x column, y row) as float64 (N, 2), in the photo's own pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from depthlm.errors import DepthLMError

Box = tuple[int, int, int, int]  # inclusive pixel box x0, y0, x1, y1


def parse_grid(text: str) -> tuple[int, int]:
    """``"32x24"`` -> (columns, rows)."""
    try:
        cols, rows = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise DepthLMError(f"--grid {text!r}: expected COLUMNSxROWS, e.g. 32x24") from None
    if not (1 <= cols <= 4096 and 1 <= rows <= 4096):
        raise DepthLMError(f"--grid {text!r}: columns and rows must be 1..4096")
    return cols, rows


def parse_box(text: str, size: tuple[int, int]) -> Box:
    """``"x0,y0,x1,y1"`` (inclusive pixels of the photo) checked against the photo's size."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise DepthLMError(f"--box {text!r}: expected x0,y0,x1,y1 in pixels") from None
    return check_box((x0, y0, x1, y1), size)


def check_box(box: Sequence[int], size: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = size
    if not (0 <= x0 < x1 < w and 0 <= y0 < y1 < h):
        raise DepthLMError(
            f"box {x0},{y0},{x1},{y1} must satisfy 0 <= x0 < x1 < {w} and 0 <= y0 < y1 < {h} (the photo's size)"
        )
    return x0, y0, x1, y1


def grid_points(size: tuple[int, int], grid: tuple[int, int], box: Box | None = None) -> np.ndarray:
    """cols x rows pixels at the centres of equal cells of the image (or of `box`), row-major."""
    cols, rows = grid
    x0, y0, x1, y1 = box if box is not None else (0, 0, size[0] - 1, size[1] - 1)
    xs = np.floor(x0 + (np.arange(cols) + 0.5) * (x1 - x0 + 1) / cols)
    ys = np.floor(y0 + (np.arange(rows) + 0.5) * (y1 - y0 + 1) / rows)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    _, first = np.unique(pts, axis=0, return_index=True)  # a grid finer than the pixels repeats some
    return pts[np.sort(first)]


def adaptive_points(
    image: Image.Image, n: int, box: Box | None = None, seed: int = 0, edge_weight: float = 8.0
) -> np.ndarray:
    """About `n` pixels: half on an even grid, half drawn (without replacement, seeded) with
    probability rising with the image gradient (Sobel of grey, normalised) and, with `box`,
    half of those inside the box."""
    if n < 4:
        raise DepthLMError(f"an adaptive set needs at least 4 points, got {n}")
    w, h = image.size
    base_n = max(4, n // 2)
    cols = max(2, round(math.sqrt(base_n * w / h)))
    rows = max(2, round(base_n / cols))
    base = grid_points((w, h), (cols, rows))
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    grad = np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1))
    grad = ndimage.maximum_filter(grad, size=3)  # both sides of an edge
    weight = 1.0 + edge_weight * grad / max(float(grad.max()), 1e-9)
    rng = np.random.default_rng(seed)
    taken = np.zeros((h, w), dtype=bool)
    taken[base[:, 1].astype(int), base[:, 0].astype(int)] = True
    extra_n = max(0, n - len(base))
    parts = [base]
    if box is not None:
        x0, y0, x1, y1 = box
        inside = np.zeros_like(taken)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        parts.append(_draw(weight * inside, taken, extra_n // 2, rng))
        extra_n -= len(parts[-1])
    parts.append(_draw(weight, taken, extra_n, rng))
    return np.concatenate(parts, axis=0)


def _draw(weight: np.ndarray, taken: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    p = np.where(taken, 0.0, weight).ravel()
    k = min(k, int((p > 0).sum()))
    if k <= 0:
        return np.zeros((0, 2))
    flat = rng.choice(p.size, size=k, replace=False, p=p / p.sum())
    taken.ravel()[flat] = True
    ys, xs = np.divmod(flat, taken.shape[1])
    return np.stack([xs, ys], 1).astype(np.float64)
