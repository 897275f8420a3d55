"""Tiny driving-dataset releases with a synthetic LiDAR sweep of known geometry.

The world holds a wall (plane x = 30 m, facing the car) and a box in front of it
(front face x = 14 m). A car drives along +x; the LiDAR fires at t_lidar, the camera
at t_camera, when the car is `ego_shift` metres further on. The LiDAR sits left of and
above the camera, so it hits wall patches behind the box that the camera cannot see
("see-through" points).

Everything expected is computed here with independent math (scipy rotations, explicit
ray casting, the OpenCV distortion formula written out), never with
data_builders.lidar, and each writer puts the same rig into one release's real
layout (file names, columns, quaternion order, timestamp units).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from PIL import Image
from scipy.spatial.transform import Rotation

WALL_X = 30.0
BOX_MIN = np.array([14.0, -2.0, 0.0])
BOX_MAX = np.array([16.0, 2.0, 3.0])
W, H, F = 320, 240, 300.0  # image size and focal length (pixels)
CX, CY = (W - 1) / 2, (H - 1) / 2  # pixel-centre convention
# OpenCV camera axes expressed in the ego frame (x forward, y left, z up): z_cam = x_ego, x_cam = -y_ego, y_cam = -z_ego.
EGO_FROM_CV = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def transform(rot: np.ndarray, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = t
    return m


def yaw(deg: float) -> np.ndarray:
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


@dataclass
class Rig:
    """Poses of one LiDAR sweep and one camera image. world_from_* are 4x4."""

    ego_shift: float = 1.0  # metres driven between the LiDAR and the camera timestamps
    heading_deg: float = 3.0

    @property
    def world_from_ego_lidar(self) -> np.ndarray:
        return transform(yaw(self.heading_deg), [0.0, 0.0, 0.0])

    @property
    def world_from_ego_cam(self) -> np.ndarray:
        step = yaw(self.heading_deg) @ np.array([self.ego_shift, 0.0, 0.0])
        return transform(yaw(self.heading_deg), step)

    # the LiDAR is turned 90 degrees (its x axis points left) so sensor != ego frame
    ego_from_lidar = transform(yaw(90.0), [0.0, 0.8, 1.9])
    ego_from_cam = transform(EGO_FROM_CV, [1.5, 0.0, 1.5])  # OpenCV camera axes

    @property
    def world_from_lidar(self) -> np.ndarray:
        return self.world_from_ego_lidar @ self.ego_from_lidar

    @property
    def world_from_cam(self) -> np.ndarray:
        return self.world_from_ego_cam @ self.ego_from_cam


def cast(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """World hit points of rays (nearest of wall and box); NaN where a ray hits nothing."""
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_wall = (WALL_X - origin[0]) / dirs[:, 0]
        hit = origin + t_wall[:, None] * dirs
        on_wall = (t_wall > 0) & (np.abs(hit[:, 1]) < 40) & (hit[:, 2] > -10) & (hit[:, 2] < 20)
        t_wall = np.where(on_wall, t_wall, np.inf)
        t_box = _slab(origin, dirs)
    t = np.minimum(t_wall, t_box)
    t[~np.isfinite(t)] = np.nan
    return origin + t[:, None] * dirs


def _slab(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Entry distance of each ray into the box (inf when it misses)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (BOX_MIN - origin) / dirs
        t2 = (BOX_MAX - origin) / dirs
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((t_far >= t_near) & (t_near > 0), t_near, np.inf)


def visible_from(center: np.ndarray, points: np.ndarray) -> np.ndarray:
    """True where the segment center -> point reaches the point before entering the box."""
    d = points - center
    dist = np.linalg.norm(d, axis=1)
    t_box = _slab(center, d / dist[:, None])
    return t_box >= dist - 1e-6


def lidar_rays(az_deg=(-60, 60, 0.25), el_deg=(-12, 12, 0.5)) -> np.ndarray:
    """Unit ray directions in the LiDAR frame; the LiDAR's x axis points left of the car,
    so 'forward for the car' is azimuth -90 degrees here."""
    az = np.deg2rad(np.arange(az_deg[0], az_deg[1] + 1e-9, az_deg[2]) - 90.0)
    el = np.deg2rad(np.arange(el_deg[0], el_deg[1] + 1e-9, el_deg[2]))
    a, e = np.meshgrid(az, el)
    return np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], axis=-1).reshape(-1, 3)


def sweep_world(rig: Rig) -> np.ndarray:
    """(N, 3) world hits of the sweep (rays that hit nothing dropped)."""
    origin = rig.world_from_lidar[:3, 3]
    hits = cast(origin, lidar_rays() @ rig.world_from_lidar[:3, :3].T)
    return hits[np.all(np.isfinite(hits), axis=1)]


def sweep_beams(rig: Rig) -> np.ndarray:
    """(N,) beam (elevation row of lidar_rays) of each hit sweep_world keeps: the ring /
    laser_number a release stores with each point."""
    origin = rig.world_from_lidar[:3, 3]
    rays = lidar_rays()
    hits = cast(origin, rays @ rig.world_from_lidar[:3, :3].T)
    n_az = len(np.arange(-60, 60 + 1e-9, 0.25))
    return (np.arange(len(rays)) // n_az)[np.all(np.isfinite(hits), axis=1)]


def to_frame(frame_from_world: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ frame_from_world[:3, :3].T + frame_from_world[:3, 3]


@dataclass
class Expected:
    pixels: np.ndarray  # (N, 2) integer pixel holding each world point
    depths: np.ndarray  # (N,) z in the camera
    visible: np.ndarray  # (N,) the camera sees this point (not behind the box)
    in_image: np.ndarray  # (N,)

    def truth(self) -> dict[tuple[int, int], float]:
        """Nearest visible depth per pixel: what a perfect builder labels."""
        out: dict[tuple[int, int], float] = {}
        for (x, y), d, ok in zip(self.pixels, self.depths, self.visible & self.in_image):
            if ok and d < out.get((int(x), int(y)), np.inf):
                out[(int(x), int(y))] = float(d)
        return out


def expected(rig: Rig, world_points: np.ndarray, world_from_cam: np.ndarray | None = None) -> Expected:
    world_from_cam = rig.world_from_cam if world_from_cam is None else world_from_cam
    cam = to_frame(np.linalg.inv(world_from_cam), world_points)
    u = F * cam[:, 0] / cam[:, 2] + CX
    v = F * cam[:, 1] / cam[:, 2] + CY
    pix = np.floor(np.stack([u, v], 1) + 0.5).astype(int)
    in_image = (cam[:, 2] > 0.5) & (pix[:, 0] >= 0) & (pix[:, 0] < W) & (pix[:, 1] >= 0) & (pix[:, 1] < H)
    return Expected(pix, cam[:, 2], visible_from(world_from_cam[:3, 3], world_points), in_image)


def camera_image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def _quat_wxyz(m: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(m[:3, :3]).as_quat()
    return [float(w), float(x), float(y), float(z)]


def _quat_xyzw(m: np.ndarray) -> list[float]:
    return [float(v) for v in Rotation.from_matrix(m[:3, :3]).as_quat()]


# ----------------------------------------------------------------------------- nuScenes


def write_nuscenes(
    root: Path, rig: Rig, version: str = "v1.0-mini", scenes=("scene-0061", "scene-0103")
) -> None:
    """One key-frame sample per scene: CAM_FRONT + LIDAR_TOP (timestamps in microseconds)."""
    (root / version).mkdir(parents=True)
    t_lidar = 1532402927647951
    t_cam = t_lidar + 50_000  # camera 50 ms after the LiDAR
    points_lidar = to_frame(np.linalg.inv(rig.world_from_lidar), sweep_world(rig))
    tables = {
        k: [] for k in ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose", "log")
    }
    tables["sensor"] = [
        {"token": "sensor-cam", "channel": "CAM_FRONT", "modality": "camera"},
        {"token": "sensor-lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
    ]
    k = [[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]]
    tables["calibrated_sensor"] = [
        {
            "token": "cs-cam",
            "sensor_token": "sensor-cam",
            "translation": rig.ego_from_cam[:3, 3].tolist(),
            "rotation": _quat_wxyz(rig.ego_from_cam),
            "camera_intrinsic": k,
        },
        {
            "token": "cs-lidar",
            "sensor_token": "sensor-lidar",
            "translation": rig.ego_from_lidar[:3, 3].tolist(),
            "rotation": _quat_wxyz(rig.ego_from_lidar),
            "camera_intrinsic": [],
        },
    ]
    for i, name in enumerate(scenes):
        s = f"{i}"
        tables["scene"].append(
            {
                "token": f"scene{s}",
                "log_token": "log0",
                "nbr_samples": 1,
                "first_sample_token": f"sample{s}",
                "last_sample_token": f"sample{s}",
                "name": name,
                "description": "synthetic wall and box",
            }
        )
        tables["sample"].append(
            {"token": f"sample{s}", "timestamp": t_lidar, "prev": "", "next": "", "scene_token": f"scene{s}"}
        )
        for kind, ts, world_from_ego in (
            ("lidar", t_lidar, rig.world_from_ego_lidar),
            ("cam", t_cam, rig.world_from_ego_cam),
        ):
            tables["ego_pose"].append(
                {
                    "token": f"ego-{kind}{s}",
                    "timestamp": ts,
                    "rotation": _quat_wxyz(world_from_ego),
                    "translation": world_from_ego[:3, 3].tolist(),
                }
            )
        cam_file = f"samples/CAM_FRONT/n008-synthetic__CAM_FRONT__{t_cam + i}.jpg"
        lidar_file = f"samples/LIDAR_TOP/n008-synthetic__LIDAR_TOP__{t_lidar + i}.pcd.bin"
        for kind, ts, fname, fmt, hw in (
            ("cam", t_cam + i, cam_file, "jpg", (H, W)),
            ("lidar", t_lidar + i, lidar_file, "pcd", (0, 0)),
        ):
            tables["sample_data"].append(
                {
                    "token": f"sd-{kind}{s}",
                    "sample_token": f"sample{s}",
                    "ego_pose_token": f"ego-{kind}{s}",
                    "calibrated_sensor_token": f"cs-{kind}",
                    "timestamp": ts,
                    "fileformat": fmt,
                    "is_key_frame": True,
                    "height": hw[0],
                    "width": hw[1],
                    "filename": fname,
                    "prev": "",
                    "next": "",
                }
            )
        (root / cam_file).parent.mkdir(parents=True, exist_ok=True)
        (root / lidar_file).parent.mkdir(parents=True, exist_ok=True)
        camera_image(i).save(root / cam_file, quality=95)
        five = np.zeros((len(points_lidar), 5), dtype=np.float32)
        five[:, :3] = points_lidar
        five[:, 3] = 7.0  # intensity
        five[:, 4] = sweep_beams(rig)  # ring: the beam each point came from
        five.tofile(root / lidar_file)
    for name, rows in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(rows))


# ----------------------------------------------------------------------------- Argoverse 2


def write_argoverse2(
    root: Path,
    rig: Rig,
    split: str = "val",
    log_id: str = "0c6e62d7-bdfa-3061-8d3d-03b13aa21f68",
    camera_dt_ns: int = 20_000_000,
):
    """One log, one sweep (ego frame at t_lidar, nanoseconds) and one ring_front_center image."""
    log = root / split / log_id
    (log / "calibration").mkdir(parents=True)
    (log / "sensors" / "lidar").mkdir(parents=True)
    (log / "sensors" / "cameras" / "ring_front_center").mkdir(parents=True)
    t_lidar = 315968112437425433
    t_cam = t_lidar + camera_dt_ns  # 20 ms later by default (av2 pairs within 25 ms)
    _pose_rows = {"qw": [], "qx": [], "qy": [], "qz": [], "tx_m": [], "ty_m": [], "tz_m": []}
    for m in (rig.world_from_ego_lidar, rig.world_from_ego_cam):
        for key, val in zip(("qw", "qx", "qy", "qz"), _quat_wxyz(m)):
            _pose_rows[key].append(val)
        for key, val in zip(("tx_m", "ty_m", "tz_m"), m[:3, 3]):
            _pose_rows[key].append(float(val))
    feather.write_feather(
        pa.table({"timestamp_ns": pa.array([t_lidar, t_cam], pa.int64()), **_pose_rows}),
        log / "city_SE3_egovehicle.feather",
    )
    # one simulated sensor: lasers >= 32 (the release's down_lidar) come from the same place
    ext = {"sensor_name": ["ring_front_center", "up_lidar", "down_lidar"]}
    for key in ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m"):
        ext[key] = []
    for m in (rig.ego_from_cam, rig.ego_from_lidar, rig.ego_from_lidar):
        for key, val in zip(("qw", "qx", "qy", "qz"), _quat_wxyz(m)):
            ext[key].append(val)
        for key, val in zip(("tx_m", "ty_m", "tz_m"), m[:3, 3]):
            ext[key].append(float(val))
    feather.write_feather(pa.table(ext), log / "calibration" / "egovehicle_SE3_sensor.feather")
    feather.write_feather(
        pa.table(
            {
                "sensor_name": ["ring_front_center"],
                "fx_px": [F],
                "fy_px": [F],
                "cx_px": [CX],
                "cy_px": [CY],
                # real values (README example); for reference only, the released images are undistorted
                "k1": [-0.263],
                "k2": [-0.212],
                "k3": [0.329],
                "height_px": pa.array([H], pa.int64()),
                "width_px": pa.array([W], pa.int64()),
            }
        ),
        log / "calibration" / "intrinsics.feather",
    )
    ego = to_frame(np.linalg.inv(rig.world_from_ego_lidar), sweep_world(rig))
    n = len(ego)
    feather.write_feather(
        pa.table(
            {
                "x": ego[:, 0].astype(np.float32),
                "y": ego[:, 1].astype(np.float32),
                "z": ego[:, 2].astype(np.float32),
                "intensity": np.full(n, 20, np.uint8),
                "laser_number": sweep_beams(rig).astype(np.uint8),
                "offset_ns": (np.arange(n) * 1000).astype(np.int32),
            }
        ),
        log / "sensors" / "lidar" / f"{t_lidar}.feather",
    )
    camera_image(1).save(log / "sensors" / "cameras" / "ring_front_center" / f"{t_cam}.jpg", quality=95)


# ----------------------------------------------------------------------------- DDAD (DGP)


def _dgp_pose(m: np.ndarray) -> dict:
    qx, qy, qz, qw = _quat_xyzw(m)
    x, y, z = (float(v) for v in m[:3, 3])
    return {"translation": {"x": x, "y": y, "z": z}, "rotation": {"qx": qx, "qy": qy, "qz": qz, "qw": qw}}


def write_ddad(
    root: Path, rig: Rig, scenes=(("000150", "1"), ("000000", "0")), datum_names=("CAMERA_01", "LIDAR")
) -> None:
    """ddad.json index + one scene per (folder, split id); one sample with CAMERA_01 and LIDAR
    (`datum_names` as the scene file spells them: DDAD's README writes camera_01 and lidar)."""
    splits: dict[str, dict] = {}
    for folder, split_id in scenes:
        scene_dir = root / folder
        for sub in ("calibration", "rgb/CAMERA_01", "point_cloud/LIDAR"):
            (scene_dir / sub).mkdir(parents=True)
        calib_key = "a" * 40
        calib = {
            "names": ["camera_01", "lidar"],
            "intrinsics": [
                {"fx": F, "fy": F, "cx": CX, "cy": CY},
                {},
            ],  # zero fields omitted, as protobuf JSON does
            "extrinsics": [_dgp_pose(rig.ego_from_cam), _dgp_pose(rig.ego_from_lidar)],
        }
        (scene_dir / "calibration" / f"{calib_key}.json").write_text(json.dumps(calib))
        ts_cam, ts_lidar = "15616458249936530", "15616458249836530"
        img_file, pc_file = f"rgb/CAMERA_01/{ts_cam}.jpg", f"point_cloud/LIDAR/{ts_lidar}.npz"
        camera_image(2).save(scene_dir / img_file, quality=95)
        pts = to_frame(np.linalg.inv(rig.world_from_lidar), sweep_world(rig))
        data = np.concatenate([pts, np.full((len(pts), 1), 9.0)], axis=1).astype(np.float32)
        np.savez_compressed(scene_dir / pc_file, data=data)
        datums = [
            {
                "id": {
                    "log": "synthetic",
                    "name": datum_names[0],
                    "timestamp": "2019-06-27T14:40:24.993653Z",
                    "index": "0",
                },
                "key": "cam-key",
                "datum": {
                    "image": {
                        "filename": img_file,
                        "height": H,
                        "width": W,
                        "channels": 3,
                        "pose": _dgp_pose(rig.world_from_cam),
                    }
                },
            },
            {
                "id": {
                    "log": "synthetic",
                    "name": datum_names[1],
                    "timestamp": "2019-06-27T14:40:24.983653Z",
                    "index": "0",
                },
                "key": "lidar-key",
                "datum": {
                    "point_cloud": {
                        "filename": pc_file,
                        "point_format": ["X", "Y", "Z", "INTENSITY"],
                        "pose": _dgp_pose(rig.world_from_lidar),
                    }
                },
            },
        ]
        scene = {
            "name": folder,
            "samples": [
                {
                    "id": {"log": "synthetic", "index": "0"},
                    "datum_keys": ["cam-key", "lidar-key"],
                    "calibration_key": calib_key,
                }
            ],
            "data": datums,
        }
        scene_file = f"scene_{'b' * 40}.json"
        (scene_dir / scene_file).write_text(json.dumps(scene))
        splits.setdefault(split_id, {"filenames": []})["filenames"].append(f"{folder}/{scene_file}")
    (root / "ddad.json").write_text(json.dumps({"metadata": {"name": "DDAD"}, "scene_splits": splits}))


# ----------------------------------------------------------------------------- Waymo v2

WAYMO_DIST = dict(k1=-0.12, k2=0.02, p1=0.001, p2=-0.0015, k3=0.0)
WAYMO_RI = (40, 1440)  # range image rows (beams) x columns (azimuth bins)
WAYMO_INCL = (np.deg2rad(-12.0), np.deg2rad(12.0))


def opencv_distort(xn: np.ndarray, yn: np.ndarray, k1, k2, p1, p2, k3):
    r2 = xn * xn + yn * yn
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    return (
        xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn * xn),
        yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xn * yn,
    )


WAYMO_SPIN_SPEED = 10.0  # m/s: the car moves 1 m while the TOP LiDAR spins once (0.1 s)


def waymo_pixel_pose(rig: Rig) -> np.ndarray:
    """(W,) world_from_vehicle 4x4 per range-image column: the car drives on during the spin."""
    w = WAYMO_RI[1]
    dt = (np.arange(w) / w - 0.5) * 0.1  # seconds relative to the frame timestamp
    heading = yaw(rig.heading_deg)
    out = np.repeat(rig.world_from_ego_lidar[None], w, axis=0)
    out[:, :3, 3] += (heading @ np.array([WAYMO_SPIN_SPEED, 0.0, 0.0]))[None] * dt[:, None]
    return out


def waymo_sweep(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """Range image (H, W) laid out as Waymo's range_image_utils reads it, and the (H, W, 3) world hits.

    Column j looks along vehicle azimuth (ratio_j * 2 - 1) * pi; row i along the
    inclination list reversed (row 0 = highest beam). Each column is fired from where
    the car is at that column's time (waymo_pixel_pose), as a spinning LiDAR does.
    """
    h, w = WAYMO_RI
    incl = ((0.5 + np.arange(h)) / h * (WAYMO_INCL[1] - WAYMO_INCL[0]) + WAYMO_INCL[0])[::-1]
    az_correction = np.arctan2(rig.ego_from_lidar[1, 0], rig.ego_from_lidar[0, 0])
    az = ((np.arange(w, 0, -1) - 0.5) / w * 2 - 1) * np.pi - az_correction
    a, e = np.meshgrid(az, incl)
    dirs_lidar = np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], -1)  # (H, W, 3)
    world_from_lidar = waymo_pixel_pose(rig) @ rig.ego_from_lidar  # (W, 4, 4)
    origins = np.broadcast_to(world_from_lidar[None, :, :3, 3], (h, w, 3)).reshape(-1, 3)
    dirs = np.einsum("wij,hwj->hwi", world_from_lidar[:, :3, :3], dirs_lidar).reshape(-1, 3)
    hits = _cast_many(origins, dirs)
    ranges = np.linalg.norm(hits - origins, axis=1)
    ranges[~np.isfinite(ranges)] = -1.0  # Waymo marks "no return" with a non-positive range
    return ranges.reshape(h, w), hits.reshape(h, w, 3)


def _cast_many(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """cast() for rays with their own origins (one call per distinct origin)."""
    out = np.empty_like(dirs)
    uniq, inverse = np.unique(origins, axis=0, return_inverse=True)
    for k, o in enumerate(uniq):
        sel = inverse.ravel() == k
        out[sel] = cast(o, dirs[sel])
    return out


def _rolling_shutter_columns(rs: dict | None, pose_t: float) -> dict:
    if not rs:
        return {}
    p = "[CameraImageComponent]"
    half = rs["readout_s"] / 2
    cols = {
        f"{p}.rolling_shutter_params.shutter": [0.0],
        f"{p}.rolling_shutter_params.camera_trigger_time": [pose_t - half],
        f"{p}.rolling_shutter_params.camera_readout_done_time": [pose_t + half],
    }
    for i, a in enumerate("xyz"):
        cols[f"{p}.velocity.linear_velocity.{a}"] = [float(rs["velocity"][i])]
        cols[f"{p}.velocity.angular_velocity.{a}"] = [0.0]
    return cols


def write_waymo(
    root: Path,
    rig: Rig,
    split_dir: str = "validation",
    segment: str = "10203656353524179475_7625_000_7645_000",
    rolling_shutter: dict | None = None,
):
    """One frame: FRONT camera (distorted JPEG), TOP range image, calibrations, poses, projection.

    `rolling_shutter` (keys direction, velocity, readout_s) adds the camera's rolling-shutter
    columns: exposure from pose_timestamp - readout_s/2 to + readout_s/2, the car moving at
    `velocity` (world frame, m/s). The projection pixels stay those of the pose itself."""
    ts = 1557855899201187
    d = root / split_dir
    for comp in (
        "camera_image",
        "camera_calibration",
        "lidar",
        "lidar_calibration",
        "vehicle_pose",
        "lidar_camera_projection",
    ):
        (d / comp).mkdir(parents=True)
    keys = {"key.segment_context_name": [segment], "key.frame_timestamp_micros": pa.array([ts], pa.int64())}
    vehicle_from_cam = transform(np.eye(3), [1.5, 0.0, 1.5])  # Waymo camera axes = vehicle axes
    # image (raw = distorted): any content; the test checks labels, image warps are tested elsewhere
    buf = io.BytesIO()
    camera_image(3).save(buf, format="JPEG", quality=95)
    world_from_vehicle_image = rig.world_from_ego_cam
    pq.write_table(
        pa.table(
            {
                **keys,
                "key.camera_name": pa.array([1], pa.int8()),
                "[CameraImageComponent].image": pa.array([buf.getvalue()], pa.binary()),
                "[CameraImageComponent].pose.transform": [world_from_vehicle_image.ravel().tolist()],
                "[CameraImageComponent].pose_timestamp": [ts / 1e6 + 0.05],
                **_rolling_shutter_columns(rolling_shutter, ts / 1e6 + 0.05),
            }
        ),
        d / "camera_image" / f"{segment}.parquet",
    )
    c = "[CameraCalibrationComponent]"
    pq.write_table(
        pa.table(
            {
                "key.segment_context_name": [segment],
                "key.camera_name": pa.array([1], pa.int8()),
                f"{c}.intrinsic.f_u": [F],
                f"{c}.intrinsic.f_v": [F],
                f"{c}.intrinsic.c_u": [CX + 0.5],  # Waymo: 0 = left edge of the first pixel
                f"{c}.intrinsic.c_v": [CY + 0.5],
                **{f"{c}.intrinsic.{k}": [v] for k, v in WAYMO_DIST.items()},
                f"{c}.extrinsic.transform": [vehicle_from_cam.ravel().tolist()],
                f"{c}.width": pa.array([W], pa.int32()),
                f"{c}.height": pa.array([H], pa.int32()),
                f"{c}.rolling_shutter_direction": pa.array(
                    [rolling_shutter["direction"] if rolling_shutter else 5], pa.int8()
                ),
            }
        ),
        d / "camera_calibration" / f"{segment}.parquet",
    )
    ranges, hits = waymo_sweep(rig)
    # per-pixel vehicle pose of the TOP LiDAR: roll, pitch, yaw, x, y, z (world_from_vehicle)
    pix_pose = np.zeros((*ranges.shape, 6), dtype=np.float32)
    poses = waymo_pixel_pose(rig)
    pix_pose[..., 2] = np.deg2rad(rig.heading_deg)
    pix_pose[..., 3:6] = poses[None, :, :3, 3]
    (d / "lidar_pose").mkdir()
    pq.write_table(
        pa.table(
            {
                **keys,
                "key.laser_name": pa.array([1], pa.int8()),
                "[LiDARPoseComponent].range_image_return1.values": [pix_pose.ravel().tolist()],
                "[LiDARPoseComponent].range_image_return1.shape": [list(pix_pose.shape)],
            }
        ),
        d / "lidar_pose" / f"{segment}.parquet",
    )
    ri = np.zeros((*ranges.shape, 4), dtype=np.float32)
    ri[..., 0] = ranges
    ri[..., 1] = 0.3  # intensity
    pq.write_table(
        pa.table(
            {
                **keys,
                "key.laser_name": pa.array([1], pa.int8()),
                "[LiDARComponent].range_image_return1.values": [ri.ravel().tolist()],
                "[LiDARComponent].range_image_return1.shape": [list(ri.shape)],
            }
        ),
        d / "lidar" / f"{segment}.parquet",
    )
    lc = "[LiDARCalibrationComponent]"
    pq.write_table(
        pa.table(
            {
                "key.segment_context_name": [segment],
                "key.laser_name": pa.array([1], pa.int8()),
                f"{lc}.extrinsic.transform": [rig.ego_from_lidar.ravel().tolist()],
                f"{lc}.beam_inclination.min": [float(WAYMO_INCL[0])],
                f"{lc}.beam_inclination.max": [float(WAYMO_INCL[1])],
                f"{lc}.beam_inclination.values": pa.array([None], pa.list_(pa.float64())),
            }
        ),
        d / "lidar_calibration" / f"{segment}.parquet",
    )
    pq.write_table(
        pa.table(
            {
                **keys,
                "[VehiclePoseComponent].world_from_vehicle.transform": [
                    rig.world_from_ego_lidar.ravel().tolist()
                ],
            }
        ),
        d / "vehicle_pose" / f"{segment}.parquet",
    )
    # projection of every return into the RAW image (camera at its own pose), edge convention
    cam = to_frame(np.linalg.inv(world_from_vehicle_image @ vehicle_from_cam), hits.reshape(-1, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        xn, yn = -cam[:, 1] / cam[:, 0], -cam[:, 2] / cam[:, 0]
    xd, yd = opencv_distort(xn, yn, **WAYMO_DIST)
    u, v = F * xd + CX + 0.5, F * yd + CY + 0.5
    ok = (cam[:, 0] > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & np.isfinite(u) & np.isfinite(v)
    proj = np.zeros((len(cam), 6), dtype=np.float32)
    proj[ok, 0], proj[ok, 1], proj[ok, 2] = 1, u[ok], v[ok]
    pq.write_table(
        pa.table(
            {
                **keys,
                "key.laser_name": pa.array([1], pa.int8()),
                "[LiDARCameraProjectionComponent].range_image_return1.values": [proj.ravel().tolist()],
                "[LiDARCameraProjectionComponent].range_image_return1.shape": [[*ranges.shape, 6]],
            }
        ),
        d / "lidar_camera_projection" / f"{segment}.parquet",
    )
    return hits.reshape(-1, 3)[ranges.ravel() > 0]
