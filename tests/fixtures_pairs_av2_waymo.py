"""Argoverse 2 and Waymo v2 releases of a car driving a known arc, for ``--pair-offset`` tests.

The car drives a circle at SPEED m/s turning left at YAW_RATE: 1.0 m and 2.5 deg between two
Argoverse 2 camera frames (20 Hz), 2.0 m and 5 deg between two Waymo frames (10 Hz). Each
log / segment holds a few frames of a front camera and a left side camera, so the relative
motion a test expects is written in closed form (:func:`ego_motion`, :func:`camera_motion`),
never with data_builders. The LiDAR sees a sphere of SPHERE_M around itself (labels only
need to exist here; tests/fixtures_lidar.py checks the labels themselves).

The writers follow each release's documented conventions:

- Argoverse 2: timestamps in nanoseconds (file names and ``timestamp_ns``), quaternions
  scalar first (qw, qx, qy, qz) of city_SE3_egovehicle (ego -> city) and
  egovehicle_SE3_sensor (sensor -> ego), translations in metres (tx_m, ty_m, tz_m); camera
  frames x right, y down, z forward; LiDAR sweeps in the ego frame at the sweep time. Poses
  are logged at POSE_HZ, not at the camera times, so the reader must interpolate.
- Waymo v2: one parquet file per component and segment, ``key.*`` columns,
  ``key.frame_timestamp_micros`` in microseconds, transforms as row-major lists of 16
  (``pose.transform``: vehicle -> world at the image; ``extrinsic.transform``: camera ->
  vehicle), Waymo camera frame x forward, y left, z up; c_u, c_v with 0 at the left edge of
  the first pixel; raw images distorted with OpenCV's k1, k2, p1, p2, k3.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from fixtures_lidar import WAYMO_DIST
from PIL import Image
from scipy.spatial.transform import Rotation

SPEED = 20.0  # m/s
YAW_RATE = np.deg2rad(50.0)  # rad/s, left turn
POSE_HZ = 100  # Argoverse 2 city_SE3_egovehicle rows per second in the fixture
SPHERE_M = 20.0
W, H, F = 320, 240, 300.0
CX, CY = (W - 1) / 2, (H - 1) / 2

# Camera axes in the ego/vehicle frame (x forward, y left, z up), as columns.
# OpenCV axes (Argoverse 2): x right, y down, z = viewing direction.
AV2_EGO_FROM_CAMERA = {
    # looks forward: right = -y_ego, down = -z_ego, view = +x_ego
    "ring_front_center": (np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [1.6, 0.0, 1.4]),
    # looks left: right = +x_ego (forward), down = -z_ego, view = +y_ego
    "ring_side_left": (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]), [1.2, 0.9, 1.4]),
}
# Waymo camera axes: x = viewing direction, y = left in the image, z = up.
WAYMO_VEHICLE_FROM_CAMERA = {
    1: (np.eye(3), [1.5, 0.0, 1.5]),  # FRONT
    # SIDE_LEFT looks along +y_vehicle; its left is -x_vehicle (backwards); up is up
    4: (np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [1.2, 0.9, 1.5]),
}
# OpenCV camera axes written in Waymo camera axes (columns): right = -y, down = -z, view = +x
WAYMO_CAMERA_FROM_OPENCV = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def matrix(rot, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, t
    return m


def world_from_ego(t_s: float) -> np.ndarray:
    """The car on its circle at time t_s (seconds after it passed the origin heading +x)."""
    yaw = YAW_RATE * t_s
    r = SPEED / YAW_RATE
    return matrix(Rotation.from_euler("z", yaw).as_matrix(), [r * np.sin(yaw), r * (1 - np.cos(yaw)), 0.3])


def ego_motion(dt_s: float) -> np.ndarray:
    """The later ego pose in the earlier ego frame after dt_s on the circle: a chord of length
    2 r sin(a / 2) at half the turn angle a, and a yaw of a."""
    a = YAW_RATE * dt_s
    r = SPEED / YAW_RATE
    return matrix(Rotation.from_euler("z", a).as_matrix(), [r * np.sin(a), r * (1 - np.cos(a)), 0.0])


def camera_motion(ego_from_camera: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(translation, rotation) of the later camera in the earlier camera's frame, for a camera
    rigidly mounted at ego_from_camera (4x4, OpenCV camera axes)."""
    rel = np.linalg.inv(ego_from_camera) @ ego_motion(dt_s) @ ego_from_camera
    return rel[:3, 3], rel[:3, :3]


def smooth_image(seed: int) -> Image.Image:
    """A smooth picture unique to `seed` (bilinear resampling barely changes it, so an
    independent undistortion can be compared pixel by pixel)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    phase = seed * 0.7
    r = 127 + 100 * np.sin(x / 17.0 + phase)
    g = 127 + 100 * np.cos(y / 13.0 - phase)
    b = 127 + 100 * np.sin((x + y) / 29.0 + 2 * phase)
    return Image.fromarray(np.stack([r, g, b], -1).round().astype(np.uint8))


def sphere_directions() -> tuple[np.ndarray, np.ndarray]:
    """Unit rays of a spinning LiDAR (1 deg azimuth, 21 beams over -10..+10 deg) and each ray's beam."""
    az = np.deg2rad(np.arange(0.0, 360.0, 1.0))
    el = np.deg2rad(np.arange(-10.0, 10.5, 1.0))
    a, e = np.meshgrid(az, el)
    dirs = np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], -1).reshape(-1, 3)
    beams = np.repeat(np.arange(len(el)), len(az))
    return dirs, beams


def _wxyz(rot: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(rot).as_quat()
    return [float(w), float(x), float(y), float(z)]


# ----------------------------------------------------------------------------- Argoverse 2

AV2_T0_NS = 315968112437425433
AV2_CAMERA_LAG_NS = 3_000_000  # each image 3 ms after its sweep (av2 pairs within 25 ms)
AV2_CAMERA_PERIOD_NS = 50_000_000  # 20 Hz
AV2_SWEEP_PERIOD_NS = 100_000_000  # 10 Hz
AV2_LOGS = {"0c6e62d7-bdfa-3061-8d3d-03b13aa21f68": 3, "ff0dbfc5-8a7b-3a6e-8936-e5e812e45408": 2}


def av2_seconds(t_ns: int) -> float:
    return (t_ns - AV2_T0_NS) / 1e9


def av2_image_times(sweeps: int) -> list[int]:
    """Camera timestamps of a log of `sweeps` sweeps: two images per sweep period, the last
    one at the last sweep (so that sweep's image ends the log)."""
    return [AV2_T0_NS + AV2_CAMERA_LAG_NS + k * AV2_CAMERA_PERIOD_NS for k in range(2 * sweeps - 1)]


def write_argoverse2_pairs(root: Path, split: str = "val") -> dict[str, list[int]]:
    """Logs of AV2_LOGS sweeps each, cameras ring_front_center and ring_side_left.
    Returns log id -> its sweep timestamps."""
    dirs, beams = sphere_directions()
    lidar_in_ego = np.array([0.0, 0.0, 1.9])
    sweeps_of = {}
    for n_log, (log_id, sweeps) in enumerate(AV2_LOGS.items()):
        log = root / split / log_id
        (log / "calibration").mkdir(parents=True)
        (log / "sensors" / "lidar").mkdir(parents=True)
        images = av2_image_times(sweeps)
        # poses at POSE_HZ, from before the first sweep to after the last image
        step = 1_000_000_000 // POSE_HZ
        pose_times = np.arange(AV2_T0_NS - step, images[-1] + 2 * step, step, dtype=np.int64)
        rows = {k: [] for k in ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")}
        for t in pose_times:
            m = world_from_ego(av2_seconds(int(t)))
            for k, v in zip(("qw", "qx", "qy", "qz"), _wxyz(m[:3, :3])):
                rows[k].append(v)
            for k, v in zip(("tx_m", "ty_m", "tz_m"), m[:3, 3]):
                rows[k].append(float(v))
        feather.write_feather(
            pa.table({"timestamp_ns": pa.array(pose_times, pa.int64()), **rows}),
            log / "city_SE3_egovehicle.feather",
        )
        sensors = {**AV2_EGO_FROM_CAMERA, "up_lidar": (np.eye(3), lidar_in_ego)}
        ext = {"sensor_name": list(sensors)}
        for k in ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m"):
            ext[k] = []
        for rot, t in sensors.values():
            for k, v in zip(("qw", "qx", "qy", "qz"), _wxyz(rot)):
                ext[k].append(v)
            for k, v in zip(("tx_m", "ty_m", "tz_m"), t):
                ext[k].append(float(v))
        feather.write_feather(pa.table(ext), log / "calibration" / "egovehicle_SE3_sensor.feather")
        cams = list(AV2_EGO_FROM_CAMERA)
        feather.write_feather(
            pa.table(
                {
                    "sensor_name": cams,
                    "fx_px": [F] * 2,
                    "fy_px": [F] * 2,
                    "cx_px": [CX] * 2,
                    "cy_px": [CY] * 2,
                    "k1": [-0.263] * 2,  # for reference only: the images are released undistorted
                    "k2": [-0.212] * 2,
                    "k3": [0.329] * 2,
                    "height_px": pa.array([H] * 2, pa.int64()),
                    "width_px": pa.array([W] * 2, pa.int64()),
                }
            ),
            log / "calibration" / "intrinsics.feather",
        )
        sweep_times = [AV2_T0_NS + j * AV2_SWEEP_PERIOD_NS for j in range(sweeps)]
        ego = dirs * SPHERE_M + lidar_in_ego  # the sphere around the LiDAR, in the ego frame
        for t in sweep_times:
            feather.write_feather(
                pa.table(
                    {
                        "x": ego[:, 0].astype(np.float32),
                        "y": ego[:, 1].astype(np.float32),
                        "z": ego[:, 2].astype(np.float32),
                        "intensity": np.full(len(ego), 20, np.uint8),
                        "laser_number": beams.astype(np.uint8),
                        "offset_ns": np.zeros(len(ego), np.int32),
                    }
                ),
                log / "sensors" / "lidar" / f"{t}.feather",
            )
        for c, cam in enumerate(cams):
            folder = log / "sensors" / "cameras" / cam
            folder.mkdir(parents=True)
            for k, t in enumerate(images):
                smooth_image(100 * n_log + 10 * c + k).save(folder / f"{t}.jpg", quality=95)
        sweeps_of[log_id] = sweep_times
    return sweeps_of


# ----------------------------------------------------------------------------- Waymo v2

WAYMO_T0_US = 1557855899201187
WAYMO_PERIOD_US = 100_000  # 10 Hz frames
WAYMO_IMAGE_LAG_S = {1: 0.031, 4: 0.047}  # each camera fires at its own moment after the frame start
WAYMO_SEGMENTS = {"10203656353524179475_7625_000_7645_000": 3, "1024360143612057520_3580_000_3600_000": 2}
WAYMO_RI = (21, 360)  # range image rows x columns


def waymo_image_time_s(ts_us: int, camera: int) -> float:
    return (ts_us - WAYMO_T0_US) / 1e6 + WAYMO_IMAGE_LAG_S[camera]


def waymo_raw_jpeg(segment_index: int, camera: int, frame: int) -> bytes:
    buf = io.BytesIO()
    smooth_image(1000 + 100 * segment_index + 10 * camera + frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_waymo_pairs(root: Path, split_dir: str = "validation") -> dict[str, list[int]]:
    """Segments of WAYMO_SEGMENTS frames each, cameras FRONT (1) and SIDE_LEFT (4), a TOP LiDAR
    range image per frame. Returns segment -> its frame timestamps (microseconds)."""
    d = root / split_dir
    for comp in ("camera_image", "camera_calibration", "lidar", "lidar_calibration", "vehicle_pose"):
        (d / comp).mkdir(parents=True)
    frames_of = {}
    for s, (segment, n) in enumerate(WAYMO_SEGMENTS.items()):
        times = [WAYMO_T0_US + j * WAYMO_PERIOD_US for j in range(n)]
        frames_of[segment] = times
        img = {
            k: []
            for k in (
                "key.frame_timestamp_micros",
                "key.camera_name",
                "[CameraImageComponent].image",
                "[CameraImageComponent].pose.transform",
                "[CameraImageComponent].pose_timestamp",
            )
        }
        for j, ts in enumerate(times):
            for cam in WAYMO_VEHICLE_FROM_CAMERA:
                img["key.frame_timestamp_micros"].append(ts)
                img["key.camera_name"].append(cam)
                img["[CameraImageComponent].image"].append(waymo_raw_jpeg(s, cam, j))
                t = waymo_image_time_s(ts, cam)
                img["[CameraImageComponent].pose.transform"].append(world_from_ego(t).ravel().tolist())
                img["[CameraImageComponent].pose_timestamp"].append(t)
        pq.write_table(
            pa.table(
                {
                    "key.segment_context_name": [segment] * len(img["key.camera_name"]),
                    "key.frame_timestamp_micros": pa.array(img.pop("key.frame_timestamp_micros"), pa.int64()),
                    "key.camera_name": pa.array(img.pop("key.camera_name"), pa.int8()),
                    "[CameraImageComponent].image": pa.array(
                        img.pop("[CameraImageComponent].image"), pa.binary()
                    ),
                    **img,
                }
            ),
            d / "camera_image" / f"{segment}.parquet",
        )
        c = "[CameraCalibrationComponent]"
        cams = list(WAYMO_VEHICLE_FROM_CAMERA)
        pq.write_table(
            pa.table(
                {
                    "key.segment_context_name": [segment] * len(cams),
                    "key.camera_name": pa.array(cams, pa.int8()),
                    f"{c}.intrinsic.f_u": [F] * len(cams),
                    f"{c}.intrinsic.f_v": [F] * len(cams),
                    f"{c}.intrinsic.c_u": [CX + 0.5] * len(cams),  # 0 = left edge of the first pixel
                    f"{c}.intrinsic.c_v": [CY + 0.5] * len(cams),
                    **{f"{c}.intrinsic.{k}": [v] * len(cams) for k, v in WAYMO_DIST.items()},
                    f"{c}.extrinsic.transform": [
                        matrix(*WAYMO_VEHICLE_FROM_CAMERA[k]).ravel().tolist() for k in cams
                    ],
                    f"{c}.width": pa.array([W] * len(cams), pa.int32()),
                    f"{c}.height": pa.array([H] * len(cams), pa.int32()),
                }
            ),
            d / "camera_calibration" / f"{segment}.parquet",
        )
        h, w = WAYMO_RI
        ri = np.zeros((h, w, 4), dtype=np.float32)
        ri[..., 0] = SPHERE_M  # every beam returns from the sphere around the LiDAR
        ri[..., 1] = 0.3
        keys = {
            "key.segment_context_name": [segment] * n,
            "key.frame_timestamp_micros": pa.array(times, pa.int64()),
        }
        pq.write_table(
            pa.table(
                {
                    **keys,
                    "key.laser_name": pa.array([1] * n, pa.int8()),
                    "[LiDARComponent].range_image_return1.values": [ri.ravel().tolist()] * n,
                    "[LiDARComponent].range_image_return1.shape": [list(ri.shape)] * n,
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
                    f"{lc}.extrinsic.transform": [matrix(np.eye(3), [0.0, 0.0, 1.9]).ravel().tolist()],
                    f"{lc}.beam_inclination.min": [float(np.deg2rad(-10.0))],
                    f"{lc}.beam_inclination.max": [float(np.deg2rad(10.0))],
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
                        world_from_ego((ts - WAYMO_T0_US) / 1e6).ravel().tolist() for ts in times
                    ],
                }
            ),
            d / "vehicle_pose" / f"{segment}.parquet",
        )
    return frames_of
