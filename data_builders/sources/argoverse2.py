"""Argoverse 2 Sensor Dataset: ring-camera images labelled with the nearest LiDAR sweep.

Release layout (feather files read with pyarrow; the av2 package is not needed)::

    ROOT/{train,val,test}/<log_id>/
        city_SE3_egovehicle.feather            timestamp_ns, qw, qx, qy, qz, tx_m, ty_m, tz_m
        calibration/egovehicle_SE3_sensor.feather  sensor_name, qw, qx, qy, qz, tx_m, ty_m, tz_m
        calibration/intrinsics.feather         sensor_name, fx_px, fy_px, cx_px, cy_px, k1, k2, k3,
                                               height_px, width_px
        sensors/lidar/<timestamp_ns>.feather   x, y, z, intensity, laser_number, offset_ns
                                               (both lidars, in the ego frame at the sweep time)
        sensors/cameras/ring_front_center/<timestamp_ns>.jpg

Each LiDAR sweep (10 Hz) is paired, per camera, with the image nearest in time
(at most 25 ms away: half the 20 Hz cameras' frame interval, the tolerance of av2's
``SensorDataloader._build_synchronization_cache``); the points go ego(t_lidar) ->
city -> ego(t_camera) -> camera (av2's ``project_ego_to_img_motion_compensated``).
The images are released already undistorted: k1, k2, k3 in intrinsics.feather are
for reference only (maintainers' answer in argoverse/av2-api issues #219 and #226;
av2's own projection ignores them too), so the pinhole fx, fy, cx, cy describe the
image as is and it is not warped again.

``--pair-offset N`` adds the motion task's second view (``extras.pair``, data_builders.pairs):
the same camera's image N camera frames (20 Hz) later in the same log, referenced as the
release's file. Each camera's pose is city_SE3_egovehicle interpolated at that image's own
timestamp @ egovehicle_SE3_sensor of the camera. av2's camera frame is already OpenCV's
(x right, y down, z forward: ``PinholeCamera.project_ego_to_img`` multiplies camera-frame
points by K with no axis change, ``compute_pixel_ray_directions`` says "+z points out of the
camera, +y is downwards", argoverse/av2-api src/av2/geometry/camera/pinhole_camera.py), so no
axis conversion is applied. A frame whose image is among the log's last N keeps its record
without a pair (``extras.notes`` says why: "no second view: ..."; one line counts them); an unreadable second image
or one of another size rejects the frame with its path.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pyarrow.feather as feather

from data_builders.base import Frame, SkipFrame, register_source
from data_builders.lidar import apply, chain, interpolate_pose, invert, se3
from data_builders.pairs import (
    no_pair,
    pair_extras,
    pair_image,
    report_unpaired,
)
from data_builders.sources.lidar_source import LidarSource
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

RING_CAMERAS = (
    "ring_front_center",
    "ring_front_left",
    "ring_front_right",
    "ring_rear_left",
    "ring_rear_right",
    "ring_side_left",
    "ring_side_right",
)
MAX_CAMERA_LIDAR_DT_NS = 25_000_000  # av2: CAM_SHUTTER_INTERVAL_MS / 2 (cameras at 20 Hz)
POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")


# Two Velodyne VLP-32C at 10 Hz: 0.2 deg azimuth; beams unevenly spaced (-25..+15 deg, 0.333 deg
# near the horizon): laser_number orders them exactly (data_builders.lidar.beam_occluded).
VLP32C_STEPS_DEG = (0.2, 0.3333)


@register_source("argoverse2")
class Argoverse2(LidarSource):
    splits = ("train", "val", "test")
    sensor_steps_deg = VLP32C_STEPS_DEG
    pair_unit = "camera frames (20 Hz)"
    default_cameras = RING_CAMERAS
    cameras_help = "comma-separated camera names (default: all seven ring_*)"

    @cached_property
    def split_dir(self) -> Path:
        d = self.root / self.split
        if not d.is_dir():
            raise DepthLMError(
                f"argoverse2: {d} not found -- --root must hold train/, val/, test/ of the AV2 Sensor Dataset"
            )
        return d

    def list_frames(self) -> list[str]:
        keys = []
        unpaired = 0
        logs = sorted(p for p in self.split_dir.iterdir() if (p / "sensors" / "lidar").is_dir())
        if not logs:
            raise DepthLMError(f"argoverse2: no log with sensors/lidar/ under {self.split_dir}")
        for log in logs:
            sweeps = _timestamps(log / "sensors" / "lidar", ".feather")
            for cam in self.cameras:
                images = _timestamps(log / "sensors" / "cameras" / cam, ".jpg")
                if len(images) == 0:
                    continue
                for ts in sweeps:
                    cam_ts = _nearest(images, ts)
                    if cam_ts is not None:
                        keys.append(f"{log.name}/{cam}/{ts}")
                        unpaired += _later(images, cam_ts, self.pair_offset) is None
        report_unpaired("argoverse2", self.pair_offset, unpaired, len(keys), "camera frames", "log")
        return sorted(keys)

    def load(self, key: str) -> Frame:
        log_id, cam, lidar_ts = self.parse_key(key, "log_id/camera/lidar_timestamp_ns", str, str, int)
        log = self.split_dir / log_id
        images = _timestamps(log / "sensors" / "cameras" / cam, ".jpg")
        cam_ts = _nearest(images, lidar_ts)
        if cam_ts is None:
            raise SkipFrame(f"{key}: no {cam} image within 25 ms of the sweep")
        calib = _calibration(log)
        if cam not in calib.intrinsics:
            raise SkipFrame(f"{key}: {cam} missing from {log / 'calibration' / 'intrinsics.feather'}")
        intr = calib.intrinsics[cam]
        points, lasers = _read_sweep(log / "sensors" / "lidar" / f"{lidar_ts}.feather")
        times, poses = _poses(log)
        try:
            city_ego_lidar = interpolate_pose(times, poses, lidar_ts)
            city_ego_cam = interpolate_pose(times, poses, cam_ts)
        except ValueError as err:
            raise SkipFrame(f"{key}: {err}") from None
        if self.ignore_ego_motion:
            city_ego_cam = city_ego_lidar
        camera_from_ego_lidar = chain(
            invert(calib.ego_from_sensor[cam]), invert(city_ego_cam), city_ego_lidar
        )
        # lasers 0-31 are the upper VLP-32C, 32-63 the lower one (the release's laser_number)
        origins = np.zeros((len(points), 3))
        for name, sel in (("up_lidar", lasers < 32), ("down_lidar", lasers >= 32)):
            ego_from_lidar = calib.ego_from_sensor.get(name)
            if ego_from_lidar is not None:
                origins[sel] = ego_from_lidar[:3, 3]
        labels = self.labels(
            key,
            apply(camera_from_ego_lidar, points),
            intr,
            sensor_origins=apply(camera_from_ego_lidar, origins),
            beams=lasers if np.all(lasers >= 0) else None,
        )
        extras = {"log_id": log_id, "camera": cam, "lidar_dt_ns": int(cam_ts - lidar_ts)}
        if self.pair_offset:
            extras.update(self.pair(key, log, cam, cam_ts, intr, calib.ego_from_sensor[cam], images))
        return self.frame(
            key, intr, labels, extras, image_path=log / "sensors" / "cameras" / cam / f"{cam_ts}.jpg"
        )

    def pair(
        self,
        key: str,
        log: Path,
        cam: str,
        cam_ts: int,
        intr: Intrinsics,
        ego_from_camera: np.ndarray,
        images: np.ndarray,
    ) -> dict:
        """``{"pair": ...}`` for the same camera's image pair_offset frames later in the log, or
        ``no_pair(reason)`` (a note) where there is none (the frame itself is kept either way)."""
        n = self.pair_offset
        later = _later(images, cam_ts, n)
        if later is None:
            return no_pair(f"no {cam} image {n} camera frames after {cam_ts} in log {log.name}")
        times, poses = _poses(log)
        try:
            # av2 camera frames are OpenCV's already: city_from_camera needs no axis change
            world_from = [interpolate_pose(times, poses, t) @ ego_from_camera for t in (cam_ts, later)]
        except ValueError as err:
            return no_pair(f"no pose for the {cam} image {later} in log {log.name}: {err}")
        path = pair_image(log / "sensors" / "cameras" / cam / f"{later}.jpg", intr, key)
        return {"pair": pair_extras(path, intr, *world_from)}


def _later(images: np.ndarray, ts: int, n: int) -> int | None:
    """The timestamp of the image n frames after the image ``ts`` (sorted stamps), or None."""
    i = int(np.searchsorted(images, ts))
    return int(images[i + n]) if n > 0 and i + n < len(images) else None


class _Calibration:
    def __init__(self, intrinsics: dict, ego_from_sensor: dict):
        self.intrinsics = intrinsics  # name -> Intrinsics
        self.ego_from_sensor = ego_from_sensor  # name -> 4x4


@lru_cache(maxsize=8)
def _calibration(log: Path) -> _Calibration:
    intr = _read_table(
        log / "calibration" / "intrinsics.feather",
        ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "k1", "k2", "k3", "height_px", "width_px"),
    )
    ext = _read_table(log / "calibration" / "egovehicle_SE3_sensor.feather", ("sensor_name", *POSE_COLUMNS))
    intrinsics = {}
    for i, name in enumerate(intr["sensor_name"]):
        k = Intrinsics(
            float(intr["fx_px"][i]),
            float(intr["fy_px"][i]),
            float(intr["cx_px"][i]),
            float(intr["cy_px"][i]),
            int(intr["width_px"][i]),
            int(intr["height_px"][i]),
        )
        intrinsics[str(name)] = k  # k1, k2, k3 not applied: the images are already undistorted
    ego_from_sensor = {
        str(name): se3(
            np.array([ext["qw"][i], ext["qx"][i], ext["qy"][i], ext["qz"][i]], dtype=np.float64),
            [ext["tx_m"][i], ext["ty_m"][i], ext["tz_m"][i]],
        )
        for i, name in enumerate(ext["sensor_name"])
    }
    return _Calibration(intrinsics, ego_from_sensor)


@lru_cache(maxsize=8)
def _poses(log: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sorted timestamps (ns) and city_SE3_egovehicle 4x4 matrices of one log."""
    t = _read_table(log / "city_SE3_egovehicle.feather", ("timestamp_ns", *POSE_COLUMNS))
    order = np.argsort(t["timestamp_ns"], kind="stable")
    poses = np.stack(
        [
            se3(
                np.array([t["qw"][i], t["qx"][i], t["qy"][i], t["qz"][i]]),
                [t["tx_m"][i], t["ty_m"][i], t["tz_m"][i]],
            )
            for i in order
        ]
    )
    return np.asarray(t["timestamp_ns"], dtype=np.int64)[order], poses


def _read_sweep(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) ego-frame points and (N,) laser_number (-1 where the file has none)."""
    t = _read_table(path, ("x", "y", "z"))
    lasers = t.get("laser_number")
    lasers = np.full(len(t["x"]), -1) if lasers is None else lasers.astype(np.int64)
    return np.stack([t["x"], t["y"], t["z"]], axis=1).astype(np.float64), lasers


def _read_table(path: Path, columns: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Columns of a feather file as numpy arrays; a missing or broken file skips the frame."""
    try:
        table = feather.read_table(path)
    except (OSError, ValueError) as err:
        raise SkipFrame(f"unreadable feather file {path}: {err}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SkipFrame(f"{path}: missing columns {missing} (has {table.column_names})")
    return {name: table.column(name).to_numpy() for name in table.column_names}


@lru_cache(maxsize=64)
def _timestamps(folder: Path, suffix: str) -> np.ndarray:
    if not folder.is_dir():
        return np.zeros(0, dtype=np.int64)
    stamps = [int(p.name[: -len(suffix)]) for p in folder.iterdir() if p.name.endswith(suffix)]
    return np.array(sorted(stamps), dtype=np.int64)


def _nearest(stamps: np.ndarray, t: int) -> int | None:
    if len(stamps) == 0:
        return None
    i = int(np.searchsorted(stamps, t))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(int(stamps[j]) - t))
    return int(stamps[best]) if abs(int(stamps[best]) - t) <= MAX_CAMERA_LIDAR_DT_NS else None
