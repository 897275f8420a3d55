"""Which labelled pixels of a frame become query points, and why the others do not.

Every input label (a pixel of a dense depth map, or one sparse LiDAR/reference point)
ends up in exactly one bucket: sampled, valid but not sampled, or rejected for the first
reason that applies, in this order:

1. ``no depth`` -- not finite or not positive;  ``outside image`` (sparse only);
2. ``invalid mask`` -- the source's validity mask says no (e.g. iBims-1 transparent areas);
3. ``below min depth`` / ``above max depth`` -- z-depth outside the requested range;
4. ``near border`` -- within `border` pixels of the image edge;
5. ``depth discontinuity`` -- the z-depths in the (2r+1)^2 neighbourhood spread more than
   `edge_threshold` times the pixel's own depth: labels at object boundaries are unreliable
   (mixed pixels, LiDAR-camera parallax). Dense maps use their valid neighbours; sparse
   frames use the other sparse points that fall in the neighbourhood (a point with no
   neighbour passes, as nothing contradicts it).

So kept + unsampled + rejected = input, always. Depths are converted to z-depth with
depthlm.geometry.convert_depth (the one conversion point) before any test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from depthlm.geometry import DepthType, Intrinsics, convert_depth, inside

MODES = ("uniform", "stratified")


@dataclass(frozen=True)
class SamplingConfig:
    points_per_image: int = 1  # 0 keeps every valid label
    mode: str = "uniform"  # or "stratified": balance near and far (log-depth bins)
    min_depth: float = 0.0  # metres of z-depth
    max_depth: float | None = None
    edge_threshold: float = 0.1  # relative depth spread in the neighbourhood; 0 disables the test
    edge_radius: int = 1
    border: int = 0  # pixels
    bins: int = 8  # log-depth bins of the stratified mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown sampling mode {self.mode!r} (expected one of {', '.join(MODES)})")
        if self.points_per_image < 0:
            raise ValueError(f"points_per_image must be >= 0, got {self.points_per_image}")


@dataclass
class Selection:
    points: np.ndarray  # (k, 2) pixel (x, y)
    depths: np.ndarray  # (k,) z-depth, metres
    n_input: int
    n_unsampled: int
    rejected: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> input indices (flat)

    @property
    def n_rejected(self) -> int:
        return sum(len(v) for v in self.rejected.values())


def sample_dense(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    depth_type: DepthType,
    cfg: SamplingConfig,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> Selection:
    """Sample query pixels from an (H, W) depth map; rejected indices are flat pixel indices."""
    h, w = depth.shape
    d = np.asarray(depth, dtype=np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    z = d.ravel()
    status = np.zeros(h * w, dtype=np.int8)  # 0 = still a candidate; k = reason k
    reasons: list[str] = []

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & (status == 0)
        reasons.append(reason)
        status[mask] = len(reasons)

    with np.errstate(invalid="ignore"):
        reject(~np.isfinite(z) | (z <= 0), "no depth")
    if valid is not None:
        reject(~np.asarray(valid, dtype=bool).ravel(), "invalid mask")
    ok = status == 0
    z = np.where(ok, z, np.nan)
    if depth_type != "z":
        z[ok] = convert_depth(z[ok], pixels[ok], intrinsics, depth_type, "z")
    _reject_range_border(z, pixels, intrinsics, cfg, reject, status)
    if cfg.edge_threshold > 0:
        zmap = z.reshape(h, w)
        spread = _spread(zmap, cfg.edge_radius)
        with np.errstate(invalid="ignore"):
            reject((spread.ravel() > cfg.edge_threshold * z), "depth discontinuity")
    return _finish(pixels, z, status, reasons, cfg, rng)


def sample_sparse(
    points: np.ndarray,
    depths: np.ndarray,
    intrinsics: Intrinsics,
    depth_type: DepthType,
    cfg: SamplingConfig,
    rng: np.random.Generator,
) -> Selection:
    """Sample query points among sparse labelled pixels (LiDAR projections, reference points)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(depths, dtype=np.float64).reshape(-1).copy()
    if len(z) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(z)} depths")
    status = np.zeros(len(z), dtype=np.int8)
    reasons: list[str] = []

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & (status == 0)
        reasons.append(reason)
        status[mask] = len(reasons)

    with np.errstate(invalid="ignore"):
        reject(~np.isfinite(z) | (z <= 0), "no depth")
    finite = np.all(np.isfinite(pts), axis=1)
    reject(~finite | ~inside(np.where(finite[:, None], pts, -1e9), intrinsics.size), "outside image")
    ok = status == 0
    z = np.where(ok, z, np.nan)
    if depth_type != "z":
        z[ok] = convert_depth(z[ok], pts[ok], intrinsics, depth_type, "z")
    _reject_range_border(z, pts, intrinsics, cfg, reject, status)
    if cfg.edge_threshold > 0 and (status == 0).any():
        # rasterise every point with a depth (nearest pixel; several points may share one) and
        # compare each candidate with the nearest and farthest sparse depth around it
        h, w = intrinsics.height, intrinsics.width
        px = np.clip(np.floor(pts[ok] + 0.5).astype(np.int64), 0, [w - 1, h - 1])
        flat = px[:, 1] * w + px[:, 0]
        zmin = np.full(h * w, np.inf)
        zmax = np.full(h * w, -np.inf)
        np.minimum.at(zmin, flat, z[ok])
        np.maximum.at(zmax, flat, z[ok])
        zmin, zmax = zmin.reshape(h, w), zmax.reshape(h, w)
        size = 2 * cfg.edge_radius + 1
        lo = ndimage.minimum_filter(zmin, size=size, mode="constant", cval=np.inf)
        hi = ndimage.maximum_filter(zmax, size=size, mode="constant", cval=-np.inf)
        spread = np.zeros(len(z))
        spread[ok] = (hi - lo).ravel()[flat]
        reject((spread > cfg.edge_threshold * np.nan_to_num(z, nan=np.inf)), "depth discontinuity")
    return _finish(pts, z, status, reasons, cfg, rng)


def _reject_range_border(z, pixels, intrinsics, cfg: SamplingConfig, reject, status) -> None:
    with np.errstate(invalid="ignore"):
        if cfg.min_depth > 0:
            reject(z < cfg.min_depth, "below min depth")
        if cfg.max_depth is not None:
            reject(z > cfg.max_depth, "above max depth")
    if cfg.border > 0:
        reject(~inside(pixels, intrinsics.size, margin=cfg.border), "near border")


def _spread(zmap: np.ndarray, radius: int) -> np.ndarray:
    """max - min of the valid depths in each pixel's (2r+1)^2 neighbourhood (NaN = invalid)."""
    size = 2 * radius + 1
    hi = ndimage.maximum_filter(np.where(np.isnan(zmap), -np.inf, zmap), size=size, mode="nearest")
    lo = ndimage.minimum_filter(np.where(np.isnan(zmap), np.inf, zmap), size=size, mode="nearest")
    return hi - lo


def _finish(pixels, z, status, reasons, cfg: SamplingConfig, rng) -> Selection:
    candidates = np.flatnonzero(status == 0)
    k = len(candidates) if cfg.points_per_image == 0 else min(cfg.points_per_image, len(candidates))
    if k == len(candidates):
        chosen = candidates
    elif cfg.mode == "stratified":
        chosen = np.sort(candidates[_stratified(np.log(z[candidates]), k, cfg.bins, rng)])
    else:
        chosen = np.sort(rng.choice(candidates, size=k, replace=False))
    rejected = {reason: np.flatnonzero(status == i) for i, reason in enumerate(reasons, start=1)}
    return Selection(
        points=pixels[chosen],
        depths=z[chosen],
        n_input=len(status),
        n_unsampled=len(candidates) - len(chosen),
        rejected={r: v for r, v in rejected.items() if len(v)},
    )


def _stratified(logz: np.ndarray, k: int, bins: int, rng: np.random.Generator) -> np.ndarray:
    """k indices spread evenly over `bins` equal-width log-depth bins (empty bins give way)."""
    lo, hi = float(logz.min()), float(logz.max())
    which = np.minimum(((logz - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), bins - 1)
    members = [np.flatnonzero(which == b) for b in range(bins)]
    members = [m for m in members if len(m)]
    order = rng.permutation(len(members))
    quota = np.zeros(len(members), dtype=np.int64)
    left = k
    while left > 0:  # hand out one point per bin per round, in random bin order
        for b in order:
            if left and quota[b] < len(members[b]):
                quota[b] += 1
                left -= 1
    return np.concatenate([rng.choice(members[b], size=int(quota[b]), replace=False) for b in order])


def iter_reasons(selection: Selection) -> Iterator[tuple[str, int]]:
    for reason, idx in selection.rejected.items():
        yield reason, len(idx)
