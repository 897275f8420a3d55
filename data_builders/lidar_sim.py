"""A spinning LiDAR and a camera in an analytic street, to measure label leaks at real density.

The world (vehicle frame: x forward, y left, z up) is a ground plane, building fronts and side
walls, and thin near objects -- poles, pedestrians, cars, sign plates -- in front of them. Each
source's LiDAR is cast ray by ray with its real beam elevations, azimuth step and mounting, the
returns go through :func:`data_builders.lidar.camera_labels` like a real sweep, and every
label is compared with what the camera really sees at that pixel (the camera ray through the
pixel centre, cast into the same world). A *leak* is a label more than 5 % farther than that:
a surface behind a near object. ``python benchmarks/lidar_visibility.py`` prints the table
docs/sources-lidar.md quotes; tests/test_lidar_visibility.py holds it to < 0.1 %.

Sensor layouts are from the public specifications and calibrations (docs/sources-lidar.md,
"Visibility"); where a value is an estimate the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_builders.lidar import VisibilityConfig, camera_labels
from depthlm.geometry import Intrinsics

# camera axes (x right, y down, z forward) expressed in the vehicle frame (x forward, y left, z up)
VEHICLE_FROM_CAMERA = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Lidar:
    """One spinning sensor: beam elevations (deg, + up), azimuth step (deg), mount (m, vehicle)."""

    elevations_deg: tuple[float, ...]
    azimuth_step_deg: float
    position: tuple[float, float, float]
    max_range: float = 120.0
    azimuth_span_deg: tuple[float, float] = (-180.0, 180.0)

    @property
    def elevation_step_deg(self) -> float:
        """Largest gap between neighbouring beams (what a splat must bridge)."""
        e = np.sort(np.asarray(self.elevations_deg))
        return float(np.max(np.diff(e)))


@dataclass(frozen=True)
class Rig:
    name: str
    lidars: tuple[Lidar, ...]
    camera: Intrinsics
    camera_position: tuple[float, float, float]
    notes: str = ""
    beams_released: bool = True  # the release stores each point's laser (DDAD's merged cloud does not)


def _uniform(top: float, bottom: float, n: int) -> tuple[float, ...]:
    return tuple(np.linspace(bottom, top, n).round(4).tolist())


VLP32C = (-25, -15.639, -11.31, -8.843, -7.254, -6.148, -5.333, -4.667, -4, -3.667, -3.333, -3, -2.667,
          -2.333, -2, -1.667, -1.333, -1, -0.667, -0.333, 0, 0.333, 0.667, 1, 1.333, 1.667, 2.333,
          3.333, 4.667, 7, 10.333, 15)  # fmt: skip

RIGS: dict[str, Rig] = {
    "nuscenes": Rig(
        "nuscenes",
        (Lidar(_uniform(10.67, -30.67, 32), 0.3333, (0.943, 0.0, 1.841)),),
        Intrinsics(1266.4, 1266.4, 816.3, 491.5, 1600, 900),
        (1.704, 0.016, 1.512),
        "HDL-32E at 20 Hz (1.33 deg beams, ~1,080 returns per beam); CAM_FRONT",
    ),
    "argoverse2": Rig(
        "argoverse2",
        (
            Lidar(VLP32C, 0.2, (1.35, 0.0, 1.95)),
            Lidar(tuple(-e for e in VLP32C), 0.2, (1.35, 0.0, 1.75)),
        ),
        Intrinsics(1773.0, 1773.0, 775.0, 1024.0, 1550, 2048),
        (1.63, 0.0, 1.42),
        "2x VLP-32C at 10 Hz, stacked, the lower one upside down; ring_front_center (portrait)",
    ),
    "waymo": Rig(
        "waymo",
        (Lidar(_uniform(2.4, -17.6, 64), 360 / 2650, (1.43, 0.0, 2.184), max_range=75.0),),
        Intrinsics(2055.0, 2055.0, 960.0, 640.0, 1920, 1280),
        (1.54, -0.02, 2.12),
        "TOP: 64 beams over +2.4..-17.6 deg, 2,650 columns; FRONT camera",
    ),
    "ddad": Rig(
        "ddad",
        (Lidar(_uniform(10.0, -20.0, 64), 0.07, (1.5, 0.0, 1.9), 200.0, (-60.0, 60.0)),),
        Intrinsics(2181.0, 2181.0, 968.0, 608.0, 1936, 1216),
        (1.6, 0.0, 1.55),
        "front Luminar-H2 modelled as 64 lines over 30 deg x 0.07 deg, 120 deg field (estimate); CAMERA_01",
        beams_released=False,
    ),
}


# ----------------------------------------------------------------------------- the world


@dataclass
class World:
    """Axis-aligned boxes (lo, hi), vertical cylinders (x, y, radius, top) and the ground z = 0."""

    boxes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    cylinders: list[tuple[float, float, float, float]] = field(default_factory=list)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distance along each unit ray to the first surface (inf if none)."""
        o = np.broadcast_to(np.asarray(origins, float), dirs.shape)
        t = np.full(len(dirs), np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = -o[:, 2] / dirs[:, 2]
            t = np.where((dirs[:, 2] < 0) & (tg > 0), np.minimum(t, tg), t)
            for lo, hi in self.boxes:
                t1, t2 = (lo - o) / dirs, (hi - o) / dirs
                near = np.nanmax(np.minimum(t1, t2), axis=1)
                far = np.nanmin(np.maximum(t1, t2), axis=1)
                hit = (near <= far) & (near > 1e-6)
                t = np.where(hit, np.minimum(t, near), t)
            for cx, cy, r, top in self.cylinders:
                px, py = o[:, 0] - cx, o[:, 1] - cy
                a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
                b = 2 * (px * dirs[:, 0] + py * dirs[:, 1])
                c = px**2 + py**2 - r * r
                disc = b * b - 4 * a * c
                tc = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
                z = o[:, 2] + tc * dirs[:, 2]
                hit = (disc > 0) & (tc > 1e-6) & (z >= 0) & (z <= top)
                t = np.where(hit, np.minimum(t, tc), t)
        return t


def street(seed: int) -> World:
    """Building fronts 30-60 m ahead, side walls, and thin near objects in front of them."""
    rng = np.random.default_rng(seed)
    w = World()
    box = lambda lo, hi: w.boxes.append((np.asarray(lo, float), np.asarray(hi, float)))  # noqa: E731
    front = rng.uniform(30, 60)
    box([front, -60, 0], [front + 5, 60, 20])
    for side in (-1, 1):
        y = side * rng.uniform(8, 14)
        box([5, min(y, y + side * 3), 0], [front, max(y, y + side * 3), 15])
    for _ in range(10):  # poles
        w.cylinders.append((rng.uniform(4, 28), rng.uniform(-9, 9), rng.uniform(0.05, 0.2), 6.0))
    for _ in range(8):  # pedestrians
        x, y = rng.uniform(4, 25), rng.uniform(-8, 8)
        box([x, y, 0], [x + 0.4, y + 0.6, rng.uniform(1.5, 1.9)])
    for _ in range(4):  # cars
        x, y = rng.uniform(6, 30), rng.uniform(-8, 8)
        box([x, y, 0], [x + 4.5, y + 1.8, 1.5])
    for _ in range(5):  # sign plates in the air (horizontal edges)
        x, y, z = rng.uniform(5, 25), rng.uniform(-7, 7), rng.uniform(2.2, 4.0)
        box([x, y, z], [x + 0.05, y + rng.uniform(0.5, 2.0), z + rng.uniform(0.4, 1.0)])
    return w


# ----------------------------------------------------------------------------- sensors


def sweep(world: World, lidar: Lidar) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) vehicle-frame returns of one revolution and the beam (laser index) of each."""
    el = np.radians(np.asarray(lidar.elevations_deg))
    a0, a1 = lidar.azimuth_span_deg
    az = np.radians(np.arange(a0, a1, lidar.azimuth_step_deg))
    e, a = np.meshgrid(el, az, indexing="ij")
    dirs = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)
    origin = np.asarray(lidar.position, float)
    t = world.cast(origin, dirs)
    ok = t <= lidar.max_range
    beam = np.repeat(np.arange(len(el)), len(az))
    return origin + dirs[ok] * t[ok, None], beam[ok]


def camera_truth(world: World, rig: Rig, pixels: np.ndarray) -> np.ndarray:
    """z-depth the camera sees through each (x, y) pixel position."""
    k = rig.camera
    d_cam = np.stack([(pixels[:, 0] - k.cx) / k.fx, (pixels[:, 1] - k.cy) / k.fy, np.ones(len(pixels))], 1)
    d_veh = d_cam @ VEHICLE_FROM_CAMERA.T
    norm = np.linalg.norm(d_veh, axis=1)
    t = world.cast(np.asarray(rig.camera_position, float), d_veh / norm[:, None])
    return t / norm  # z = t * (d_cam_z = 1) / |d|


def to_camera(rig: Rig, points_vehicle: np.ndarray) -> np.ndarray:
    return (points_vehicle - np.asarray(rig.camera_position)) @ VEHICLE_FROM_CAMERA


@dataclass
class LeakStats:
    labels: int = 0
    leaks: int = 0  # labels > 5 % farther than what the camera sees there
    visible_pixels: int = 0  # pixels holding a return the camera really sees
    kept_visible: int = 0  # of those, labelled with the right depth

    @property
    def leak_rate(self) -> float:
        return self.leaks / max(self.labels, 1)

    @property
    def kept(self) -> float:
        return self.kept_visible / max(self.visible_pixels, 1)

    def add(self, other: LeakStats) -> None:
        for k in self.__dict__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


def simulate(rig: Rig, seed: int, config: VisibilityConfig | None = None, tol: float = 0.05) -> LeakStats:
    """Leaks and kept visible returns of one street scene seen by `rig`."""
    world = street(seed)
    pts, origins, beams = [], [], []
    for k, lidar in enumerate(rig.lidars):
        p, b = sweep(world, lidar)
        pts.append(p)
        beams.append(b + 1000 * k)
        origins.append(np.broadcast_to(to_camera(rig, np.asarray(lidar.position)[None]), p.shape))
    p_veh = np.concatenate(pts)
    p_cam = to_camera(rig, p_veh)
    origin_cam = np.concatenate(origins)
    cfg = config or sensor_config(rig)
    ij, z, _ = camera_labels(
        p_cam,
        rig.camera,
        cfg,
        sensor_origins=origin_cam,
        beams=np.concatenate(beams) if rig.beams_released else None,
    )
    truth = camera_truth(world, rig, ij.astype(float))
    good = np.abs(z - truth) <= tol * truth
    st = LeakStats(labels=len(z), leaks=int(np.sum(z > truth * (1 + tol))))
    # returns the camera sees (its own ray reaches them), by the pixel that holds them
    front = p_cam[:, 2] > 0.5
    uv = np.stack([rig.camera.fx * p_cam[front, 0] / p_cam[front, 2] + rig.camera.cx,
                   rig.camera.fy * p_cam[front, 1] / p_cam[front, 2] + rig.camera.cy], 1)  # fmt: skip
    w, h = rig.camera.size
    pix = np.floor(uv + 0.5).astype(int)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
    seen = (
        np.abs(camera_truth(world, rig, uv[inside]) - p_cam[front][inside, 2])
        <= 1e-3 * p_cam[front][inside, 2]
    )
    vis = {tuple(x) for x in pix[inside][seen]}
    st.visible_pixels = len(vis)
    st.kept_visible = sum(1 for x, ok in zip(map(tuple, ij), good) if ok and x in vis)
    return st


def sensor_config(rig: Rig, **overrides) -> VisibilityConfig:
    """The visibility settings the source of this rig ships (its sensor's azimuth and beam steps)."""
    from data_builders.sources import argoverse2, ddad, nuscenes, waymo

    steps = {
        "nuscenes": nuscenes.HDL32E_STEPS_DEG,
        "argoverse2": argoverse2.VLP32C_STEPS_DEG,
        "waymo": waymo.WAYMO_TOP_STEPS_DEG,
        "ddad": ddad.LUMINAR_STEPS_DEG,
    }[rig.name]
    return VisibilityConfig(azimuth_step_deg=steps[0], elevation_step_deg=steps[1], **overrides)
