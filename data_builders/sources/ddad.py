"""DDAD (Dense Depth for Autonomous Driving): camera images labelled with the synchronised LiDAR.

Release layout (TRI's DGP format, JSON read directly; the dgp package is not needed)::

    ROOT/ddad.json                          dataset index: scene_splits {"0": train, "1": val}
    ROOT/<scene>/scene_<sha1>.json          samples (datum_keys, calibration_key) and data (datums)
    ROOT/<scene>/calibration/<key>.json     names, intrinsics {fx, fy, cx, cy, k1..}, extrinsics
    ROOT/<scene>/rgb/CAMERA_01/<ts>.jpg     1936x1216, global shutter
    ROOT/<scene>/point_cloud/LIDAR/<ts>.npz key "data": (N, >=3) x, y, z in the LiDAR frame

Every datum carries ``pose`` = the sensor's pose in the scene's world frame at the
datum's own timestamp (p_WS; quaternion stored as qx, qy, qz, qw), so the chain
LiDAR -> world -> camera already contains the ego motion between the two
timestamps. Datum names are matched case-insensitively (DGP itself lower-cases
them: "lidar", "camera_01"). Without datum poses the calibration extrinsics (sensor -> vehicle) are
used. DGP's JSON omits zero-valued fields; they read as 0.

Splits: DDAD has no public test depth; "train" is scene_splits["0"] and "val"
scene_splits["1"] (the DDAD depth benchmark, and DepthLM's evaluation set).

Second views (``--pair-offset N``, for the ``motion`` task): the same camera's datum in the
sample N later in the scene's ``samples`` list (DGP keeps them in time order; that sample
needs no LiDAR). Both cameras' world poses are their datums' ``pose`` (p_WS, camera frame
OpenCV's: x right, y down, z forward, as DGP projects with K directly). A frame whose camera
datum or whose partner's has no ``pose`` keeps its record without a pair (``extras.notes``: "no second view: ..."
says why; the calibration extrinsics are sensor -> vehicle and cannot place two moments),
as does one whose scene ends first or whose sample N later lacks its camera. Where the
source undistorts (non-zero k1..k3, p1, p2), the second image is undistorted the same way
with its own calibration (saved as a PNG) and keeps the same pinhole intrinsics; otherwise
it is the release's JPEG. A second image missing on disk rejects the frame with its path.
"""

from __future__ import annotations

import json
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, register_source
from data_builders.lidar import Distortion, apply, chain, invert, quat_to_matrix, se3, undistort_image
from data_builders.pairs import (
    no_pair,
    pair_extras,
    pair_image,
    report_unpaired,
)
from data_builders.sources.lidar_source import LidarSource
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

SPLIT_IDS = {"train": "0", "val": "1", "test": "2"}
DEFAULT_CAMERAS = ("CAMERA_01",)
LIDAR = "LIDAR"


# DDAD's LIDAR datum merges four Luminar-H2 scanners (no beam index is released). Their scan
# pattern is not published in detail: 0.07 deg x 0.48 deg (64 lines over 30 deg) is an estimate,
# and the four origins are taken as the LIDAR datum's (docs/sources-lidar.md, "Visibility").
LUMINAR_STEPS_DEG = (0.07, 0.476)


@register_source("ddad")
class DDAD(LidarSource):
    splits = ("train", "val")
    sensor_steps_deg = LUMINAR_STEPS_DEG
    pair_unit = "samples (10 Hz)"
    default_cameras = DEFAULT_CAMERAS
    cameras_help = "comma-separated camera names (default: CAMERA_01, the front camera)"
    upper_case_cameras = True

    @cached_property
    def scene_files(self) -> list[Path]:
        index = self.root / "ddad.json"
        try:
            meta = json.loads(index.read_text())
        except FileNotFoundError:
            raise DepthLMError(
                f"ddad: {index} not found -- --root must be the ddad_train_val folder"
            ) from None
        except json.JSONDecodeError as err:
            raise DepthLMError(f"ddad: {index} is not valid JSON: {err}") from None
        split_id = SPLIT_IDS.get(self.split)
        files = (meta.get("scene_splits") or {}).get(split_id, {}).get("filenames", [])
        if not files:
            raise DepthLMError(
                f"ddad: {index} lists no scenes for split {self.split!r} (scene_splits[{split_id}])"
            )
        return [self.root / f for f in files]

    def list_frames(self) -> list[str]:
        keys = []
        unpaired = 0
        for path in self.scene_files:
            scene = _scene(path)
            scene_dir = path.parent.name
            for i, sample in enumerate(scene.samples):
                names = {
                    scene.datums[k]["id"]["name"].upper() for k in sample["datum_keys"] if k in scene.datums
                }
                if LIDAR not in names:
                    continue
                mine = [cam for cam in self.cameras if cam in names]
                keys += [f"{scene_dir}/{cam}/{i:05d}" for cam in mine]
                if self.pair_offset:
                    unpaired += sum(
                        1 for cam in mine if isinstance(_partner(scene, i, cam, self.pair_offset), str)
                    )
        report_unpaired("ddad", self.pair_offset, unpaired, len(keys), "samples", "scene")
        return sorted(keys)

    def load(self, key: str) -> Frame:
        scene_dir, cam, index = self.parse_key(key, "scene/camera/sample_index", str, str, int)
        path = next((p for p in self.scene_files if p.parent.name == scene_dir), None)
        if path is None:
            raise SkipFrame(f"{key}: scene {scene_dir} is not in split {self.split}")
        scene = _scene(path)
        sample = scene.samples[index]
        by_name = {  # names matched case-insensitively, as list_frames does
            scene.datums[k]["id"]["name"].upper(): scene.datums[k]
            for k in sample["datum_keys"]
            if k in scene.datums
        }
        cam_datum, lidar_datum = by_name.get(cam), by_name.get(LIDAR)
        if cam_datum is None or lidar_datum is None:
            raise SkipFrame(f"{key}: sample lacks {cam} or {LIDAR}")
        calib = _calibration(path.parent / "calibration" / f"{sample['calibration_key']}.json")
        if cam.lower() not in calib or LIDAR.lower() not in calib:
            raise SkipFrame(f"{key}: calibration {sample['calibration_key']} lacks {cam} or {LIDAR}")
        image = cam_datum["datum"]["image"]
        intr_row, cam_extr = calib[cam.lower()]
        _, lidar_extr = calib[LIDAR.lower()]
        if int(intr_row.get("fisheye", 0)):
            raise SkipFrame(f"{key}: fisheye camera model is not supported")
        intr = Intrinsics(
            float(intr_row["fx"]),
            float(intr_row["fy"]),
            float(intr_row["cx"]),
            float(intr_row["cy"]),
            int(image["width"]),
            int(image["height"]),
        )
        dist = Distortion(*(float(intr_row.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")))
        cloud = lidar_datum["datum"]["point_cloud"]
        points = _read_npz(path.parent / cloud["filename"], cloud.get("point_format"))
        world_lidar, world_cam = _pose(cloud.get("pose")), _pose(image.get("pose"))
        if world_lidar is None or world_cam is None:  # no datum poses: sensor -> vehicle -> sensor
            world_lidar, world_cam = lidar_extr, cam_extr
        elif self.ignore_ego_motion:
            # the camera where it would be had the car not moved since the LiDAR timestamp
            world_cam = world_lidar @ invert(lidar_extr) @ cam_extr
        camera_from_lidar = chain(invert(world_cam), world_lidar)
        labels = self.labels(
            key,
            apply(camera_from_lidar, points),
            intr,
            sensor_origins=apply(camera_from_lidar, np.zeros((1, 3)))[0],
        )
        extras = {"scene": scene_dir, "camera": cam}
        if self.pair_offset:
            extras.update(self.second_view(key, path, scene, index, cam, _pose(image.get("pose"))))
        frame = self.frame(key, intr, labels, extras, image_path=path.parent / image["filename"])
        if not dist.is_zero:
            frame.image = undistort_image(frame.load_image(), intr, dist)
            frame.image_path = None
        return frame

    def second_view(
        self, key: str, path: Path, scene: _Scene, index: int, cam: str, world_from_first: np.ndarray | None
    ) -> dict:
        """``{"pair": ...}`` of the same camera pair_offset samples later, or ``no_pair(why)`` (a note)."""
        found = _partner(scene, index, cam, self.pair_offset)
        if isinstance(found, str):
            return no_pair(found)
        sample, image = found
        calib = _calibration(path.parent / "calibration" / f"{sample['calibration_key']}.json")
        if cam.lower() not in calib:
            return no_pair(f"calibration {sample['calibration_key']} of the later sample lacks {cam}")
        row = calib[cam.lower()][0]
        if int(row.get("fisheye", 0)):
            return no_pair("the later sample's camera is a fisheye")
        intr = Intrinsics(
            float(row["fx"]),
            float(row["fy"]),
            float(row["cx"]),
            float(row["cy"]),
            int(image["width"]),
            int(image["height"]),
        )
        dist = Distortion(*(float(row.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")))
        second = pair_image(path.parent / image["filename"], intr, key)
        if not dist.is_zero:  # undistorted as load() undistorts the frame itself
            second = undistort_image(Frame(key, intr, image_path=second).load_image(), intr, dist)
        assert world_from_first is not None  # _partner checked both poses
        return {"pair": pair_extras(second, intr, world_from_first, _pose(image["pose"]))}


class _Scene:
    def __init__(self, samples: list[dict], datums: dict[str, dict]):
        self.samples = samples
        self.datums = datums


@lru_cache(maxsize=4)
def _scene(path: Path) -> _Scene:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DepthLMError(f"ddad: unreadable scene file {path}: {err}") from None
    datums = {d["key"]: d for d in data.get("data", [])}
    return _Scene(list(data.get("samples", [])), datums)


def _partner(scene: _Scene, index: int, cam: str, offset: int) -> tuple[dict, dict] | str:
    """(sample, image datum) of camera `cam` `offset` samples after sample `index`, both camera
    datums with a pose; else why not, in words (the record's note)."""
    if index + offset >= len(scene.samples):
        return f"the scene has no sample {offset} later"
    images = []
    for i in (index, index + offset):
        sample = scene.samples[i]
        datum = next(
            (
                scene.datums[k]
                for k in sample["datum_keys"]
                if k in scene.datums and scene.datums[k]["id"]["name"].upper() == cam
            ),
            None,
        )
        if datum is None or "image" not in datum["datum"]:
            return f"the sample {offset} later has no {cam} image"
        images.append((sample, datum["datum"]["image"]))
    for (_, image), which in zip(images, ("this", "the later")):
        if _pose(image.get("pose")) is None:
            return f"{which} {cam} datum has no pose"
    return images[1]


@lru_cache(maxsize=16)
def _calibration(path: Path) -> dict[str, tuple[dict, np.ndarray]]:
    """lower-case sensor name -> (intrinsics dict, vehicle_from_sensor 4x4)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SkipFrame(f"unreadable calibration {path}: {err}") from None
    out = {}
    for name, intr, extr in zip(data["names"], data["intrinsics"], data["extrinsics"]):
        out[name.lower()] = (intr, _pose(extr) if _pose(extr) is not None else np.eye(4))
    return out


def _pose(p: dict | None) -> np.ndarray | None:
    """4x4 of a DGP Pose {translation {x,y,z}, rotation {qx,qy,qz,qw}}; None when absent/empty."""
    if not p or not p.get("rotation"):
        return None
    r, t = p["rotation"], p.get("translation", {})
    q = [r.get("qx", 0.0), r.get("qy", 0.0), r.get("qz", 0.0), r.get("qw", 0.0)]
    if not any(q):
        return None
    return se3(quat_to_matrix(q, "xyzw"), [t.get("x", 0.0), t.get("y", 0.0), t.get("z", 0.0)])


def _read_npz(path: Path, point_format) -> np.ndarray:
    try:
        with np.load(path) as npz:
            data = np.asarray(npz["data"])
    except (OSError, KeyError, ValueError) as err:
        raise SkipFrame(f"unreadable point cloud {path}: {err}") from None
    if data.dtype.names:  # structured array
        return np.stack([data["X"], data["Y"], data["Z"]], axis=1).astype(np.float64)
    cols = [0, 1, 2]
    if point_format:
        fmt = [str(f) for f in point_format]
        if all(c in fmt for c in ("X", "Y", "Z")):
            cols = [fmt.index("X"), fmt.index("Y"), fmt.index("Z")]
    if data.ndim != 2 or data.shape[1] < 3:
        raise SkipFrame(f"{path}: 'data' has shape {data.shape}, expected (N, >=3)")
    return data[:, cols].astype(np.float64)
