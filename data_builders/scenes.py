"""Procedural synthetic scenes with exact metric depth, ray-cast on the CPU with numpy.

Why: the demo, the training tests and a sanity benchmark need images whose depth is known
exactly, in metres, with nothing to download and no licence attached. A scene is a room
(ground plane with a 0.5 m checkerboard, so metric scale is visible; walls with a 1 m grid)
holding boxes and spheres of known sizes. The camera has a random height, pitch, yaw and
focal length (a wide focal range, so focal normalisation matters).

World frame: X and Z span the ground, Y points up, the ground is Y = 0. The camera looks
along its forward axis; a pixel's ray is ``forward + xn * right + yn * down`` with
``xn = (x - cx) / fx``, ``yn = (y - cy) / fy``, so the ray parameter at a hit IS the z-depth.

    >>> from data_builders.scenes import render_scene
    >>> image, intrinsics, depth, masks, objects = render_scene(seed=0, size=(320, 240))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

from depthlm.geometry import Intrinsics

CHECKER_M = 0.5  # ground checkerboard square side, metres
WALL_GRID_M = 1.0  # wall grid line spacing, metres
PRESETS = ("default", "easy")
EASY_HEIGHT_M, EASY_PITCH_DEG = 1.5, 15.0

PALETTE = np.array(
    [
        [0.85, 0.25, 0.20],
        [0.20, 0.55, 0.85],
        [0.95, 0.75, 0.20],
        [0.30, 0.70, 0.35],
        [0.60, 0.35, 0.75],
        [0.95, 0.55, 0.15],
        [0.25, 0.75, 0.75],
        [0.80, 0.40, 0.60],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Camera:
    height: float  # metres above the ground
    pitch: float  # degrees; positive looks down
    yaw: float  # degrees about the vertical axis; 0 looks along +Z
    x: float = 0.0  # position on the ground plane, metres
    z: float = 0.0


@dataclass(frozen=True)
class Shape:
    """A box (full extents `size` = width, height, depth) or a sphere (radius = size[0] / 2)."""

    kind: Literal["box", "sphere"]
    center: tuple[float, float, float]  # world metres
    size: tuple[float, float, float]
    yaw: float = 0.0  # degrees, boxes only
    color: tuple[float, float, float] = (0.8, 0.3, 0.2)


@dataclass(frozen=True)
class SceneSpec:
    camera: Camera
    intrinsics: Intrinsics
    room: tuple[float, float, float, float] | None = (-6.0, 6.0, -6.0, 6.0)  # x_min, x_max, z_min, z_max
    wall_height: float = 3.0
    shapes: tuple[Shape, ...] = ()
    light: tuple[float, float, float] = (0.4, 0.8, -0.3)  # direction towards the light
    ground_colors: tuple[tuple[float, float, float], ...] = ((0.82, 0.80, 0.74), (0.30, 0.30, 0.33))
    wall_color: tuple[float, float, float] = (0.70, 0.72, 0.78)
    extras: dict = field(default_factory=dict)


class Scene(NamedTuple):
    image: Image.Image
    intrinsics: Intrinsics
    depth: np.ndarray  # (H, W) float32 z-depth in metres; 0 where the ray hits nothing (sky)
    masks: np.ndarray  # (H, W) uint8 label map: 0 = room/sky, k = shape k (objects[k - 1])
    objects: list[dict]  # per shape: id, kind, size_m, center_m, visible, box [x0, y0, x1, y1], pixels


def render_scene(
    seed: int,
    size: tuple[int, int] = (320, 240),
    focal_range: tuple[float, float] = (150.0, 600.0),
    preset: str = "default",
) -> Scene:
    """Render the random scene number `seed` (same seed, same scene, byte for byte)."""
    spec = sample_scene(np.random.default_rng(seed), size, focal_range, preset)
    return render(spec)


def moved_view(spec: SceneSpec, rng: np.random.Generator, move_range: tuple[float, float] = (0.2, 1.5)):
    """The same scene from a second camera position: the camera slides (same height, pitch and yaw,
    so the rotation between the views is the identity) by a random length in `move_range` metres,
    in a random direction on the ground plane. Returns (second Scene, the second camera's centre in
    the first camera's frame: x right, y down, z forward, metres) -- the ``motion`` task's truth."""
    cam = spec.camera
    length = float(rng.uniform(*move_range))
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    right, down, forward = camera_axes(cam)
    shift = length * (math.cos(angle) * right + math.sin(angle) * forward)
    moved = replace(cam, x=cam.x + float(shift[0]), z=cam.z + float(shift[2]))
    t_world = np.array([moved.x - cam.x, 0.0, moved.z - cam.z])
    t_cam = [round(float(a @ t_world), 6) for a in (right, down, forward)]
    return render(replace(spec, camera=moved)), t_cam


def sample_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (320, 240),
    focal_range: tuple[float, float] = (150.0, 600.0),
    preset: str = "default",
) -> SceneSpec:
    """Draw a random room, camera and shapes. The "easy" preset fixes camera height and pitch."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
    width, height = size
    focal = float(rng.uniform(*focal_range))
    intr = Intrinsics(focal, focal, (width - 1) / 2, (height - 1) / 2, width, height)
    hx, hz = rng.uniform(3.0, 12.0, size=2)
    room = (-float(hx), float(hx), -float(hz), float(hz))
    cam_x = float(rng.uniform(-0.6, 0.6) * hx)
    cam_z = float(rng.uniform(-0.6, 0.6) * hz)
    # look roughly towards the room centre, so most views see the room rather than a wall close up
    yaw = float(math.degrees(math.atan2(-cam_x, -cam_z)) + rng.uniform(-60.0, 60.0)) % 360.0
    if preset == "easy":
        cam_h, pitch = EASY_HEIGHT_M, EASY_PITCH_DEG
    else:
        cam_h, pitch = float(rng.uniform(0.4, 2.5)), float(rng.uniform(-5.0, 40.0))
    camera = Camera(cam_h, pitch, yaw, cam_x, cam_z)
    shapes = []
    for _ in range(int(rng.integers(3, 9))):
        shape = _random_shape(rng, camera, room)
        if shape is not None:
            shapes.append(shape)
    light = rng.normal(size=3)
    light[1] = abs(light[1]) + 1.0
    ground = rng.uniform(0.55, 0.9, size=3), rng.uniform(0.1, 0.4, size=3)
    return SceneSpec(
        camera=camera,
        intrinsics=intr,
        room=room,
        wall_height=float(rng.uniform(2.5, 4.0)),
        shapes=tuple(shapes),
        light=tuple(float(v) for v in light),
        ground_colors=tuple(tuple(float(v) for v in c) for c in ground),
        wall_color=tuple(float(v) for v in rng.uniform(0.5, 0.85, size=3)),
    )


def _random_shape(rng: np.random.Generator, camera: Camera, room) -> Shape | None:
    kind = "box" if rng.random() < 0.55 else "sphere"
    if kind == "box":
        w, h, d = rng.uniform(0.3, 1.5), rng.uniform(0.3, 2.0), rng.uniform(0.3, 1.5)
        extent = math.hypot(w, d) / 2
    else:
        r = rng.uniform(0.15, 0.8)
        w = h = d = 2 * r
        extent = r
    color = PALETTE[int(rng.integers(len(PALETTE)))] * rng.uniform(0.8, 1.1)
    for _ in range(10):  # mostly in front of the camera, never around it or through a wall
        if rng.random() < 0.75:
            ang = math.radians(camera.yaw + rng.uniform(-35.0, 35.0))
            dist = rng.uniform(1.2, 9.0)
            x, z = camera.x + dist * math.sin(ang), camera.z + dist * math.cos(ang)
        else:
            x, z = rng.uniform(room[0], room[1]), rng.uniform(room[2], room[3])
        inside = room[0] + extent < x < room[1] - extent and room[2] + extent < z < room[3] - extent
        if inside and math.hypot(x - camera.x, z - camera.z) > extent + 0.5:
            return Shape(
                kind,
                (float(x), float(h / 2), float(z)),
                (float(w), float(h), float(d)),
                float(rng.uniform(0.0, 90.0)),
                tuple(float(c) for c in np.clip(color, 0, 1)),
            )
    return None


def camera_axes(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World directions of the camera's right, down and forward axes."""
    p, y = math.radians(camera.pitch), math.radians(camera.yaw)
    right = np.array([1.0, 0.0, 0.0])
    down = np.array([0.0, -math.cos(p), -math.sin(p)])
    forward = np.array([0.0, -math.sin(p), math.cos(p)])
    rot = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    return rot @ right, rot @ down, rot @ forward


def render(spec: SceneSpec) -> Scene:
    """Ray-cast `spec`: nearest hit per pixel among ground, walls and shapes, Lambert-shaded."""
    intr = spec.intrinsics
    w, h = intr.width, intr.height
    xn = ((np.arange(w, dtype=np.float64) - intr.cx) / intr.fx).astype(np.float32)
    yn = ((np.arange(h, dtype=np.float64) - intr.cy) / intr.fy).astype(np.float32)
    right, down, forward = (a.astype(np.float32) for a in camera_axes(spec.camera))
    # ray direction per pixel, components as (H, W) arrays; the forward coefficient is 1 => t is z-depth
    dirs = [forward[i] + xn[None, :] * right[i] + yn[:, None] * down[i] for i in range(3)]
    origin = np.array([spec.camera.x, spec.camera.height, spec.camera.z], dtype=np.float32)

    best = np.full((h, w), np.inf, dtype=np.float32)
    surface = np.full((h, w), -1, dtype=np.int16)  # -1 sky, 0 ground, 1..4 walls, 5+k shape k
    normal = np.zeros((3, h, w), dtype=np.float32)

    def take(t: np.ndarray, sid: int, n: tuple | None = None) -> np.ndarray:
        hit = t < best
        best[hit] = t[hit]
        surface[hit] = sid
        if n is not None:
            for i in range(3):
                normal[i][hit] = n[i]
        return hit

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.where(dirs[1] < 0, -origin[1] / dirs[1], np.inf)
        take(t, 0, (0.0, 1.0, 0.0))
        if spec.room is not None:
            for k, (axis, value, sign) in enumerate(
                [
                    (0, spec.room[0], 1.0),
                    (0, spec.room[1], -1.0),
                    (2, spec.room[2], 1.0),
                    (2, spec.room[3], -1.0),
                ]
            ):
                t = (value - origin[axis]) / dirs[axis]
                y = origin[1] + t * dirs[1]
                t = np.where((t > 0) & (y >= 0) & (y <= spec.wall_height), t, np.inf)
                n = [0.0, 0.0, 0.0]
                n[axis] = sign
                take(t, 1 + k, tuple(n))
        for k, shape in enumerate(spec.shapes):
            sid = 5 + k
            if shape.kind == "sphere":
                hit = take(_sphere_t(origin, dirs, shape), sid)
                if hit.any():
                    c = np.asarray(shape.center, dtype=np.float32)
                    for i in range(3):
                        normal[i][hit] = (origin[i] + best[hit] * dirs[i][hit] - c[i]) / (shape.size[0] / 2)
            else:
                t, n = _box_t(origin, dirs, shape)
                hit = take(t, sid)
                for i in range(3):
                    normal[i][hit] = n[i][hit]

    depth = np.where(np.isfinite(best), best, 0.0).astype(np.float32)
    points = [origin[i] + depth * dirs[i] for i in range(3)]
    image = _shade(spec, surface, normal, points, yn)
    masks = np.clip(surface - 4, 0, 255).astype(np.uint8)
    objects = _describe(spec, masks, depth)
    return Scene(Image.fromarray(image, "RGB"), intr, depth, masks, objects)


def _sphere_t(origin: np.ndarray, dirs: list[np.ndarray], shape: Shape) -> np.ndarray:
    oc = origin - np.asarray(shape.center, dtype=np.float32)
    r = shape.size[0] / 2
    a = dirs[0] ** 2 + dirs[1] ** 2 + dirs[2] ** 2
    b = oc[0] * dirs[0] + oc[1] * dirs[1] + oc[2] * dirs[2]
    c = float(oc @ oc - r * r)
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def _box_t(origin: np.ndarray, dirs: list[np.ndarray], shape: Shape) -> tuple[np.ndarray, list]:
    """Slab test in the box's own frame (rotated by its yaw); returns t and world normals."""
    yaw = math.radians(shape.yaw)
    cs, sn = math.cos(yaw), math.sin(yaw)
    o = origin - np.asarray(shape.center, dtype=np.float32)
    # world -> local: rotate by -yaw about Y
    lo = np.array([cs * o[0] - sn * o[2], o[1], sn * o[0] + cs * o[2]], dtype=np.float32)
    ld = [cs * dirs[0] - sn * dirs[2], dirs[1], sn * dirs[0] + cs * dirs[2]]
    half = np.asarray(shape.size, dtype=np.float32) / 2
    t_near = np.full(dirs[0].shape, -np.inf, dtype=np.float32)
    t_far = np.full(dirs[0].shape, np.inf, dtype=np.float32)
    axis = np.zeros(dirs[0].shape, dtype=np.int8)
    for i in range(3):
        inv = 1.0 / ld[i]
        t1, t2 = (-half[i] - lo[i]) * inv, (half[i] - lo[i]) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        near = np.where(np.isnan(near), -np.inf, near)
        far = np.where(np.isnan(far), np.inf, far)
        newer = near > t_near
        axis[newer] = i
        t_near = np.maximum(t_near, near)
        t_far = np.minimum(t_far, far)
    t = np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)
    # the entry face's outward normal is minus the ray direction's sign along that axis, in local axes
    local = [np.where(axis == i, -np.sign(ld[i]), 0.0).astype(np.float32) for i in range(3)]
    world = [cs * local[0] + sn * local[2], local[1], -sn * local[0] + cs * local[2]]
    return t, world


def _shade(spec: SceneSpec, surface: np.ndarray, normal: np.ndarray, points: list, yn: np.ndarray):
    """Base colour from one table lookup per pixel (ground squares, walls, shapes), times Lambert."""
    h, w = surface.shape
    table = np.array(
        [(0.0, 0.0, 0.0), spec.ground_colors[0], *([spec.wall_color] * 4), *(s.color for s in spec.shapes)]
        + [spec.ground_colors[1]],
        dtype=np.float32,
    )
    idx = surface.astype(np.int64) + 1
    checker = (np.floor(points[0] / CHECKER_M) + np.floor(points[2] / CHECKER_M)).astype(np.int64) % 2
    idx[(surface == 0) & (checker == 1)] = len(table) - 1
    light = np.asarray(spec.light, dtype=np.float32)
    light /= np.linalg.norm(light)
    factor = 0.4 + 0.6 * np.clip(normal[0] * light[0] + normal[1] * light[1] + normal[2] * light[2], 0, 1)
    walls = (surface >= 1) & (surface <= 4)
    if walls.any():
        along = np.where(np.abs(normal[0]) > 0.5, points[2], points[0])
        factor[(_near_grid(along) | _near_grid(points[1])) & walls] *= 0.55
    color = table[idx] * factor[..., None]
    sky = surface < 0
    if sky.any():
        horizon = np.clip(0.5 - yn, 0, 1)[:, None] * np.ones((1, w), dtype=np.float32)
        sky_rgb = np.stack([0.55 + 0.2 * horizon, 0.70 + 0.15 * horizon, 0.95 + 0 * horizon], axis=-1)
        color[sky] = sky_rgb[sky]
    return (np.clip(color, 0, 1) * 255 + 0.5).astype(np.uint8)


def _near_grid(values: np.ndarray, width: float = 0.03) -> np.ndarray:
    frac = np.abs(values / WALL_GRID_M - np.round(values / WALL_GRID_M)) * WALL_GRID_M
    return frac < width


def _describe(spec: SceneSpec, masks: np.ndarray, depth: np.ndarray) -> list[dict]:
    """Per shape: what it is, how big, where, and its visible box (for region questions)."""
    cam = np.array([spec.camera.x, spec.camera.height, spec.camera.z])
    out = []
    for k, shape in enumerate(spec.shapes, start=1):
        mask = masks == k
        ys, xs = np.nonzero(mask)
        visible = len(xs) > 0
        out.append(
            {
                "id": k,
                "kind": shape.kind,
                "size_m": [round(v, 4) for v in shape.size],
                "center_m": [round(v, 4) for v in shape.center],
                "distance_m": round(float(np.linalg.norm(np.asarray(shape.center) - cam)), 4),
                "visible": bool(visible),
                "box": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if visible else None,
                "pixels": int(len(xs)),
                "median_depth_m": round(float(np.median(depth[mask])), 4) if visible else None,
            }
        )
    return out
