"""LiDAR -> camera labels, shared by every driving source.

A LiDAR sweep and a camera image are taken at different instants while the car
moves, so a point goes through the full chain

    sensor -> ego @ t_lidar -> world -> ego @ t_camera -> camera

(:func:`chain` multiplies the 4x4 transforms), is projected with a pinhole model
(:func:`project`), and only then is visibility resolved in image space
(:func:`visible_points`): a z-buffer keeps the nearest point per pixel, and a
small-window minimum-depth test drops points that "see through" foreground
objects -- the LiDAR sits elsewhere than the camera, so it hits background
surfaces the camera cannot see, right next to sparse foreground hits.

Lens distortion (OpenCV's Brown-Conrady k1, k2, p1, p2, k3) is removed from the
image (:func:`undistort_image`) so the labels of every source live in a plain
pinhole image described exactly by its :class:`~depthlm.geometry.Intrinsics`;
labelled pixels given in the distorted image are mapped forward with
:func:`undistort_pixels`.

Camera frames here follow OpenCV: x right, y down, z forward; depths are z.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from depthlm.geometry import Intrinsics

# ----------------------------------------------------------------------------- rigid transforms


def quat_to_matrix(q, order: str = "wxyz") -> np.ndarray:
    """3x3 rotation of a unit quaternion given as (w, x, y, z) or (x, y, z, w).

    nuScenes and Argoverse 2 store w first; DGP (DDAD) stores qx, qy, qz, qw.
    The quaternion is normalised first (stored values carry rounding).
    """
    q = np.asarray(q, dtype=np.float64).reshape(4)
    if order == "wxyz":
        w, x, y, z = q
    elif order == "xyzw":
        x, y, z, w = q
    else:
        raise ValueError(f"unknown quaternion order {order!r} (expected 'wxyz' or 'xyzw')")
    n = np.sqrt(w * w + x * x + y * y + z * z)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"not a rotation quaternion: {q.tolist()}")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def se3(rotation, translation) -> np.ndarray:
    """4x4 transform from a 3x3 rotation (or a quaternion, w first) and a translation."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape == (4,):
        r = quat_to_matrix(r, "wxyz")
    t = np.eye(4)
    t[:3, :3] = r
    t[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return t


def invert(transform: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (exact, no general matrix inverse)."""
    r, t = transform[:3, :3], transform[:3, 3]
    out = np.eye(4)
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ t
    return out


def chain(*transforms: np.ndarray) -> np.ndarray:
    """Compose transforms listed from the last applied to the first: chain(A, B) = A @ B.

    Written in the order of the math: camera_from_sensor = chain(camera_from_ego_cam,
    ego_cam_from_world, world_from_ego_lidar, ego_lidar_from_sensor).
    """
    out = np.eye(4)
    for t in transforms:
        out = out @ np.asarray(t, dtype=np.float64)
    return out


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return pts @ transform[:3, :3].T + transform[:3, 3]


def interpolate_pose(times: np.ndarray, poses: np.ndarray, t: float) -> np.ndarray:
    """World-from-ego pose at time t from sorted pose samples (times (N,), poses (N, 4, 4)).

    Linear in translation, normalised-linear (nlerp) in rotation: poses are logged at
    hundreds of Hz, so the interval is tiny. Outside the logged range the nearest
    pose is used only if it is within one sample spacing; otherwise ValueError.
    """
    times = np.asarray(times)
    i = int(np.searchsorted(times, t))
    if i < len(times) and times[i] == t:
        return poses[i]
    if i == 0 or i == len(times):
        j = 0 if i == 0 else len(times) - 1
        spacing = np.median(np.diff(times)) if len(times) > 1 else 0
        if abs(times[j] - t) <= spacing:
            return poses[j]
        raise ValueError(f"time {t} is outside the pose log [{times[0]}, {times[-1]}]")
    t0, t1 = times[i - 1], times[i]
    a = float(t - t0) / float(t1 - t0)
    q0, q1 = _matrix_to_quat(poses[i - 1][:3, :3]), _matrix_to_quat(poses[i][:3, :3])
    if np.dot(q0, q1) < 0:
        q1 = -q1
    q = (1 - a) * q0 + a * q1
    trans = (1 - a) * poses[i - 1][:3, 3] + a * poses[i][:3, 3]
    return se3(quat_to_matrix(q, "wxyz"), trans)


def _matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (Shepperd's method, numerically safe)."""
    m = r
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    return np.asarray(q)


# ----------------------------------------------------------------------------- projection


def project(points_cam: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points: (N, 2) pixels (centres at integers) and z."""
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    z = pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * pts[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * pts[:, 1] / z + intrinsics.cy
    return np.stack([u, v], axis=1), z


@dataclass
class VisibilityStats:
    """How many points each step kept: documents the per-image point count."""

    total: int = 0
    in_front: int = 0
    in_image: int = 0
    nearest_per_pixel: int = 0
    kept: int = 0

    def as_dict(self) -> dict:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass
class VisibilityConfig:
    """How :func:`visible_points` decides what the camera sees.

    min_depth/max_depth: metres kept (only to drop points at/behind the lens and beyond any
    LiDAR's reach; the label depth range is the build framework's). rel_tol: a point is dropped
    when it lies more than rel_tol (window test) or footprint_tol (beam test) behind a nearer
    surface covering its pixel.

    The nearer surfaces are the *beam footprints* (:func:`beam_footprints`) when the sensor's
    steps are given: every return stands for the patch of its beam between it and its
    neighbours, azimuth_step_deg wide and elevation_step_deg tall as seen from the LiDAR,
    which the camera sees as a rectangle of pixels; a return is splatted over
    `azimuth_reach` steps to each side (objects end anywhere up to one step past their last
    return) and `elevation_reach` steps up and down (a half step tiles the beams without
    reaching the next beam's return on the ground). Without steps (a source that does not
    know its sensor) the old fixed window (`window` x `window` pixels) is used.
    """

    min_depth: float = 1.0
    max_depth: float = 250.0
    method: str = "beams"
    window: int = 7
    rel_tol: float = 0.1
    azimuth_step_deg: float | None = None
    elevation_step_deg: float | None = None
    azimuth_reach: float = 1.0
    elevation_reach: float = 1.0
    continuity: float = 0.5
    footprint_tol: float = 0.05
    max_footprint_px: int = 96

    @property
    def uses_footprints(self) -> bool:
        return bool(self.azimuth_step_deg) and bool(self.elevation_step_deg) and self.method == "beams"


def visible_points(
    pixels: np.ndarray,
    depths: np.ndarray,
    size: tuple[int, int],
    config: VisibilityConfig | None = None,
    hidden: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, VisibilityStats]:
    """Sparse labels the camera really sees: integer pixels (x, y) and z-depths.

    Steps: keep depth in [min_depth, max_depth] and pixels inside the image; snap
    each point to the pixel that holds it; drop the points `hidden` says a nearer surface
    hides (:func:`beam_occluded`, from the sensor's geometry) or, without that, points behind a
    nearer point of a fixed window (:func:`occluded`); z-buffer (nearest point per pixel). Output is sorted by (y, x) so results do not
    depend on the sweep's point order.
    """
    cfg = config or VisibilityConfig()
    pix = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(depths, dtype=np.float64).reshape(-1)
    stats = VisibilityStats(total=len(d))
    ok = np.isfinite(d) & (d >= cfg.min_depth) & (d <= cfg.max_depth) & np.all(np.isfinite(pix), axis=1)
    stats.in_front = int(ok.sum())
    w, h = size
    ij = np.floor(pix[ok] + 0.5).astype(np.int64)  # pixel index holding each point (centres at integers)
    d = d[ok]
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    if hidden is not None:
        keep = ~np.asarray(hidden, dtype=bool).reshape(-1)[ok][inside]
        ij, d = ij[inside], d[inside]
        stats.in_image = len(d)
        stats.nearest_per_pixel = len(zbuffer(ij, d, w)[1])
        ij, d = zbuffer(ij[keep], d[keep], w)
    else:
        ij, d = ij[inside], d[inside]
        stats.in_image = len(d)
        ij, d = zbuffer(ij, d, w)
        stats.nearest_per_pixel = len(d)
        if cfg.window > 1 and cfg.rel_tol > 0 and len(d):
            keep = ~occluded(ij, d, size, cfg.window, cfg.rel_tol)
            ij, d = ij[keep], d[keep]
    stats.kept = len(d)
    order = np.lexsort((ij[:, 0], ij[:, 1]))
    return ij[order], d[order], stats


def camera_labels(
    points_cam: np.ndarray,
    intrinsics: Intrinsics,
    config: VisibilityConfig | None = None,
    sensor_origins: np.ndarray | None = None,
    beams: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, VisibilityStats]:
    """Camera-frame points (OpenCV axes) -> visible integer pixels and z-depths.

    `sensor_origins`: where the LiDAR that measured each point sits, in the camera frame
    ((3,) or (N, 3); default the camera centre), and `beams` each point's laser id: with the
    config's sensor steps they decide visibility from the sensor's geometry (:func:`beam_occluded`)."""
    cfg = config or VisibilityConfig()
    pixels, z = project(points_cam, intrinsics)
    hidden = None
    if cfg.uses_footprints:
        origins = np.zeros(3) if sensor_origins is None else sensor_origins
        hidden = beam_occluded(points_cam, origins, intrinsics, cfg, beams)
    return visible_points(pixels, z, intrinsics.size, cfg, hidden=hidden)


def beam_occluded(
    points_cam: np.ndarray,
    origins: np.ndarray,
    intrinsics: Intrinsics,
    config: VisibilityConfig,
    beams: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of returns the camera cannot see: behind the surface another return stands for.

    A return stands for the patch of surface its beam swept, up to the neighbouring returns,
    and an object ends anywhere up to one step past its last return. So every return is
    painted into a camera depth image as a *surface patch* (:func:`_paint_patches`):
    `azimuth_reach` azimuth steps to each side at its own depth, and one beam step up and
    down along the surface through it, whose direction comes from its neighbour on the
    other side (the return of the next beam the other way, found in the LiDAR's angular grid):
    a box face extends straight up past its top return and hides the wall the LiDAR saw above
    the box (the camera sits lower), while the ground extends along the ground and so never
    hides the next beam's ground return. A return with no continuous neighbour on that side
    gets `elevation_reach` steps at its own range. A return lying more than rel_tol behind
    the painted depth at its pixel is hidden.

    `beams` (the laser id of each return, as nuScenes' ring, Argoverse 2's laser_number or a
    Waymo range-image row give it) makes "the next beam" exact for sensors whose beams are
    not evenly spaced; without it the elevation grid is `elevation_step_deg`.
    """
    from scipy.spatial import cKDTree

    p_all = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    o_all = np.broadcast_to(np.asarray(origins, dtype=np.float64), p_all.shape)
    hidden_all = np.zeros(len(p_all), dtype=bool)
    # only returns whose patch can reach the image matter (the rest of the turn is behind or beside it)
    uv_all, z_all = project(p_all, intrinsics)
    m, (w, h) = config.max_footprint_px, intrinsics.size
    with np.errstate(invalid="ignore"):
        near = (z_all > 1e-6) & (uv_all[:, 0] > -m) & (uv_all[:, 0] < w + m)
        near &= (uv_all[:, 1] > -m) & (uv_all[:, 1] < h + m)
    if not near.any():
        return hidden_all
    p, o = p_all[near], o_all[near]
    if beams is not None:
        beams = np.asarray(beams).reshape(-1)[near]
    n = len(p)
    hidden = np.zeros(n, dtype=bool)
    rel = p - o
    rng = np.linalg.norm(rel, axis=1)
    az = np.arctan2(rel[:, 0], rel[:, 2])
    el = np.arctan2(-rel[:, 1], np.hypot(rel[:, 0], rel[:, 2]))
    da = np.radians(config.azimuth_step_deg)
    de = np.radians(config.elevation_step_deg)
    # neighbours in the LiDAR's angular grid (unit = one step); sensors told apart by origin
    single = np.asarray(origins).ndim == 1 or np.all(o == o[0])
    sensor = (
        np.zeros(n, dtype=np.int64) if single else np.unique(o, axis=0, return_inverse=True)[1].reshape(-1)
    )
    beam_coord, beam_step = el / de, np.full(n, de)
    if beams is not None:
        beam_coord, beam_step = _beam_rank(np.asarray(beams).reshape(-1), el, sensor, de)
    grid = np.stack([az / da, beam_coord, sensor * 1e6], 1)
    tree = cKDTree(grid)
    ends = {}
    for side in (+1, -1):  # +1: extend upwards using the neighbour below
        dist, idx = tree.query(grid - [0, side, 0], k=1, distance_upper_bound=0.75)
        has = np.isfinite(dist)
        nb = np.where(has, idx, 0)
        step = p - p[nb]
        cont = has & (np.abs(rng - rng[nb]) <= config.continuity * np.minimum(rng, rng[nb]))
        cont &= np.sign(el - el[nb]) == side
        sphere = o + rng[:, None] * _direction(az, el + side * beam_step * config.elevation_reach)
        ends[side] = np.where(cont[:, None], p + step, sphere)
    uv, z = project(p, intrinsics)
    ok = np.isfinite(uv).all(1) & (z > 1e-6)
    uh, _ = project(o + rng[:, None] * _direction(az + da * config.azimuth_reach, el), intrinsics)
    ul, _ = project(o + rng[:, None] * _direction(az - da * config.azimuth_reach, el), intrinsics)
    half_w = np.nan_to_num(np.fmax(np.abs(uh[:, 0] - uv[:, 0]), np.abs(ul[:, 0] - uv[:, 0])), nan=0.0)
    img = _paint_patches(uv, z, half_w, ends, ok, intrinsics, config.max_footprint_px)
    ij = np.floor(uv + 0.5)
    inside = ok & (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    xi, yi = ij[inside, 0].astype(np.int64), ij[inside, 1].astype(np.int64)
    hidden[inside] = z[inside] > img[yi, xi] * (1.0 + config.footprint_tol)
    hidden_all[near] = hidden
    return hidden_all


def _beam_rank(beams: np.ndarray, el: np.ndarray, sensor: np.ndarray, default_step: float):
    """Each return's beam as a coordinate counted in beams (neighbouring beams 1 apart, ordered
    by their median elevation per sensor: robust to a tilted mount) and the local beam spacing."""
    coord = np.zeros(len(el))
    step = np.full(len(el), default_step)
    for s in np.unique(sensor):
        m = sensor == s
        ids, inv = np.unique(beams[m], return_inverse=True)
        med = np.array([np.median(el[m][inv == k]) for k in range(len(ids))])
        order = np.argsort(med)
        rank = np.empty(len(ids))
        rank[order] = np.arange(len(ids))
        gaps = np.diff(med[order])
        local = np.empty(len(ids))
        if len(ids) > 1:
            local[order] = np.maximum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]])
        else:
            local[:] = default_step
        coord[m] = rank[inv]
        step[m] = local[inv]
    return coord, step


def _direction(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Unit vectors in the camera frame for LiDAR azimuth/elevation (spin axis = camera -y)."""
    return np.stack([np.cos(el) * np.sin(az), -np.sin(el), np.cos(el) * np.cos(az)], 1)


def _paint_patches(uv, z, half_w, ends, ok, intrinsics: Intrinsics, cap: int) -> np.ndarray:
    """Nearest painted depth per pixel: each return's patch, rows interpolated in 1/z
    (exact for a plane seen in perspective) from the return to each vertical end.
    Vectorised: every (patch, row) pair, then every pixel of it, goes into one np.minimum.at."""
    w, h = intrinsics.size
    img = np.full(h * w, np.inf)
    hw = np.minimum(half_w, cap)
    x0 = np.clip(np.ceil(uv[:, 0] - hw - 0.5), 0, w).astype(np.int64)
    x1 = np.clip(np.floor(uv[:, 0] + hw + 0.5) + 1, 0, w).astype(np.int64)
    use = ok & (x1 > x0)
    v, zi = uv[:, 1], z
    for end in ends.values():
        euv, ez = project(end, intrinsics)
        good = use & np.isfinite(euv).all(1) & (ez > 1e-6)
        ev = np.where(good, np.clip(np.nan_to_num(euv[:, 1]), v - cap, v + cap), v)
        ez = np.where(good, ez, zi)
        lo, hi = np.minimum(ev, v), np.maximum(ev, v)
        y0 = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)
        y1 = np.clip(np.floor(hi + 0.5) + 1, 0, h).astype(np.int64)
        idx = np.flatnonzero(use & (y1 > y0))
        if len(idx) == 0:
            continue
        n_rows = y1[idx] - y0[idx]
        pi = np.repeat(idx, n_rows)  # (patch, row) pairs
        row = y0[pi] + (np.arange(len(pi)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows))
        span = ev[pi] - v[pi]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(span) > 1e-9, np.clip((row - v[pi]) / span, 0.0, 1.0), 0.0)
        depth = 1.0 / ((1 - t) / zi[pi] + t / ez[pi])
        n_cols = x1[pi] - x0[pi]
        pj = np.repeat(np.arange(len(pi)), n_cols)  # every pixel of every row
        col = x0[pi][pj] + (np.arange(len(pj)) - np.repeat(np.cumsum(n_cols) - n_cols, n_cols))
        np.minimum.at(img, row[pj] * w + col, depth[pj])
    return img.reshape(h, w)


def zbuffer(ij: np.ndarray, depths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the nearest point of every integer pixel."""
    if len(depths) == 0:
        return ij.reshape(0, 2), depths
    flat = ij[:, 1] * width + ij[:, 0]
    order = np.lexsort((depths, flat))  # by pixel, then nearest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = flat[order][1:] != flat[order][:-1]
    sel = order[first]
    return ij[sel], depths[sel]


def occluded(
    ij: np.ndarray, depths: np.ndarray, size: tuple[int, int], window: int, rel_tol: float
) -> np.ndarray:
    """Mask of points lying behind a nearer point of their window x window neighbourhood.

    A sparse depth image (inf where empty) goes through a minimum filter; a point
    whose depth exceeds that minimum by more than rel_tol of it sees through a
    foreground surface. Along a scan line neighbours are a few pixels apart, so the
    default 7 px window catches see-through points beside foreground hits; between
    scan lines (tens of pixels apart for 32-beam LiDARs) points from other beams are
    outside the window, which also keeps the test from firing on the ground, whose
    depth changes fast from beam to beam. See-through points more than half a
    window from any foreground point survive (docs/sources-lidar.md).
    """
    w, h = size
    img = np.full((h, w), np.inf, dtype=np.float64)
    img[ij[:, 1], ij[:, 0]] = depths
    near = ndimage.minimum_filter(img, size=window, mode="constant", cval=np.inf)
    m = near[ij[:, 1], ij[:, 0]]
    return depths > m * (1.0 + rel_tol)


# ----------------------------------------------------------------------------- lens distortion


@dataclass(frozen=True)
class Distortion:
    """OpenCV / Brown-Conrady coefficients (radial k1, k2, k3; tangential p1, p2)."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0

    @property
    def is_zero(self) -> bool:
        return not any((self.k1, self.k2, self.p1, self.p2, self.k3))


def distort_normalized(xy: np.ndarray, dist: Distortion) -> np.ndarray:
    """Ideal normalised image coordinates -> distorted ones (OpenCV's forward model)."""
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (dist.k1 + r2 * (dist.k2 + r2 * dist.k3))
    xd = x * radial + 2 * dist.p1 * x * y + dist.p2 * (r2 + 2 * x * x)
    yd = y * radial + dist.p1 * (r2 + 2 * y * y) + 2 * dist.p2 * x * y
    return np.stack([xd, yd], axis=1)


def undistort_normalized(xy_d: np.ndarray, dist: Distortion, iterations: int = 50) -> np.ndarray:
    """Inverse of :func:`distort_normalized` by Newton's method (converges in a few steps
    for real lenses; the fixed-point iteration OpenCV uses can stall at image corners)."""
    xy = np.asarray(xy_d, dtype=np.float64).copy()
    target = np.asarray(xy_d, dtype=np.float64)
    eps = 1e-7
    for _ in range(iterations):
        f = distort_normalized(xy, dist) - target
        if np.max(np.abs(f), initial=0) < 1e-12:
            break
        fx = (distort_normalized(xy + [eps, 0], dist) - distort_normalized(xy - [eps, 0], dist)) / (2 * eps)
        fy = (distort_normalized(xy + [0, eps], dist) - distort_normalized(xy - [0, eps], dist)) / (2 * eps)
        det = fx[:, 0] * fy[:, 1] - fy[:, 0] * fx[:, 1]
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        dx = (f[:, 0] * fy[:, 1] - fy[:, 0] * f[:, 1]) / det
        dy = (fx[:, 0] * f[:, 1] - f[:, 0] * fx[:, 1]) / det
        xy -= np.stack([dx, dy], axis=1)
    return xy


def undistort_pixels(pixels_d: np.ndarray, intrinsics: Intrinsics, dist: Distortion) -> np.ndarray:
    """Forward map of labelled pixels: distorted image -> undistorted (pinhole) image.

    This is the direction a label travels when the image is undistorted. (The
    DepthLM reference applied the distortion instead, which moves labels the wrong
    way by ~20 px after rescaling on Waymo.)
    """
    pix = np.asarray(pixels_d, dtype=np.float64).reshape(-1, 2)
    if dist.is_zero:
        return pix.copy()
    xy_d = np.stack(
        [(pix[:, 0] - intrinsics.cx) / intrinsics.fx, (pix[:, 1] - intrinsics.cy) / intrinsics.fy], 1
    )
    xy = undistort_normalized(xy_d, dist)
    return np.stack([xy[:, 0] * intrinsics.fx + intrinsics.cx, xy[:, 1] * intrinsics.fy + intrinsics.cy], 1)


def distort_pixels(pixels: np.ndarray, intrinsics: Intrinsics, dist: Distortion) -> np.ndarray:
    """Pinhole pixels -> where the same rays land in the distorted (raw) image."""
    pix = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    xy = np.stack(
        [(pix[:, 0] - intrinsics.cx) / intrinsics.fx, (pix[:, 1] - intrinsics.cy) / intrinsics.fy], 1
    )
    xy_d = distort_normalized(xy, dist)
    return np.stack(
        [xy_d[:, 0] * intrinsics.fx + intrinsics.cx, xy_d[:, 1] * intrinsics.fy + intrinsics.cy], 1
    )


def undistort_image(image: Image.Image, intrinsics: Intrinsics, dist: Distortion) -> Image.Image:
    """The pinhole image with the same intrinsics (size, fx, fy, cx, cy) as the raw one.

    Inverse mapping, as any image warp: every output pixel looks up where its ray
    lands in the raw image (:func:`distort_pixels`) and samples it bilinearly;
    rays that leave the raw image are black. Consistent with
    :func:`undistort_pixels` by construction (one is the other's inverse).
    """
    if dist.is_zero:
        return image
    if image.size != intrinsics.size:
        raise ValueError(f"image is {image.size}, intrinsics describe {intrinsics.size}")
    coords = _undistort_map(intrinsics, dist)
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = np.empty_like(arr)
    for c in range(3):
        out[..., c] = ndimage.map_coordinates(arr[..., c], coords, order=1, mode="constant", cval=0.0)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def _undistort_map(intrinsics: Intrinsics, dist: Distortion) -> np.ndarray:
    """(2, H, W) raw-image (row, col) of every output pixel; one per camera, reused across frames."""
    w, h = intrinsics.size
    ys, xs = np.mgrid[0:h, 0:w]
    src = distort_pixels(np.stack([xs.ravel(), ys.ravel()], 1), intrinsics, dist)
    return np.stack([src[:, 1].reshape(h, w), src[:, 0].reshape(h, w)]).astype(np.float32)
