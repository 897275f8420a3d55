"""Waymo Open Dataset v2 (parquet components): camera images labelled with the LiDAR range images.

Release layout (one parquet file per segment and component, read with pyarrow)::

    ROOT/{training,validation,testing}/
        camera_image/<segment>.parquet             [CameraImageComponent].image (JPEG),
                                                   .pose.transform (world_from_vehicle at the image)
        camera_calibration/<segment>.parquet       [CameraCalibrationComponent].intrinsic.{f_u,f_v,c_u,
                                                   c_v,k1,k2,p1,p2,k3}, .extrinsic.transform
                                                   (vehicle_from_camera), .width, .height
        lidar/<segment>.parquet                    [LiDARComponent].range_image_return1.{values,shape}
        lidar_calibration/<segment>.parquet        [LiDARCalibrationComponent].extrinsic.transform,
                                                   .beam_inclination.{min,max,values}
        lidar_pose/<segment>.parquet               (optional) per-pixel vehicle pose of the TOP lidar
        vehicle_pose/<segment>.parquet             (optional) [VehiclePoseComponent].world_from_vehicle
        lidar_camera_projection/<segment>.parquet  (optional) [LiDARCameraProjectionComponent]
                                                   .range_image_return1: per range-image pixel
                                                   (camera, x, y, camera, x, y) in the RAW image

Keys are ``key.segment_context_name``, ``key.frame_timestamp_micros``,
``key.camera_name`` (FRONT=1 ... SIDE_RIGHT=5) and ``key.laser_name`` (TOP=1 ...).
Transforms are 4x4 row-major lists of 16. Waymo's camera frame is x forward,
y left, z up; its image coordinates put 0 at the left EDGE of the first pixel, so
c_u, c_v and projected x, y are shifted by -0.5 into our pixel-centre convention.

Range images -> points follow Waymo's ``range_image_utils`` (azimuth from the
extrinsic, inclinations reversed so row 0 is the highest beam, TOP points moved
with their per-pixel pose into the vehicle frame at the frame timestamp). Points
then go vehicle(t_frame) -> world -> vehicle(t_image) -> camera for the z-depth.

The images are raw (distorted): they are undistorted with the calibration, and
labelled pixels are mapped FORWARD, distorted -> undistorted (the DepthLM
reference mapped them backwards, ~20 px off after rescaling). With the projection
component its pixels (which include rolling-shutter correction) are used;
without it the points are projected with the pinhole model directly.

``--pair-offset N`` adds the motion task's second view (``extras.pair``, data_builders.pairs):
the same camera's image N frames (10 Hz) later in the same segment, undistorted exactly as
the frame's own image (same calibration, so the same intrinsics) and saved as a PNG. Each
camera's pose is its image's ``pose.transform`` (world_from_vehicle when the image was taken)
@ the calibration's ``extrinsic.transform`` (vehicle_from_camera: "Camera frame to vehicle
frame", dataset.proto), re-expressed from Waymo's camera axes (x forward, y left, z up) in
OpenCV's. A frame among its camera's last N in the segment, or whose images lack a usable
pose, keeps its record without a pair (``extras.notes`` says why: "no second view: ..."; one line counts the
segment ends); an undecodable second JPEG or one of another size rejects the frame.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from data_builders.base import Frame, SkipFrame, register_source
from data_builders.lidar import (
    Distortion,
    apply,
    beam_occluded,
    chain,
    invert,
    project,
    undistort_image,
    undistort_pixels,
)
from data_builders.pairs import (
    OPENCV_FROM_FLU,
    finite_pose,
    no_pair,
    pair_extras,
    report_unpaired,
    with_opencv_axes,
)
from data_builders.sources.lidar_source import LidarSource
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}
CAMERAS = {"FRONT": 1, "FRONT_LEFT": 2, "FRONT_RIGHT": 3, "SIDE_LEFT": 4, "SIDE_RIGHT": 5}
TOP_LASER = 1
KEY_SEGMENT, KEY_TIME = "key.segment_context_name", "key.frame_timestamp_micros"
KEY_CAMERA, KEY_LASER = "key.camera_name", "key.laser_name"
IMAGE = "[CameraImageComponent]"
CAM_CAL = "[CameraCalibrationComponent]"
LIDAR = "[LiDARComponent]"
LIDAR_CAL = "[LiDARCalibrationComponent]"
LIDAR_POSE = "[LiDARPoseComponent]"
VEHICLE_POSE = "[VehiclePoseComponent]"
PROJECTION = "[LiDARCameraProjectionComponent]"
# Waymo camera frame (x forward, y left, z up) -> OpenCV camera frame (x right, y down, z forward).
WAYMO_TO_OPENCV = np.array(
    [[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


# Waymo's TOP laser: 2,650 range-image columns per turn (0.136 deg) and 64 beams over +2.4..-17.6 deg
# (0.31 deg on average; the range-image row orders them exactly). Short-range lasers are told
# apart by their own origin and rows.
WAYMO_TOP_STEPS_DEG = (360 / 2650, 0.3125)


@register_source("waymo")
class Waymo(LidarSource):
    splits = ("train", "val", "test")
    sensor_steps_deg = WAYMO_TOP_STEPS_DEG
    pair_unit = "frames (10 Hz)"
    default_cameras = known_cameras = tuple(CAMERAS)
    cameras_help = (
        "comma-separated camera names (default: all five: FRONT,FRONT_LEFT,FRONT_RIGHT,SIDE_LEFT,SIDE_RIGHT)"
    )
    upper_case_cameras = True

    @cached_property
    def split_dir(self) -> Path:
        d = self.root / SPLIT_DIRS.get(self.split, self.split)
        if not (d / "camera_image").is_dir():
            raise DepthLMError(
                f"waymo: {d / 'camera_image'} not found -- --root must hold training/, validation/, testing/ "
                "of the Waymo Open Dataset v2 (perception, parquet)"
            )
        return d

    def list_frames(self) -> list[str]:
        files = sorted((self.split_dir / "camera_image").glob("*.parquet"))
        if not files:
            raise DepthLMError(f"waymo: no parquet files in {self.split_dir / 'camera_image'}")
        ids = {CAMERAS[c]: c for c in self.cameras}
        keys = []
        unpaired = 0
        for path in files:
            t = _read(path, [KEY_SEGMENT, KEY_TIME, KEY_CAMERA], fatal=True)
            times = defaultdict(set)  # (segment, camera) -> its frame timestamps
            for seg, ts, cam in zip(t[KEY_SEGMENT], t[KEY_TIME], t[KEY_CAMERA]):
                if int(cam) in ids:
                    keys.append(f"{seg}/{int(ts)}/{ids[int(cam)]}")
                    times[seg, int(cam)].add(int(ts))
            unpaired += sum(min(self.pair_offset, len(stamps)) for stamps in times.values())
        report_unpaired("waymo", self.pair_offset, unpaired, len(keys), "frames", "segment")
        return sorted(keys)

    def load(self, key: str) -> Frame:
        segment, ts, cam = self.parse_key(key, "segment/timestamp_micros/CAMERA", str, int, _camera)
        cam_id = CAMERAS[cam]
        d = self.split_dir
        calib = _camera_calibration(d / "camera_calibration" / f"{segment}.parquet").get(cam_id)
        if calib is None:
            raise SkipFrame(f"{key}: camera {cam} missing from camera_calibration/{segment}.parquet")
        intr, dist, vehicle_from_camera = calib
        row = _read(
            d / "camera_image" / f"{segment}.parquet",
            [f"{IMAGE}.image", f"{IMAGE}.pose.transform"],
            filters=[(KEY_TIME, "=", ts), (KEY_CAMERA, "=", cam_id)],
        )
        if not row[f"{IMAGE}.image"]:
            raise SkipFrame(f"{key}: no image row in camera_image/{segment}.parquet")
        try:
            raw = Image.open(io.BytesIO(row[f"{IMAGE}.image"][0])).convert("RGB")
        except OSError as err:
            raise SkipFrame(f"{key}: undecodable JPEG: {err}") from None
        if raw.size != intr.size:
            raise SkipFrame(f"{key}: image is {raw.size}, calibration says {intr.size}")

        sweep = _sweep(d, segment, ts)
        world_from_frame = sweep.frame_pose
        image_pose = row[f"{IMAGE}.pose.transform"][0]
        world_from_image = _matrix(image_pose) if world_from_frame is not None and image_pose else None
        if world_from_image is None or self.ignore_ego_motion:
            world_from_image = world_from_frame = np.eye(4)
        camera_from_frame = chain(
            WAYMO_TO_OPENCV, invert(vehicle_from_camera), invert(world_from_image), world_from_frame
        )
        points_cam = apply(camera_from_frame, sweep.points)
        hidden = None
        if self.visibility.uses_footprints:  # decided on the pinhole geometry of the same points
            hidden = beam_occluded(
                points_cam, apply(camera_from_frame, sweep.origins), intr, self.visibility, sweep.beams
            )

        rs_note = "no rolling-shutter data"
        if sweep.projection is not None:
            proj = sweep.projection
            first, second = proj[:, 0] == cam_id, proj[:, 3] == cam_id
            sel = first | second
            raw_xy = (
                np.where(first[:, None], proj[:, 1:3], proj[:, 4:6])[sel] - 0.5
            )  # edge -> centre convention
            pixels = undistort_pixels(raw_xy, intr, dist)
            depths = points_cam[sel, 2]
            hidden = None if hidden is None else hidden[sel]
            shutter = _rolling_shutter(d, segment, ts, cam_id, intr) if world_from_frame is not None else None
            if shutter is not None and not self.ignore_ego_motion:
                world_points = apply(world_from_frame, sweep.points[sel])
                depths = rolling_shutter_depths(
                    world_points,
                    raw_xy,
                    world_from_image,
                    chain(WAYMO_TO_OPENCV, invert(vehicle_from_camera)),
                    shutter,
                )
                rs_note = "per-point rolling-shutter pose"
        else:
            pixels, depths = project(points_cam, intr)
        labels = self.visible(key, pixels, depths, intr, hidden=hidden)
        extras = {
            "segment": segment,
            "camera": cam,
            "pixels_from": "lidar_camera_projection" if sweep.projection is not None else "pinhole",
            "depth_pose": rs_note,
        }
        if self.pair_offset:
            extras.update(self.pair(key, segment, ts, cam, calib, image_pose))
        return self.frame(key, intr, labels, extras, image=undistort_image(raw, intr, dist))

    def pair(
        self,
        key: str,
        segment: str,
        ts: int,
        cam: str,
        calib: tuple[Intrinsics, Distortion, np.ndarray],
        image_pose: list[float] | None,
    ) -> dict:
        """``{"pair": ...}`` for the same camera's image pair_offset frames later in the segment,
        undistorted like the frame's own, or ``no_pair(reason)`` (a note) (the frame is kept either way)."""
        n, cam_id = self.pair_offset, CAMERAS[cam]
        intr, dist, vehicle_from_camera = calib
        file = self.split_dir / "camera_image" / f"{segment}.parquet"
        times = _camera_times(file, cam_id)
        i = int(np.searchsorted(times, ts))
        if i + n >= len(times):
            return no_pair(f"no {cam} image {n} frames after {ts} in segment {segment}")
        later = int(times[i + n])
        row = _read(
            file,
            [f"{IMAGE}.image", f"{IMAGE}.pose.transform"],
            filters=[(KEY_TIME, "=", later), (KEY_CAMERA, "=", cam_id)],
        )
        world_from_vehicle = [_rigid(p) for p in (image_pose, row[f"{IMAGE}.pose.transform"][0])]
        if any(m is None for m in world_from_vehicle):
            return no_pair(
                f"no usable pose.transform (finite rigid 4x4, row-major) for the {cam} image at "
                f"{ts} or {later} in {file}"
            )
        try:  # a broken second image rejects the frame, as a broken image of the frame itself does
            raw = Image.open(io.BytesIO(row[f"{IMAGE}.image"][0])).convert("RGB")
        except (OSError, TypeError) as err:
            raise SkipFrame(
                f"{key}: second view undecodable: {cam} JPEG at {later} in {file}: {err}"
            ) from None
        if raw.size != intr.size:
            raise SkipFrame(
                f"{key}: second view size mismatch: {cam} image at {later} in {file} is "
                f"{raw.size[0]}x{raw.size[1]}, calibration says {intr.width}x{intr.height}"
            )
        # world_from_camera with Waymo's camera axes (x forward, y left, z up) -> OpenCV axes
        world_from = [with_opencv_axes(m @ vehicle_from_camera, OPENCV_FROM_FLU) for m in world_from_vehicle]
        return {"pair": pair_extras(undistort_image(raw, intr, dist), intr, *world_from)}


def _camera(name: str) -> str:
    """A camera name of the release (KeyError otherwise: a malformed key)."""
    if name not in CAMERAS:
        raise KeyError(name)
    return name


class _Sweep:
    def __init__(
        self,
        points: np.ndarray,
        projection: np.ndarray | None,
        frame_pose: np.ndarray | None,
        origins: np.ndarray | None = None,
        beams: np.ndarray | None = None,
    ):
        self.points = points  # (N, 3) vehicle frame at the frame timestamp
        self.projection = projection  # (N, 6) camera projections of the same points, or None
        self.frame_pose = frame_pose  # world_from_vehicle at the frame timestamp, or None
        self.origins = origins  # (N, 3) vehicle-frame position of the laser that measured each point
        self.beams = beams  # (N,) laser * 1000 + range-image row: the beam of each point


@lru_cache(maxsize=2)  # the five cameras of one frame share one sweep
def _sweep(d: Path, segment: str, ts: int) -> _Sweep:
    """All first-return points of one frame, from every laser's range image."""
    lidar = _read(
        d / "lidar" / f"{segment}.parquet",
        [KEY_LASER, f"{LIDAR}.range_image_return1.values", f"{LIDAR}.range_image_return1.shape"],
        filters=[(KEY_TIME, "=", ts)],
    )
    if not lidar[KEY_LASER]:
        raise SkipFrame(f"{segment}/{ts}: no range images in lidar/{segment}.parquet")
    calib = _lidar_calibration(d / "lidar_calibration" / f"{segment}.parquet")
    frame_pose = _optional_matrix(
        d / "vehicle_pose" / f"{segment}.parquet", f"{VEHICLE_POSE}.world_from_vehicle.transform", ts
    )
    pixel_pose = _optional_image(d / "lidar_pose" / f"{segment}.parquet", LIDAR_POSE, ts, TOP_LASER)
    proj_file = d / "lidar_camera_projection" / f"{segment}.parquet"
    points, projections, origins, beams = [], [], [], []
    for i, laser in enumerate(lidar[KEY_LASER]):
        laser = int(laser)
        if laser not in calib:
            raise SkipFrame(f"{segment}/{ts}: laser {laser} missing from lidar_calibration/{segment}.parquet")
        shape = tuple(int(s) for s in lidar[f"{LIDAR}.range_image_return1.shape"][i])
        ri = np.asarray(lidar[f"{LIDAR}.range_image_return1.values"][i], dtype=np.float64).reshape(shape)
        extrinsic, values, lo, hi = calib[laser]
        inclination = values if values is not None else uniform_inclination(lo, hi, shape[0])
        pose = pixel_pose if laser == TOP_LASER and frame_pose is not None else None
        xyz, valid = range_image_to_points(ri[..., 0], extrinsic, inclination, pose, frame_pose)
        points.append(xyz[valid])
        origins.append(np.broadcast_to(extrinsic[:3, 3], (int(valid.sum()), 3)))
        beams.append((laser * 1000 + np.nonzero(valid)[0]).astype(np.int64))
        if proj_file.is_file():
            proj = _optional_image(proj_file, PROJECTION, ts, laser)
            projections.append(None if proj is None else proj.reshape(-1, proj.shape[-1])[valid.ravel()])
    have_proj = projections and all(p is not None for p in projections)
    return _Sweep(
        np.concatenate(points),
        np.concatenate(projections) if have_proj else None,
        frame_pose,
        np.concatenate(origins),
        np.concatenate(beams),
    )


def range_image_to_points(
    ranges: np.ndarray,
    extrinsic: np.ndarray,
    inclination: np.ndarray,
    pixel_pose: np.ndarray | None = None,
    frame_pose: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) vehicle-frame points of a range image and the (H, W) mask of real returns.

    ``inclination`` lists the beams bottom-up (as stored); row 0 of the image is the
    top beam. ``pixel_pose`` (H, W, 6: roll, pitch, yaw, x, y, z, world_from_vehicle
    when that pixel was measured) with ``frame_pose`` moves each point into the
    vehicle frame at the frame timestamp.
    """
    h, w = ranges.shape
    incl = np.asarray(inclination, dtype=np.float64)[::-1][:, None]
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (np.arange(w, 0, -1, dtype=np.float64) - 0.5) / w
    az = ((ratios * 2.0 - 1.0) * np.pi - az_correction)[None, :]
    cos_incl = np.cos(incl)
    local = np.stack(
        [
            np.cos(az) * cos_incl * ranges,
            np.sin(az) * cos_incl * ranges,
            np.broadcast_to(np.sin(incl), ranges.shape) * ranges,
        ],
        axis=-1,
    )
    xyz = local @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is not None and frame_pose is not None:
        rot = euler_to_matrix(pixel_pose[..., 0], pixel_pose[..., 1], pixel_pose[..., 2])
        world = np.einsum("hwij,hwj->hwi", rot, xyz) + pixel_pose[..., 3:6]
        inv = invert(frame_pose)
        xyz = world @ inv[:3, :3].T + inv[:3, 3]
    return xyz, ranges > 0


def euler_to_matrix(roll, pitch, yaw) -> np.ndarray:
    """Rz(yaw) @ Ry(pitch) @ Rx(roll), elementwise over arrays: Waymo's 3-2-1 convention."""
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            np.stack([-sp, cp * sr, cp * cr], -1),
        ],
        -2,
    )


def uniform_inclination(lo: float, hi: float, height: int) -> np.ndarray:
    """Waymo's compute_inclination: beam centres evenly spaced in [min, max], bottom-up."""
    return (0.5 + np.arange(height)) / height * (hi - lo) + lo


@dataclass(frozen=True)
class RollingShutter:
    """When each image row (or column) was exposed, and how the car moved meanwhile (world frame)."""

    direction: int  # Waymo's RollingShutterReadOutDirection: 1 top->bottom, 2 left->right,
    # 3 bottom->top, 4 right->left, 5 global shutter (0 unknown)
    size: tuple[int, int]
    pose_timestamp: float  # seconds: when the image's pose was taken
    trigger: float
    readout_done: float
    shutter: float
    linear_velocity: np.ndarray  # (3,) m/s, world frame
    angular_velocity: np.ndarray  # (3,) rad/s, world frame

    def exposure_times(self, raw_xy: np.ndarray) -> np.ndarray:
        """Mid-exposure time of the row/column holding each raw-image pixel (centre convention)."""
        w, h = self.size
        frac = {
            1: (raw_xy[:, 1] + 0.5) / h,
            2: (raw_xy[:, 0] + 0.5) / w,
            3: 1 - (raw_xy[:, 1] + 0.5) / h,
            4: 1 - (raw_xy[:, 0] + 0.5) / w,
        }.get(self.direction)
        if frac is None:  # global shutter / unknown: every pixel at the middle of the exposure
            return np.full(len(raw_xy), self.trigger + 0.5 * (self.readout_done - self.trigger))
        readout = max(self.readout_done - self.trigger - self.shutter, 0.0)
        return self.trigger + np.clip(frac, 0, 1) * readout + 0.5 * self.shutter


def rolling_shutter_depths(
    world_points: np.ndarray,
    raw_xy: np.ndarray,
    world_from_vehicle: np.ndarray,
    camera_from_vehicle: np.ndarray,
    shutter: RollingShutter,
) -> np.ndarray:
    """z-depth of each point in the camera *when its row was exposed*: the image pose moved by the
    car's velocity over (exposure time - pose time), as Waymo's camera model does for the pixels
    of lidar_camera_projection. A single image pose is off by speed x time along the view: at
    15 m/s and 10 ms, 0.15 m."""
    dt = shutter.exposure_times(raw_xy) - shutter.pose_timestamp
    q = world_points - world_from_vehicle[:3, 3] - dt[:, None] * shutter.linear_velocity
    q = q - np.cross(dt[:, None] * shutter.angular_velocity, q)  # undo the small rotation (first order)
    vehicle = q @ world_from_vehicle[:3, :3]  # R^T q
    return apply(camera_from_vehicle, vehicle)[:, 2]


def _rolling_shutter(d: Path, segment: str, ts: int, cam_id: int, intr: Intrinsics) -> RollingShutter | None:
    """The image's rolling-shutter timing and velocity, or None where the files lack them."""
    img_cols = [
        f"{IMAGE}.pose_timestamp",
        f"{IMAGE}.rolling_shutter_params.shutter",
        f"{IMAGE}.rolling_shutter_params.camera_trigger_time",
        f"{IMAGE}.rolling_shutter_params.camera_readout_done_time",
        *(f"{IMAGE}.velocity.{k}_velocity.{a}" for k in ("linear", "angular") for a in "xyz"),
    ]
    try:
        row = _read(
            d / "camera_image" / f"{segment}.parquet",
            img_cols,
            filters=[(KEY_TIME, "=", ts), (KEY_CAMERA, "=", cam_id)],
        )
        cal = _read(
            d / "camera_calibration" / f"{segment}.parquet",
            [f"{CAM_CAL}.rolling_shutter_direction"],
            filters=[(KEY_CAMERA, "=", cam_id)],
        )
    except SkipFrame:  # older files without these columns: no correction
        return None
    values = [row[c][0] if row[c] else None for c in img_cols]
    direction = cal[f"{CAM_CAL}.rolling_shutter_direction"]
    if any(v is None for v in values) or not direction or direction[0] is None:
        return None
    pose_t, shutter, trigger, done, *vel = (float(v) for v in values)
    return RollingShutter(
        int(direction[0]), intr.size, pose_t, trigger, done, shutter, np.array(vel[:3]), np.array(vel[3:])
    )


@lru_cache(maxsize=16)  # keys come segment by segment, the five cameras of a frame in turn
def _camera_times(path: Path, cam_id: int) -> np.ndarray:
    """Sorted frame timestamps of one camera's images in a segment's camera_image file."""
    t = _read(path, [KEY_TIME], filters=[(KEY_CAMERA, "=", cam_id)])
    return np.unique(np.asarray(t[KEY_TIME], dtype=np.int64))


@lru_cache(maxsize=4)
def _camera_calibration(path: Path) -> dict[int, tuple[Intrinsics, Distortion, np.ndarray]]:
    c = f"{CAM_CAL}.intrinsic."
    names = [f"{c}{k}" for k in ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")]
    t = _read(
        path, [KEY_CAMERA, *names, f"{CAM_CAL}.extrinsic.transform", f"{CAM_CAL}.width", f"{CAM_CAL}.height"]
    )
    out = {}
    for i, cam in enumerate(t[KEY_CAMERA]):
        fu, fv, cu, cv, k1, k2, p1, p2, k3 = (float(t[n][i]) for n in names)
        w, h = int(t[f"{CAM_CAL}.width"][i]), int(t[f"{CAM_CAL}.height"][i])
        intr = Intrinsics(fu, fv, cu - 0.5, cv - 0.5, w, h)  # Waymo: 0 = left edge of the first pixel
        out[int(cam)] = (
            intr,
            Distortion(k1, k2, p1, p2, k3),
            _matrix(t[f"{CAM_CAL}.extrinsic.transform"][i]),
        )
    return out


@lru_cache(maxsize=4)
def _lidar_calibration(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray | None, float, float]]:
    """laser -> (vehicle_from_lidar, non-uniform beam inclinations or None, min, max)."""
    b = f"{LIDAR_CAL}.beam_inclination."
    t = _read(path, [KEY_LASER, f"{LIDAR_CAL}.extrinsic.transform", f"{b}min", f"{b}max", f"{b}values"])
    out = {}
    for i, laser in enumerate(t[KEY_LASER]):
        values = t[f"{b}values"][i]
        out[int(laser)] = (
            _matrix(t[f"{LIDAR_CAL}.extrinsic.transform"][i]),
            np.asarray(values, dtype=np.float64) if values else None,
            float(t[f"{b}min"][i]),
            float(t[f"{b}max"][i]),
        )
    return out


def _read(path: Path, columns: list[str], filters=None, fatal: bool = False) -> dict[str, list]:
    """Chosen columns (as Python lists) of the rows of a parquet file passing `filters`."""
    try:
        table = pq.read_table(path, columns=columns, filters=filters)
    except FileNotFoundError:
        msg = f"waymo: component file missing: {path}"
        if fatal:
            raise DepthLMError(msg) from None
        raise SkipFrame(msg) from None
    except (OSError, ValueError, KeyError) as err:  # ArrowInvalid is a ValueError
        msg = f"waymo: unreadable {path}: {err}"
        if fatal:
            raise DepthLMError(msg) from None
        raise SkipFrame(msg) from None
    return {name: table.column(name).to_pylist() for name in columns}


def _optional_matrix(path: Path, column: str, ts: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    rows = _read(path, [column], filters=[(KEY_TIME, "=", ts)])[column]
    return _matrix(rows[0]) if rows and rows[0] is not None else None


def _optional_image(path: Path, component: str, ts: int, laser: int) -> np.ndarray | None:
    """(H, W, C) array of a range-image-shaped column (pose, projection) or None when absent."""
    if not path.is_file():
        return None
    v, s = f"{component}.range_image_return1.values", f"{component}.range_image_return1.shape"
    t = _read(path, [v, s], filters=[(KEY_TIME, "=", ts), (KEY_LASER, "=", laser)])
    if not t[v] or t[v][0] is None:
        return None
    return np.asarray(t[v][0], dtype=np.float64).reshape([int(x) for x in t[s][0]])


def _rigid(values) -> np.ndarray | None:
    """A row-major transform of 16 values as a finite rigid 4x4, or None (absent or unusable)."""
    try:
        return finite_pose(np.asarray(values, dtype=np.float64).reshape(4, 4))
    except (TypeError, ValueError):  # None, not 16 numbers
        return None


def _matrix(values) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64)
    if m.size != 16:
        raise SkipFrame(f"transform has {m.size} values, expected 16 (4x4 row-major)")
    return m.reshape(4, 4)
