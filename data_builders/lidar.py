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
    """min_depth/max_depth: metres kept (only to drop points at/behind the lens and beyond any
    LiDAR's reach; the label depth range is the build framework's); window: side of the occlusion window in pixels
    (odd); rel_tol: a point is dropped when it lies more than rel_tol * (window minimum)
    behind the nearest point of its window (0 or window 1 disables the test)."""

    min_depth: float = 0.5
    max_depth: float = 250.0
    window: int = 7
    rel_tol: float = 0.1


def visible_points(
    pixels: np.ndarray, depths: np.ndarray, size: tuple[int, int], config: VisibilityConfig | None = None
) -> tuple[np.ndarray, np.ndarray, VisibilityStats]:
    """Sparse labels the camera really sees: integer pixels (x, y) and z-depths.

    Steps: keep depth in [min_depth, max_depth] and pixels inside the image; snap
    each point to the pixel that holds it; z-buffer (nearest point per pixel); drop
    points that see through a nearer surface (:func:`occluded`). Output is sorted by
    (y, x) so results do not depend on the sweep's point order.
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
    points_cam: np.ndarray, intrinsics: Intrinsics, config: VisibilityConfig | None = None
) -> tuple[np.ndarray, np.ndarray, VisibilityStats]:
    """Camera-frame points (OpenCV axes) -> visible integer pixels and z-depths."""
    pixels, z = project(points_cam, intrinsics)
    return visible_points(pixels, z, intrinsics.size, config)


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


# ----------------------------------------------------------------------------- command-line options


def add_visibility_arguments(parser) -> None:
    """Options every LiDAR source shares (added once even if several sources ask). The depth
    range of the labels is the framework's (--min-depth/--max-depth); VisibilityConfig's own
    range only drops points behind or at the lens and beyond any LiDAR's reach."""
    defaults = VisibilityConfig()
    add_once(
        parser,
        "--occlusion-window",
        type=int,
        default=defaults.window,
        help="side in pixels of the minimum-depth window that drops see-through LiDAR points (1 = off)",
    )
    add_once(
        parser,
        "--occlusion-tol",
        type=float,
        default=defaults.rel_tol,
        help="relative depth margin behind the window minimum before a point counts as occluded",
    )


def visibility_config(options) -> VisibilityConfig:
    d = VisibilityConfig()
    return VisibilityConfig(
        window=getattr(options, "occlusion_window", d.window),
        rel_tol=getattr(options, "occlusion_tol", d.rel_tol),
    )


def add_once(parser, flag: str, **kwargs) -> None:
    """Add an option unless another source already added it to the same parser."""
    if flag not in getattr(parser, "_option_string_actions", {}):
        parser.add_argument(flag, **kwargs)
