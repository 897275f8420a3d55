"""Scoring dense maps like the depth models they compete with.

``dense_metrics``: ``depthlm.metrics.depth_metrics`` (delta1..3, AbsRel, RMSE, ...) over every
pixel with valid ground truth (finite, > 0); a pixel the map leaves empty counts as a miss.

``region_metrics`` (FDE-Bench, the FocusDepth paper's region scores): for each target mask,
delta1 and AbsRel over
- ``foreground``: the mask's pixels;
- ``boundary``: a band of ``band`` (10) pixels around the mask's contour, both sides: every
  pixel whose Euclidean distance to the nearest pixel of the other side (mask vs not mask) is
  at most ``band``;
- ``global``: every valid pixel of the image;
each restricted to valid ground truth, then the median over targets per region and metric.

``flying_points``: the paper's boundary claim, measured. Depth edges are pixels whose ground
truth differs by more than ``edge_ratio`` (1.25 = 25 %) from a 4-neighbour. Around each edge
pixel, the nearest and farthest ground truth within ``radius`` (2) pixels bound the two
surfaces; the predicted pixel is *flying* when it lies between them, more than ``tolerance``
(5 %) away from both: a point floating in the empty space between foreground and background,
the artefact interpolation across edges makes. ``flying_rate`` = flying / edge pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from depthlm.errors import DepthLMError
from depthlm.metrics import depth_metrics

REGIONS = ("foreground", "boundary", "global")
BAND_PX = 10


def _valid(gt: np.ndarray) -> np.ndarray:
    return np.isfinite(gt) & (gt > 0)


def _check(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise DepthLMError(f"predicted map is {p.shape[::-1]}, ground truth {g.shape[::-1]}")
    return p, g


def dense_metrics(pred: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> dict:
    """depth_metrics over the pixels with valid ground truth (and `where`, when given)."""
    p, g = _check(pred, gt)
    sel = _valid(g) if where is None else _valid(g) & np.asarray(where, dtype=bool)
    return depth_metrics(p[sel], g[sel])


def boundary_band(mask: np.ndarray, band: int = BAND_PX) -> np.ndarray:
    """Pixels within `band` px (Euclidean) of the other side of the mask's contour."""
    m = np.asarray(mask, dtype=bool)
    if not m.any() or m.all():
        return np.zeros_like(m)
    inside = ndimage.distance_transform_edt(m)  # distance to the nearest background pixel
    outside = ndimage.distance_transform_edt(~m)  # distance to the nearest mask pixel
    return np.where(m, inside, outside) <= band


def region_metrics(
    pred: np.ndarray, gt: np.ndarray, masks: Sequence[np.ndarray], band: int = BAND_PX
) -> dict:
    """Per-target foreground/boundary/global delta1 and abs_rel and their medians over targets."""
    p, g = _check(pred, gt)
    per_target = []
    for mask in masks:
        m = np.asarray(mask, dtype=bool)
        if m.shape != g.shape:
            raise DepthLMError(f"target mask is {m.shape[::-1]}, ground truth {g.shape[::-1]}")
        regions = {"foreground": m, "boundary": boundary_band(m, band), "global": np.ones_like(m)}
        row = {}
        for name, where in regions.items():
            scores = dense_metrics(p, g, where)
            row[name] = {"delta1": scores["delta1"], "abs_rel": scores["abs_rel"], "n": scores["n"]}
        per_target.append(row)
    median = {
        name: {
            metric: (
                float(np.nanmedian([t[name][metric] for t in per_target])) if per_target else float("nan")
            )
            for metric in ("delta1", "abs_rel")
        }
        for name in REGIONS
    }
    return {"targets": len(per_target), "median": median, "per_target": per_target, "band_px": band}


def depth_edges(gt: np.ndarray, edge_ratio: float = 1.25) -> np.ndarray:
    """Pixels with valid ground truth and a valid 4-neighbour more than edge_ratio nearer/farther."""
    g = np.asarray(gt, dtype=np.float64)
    ok = _valid(g)
    edge = np.zeros(g.shape, dtype=bool)
    for axis in (0, 1):
        a = np.take(g, range(g.shape[axis] - 1), axis=axis)
        b = np.take(g, range(1, g.shape[axis]), axis=axis)
        both = np.take(ok, range(g.shape[axis] - 1), axis=axis) & np.take(
            ok, range(1, g.shape[axis]), axis=axis
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            step = both & (np.maximum(a / b, b / a) > edge_ratio)
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= step
        edge[tuple(hi)] |= step
    return edge


def flying_points(
    pred: np.ndarray, gt: np.ndarray, *, edge_ratio: float = 1.25, radius: int = 2, tolerance: float = 0.05
) -> dict:
    """Share of depth-edge pixels whose prediction floats between the two surfaces (module doc)."""
    p, g = _check(pred, gt)
    edge = depth_edges(g, edge_ratio)
    size = 2 * radius + 1
    near = ndimage.minimum_filter(np.where(_valid(g), g, np.inf), size=size, mode="constant", cval=np.inf)
    far = ndimage.maximum_filter(np.where(_valid(g), g, -np.inf), size=size, mode="constant", cval=-np.inf)
    with np.errstate(invalid="ignore"):
        flying = edge & np.isfinite(p) & (p > near * (1 + tolerance)) & (p < far * (1 - tolerance))
    n = int(edge.sum())
    return {
        "edge_pixels": n,
        "flying_pixels": int(flying.sum()),
        "flying_rate": float(flying.sum() / n) if n else float("nan"),
        "edge_ratio": edge_ratio,
        "radius_px": radius,
        "tolerance": tolerance,
    }
