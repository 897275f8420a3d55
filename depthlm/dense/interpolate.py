"""Sparse answers -> a dense map, guided by the photo so depth steps stay at colour edges.

``jbu`` (default): joint bilateral upsampling (Kopf et al., SIGGRAPH 2007) over scattered
samples. Each pixel takes the k nearest answered samples (SciPy's cKDTree) and averages their
depths with weights exp(-d^2 / 2 sigma_s^2) * exp(-|I_p - I_q|^2 / 2 sigma_r^2): distance in
pixels and colour difference to the photo at the sample. Across a colour edge the far side's
samples get almost no weight, so a foreground object does not bleed into the wall behind it:
few pixels land between the two surfaces ("flying points"), which is what the paper's
point-cloud figures show off. Samples may lie anywhere (grid or adaptive), no mesh needed.

``linear``: SciPy ``griddata`` on the Delaunay triangulation, nearest outside the hull:
smooth but blends across depth steps (the baseline the flying-point measure shows up).
``nearest``: Voronoi cells, for debugging.

Why not OpenCV's ximgproc (fast global smoother, joint bilateral filter): it lives in
``opencv-contrib-python-headless`` (69 MB wheel), which installs the same ``cv2`` package as
the ``opencv-python-headless`` that vLLM depends on, so the two overwrite each other in one
environment. SciPy is already a dependency.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import interpolate, ndimage, spatial

from depthlm.errors import DepthLMError

METHODS = ("jbu", "linear", "nearest")
CHUNK_PIXELS = 1 << 18  # pixels per KD-tree query batch: memory bounded for any photo size


def densify(
    points: np.ndarray,
    values: np.ndarray,
    guide: Image.Image,
    method: str = "jbu",
    *,
    neighbours: int = 8,
    sigma_colour: float = 0.08,
    sigma_space: float | None = None,
) -> np.ndarray:
    """(H, W) float32 map of `values` (N,) known at `points` (N, 2, x/y pixels of `guide`).
    Points with a non-finite value are ignored; NaN everywhere when none is left.

    sigma_colour: colour difference (RGB in 0..1, Euclidean) at which a sample's weight falls
    to exp(-1/2); sigma_space: pixels, default the median spacing between samples."""
    if method not in METHODS:
        raise DepthLMError(f"unknown interpolation {method!r}; known: {', '.join(METHODS)}")
    w, h = guide.size
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(vals)
    pts, vals = pts[keep], vals[keep]
    if len(vals) == 0:
        return np.full((h, w), np.nan, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
    if method == "nearest" or len(vals) < 3:
        idx = spatial.cKDTree(pts).query(pixels, k=1)[1]
        return vals[idx].reshape(h, w).astype(np.float32)
    if method == "linear":
        out = interpolate.griddata(pts, vals, pixels, method="linear")
        hole = ~np.isfinite(out)
        if hole.any():
            out[hole] = interpolate.griddata(pts, vals, pixels[hole], method="nearest")
        return out.reshape(h, w).astype(np.float32)
    return _joint_bilateral(pts, vals, guide, pixels, neighbours, sigma_colour, sigma_space)


def _joint_bilateral(
    pts: np.ndarray,
    vals: np.ndarray,
    guide: Image.Image,
    pixels: np.ndarray,
    neighbours: int,
    sigma_colour: float,
    sigma_space: float | None,
) -> np.ndarray:
    w, h = guide.size
    rgb = np.asarray(guide.convert("RGB"), dtype=np.float32) / 255.0
    rgb = ndimage.median_filter(rgb, size=(3, 3, 1))  # noise must not look like an edge; edges stay sharp
    tree = spatial.cKDTree(pts)
    k = min(neighbours, len(vals))
    if sigma_space is None:
        spacing = tree.query(pts, k=2)[0][:, 1]
        sigma_space = float(np.median(spacing)) if len(pts) > 1 else float(max(w, h))
    ix = np.clip(np.rint(pts).astype(int), 0, [w - 1, h - 1])
    sample_rgb = rgb[ix[:, 1], ix[:, 0]]  # (N, 3)
    flat_rgb = rgb.reshape(-1, 3)
    out = np.empty(len(pixels), dtype=np.float64)
    for start in range(0, len(pixels), CHUNK_PIXELS):
        stop = min(start + CHUNK_PIXELS, len(pixels))
        dist, idx = tree.query(pixels[start:stop], k=k)
        dist, idx = dist.reshape(stop - start, k), idx.reshape(stop - start, k)
        diff = ((sample_rgb[idx] - flat_rgb[start:stop, None, :]) ** 2).sum(-1)
        spatial_w = np.exp(-(dist**2) / (2 * sigma_space**2))
        weight = spatial_w * np.exp(-diff / (2 * sigma_colour**2))
        # A pixel unlike every nearby sample (a small object between grid points) falls back
        # to the spatial weights rather than dividing by ~0.
        weight += 1e-6 * spatial_w + 1e-300
        out[start:stop] = (weight * vals[idx]).sum(1) / weight.sum(1)
    return out.reshape(h, w).astype(np.float32)
