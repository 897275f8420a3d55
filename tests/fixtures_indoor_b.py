"""Tiny fixture datasets written in exactly the release formats of Matterport3D, Taskonomy and
ScanNet++ (file names, folders, encodings, json keys), only with small images.

Each writer puts known depths at known pixels and returns what a correct reader must get back.
Around those marker pixels every depth map shows a tilted plane n . X = c (camera frame, OpenCV
axes: x right, y down, z forward), computed here from each release's documented pixel and depth
conventions (`plane_z`), so a test can back-project a reader's labels with the intrinsics it
reports and check they lie on the plane: a wrong unit, axis, principal-point base, z/ray mix-up or
pairing moves them off it (constant depth could not tell z from ray).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_rgb(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    """A textured RGB image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def write_png16(path: Path, values: np.ndarray) -> None:
    """A single-channel 16-bit PNG holding the raw values, as the releases store depth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)


def plane(seed: int) -> tuple[np.ndarray, float]:
    """The plane of frame `seed`: n . X = c, tilted so depth changes across the image."""
    return np.array([0.15, -0.2, 1.0]), 1.8 + 0.1 * seed


def plane_z(xn: np.ndarray, yn: np.ndarray, seed: int) -> np.ndarray:
    """z-depth where the ray (xn, yn, 1) meets the plane of frame `seed`."""
    n, c = plane(seed)
    return c / (n[0] * xn + n[1] * yn + n[2])


# --- Matterport3D -----------------------------------------------------------------------------

MP_HOUSE = "17DRP5sb8fy"  # a train house of the official benchmark split
MP_VAL_HOUSE = "2azQ1b91cZZ"  # a val house
MP_SIZE = (64, 48)  # the release is 1280x1024; the format does not depend on it
MP_PANO = "03a8325e3b054e3fad7e1e7091f9d283"
# Pose values of a real .conf scan line (camera-to-world, row-major).
MP_POSE = "0.90525 0.275848 0.323155 -2.99825 0.42464 -0.612795 -0.666455 -14.4532 0.0141878 0.740533 -0.67187 1.33124 0 0 0 1"


def mp_plane_units(seed: int, conf: tuple[float, float, float, float]) -> np.ndarray:
    """A plane's depth image in the release's units (0.25 mm, z) for .conf intrinsics, which
    follow GAPS pixels (data_organization.md: origin at the bottom-left, pixel i spans [i, i+1)):
    array pixel (row r, col c) is GAPS (c + 0.5, H - r - 0.5), and GAPS' y points up."""
    fx, fy, cx, cy = conf
    w, h = MP_SIZE
    r, c = np.mgrid[0:h, 0:w]
    xn = (c + 0.5 - cx) / fx
    yn = -((h - r - 0.5) - cy) / fy  # GAPS y up -> camera y down
    return np.round(plane_z(xn, yn, seed) * 4000).astype(np.uint16)


def write_matterport(root: Path, house: str = MP_HOUSE, fx: float = 53.8) -> dict:
    """One house with two cameras x two yaws; returns {key: (pixel, metres)} and the conf values.

    Camera 0: intrinsics (fx, fx, 31.6, 25.4) in .conf (GAPS) convention; camera 1: (fx+1, fx+2, 30.0, 22.0).
    Frame ``_i0_0`` holds 2.5 m (10000 units of 0.25 mm) at pixel (10, 20), the plane of seed
    2 * cam + yaw elsewhere (`mp_plane_units`), and a no-reading hole (0) at (5, 5).
    """
    base = root / house
    lines = [
        "dataset matterport",
        "n_images 4",
        "depth_directory undistorted_depth_images",
        "color_directory undistorted_color_images",
        "",
    ]
    cams = {0: (fx, fx, 31.6, 25.4), 1: (fx + 1, fx + 2, 30.0, 22.0)}
    expected = {}
    for cam, (cfx, cfy, ccx, ccy) in cams.items():
        lines.append(f"intrinsics_matrix {cfx} 0 {ccx}  0 {cfy} {ccy}  0 0 1")
        for yaw in range(2):
            color = f"{MP_PANO}_i{cam}_{yaw}.jpg"
            depth_name = f"{MP_PANO}_d{cam}_{yaw}.png"
            lines.append(f"scan {depth_name} {color} {MP_POSE}")
            write_rgb(base / "undistorted_color_images" / color, MP_SIZE, seed=cam * 10 + yaw)
            depth = mp_plane_units(2 * cam + yaw, (cfx, cfy, ccx, ccy))
            x, y = 10 + cam, 20 + yaw
            depth[y, x] = 10000 + 400 * (2 * cam + yaw)  # 2.5, 2.6, 2.7, 2.8 m
            depth[5, 5] = 0
            write_png16(base / "undistorted_depth_images" / depth_name, depth)
            expected[f"{house}/{Path(color).stem}"] = {
                "pixel": (x, y),
                "metres": (10000 + 400 * (2 * cam + yaw)) / 4000.0,
                "conf": (cfx, cfy, ccx, ccy),
                "plane": 2 * cam + yaw,
            }
    conf = base / "undistorted_camera_parameters" / f"{house}.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("\n".join(lines) + "\n")
    return expected


# --- Taskonomy --------------------------------------------------------------------------------

TK_SIZE = 32  # the release's rgb/ is 512x512
TK_BUILDINGS = {"train": "allensville", "val": "collierville", "test": "ihlen"}  # official tiny split


# domain -> its 2018 sample-building folder and file-name domain (StanfordVL/taskonomy sample model)
TK_LEGACY = {"depth_zbuffer": "depth", "depth_euclidean": "mist", "point_info": "points"}


def taskonomy_dir(root: Path, layout: str, building: str, domain: str) -> Path:
    if layout == "legacy":
        return root / building / TK_LEGACY.get(domain, domain)
    return root / domain / "taskonomy" / building if layout == "omnidata" else root / building / domain


def taskonomy_file(root: Path, layout: str, building: str, domain: str, view: str, ext: str = ".png") -> Path:
    """``<domain dir>/<view>_domain_<domain><ext>``, with the legacy names where layout == "legacy"."""
    name = domain
    if layout == "legacy":
        name = {"point_info": "fixatedpose"}.get(domain, TK_LEGACY.get(domain, domain))
    return taskonomy_dir(root, layout, building, domain) / f"{view}_domain_{name}{ext}"


def point_info(fov: float, point: int, view: int) -> dict:
    """A point_info json with the release's keys (values from a real file, fov and ids ours)."""
    return {
        "model_rotation_degrees": 0.0,
        "point_uuid": str(point),
        "field_of_view_rads": fov,
        "point_pitch": -0.08815781672927336,
        "camera_rotation_original": [1.5785322189331055, -0.004439795855432749, -0.3697104752063751],
        "camera_uuid": "b20b2b0634e241d794127bb70d0381ec",
        "camera_location": [4.119016, 3.356542, 1.473925],
        "point_location": [-0.735573410987854, 2.436551332473755, 0.9980431199073792],
        "view_id": view,
        "camera_distance": 4.963857983586831,
        "camera_rotation_final": [1.474778652191162, -0.004216436762362719, 1.7584909200668335],
        "resolution": 512,
    }


def tk_plane(seed: int, fov: float) -> tuple[np.ndarray, np.ndarray]:
    """(z, ray distance) in metres of a plane in a square render of field of view `fov`: the
    camera looks through the image centre, f = (W / 2) / tan(fov / 2), pixel i spans [i, i+1)."""
    f = (TK_SIZE / 2) / np.tan(fov / 2)
    r, c = np.mgrid[0:TK_SIZE, 0:TK_SIZE]
    xn, yn = (c + 0.5 - TK_SIZE / 2) / f, (r + 0.5 - TK_SIZE / 2) / f
    z = plane_z(xn, yn, seed)
    return z, z * np.sqrt(xn**2 + yn**2 + 1)


def write_taskonomy(root: Path, layout: str = "omnidata", fov: float = 1.3089969389957472) -> dict:
    """Two views in each of three buildings (one per official split) plus the split csv.

    z-buffer: 3.0 m (1536/512) at pixel (7, 9), 65535 ("no surface") at (0, 0), elsewhere the
    plane of seed point + view (`tk_plane`). Euclidean: 4.0 m at (7, 9), the same plane's ray
    distance elsewhere. The optional mask_valid marks pixel (1, 1) invalid.
    """
    expected = {}
    for building in TK_BUILDINGS.values():
        for point, view in ((0, 0), (12, 3)):
            name = f"point_{point}_view_{view}"
            write_rgb(taskonomy_file(root, layout, building, "rgb", name), (TK_SIZE, TK_SIZE), point)
            z_m, ray_m = tk_plane(point + view, fov)
            z = np.round(z_m * 512).astype(np.uint16)
            z[9, 7] = 1536
            z[0, 0] = 65535
            write_png16(taskonomy_file(root, layout, building, "depth_zbuffer", name), z)
            ray = np.round(ray_m * 512).astype(np.uint16)
            ray[9, 7] = 2048
            ray[0, 0] = 65535
            write_png16(taskonomy_file(root, layout, building, "depth_euclidean", name), ray)
            mask = np.full((TK_SIZE, TK_SIZE), 255, dtype=np.uint8)
            mask[1, 1] = 0
            mask_path = (
                taskonomy_dir(root, layout, building, "mask_valid") / f"{name}_domain_depth_zbuffer.png"
            )
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(mask_path)
            info = taskonomy_file(root, layout, building, "point_info", name, ".json")
            info.parent.mkdir(parents=True, exist_ok=True)
            info.write_text(json.dumps(point_info(fov, point, view)))
            expected[f"{building}/{name}"] = {"z": 3.0, "ray": 4.0, "pixel": (7, 9)}
    rows = ["id,train,val,test"] + [
        f"{b},{int(s == 'train')},{int(s == 'val')},{int(s == 'test')}" for s, b in TK_BUILDINGS.items()
    ]
    rows.append("wiconisco,0,1,0")  # listed in the split, not downloaded
    (root / "train_val_test_tiny.csv").write_text("\n".join(rows) + "\n")
    return expected


# --- ScanNet++ --------------------------------------------------------------------------------

SP_SCENES = {"train": "02455b3d20", "val": "1ada7a0617"}
SP_RGB = (120, 90)  # the release is 1920x1440 RGB ...
SP_DEPTH = (16, 12)  # ... with 256x192 depth: the same 7.5x ratio
SP_K = [[97.5, 0.0, 59.7], [0.0, 98.4, 44.6], [0.0, 0.0, 1.0]]  # fx != fy: the json allows it


def sp_depth_mm(index: int) -> int:
    """Each frame's distinctive depth at depth pixel (3, 5), so a wrong pairing shows."""
    return 1000 + 10 * index


def sp_plane_mm(index: int) -> np.ndarray:
    """Frame `index`'s depth map (mm, z): its own plane (seed = index, so a frame paired with
    another's depth lands off its plane), sampled at each depth pixel's centre seen in RGB pixels
    (ARKit depth covers the RGB image: depth pixel j's centre is RGB (j + 0.5) * 7.5 - 0.5)."""
    k = np.array(SP_K)
    r, c = np.mgrid[0 : SP_DEPTH[1], 0 : SP_DEPTH[0]]
    u = (c + 0.5) * SP_RGB[0] / SP_DEPTH[0] - 0.5
    v = (r + 0.5) * SP_RGB[1] / SP_DEPTH[1] - 0.5
    z = plane_z((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], index)
    return np.round(z * 1000).astype(np.uint16)


def write_scannetpp(
    root: Path,
    rgb_frames=(0, 10, 20, 30),
    depth_frames=range(0, 26),
    json_frames=None,
    scene: str | None = None,
) -> None:
    """One scene per split in the layout prepare_iphone_data leaves behind, plus splits/.

    RGB exists for `rgb_frames` (like extract_only_rgb_in_colmap), depth for `depth_frames`
    (every video frame), so frame 30 has no depth partner. Depth pixel (3, 5) holds
    sp_depth_mm(index); elsewhere the frame's plane (`sp_plane_mm`); depth pixel (0, 0) is 0
    (no reading).
    """
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, sc in SP_SCENES.items():
        (root / "splits" / f"nvs_sem_{split}.txt").write_text(sc + "\n")
    scenes = [scene] if scene else list(SP_SCENES.values())
    for sc in scenes:
        iphone = root / "data" / sc / "iphone"
        for i in sorted(rgb_frames, reverse=True):  # creation order must not matter
            write_rgb(iphone / "rgb" / f"frame_{i:06d}.jpg", SP_RGB, seed=i)
        for i in depth_frames:
            d = sp_plane_mm(i)
            d[5, 3] = sp_depth_mm(i)
            d[0, 0] = 0
            write_png16(iphone / "depth" / f"frame_{i:06d}.png", d)
        frames = rgb_frames if json_frames is None else json_frames
        poses = {
            f"frame_{i:06d}": {
                "timestamp": 1.0 + i / 60.0,
                "intrinsic": SP_K,
                "pose": np.eye(4).tolist(),
                "aligned_pose": np.eye(4).tolist(),
                "imu": {},  # not read; its contents vary by capture
            }
            for i in frames
        }
        (iphone / "pose_intrinsic_imu.json").write_text(json.dumps(poses))
