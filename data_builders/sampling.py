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

Tests 1-4 look at one label each and run on every label. The neighbourhood test (5) is the
costly one; for a dense map it runs only on the pixels the draw reaches: pixels are drawn in
random order (uniform, or round-robin over log-depth bins), a drawn pixel that fails is
rejected and replaced by the next draw, until `points_per_image` have passed. A 1920x1440
map then costs its per-pixel tests instead of a whole-map filter, and the kept points are a
uniform (or stratified) sample of the pixels that pass every test, as before. The price is
the accounting: for a dense map, ``depth discontinuity`` counts the drawn pixels that failed,
and the undrawn rest counts as unsampled; with ``points_per_image=0`` (keep all) every pixel
is tested. Sparse frames test every point up front (they have few).
"""

from __future__ import annotations

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
    z = np.asarray(depth, dtype=np.float64).ravel()
    status = np.zeros(h * w, dtype=np.int8)  # 0 = still a candidate; k = reason k
    reasons: list[str] = []

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & (status == 0)
        reasons.append(reason)
        status[mask] = len(reasons)

    def coords(idx: np.ndarray) -> np.ndarray:  # flat pixel index -> (x, y)
        y, x = np.divmod(idx, w)
        return np.stack([x, y], axis=1).astype(np.float64)

    with np.errstate(invalid="ignore"):
        reject(~np.isfinite(z) | (z <= 0), "no depth")
    if valid is not None:
        reject(~np.asarray(valid, dtype=bool).ravel(), "invalid mask")
    ok = status == 0
    z = np.where(ok, z, np.nan)
    if depth_type != "z":
        at = np.flatnonzero(ok)
        z[at] = convert_depth(z[at], coords(at), intrinsics, depth_type, "z")
    _reject_range(z, cfg, reject)
    if cfg.border > 0:
        at = np.flatnonzero(status == 0)
        near = np.zeros(h * w, dtype=bool)
        near[at] = ~inside(coords(at), intrinsics.size, margin=cfg.border)
        reject(near, "near border")
    if cfg.edge_threshold <= 0:
        return _finish(z, status, reasons, cfg, rng, coords)
    zmap = z.reshape(h, w)
    n = int(np.count_nonzero(status == 0))
    if cfg.points_per_image == 0 or cfg.points_per_image >= n:  # every pixel is needed: test them all
        spread = _spread(zmap, cfg.edge_radius)
        with np.errstate(invalid="ignore"):
            reject((spread.ravel() > cfg.edge_threshold * z), "depth discontinuity")
        return _finish(z, status, reasons, cfg, rng, coords)

    whole: list[np.ndarray] = []  # the whole-map filter, once the draw has gone far (most pixels fail)
    tested = [0]

    def steep(idx: np.ndarray) -> np.ndarray:
        tested[0] += len(idx)
        if whole or tested[0] > n // 64:  # same values either way (_spread_at is _spread, pointwise)
            if not whole:
                whole.append(_spread(zmap, cfg.edge_radius).ravel())
            spread = whole[0][idx]
        else:
            spread = _spread_at(zmap, idx, cfg.edge_radius)
        return spread > cfg.edge_threshold * z[idx]

    return _finish(z, status, reasons, cfg, rng, coords, fails=(steep, "depth discontinuity"))


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
    _reject_range(z, cfg, reject)
    if cfg.border > 0:
        reject(~inside(pts, intrinsics.size, margin=cfg.border), "near border")
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
    return _finish(z, status, reasons, cfg, rng, lambda idx: pts[idx])


def _reject_range(z: np.ndarray, cfg: SamplingConfig, reject) -> None:
    with np.errstate(invalid="ignore"):
        if cfg.min_depth > 0:
            reject(z < cfg.min_depth, "below min depth")
        if cfg.max_depth is not None:
            reject(z > cfg.max_depth, "above max depth")


def _spread(zmap: np.ndarray, radius: int) -> np.ndarray:
    """max - min of the valid depths in each pixel's (2r+1)^2 neighbourhood (NaN = invalid)."""
    size = 2 * radius + 1
    hi = ndimage.maximum_filter(np.where(np.isnan(zmap), -np.inf, zmap), size=size, mode="nearest")
    lo = ndimage.minimum_filter(np.where(np.isnan(zmap), np.inf, zmap), size=size, mode="nearest")
    return hi - lo


def _spread_at(zmap: np.ndarray, idx: np.ndarray, radius: int) -> np.ndarray:
    """_spread at the flat pixel indices `idx` only (same edge rule: the map's edge repeats)."""
    h, w = zmap.shape
    y, x = np.divmod(np.asarray(idx, dtype=np.int64), w)
    off = np.arange(-radius, radius + 1)
    ys = np.clip(y[:, None, None] + off[None, :, None], 0, h - 1)
    xs = np.clip(x[:, None, None] + off[None, None, :], 0, w - 1)
    window = zmap[ys, xs].reshape(len(y), -1)
    return np.fmax.reduce(window, axis=1) - np.fmin.reduce(window, axis=1)  # fmax/fmin skip NaN


def _finish(z, status, reasons, cfg: SamplingConfig, rng, coords, fails=None) -> Selection:
    """Draw the kept labels among the candidates (status 0). `fails`, if given, is a last test
    (function of candidate indices -> bool, reason) run only on the drawn candidates."""
    candidates = np.flatnonzero(status == 0)
    k = len(candidates) if cfg.points_per_image == 0 else min(cfg.points_per_image, len(candidates))
    if k == len(candidates) and fails is None:
        chosen = candidates
    else:
        chosen, failed = _draw(candidates, z, k, cfg, rng, fails[0] if fails else None)
        chosen = np.sort(chosen)
        if fails:
            reasons.append(fails[1])
            status[failed] = len(reasons)
    rejected = {reason: np.flatnonzero(status == i) for i, reason in enumerate(reasons, start=1)}
    return Selection(
        points=coords(chosen),
        depths=z[chosen],
        n_input=len(status),
        n_unsampled=int(np.count_nonzero(status == 0)) - len(chosen),
        rejected={r: v for r, v in rejected.items() if len(v)},
    )


def _draw(candidates, z, k: int, cfg: SamplingConfig, rng, fails=None) -> tuple[np.ndarray, np.ndarray]:
    """k candidates, uniformly or stratified by log depth, and the drawn ones `fails` rejected.

    Candidates are drawn in a random sequence: uniform, or stratified -- `bins` equal-width
    log-depth bins (spanning the candidates' depths) visited round-robin in a random bin order, one pick per bin per round,
    empty bins giving way. The kept labels are the first k of the sequence that pass `fails`;
    those that failed before them are returned as failed. The sequence is dealt in batches
    (k, then 4x larger while picks keep failing), so a mostly good map costs O(k) tests.
    Without `fails` it is one rng.choice per bin, as it always was: a seed's output is stable.
    """
    if cfg.mode == "stratified":
        logz = np.log(z[candidates])
        lo, hi = float(logz.min()), float(logz.max())
        which = np.minimum(((logz - lo) / max(hi - lo, 1e-12) * cfg.bins).astype(np.int64), cfg.bins - 1)
        groups = [g for g in (candidates[which == b] for b in range(cfg.bins)) if len(g)]
        order = rng.permutation(len(groups))
    else:
        groups, order = [candidates], np.zeros(1, dtype=np.int64)
    decks = [_Deck(len(g), rng) for g in groups]
    left = np.array([len(g) for g in groups])  # not dealt yet, per group
    kept: list[np.ndarray] = []
    failed: list[np.ndarray] = []
    need, batch = k, k
    while need > 0 and left.sum() > 0:
        quota = _round_robin(left, order, min(batch, int(left.sum())))
        left -= quota
        picks, keys = [], []
        for slot, b in enumerate(order):  # key = round * groups + slot: the round-robin sequence
            picks.append(groups[b][decks[b].take(int(quota[b]))])
            keys.append(np.arange(quota[b]) * len(groups) + slot)
        seq = picks[0] if len(picks) == 1 else np.concatenate(picks)[np.argsort(np.concatenate(keys))]
        bad = fails(seq) if fails is not None else np.zeros(len(seq), dtype=bool)
        good = np.flatnonzero(~bad)
        if len(good) > need:  # the rest of this batch is not needed: it stays unsampled
            seq, bad = seq[: good[need - 1] + 1], bad[: good[need - 1] + 1]
        kept.append(seq[~bad])
        failed.append(seq[bad])
        need -= len(seq) - int(bad.sum())
        batch = 4 * batch
    return np.concatenate(kept), np.concatenate(failed)


def _round_robin(capacity: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Hand out k picks one per group per round, in `order`, skipping full groups."""
    lo, hi = 0, int(capacity.max())  # full rounds: the largest r with sum(min(capacity, r)) <= k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(capacity, mid).sum() <= k else (lo, mid - 1)
    quota = np.minimum(capacity, lo)
    left = k - int(quota.sum())
    for b in order:  # the last, partial round
        if left and quota[b] < capacity[b]:
            quota[b] += 1
            left -= 1
    return quota


class _Deck:
    """0..n-1 in a random order, dealt on demand without building the whole permutation:
    k picks out of a 3-megapixel map cost O(k). The first deal is exactly
    rng.choice(n, m, replace=False); later deals draw again and drop what was dealt."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self.dealt = np.empty(0, dtype=np.int64)
        self.rest: np.ndarray | None = None  # after a large deal: the rest, shuffled

    def take(self, m: int) -> np.ndarray:
        m = min(m, self.n - len(self.dealt))
        if m <= 0:
            return np.empty(0, dtype=np.int64)
        if len(self.dealt) == 0:
            out = self.rng.choice(self.n, size=m, replace=False)
        elif 4 * (len(self.dealt) + m) < self.n:  # a small deal: redraw, drop what was dealt
            parts, got = [], 0
            while got < m:
                draw = self.rng.choice(self.n, size=min(self.n, 2 * (m - got) + 16), replace=False)
                new = draw[~np.isin(draw, self.dealt)][: m - got]
                self.dealt = np.concatenate([self.dealt, new])
                parts.append(new)
                got += len(new)
            return np.concatenate(parts)
        else:
            if self.rest is None:
                undealt = np.ones(self.n, dtype=bool)
                undealt[self.dealt] = False
                self.rest = self.rng.permutation(np.flatnonzero(undealt))
            out, self.rest = self.rest[:m], self.rest[m:]
        self.dealt = np.concatenate([self.dealt, out])
        return out
