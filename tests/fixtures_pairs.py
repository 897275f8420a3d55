"""Short camera sequences in the release formats of ScanNet++, nuScenes and DDAD, for the
``motion`` pairs (``--pair-offset``): several frames per sequence, each camera placed by a
motion chosen here, written in that release's own pose conventions.

The motions are designed in plain words ("the camera moved 1.5 m forward and turned 10
degrees left") and written as each release stores poses:

* ScanNet++ ``pose_intrinsic_imu.json``: ``aligned_pose`` is the 4x4 camera-to-world pose in
  the laser-scan frame (metres) with OpenCV camera axes (x right, y down, z forward); ``pose``
  (the raw ARKit trajectory, another world frame) is set to something that would give a
  different motion, so a reader taking the wrong key fails.
* nuScenes: ``ego_pose`` (ego -> global at each sample_data's own timestamp) and
  ``calibrated_sensor`` (sensor -> ego), quaternions [w, x, y, z], metres, microseconds; the
  camera frame is OpenCV's. The ego pose at the LiDAR timestamp differs from the one at the
  camera timestamp (the car moves and turns in between), so reading the wrong one shows.
* DDAD (DGP): each datum's ``pose`` is the sensor's pose in the scene's world (p_WS),
  quaternion stored as qx, qy, qz, qw; the camera frame is OpenCV's.

Every frame also gets a few LiDAR points (a patch 8-12 m in front of its camera) so the
driving sources keep it; depth is not what these fixtures test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fixtures_indoor_b import SP_K, SP_SCENES, write_scannetpp
from fixtures_lidar import CX, CY, EGO_FROM_CV, F, H, W, camera_image
from scipy.spatial.transform import Rotation


def transform(rotation: np.ndarray, translation) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


def turn(axis: str, deg: float) -> np.ndarray:
    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


@dataclass(frozen=True)
class Step:
    """A camera motion in the FIRST camera's own frame (OpenCV axes): the second camera's
    centre is `move` (x right, y down, z forward, metres) and its axes are the first's
    turned by `yaw_deg` about the first camera's y axis (positive: towards +x, i.e. right)."""

    move: tuple[float, float, float]
    yaw_deg: float = 0.0

    @property
    def matrix(self) -> np.ndarray:
        return transform(turn("y", self.yaw_deg), self.move)

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.move))


def chain_poses(start: np.ndarray, steps: list[Step]) -> list[np.ndarray]:
    """Camera-to-world poses of a sequence: start, then each step taken from the previous camera."""
    poses = [start]
    for step in steps:
        poses.append(poses[-1] @ step.matrix)
    return poses


def _quat_wxyz(m: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(m[:3, :3]).as_quat()
    return [float(w), float(x), float(y), float(z)]


def _dgp_pose(m: np.ndarray) -> dict:
    qx, qy, qz, qw = (float(v) for v in Rotation.from_matrix(m[:3, :3]).as_quat())
    x, y, z = (float(v) for v in m[:3, 3])
    return {"translation": {"x": x, "y": y, "z": z}, "rotation": {"qx": qx, "qy": qy, "qz": qz, "qw": qw}}


def patch_in_front(world_from_cam: np.ndarray) -> np.ndarray:
    """(N, 3) world points of a tilted patch 8-12 m in front of the camera, inside its view."""
    xs, ys = np.meshgrid(np.linspace(-3, 3, 25), np.linspace(-2, 2, 17))
    z = 10.0 + 0.3 * xs
    cam = np.stack([xs.ravel(), ys.ravel(), z.ravel()], axis=1)
    return cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]


def to_frame(frame_from_world: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ frame_from_world[:3, :3].T + frame_from_world[:3, 3]


# --- ScanNet++ --------------------------------------------------------------------------------

SP_SCENE = SP_SCENES["train"]
SP_FRAMES = (0, 10, 20, 30)  # RGB extracted for these video frames only
# frame 0 -> 10: 1.5 m forward and turned 10 degrees left; 10 -> 20: 0.5 m to the right;
# 20 -> 30: 1 m forward, 0.2 m up, turned 5 degrees right. 30 is the end of the sequence.
SP_STEPS = [Step((0.0, 0.0, 1.5), -10.0), Step((0.5, 0.0, 0.0)), Step((0.0, -0.2, 1.0), 5.0)]
# the first camera in the scan's world (z up): looking along world +y, level, 1.4 m high
SP_START = transform(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]), [2.0, 1.0, 1.4])


def write_scannetpp_sequence(root: Path, without_aligned_pose: tuple[int, ...] = ()) -> dict[int, np.ndarray]:
    """The train scene with RGB for SP_FRAMES (depth for every frame 0..30) and each frame's
    ``aligned_pose`` along SP_STEPS; frames in `without_aligned_pose` have none. The raw ARKit
    ``pose`` is the identity for every frame (no motion at all). Returns index -> aligned pose."""
    write_scannetpp(root, rgb_frames=SP_FRAMES, depth_frames=range(0, 31), scene=SP_SCENE)
    poses = dict(zip(SP_FRAMES, chain_poses(SP_START, SP_STEPS)))
    entries = {}
    for i in range(0, 31):  # the json covers every video frame, as the release's does
        entry = {"timestamp": 1.0 + i / 60.0, "intrinsic": SP_K, "pose": np.eye(4).tolist(), "imu": {}}
        if i in poses and i not in without_aligned_pose:
            entry["aligned_pose"] = poses[i].tolist()
        elif i not in poses:
            entry["aligned_pose"] = np.eye(4).tolist()
        entries[f"frame_{i:06d}"] = entry
    (root / "data" / SP_SCENE / "iphone" / "pose_intrinsic_imu.json").write_text(json.dumps(entries))
    return poses


# --- nuScenes ---------------------------------------------------------------------------------

NU_VERSION = "v1.0-mini"
NU_SPLIT = "mini_train"
NU_DRIVE = "scene-0061"  # three samples: forward 1.5 m turning 10 degrees left, then 2 m straight
NU_BROKEN = "scene-0553"  # two samples; the second one's CAM_FRONT file is missing
NU_EGO_FROM_CAM = transform(EGO_FROM_CV, [1.5, 0.0, 1.5])  # CAM_FRONT: 1.5 m ahead, 1.5 m up
NU_EGO_FROM_LIDAR = transform(np.eye(3), [0.9, 0.0, 1.9])
# the car's moves between key frames in its own frame (x forward, y left, z up): (metres, left turn deg)
NU_EGO_STEPS = [(1.5, 10.0), (2.0, 0.0)]


def ego_step(forward_m: float, left_deg: float) -> np.ndarray:
    return transform(turn("z", left_deg), [forward_m, 0.0, 0.0])


def write_nuscenes_drive(root: Path) -> dict[str, list[str]]:
    """v1.0-mini tables + files: NU_DRIVE (3 samples along NU_EGO_STEPS, the car heading 30
    degrees at (100, 50) first) and NU_BROKEN (2 samples, the second CAM_FRONT jpg absent).
    The LiDAR fires 40 ms before each camera, when the car was 0.5 m back and turned 2 degrees
    less. Returns scene -> the CAM_FRONT file of each sample, in order."""
    (root / NU_VERSION).mkdir(parents=True)
    tables: dict[str, list] = {
        k: [] for k in ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose", "log")
    }
    tables["sensor"] = [
        {"token": "sensor-cam", "channel": "CAM_FRONT", "modality": "camera"},
        {"token": "sensor-lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
    ]
    tables["calibrated_sensor"] = [
        {
            "token": "cs-cam",
            "sensor_token": "sensor-cam",
            "translation": NU_EGO_FROM_CAM[:3, 3].tolist(),
            "rotation": _quat_wxyz(NU_EGO_FROM_CAM),
            "camera_intrinsic": [[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]],
        },
        {
            "token": "cs-lidar",
            "sensor_token": "sensor-lidar",
            "translation": NU_EGO_FROM_LIDAR[:3, 3].tolist(),
            "rotation": _quat_wxyz(NU_EGO_FROM_LIDAR),
            "camera_intrinsic": [],
        },
    ]
    files: dict[str, list[str]] = {}
    start = transform(turn("z", 30.0), [100.0, 50.0, 0.0])
    for s, (scene, n) in enumerate(((NU_DRIVE, 3), (NU_BROKEN, 2))):
        egos = [start]
        for forward, left in NU_EGO_STEPS[: n - 1]:
            egos.append(egos[-1] @ ego_step(forward, left))
        tokens = [f"sample-{s}-{i}" for i in range(n)]
        tables["scene"].append(
            {
                "token": f"scene-{s}",
                "log_token": "log0",
                "nbr_samples": n,
                "first_sample_token": tokens[0],
                "last_sample_token": tokens[-1],
                "name": scene,
                "description": "synthetic drive",
            }
        )
        files[scene] = []
        for i, (token, ego_cam) in enumerate(zip(tokens, egos)):
            t_cam = 1532402927647951 + 500_000 * i + 10_000_000 * s
            t_lidar = t_cam - 40_000
            ego_lidar = ego_cam @ ego_step(-0.5, -2.0)
            tables["sample"].append(
                {
                    "token": token,
                    "timestamp": t_lidar,
                    "prev": tokens[i - 1] if i else "",
                    "next": tokens[i + 1] if i + 1 < n else "",
                    "scene_token": f"scene-{s}",
                }
            )
            cam_file = f"samples/CAM_FRONT/n008-synthetic__CAM_FRONT__{t_cam}.jpg"
            lidar_file = f"samples/LIDAR_TOP/n008-synthetic__LIDAR_TOP__{t_lidar}.pcd.bin"
            files[scene].append(cam_file)
            for kind, ts, ego, fname, fmt, hw in (
                ("cam", t_cam, ego_cam, cam_file, "jpg", (H, W)),
                ("lidar", t_lidar, ego_lidar, lidar_file, "pcd", (0, 0)),
            ):
                tables["ego_pose"].append(
                    {
                        "token": f"ego-{kind}-{s}-{i}",
                        "timestamp": ts,
                        "rotation": _quat_wxyz(ego),
                        "translation": ego[:3, 3].tolist(),
                    }
                )
                tables["sample_data"].append(
                    {
                        "token": f"sd-{kind}-{s}-{i}",
                        "sample_token": token,
                        "ego_pose_token": f"ego-{kind}-{s}-{i}",
                        "calibrated_sensor_token": f"cs-{kind}",
                        "timestamp": ts,
                        "fileformat": fmt,
                        "is_key_frame": True,
                        "height": hw[0],
                        "width": hw[1],
                        "filename": fname,
                        "prev": f"sd-{kind}-{s}-{i - 1}" if i else "",
                        "next": f"sd-{kind}-{s}-{i + 1}" if i + 1 < n else "",
                    }
                )
            world_from_cam = ego_cam @ NU_EGO_FROM_CAM
            world_from_lidar = ego_lidar @ NU_EGO_FROM_LIDAR
            points = to_frame(np.linalg.inv(world_from_lidar), patch_in_front(world_from_cam))
            five = np.zeros((len(points), 5), dtype=np.float32)
            five[:, :3] = points
            five[:, 4] = np.arange(len(points)) % 32  # ring
            (root / lidar_file).parent.mkdir(parents=True, exist_ok=True)
            five.tofile(root / lidar_file)
            if not (scene == NU_BROKEN and i == 1):
                (root / cam_file).parent.mkdir(parents=True, exist_ok=True)
                camera_image(10 * s + i).save(root / cam_file, quality=95)
    for name, rows in tables.items():
        (root / NU_VERSION / f"{name}.json").write_text(json.dumps(rows))
    return files


# --- DDAD -------------------------------------------------------------------------------------

DD_DISTORTED = "000150"  # 3 samples, lens distortion k1 = -0.05: the images are undistorted
DD_GAPS = "000151"  # 4 samples: sample 1's image file is missing, sample 3's camera has no pose
DD_STEPS = [Step((0.0, 0.0, 1.5), -10.0), Step((0.3, 0.0, 2.0), 4.0), Step((0.0, 0.0, 1.0))]
DD_K1 = -0.05
DD_EGO_FROM_LIDAR = transform(turn("z", 90.0), [0.0, 0.8, 1.9])
DD_EGO_FROM_CAM = transform(EGO_FROM_CV, [1.5, 0.0, 1.5])


def write_ddad_drive(root: Path) -> dict[str, list[str]]:
    """ddad.json (both scenes in the val split, scene_splits "1") and the two scenes; each camera
    pose follows DD_STEPS from a start heading 30 degrees. Returns scene -> image file of each
    sample (relative to the scene folder)."""
    files: dict[str, list[str]] = {}
    splits = {"1": {"filenames": []}}
    start_ego = transform(turn("z", 30.0), [-40.0, 12.0, 0.0])
    for folder, n, k1 in ((DD_DISTORTED, 3, DD_K1), (DD_GAPS, 4, 0.0)):
        scene_dir = root / folder
        for sub in ("calibration", "rgb/CAMERA_01", "point_cloud/LIDAR"):
            (scene_dir / sub).mkdir(parents=True)
        calib_key = "c" * 40
        intr = {"fx": F, "fy": F, "cx": CX, "cy": CY}
        if k1:
            intr["k1"] = k1
        calib = {
            "names": ["camera_01", "lidar"],
            "intrinsics": [intr, {}],
            "extrinsics": [_dgp_pose(DD_EGO_FROM_CAM), _dgp_pose(DD_EGO_FROM_LIDAR)],
        }
        (scene_dir / "calibration" / f"{calib_key}.json").write_text(json.dumps(calib))
        cams = chain_poses(start_ego @ DD_EGO_FROM_CAM, DD_STEPS[: n - 1])
        samples, datums = [], []
        files[folder] = []
        for i, world_from_cam in enumerate(cams):
            ts = 15616458249936530 + 100_000 * i
            img_file, pc_file = f"rgb/CAMERA_01/{ts}.jpg", f"point_cloud/LIDAR/{ts - 10_000}.npz"
            files[folder].append(img_file)
            if not (folder == DD_GAPS and i == 1):
                camera_image(20 + 10 * len(files) + i).save(scene_dir / img_file, quality=95)
            world_from_ego = world_from_cam @ np.linalg.inv(DD_EGO_FROM_CAM)
            world_from_lidar = world_from_ego @ DD_EGO_FROM_LIDAR
            pts = to_frame(np.linalg.inv(world_from_lidar), patch_in_front(world_from_cam))
            data = np.concatenate([pts, np.full((len(pts), 1), 9.0)], axis=1).astype(np.float32)
            np.savez_compressed(scene_dir / pc_file, data=data)
            image = {"filename": img_file, "height": H, "width": W, "channels": 3}
            if not (folder == DD_GAPS and i == 3):
                image["pose"] = _dgp_pose(world_from_cam)
            datums += [
                {
                    "id": {"log": "synthetic", "name": "camera_01", "index": str(i)},
                    "key": f"cam{i}",
                    "datum": {"image": image},
                },
                {
                    "id": {"log": "synthetic", "name": "lidar", "index": str(i)},
                    "key": f"lidar{i}",
                    "datum": {
                        "point_cloud": {
                            "filename": pc_file,
                            "point_format": ["X", "Y", "Z", "INTENSITY"],
                            "pose": _dgp_pose(world_from_lidar),
                        }
                    },
                },
            ]
            samples.append(
                {
                    "id": {"log": "synthetic", "index": str(i)},
                    "datum_keys": [f"cam{i}", f"lidar{i}"],
                    "calibration_key": calib_key,
                }
            )
        scene_file = f"scene_{'d' * 40}.json"
        (scene_dir / scene_file).write_text(json.dumps({"name": folder, "samples": samples, "data": datums}))
        splits["1"]["filenames"].append(f"{folder}/{scene_file}")
    (root / "ddad.json").write_text(json.dumps({"metadata": {"name": "DDAD"}, "scene_splits": splits}))
    return files
