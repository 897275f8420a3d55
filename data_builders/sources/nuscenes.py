"""nuScenes: key-frame camera images labelled with the LIDAR_TOP sweep of the same sample.

Release layout (read directly; the nuscenes-devkit is not needed)::

    ROOT/v1.0-trainval/{scene,sample,sample_data,calibrated_sensor,sensor,ego_pose}.json
    ROOT/samples/CAM_FRONT/<name>.jpg            1600x900, already undistorted
    ROOT/samples/LIDAR_TOP/<name>.pcd.bin        float32 x 5 per point: x, y, z, intensity, ring

Quaternions are [w, x, y, z]; timestamps are microseconds; ``calibrated_sensor``
gives sensor -> ego, ``ego_pose`` gives ego -> global at each sample_data's own
timestamp. The camera and the LiDAR fire up to ~40 ms apart, so points go through
ego(t_lidar) -> global -> ego(t_camera) (the DepthLM reference skipped this).

Splits are the official scene lists of the devkit (``nuscenes.utils.splits``):
train (700 scenes) and val (150) of v1.0-trainval, test of v1.0-test, and
mini_train / mini_val of v1.0-mini. Train and val share no scene.

Second views (``--pair-offset N``, for the ``motion`` task): the same camera's key-frame
sample_data N samples later along the scene's ``sample.next`` chain. Each camera's pose is
world_from_camera = ego_pose(at that image's own timestamp) @ calibrated_sensor(camera), the
camera frame being OpenCV's (x right, y down, z forward; the devkit projects with
``view_points(points, camera_intrinsic)`` directly). The true camera ego pose is used even
with ``--ignore-ego-motion``, which only concerns the labels. A frame whose scene ends
before N more samples, or whose sample N later has no key frame of its camera, keeps its
record without a pair (``extras.notes`` says why: "no second view: ..."; one line counts them); a second image
missing on disk rejects the frame with its path.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, register_source
from data_builders.lidar import apply, chain, invert, se3
from data_builders.pairs import (
    no_pair,
    pair_extras,
    pair_image,
    report_unpaired,
)
from data_builders.sources.lidar_source import LidarSource
from data_builders.sources.nuscenes_splits import SCENES
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

VERSIONS = {
    "train": "v1.0-trainval",
    "val": "v1.0-trainval",
    "test": "v1.0-test",
    "mini_train": "v1.0-mini",
    "mini_val": "v1.0-mini",
}
TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose")
CAMERAS = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


# Velodyne HDL-32E as nuScenes runs it: 20 Hz (~1,085 firings per turn = 0.333 deg), 32 beams
# 1.333 deg apart (+10.67..-30.67 deg). The occlusion test sizes each return's patch by these.
HDL32E_STEPS_DEG = (0.3333, 1.3333)


@register_source("nuscenes")
class NuScenes(LidarSource):
    splits = tuple(VERSIONS)
    sensor_steps_deg = HDL32E_STEPS_DEG
    pair_unit = "key frames (samples, 2 Hz)"
    default_cameras = CAMERAS
    cameras_help = "comma-separated camera channels (nuScenes default: all six CAM_*)"

    @cached_property
    def version_dir(self) -> Path:
        if self.split not in VERSIONS:
            raise DepthLMError(f"nuscenes: unknown split {self.split!r} (choose from {', '.join(VERSIONS)})")
        d = self.root / VERSIONS[self.split]
        if not d.is_dir():
            raise DepthLMError(
                f"nuscenes: {d} not found -- --root must be the folder holding {VERSIONS[self.split]}/ "
                "and samples/ (the extracted nuScenes release)"
            )
        return d

    @cached_property
    def tables(self) -> dict[str, dict[str, dict]]:
        out = {}
        for name in TABLES:
            path = self.version_dir / f"{name}.json"
            try:
                rows = json.loads(path.read_text())
            except FileNotFoundError:
                raise DepthLMError(f"nuscenes: table missing: {path}") from None
            except json.JSONDecodeError as err:
                raise DepthLMError(f"nuscenes: {path} is not valid JSON: {err}") from None
            out[name] = {row["token"]: row for row in rows}
        return out

    @cached_property
    def _keyframes(self) -> dict[str, dict]:
        """key -> {"cam": camera sample_data, "lidar": LIDAR_TOP sample_data, "scene": name,
        "pair": the same camera's sample_data pair_offset samples later or None, "no_pair": why}."""
        t = self.tables
        channel = {
            tok: t["sensor"][cs["sensor_token"]]["channel"] for tok, cs in t["calibrated_sensor"].items()
        }
        by_sample: dict[str, dict[str, dict]] = {}
        for sd in t["sample_data"].values():
            if sd.get("is_key_frame"):
                by_sample.setdefault(sd["sample_token"], {})[channel[sd["calibrated_sensor_token"]]] = sd
        listed = SCENES[self.split]
        if listed is None:  # train: the release's scenes minus the official val (and test) lists
            held_out = set(SCENES["val"]) | set(SCENES["test"])
            wanted = {s["name"] for s in t["scene"].values()} - held_out
        else:
            wanted = set(listed)
        out = {}
        for scene in t["scene"].values():
            if scene["name"] not in wanted:
                continue
            chain_sds = []  # the scene's samples in order, as channel -> key-frame sample_data
            token = scene["first_sample_token"]
            while token:
                chain_sds.append(by_sample.get(token, {}))
                token = t["sample"][token]["next"]
            n = self.pair_offset
            for i, sds in enumerate(chain_sds):
                lidar = sds.get("LIDAR_TOP")
                later = chain_sds[i + n] if n and i + n < len(chain_sds) else None
                for cam in self.cameras:
                    if cam in sds:
                        pair = None if later is None else later.get(cam)
                        why = None
                        if n and pair is None:
                            why = (
                                f"the scene has no sample {n} later"
                                if later is None
                                else f"the sample {n} later has no {cam} key frame"
                            )
                        out[f"{scene['name']}/{cam}/{sds[cam]['timestamp']}"] = {
                            "cam": sds[cam],
                            "lidar": lidar,
                            "scene": scene["name"],
                            "pair": pair,
                            "no_pair": why,
                        }
        return out

    def list_frames(self) -> list[str]:
        frames = self._keyframes
        unpaired = sum(1 for e in frames.values() if e["no_pair"])
        report_unpaired("nuscenes", self.pair_offset, unpaired, len(frames), "key frames", "scene")
        return sorted(frames)

    def load(self, key: str) -> Frame:
        entry = self._keyframes.get(key)
        if entry is None:
            raise SkipFrame(f"unknown frame key {key}")
        cam_sd, lidar_sd = entry["cam"], entry["lidar"]
        if lidar_sd is None:
            raise SkipFrame(f"{key}: sample has no LIDAR_TOP key frame")
        t = self.tables
        cam_cs = t["calibrated_sensor"][cam_sd["calibrated_sensor_token"]]
        lidar_cs = t["calibrated_sensor"][lidar_sd["calibrated_sensor_token"]]
        k = np.asarray(cam_cs.get("camera_intrinsic") or [], dtype=np.float64)
        if k.shape != (3, 3):
            raise SkipFrame(f"{key}: calibrated_sensor {cam_cs['token']} has no 3x3 camera_intrinsic")
        intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], int(cam_sd["width"]), int(cam_sd["height"]))
        points, ring = read_pcd_bin(self.root / lidar_sd["filename"])
        ego_lidar = _pose(t["ego_pose"][lidar_sd["ego_pose_token"]])
        ego_cam = _pose(t["ego_pose"][cam_sd["ego_pose_token"]])
        if self.ignore_ego_motion:
            ego_cam = ego_lidar
        camera_from_lidar = chain(invert(_pose(cam_cs)), invert(ego_cam), ego_lidar, _pose(lidar_cs))
        labels = self.labels(
            key,
            apply(camera_from_lidar, points),
            intr,
            sensor_origins=apply(camera_from_lidar, np.zeros((1, 3)))[0],
            beams=ring,
        )
        image_path = self.root / cam_sd["filename"]
        if not image_path.is_file():
            raise SkipFrame(f"image missing: {image_path}")
        extras = {
            "scene": entry["scene"],
            "camera": key.split("/")[1],
            "lidar_dt_us": int(cam_sd["timestamp"]) - int(lidar_sd["timestamp"]),
        }
        if self.pair_offset:
            extras.update(self.second_view(key, entry))
        return self.frame(key, intr, labels, extras, image_path=image_path)

    def camera(self, sd: dict, key: str) -> tuple[Intrinsics, np.ndarray]:
        """A camera sample_data's intrinsics and world_from_camera (ego pose at its own timestamp)."""
        t = self.tables
        cs = t["calibrated_sensor"][sd["calibrated_sensor_token"]]
        k = np.asarray(cs.get("camera_intrinsic") or [], dtype=np.float64)
        if k.shape != (3, 3):
            raise SkipFrame(f"{key}: calibrated_sensor {cs['token']} has no 3x3 camera_intrinsic")
        intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], int(sd["width"]), int(sd["height"]))
        return intr, _pose(t["ego_pose"][sd["ego_pose_token"]]) @ _pose(cs)

    def second_view(self, key: str, entry: dict) -> dict:
        """``{"pair": ...}`` of the same camera pair_offset key frames later, or ``no_pair(why)`` (a note)."""
        if entry["pair"] is None:
            return no_pair(entry["no_pair"])
        _, world_from_first = self.camera(entry["cam"], key)
        intr, world_from_second = self.camera(entry["pair"], key)
        path = pair_image(self.root / entry["pair"]["filename"], intr, key)
        return {"pair": pair_extras(path, intr, world_from_first, world_from_second)}


def read_pcd_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) x, y, z and (N,) ring (laser) index of a nuScenes LIDAR_TOP .pcd.bin (float32 x 5)."""
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as err:
        raise SkipFrame(f"unreadable LiDAR file {path}: {err}") from None
    if raw.size == 0 or raw.size % 5:
        raise SkipFrame(f"{path}: {raw.size} float32 values, not a multiple of 5 (x, y, z, intensity, ring)")
    rows = raw.reshape(-1, 5)
    return rows[:, :3].astype(np.float64), rows[:, 4].astype(np.int64)


def _pose(row: dict) -> np.ndarray:
    """4x4 from a calibrated_sensor / ego_pose row (rotation [w, x, y, z], translation metres)."""
    return se3(np.asarray(row["rotation"], dtype=np.float64), row["translation"])
