"""Writers of tiny datasets in the exact release formats of NYUv2, iBims-1, SUN RGB-D and ETH3D.

Every writer fills depth with a known formula of the pixel (x, y), so a test can
check the value at any pixel after loading or building -- which catches transposed
axes, wrong units and wrong decoding, not just "something came out". SUN RGB-D's is a tilted
plane seen through the release's 1-based intrinsics and stored by the toolbox's documented bit
rule (written here, not imported from the reader), so labels can be checked against the plane.

Both also carry the release's segmentation (NYU ``labels``/``instances``/``names``, SUN RGB-D
``seg.mat``) with objects at known pixels (``nyu_objects``, ``sun_objects``: rectangles and an
L shape, two of one class), so a test can take each object's median depth from the fixture's own
depth formula and masks and compare it with what the region task computes from a build.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

# ---------------------------------------------------------------- NYUv2 (v7.3 .mat = HDF5)

NYU_W, NYU_H = 640, 480
NYU_HOLE = (slice(200, 210), slice(300, 310))  # rows, cols with rawDepths = 0 (filled in `depths`)


# Class names of the release's ``names`` cell (894 entries in the real file) at the 1-based indices
# the fixture's label maps use; the other entries are filler names.
NYU_N_NAMES = 894
NYU_CLASS_INDEX = {"chair": 5, "table": 19, "night stand": 88, "wall": 21}


def nyu_names() -> list[str]:
    names = [f"class {k}" for k in range(1, NYU_N_NAMES + 1)]
    for name, k in NYU_CLASS_INDEX.items():
        names[k - 1] = name
    return names


def nyu_objects(i: int) -> list[tuple[str, int, np.ndarray]]:
    """(class, instance within the class, mask (H, W) bool) of image i's objects: two chairs (two
    instances of one class), a table over the rawDepths hole, an L-shaped night stand that crosses
    the Eigen crop's top and right edges. Shifted with i so images differ."""

    def rects(*parts) -> np.ndarray:
        m = np.zeros((NYU_H, NYU_W), bool)
        for r0, r1, c0, c1 in parts:
            m[r0:r1, c0:c1] = True
        return m

    s = 10 * i
    return [
        ("chair", 1, rects((100, 160, 100 + s, 200 + s))),
        ("chair", 2, rects((300, 360, 400, 480 - s))),
        ("table", 1, rects((190, 260, 280, 360))),  # holds NYU_HOLE (rawDepths 0)
        ("night stand", 1, rects((20, 80, 500, 620), (80, 120, 580, 620))),
    ]


NYU_STRAY = (slice(400, 420), slice(50, 100))  # labelled "wall" with instance 0: not an object


def nyu_segmentation(i: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint16, instances uint8), both (H, W), of image i as the release defines them."""
    labels = np.zeros((NYU_H, NYU_W), np.uint16)
    instances = np.zeros((NYU_H, NYU_W), np.uint8)
    for name, inst, mask in nyu_objects(i):
        labels[mask], instances[mask] = NYU_CLASS_INDEX[name], inst
    labels[NYU_STRAY] = NYU_CLASS_INDEX["wall"]
    return labels, instances


def nyu_depth(i: int) -> np.ndarray:
    """Depth (H, W) of 0-based image i: depends on x, y and i so any axis swap shows."""
    y, x = np.mgrid[0:NYU_H, 0:NYU_W]
    return (1.0 + 0.001 * x + 0.01 * y + 0.5 * i).astype(np.float32)


def _matlab_v73_header() -> bytes:
    """The 512-byte user block MATLAB writes in front of the HDF5 data of a v7.3 file."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    head = text.ljust(116, b" ") + struct.pack("<Q", 0) + struct.pack("<H", 0x0200) + b"IM"
    return head.ljust(512, b"\0")


def write_nyu(
    root: Path, n: int = 3, train=(1,), test=(2, 3), depths: list[np.ndarray] | None = None
) -> Path:
    """nyu_depth_v2_labeled.mat + splits.mat. Arrays are stored as MATLAB does (column-major),
    i.e. h5py sees images (N, 3, W, H) and depths (N, W, H)."""
    root.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:NYU_H, 0:NYU_W]
    images = np.stack([np.stack([x % 256, y % 256, np.full_like(x, 40 * i)], -1) for i in range(n)])
    dep = np.stack(depths if depths is not None else [nyu_depth(i) for i in range(n)]).astype(np.float32)
    raw = dep.copy()
    raw[:, NYU_HOLE[0], NYU_HOLE[1]] = 0.0
    path = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr, cls in (
            ("images", images.astype(np.uint8).transpose(0, 3, 2, 1), b"uint8"),
            ("depths", dep.transpose(0, 2, 1), b"single"),
            ("rawDepths", raw.transpose(0, 2, 1), b"single"),
        ):
            f.create_dataset(name, data=arr).attrs["MATLAB_class"] = np.bytes_(cls)
        seg = [nyu_segmentation(j) for j in range(n)]
        for name, arr, cls in (
            ("labels", np.stack([lab for lab, _ in seg]).transpose(0, 2, 1), b"uint16"),
            ("instances", np.stack([ins for _, ins in seg]).transpose(0, 2, 1), b"uint8"),
        ):
            f.create_dataset(name, data=arr).attrs["MATLAB_class"] = np.bytes_(cls)
        _write_matlab_cell_of_strings(f, "names", nyu_names())
    with open(path, "r+b") as fh:
        fh.write(_matlab_v73_header())
    col = lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 1)  # noqa: E731
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": col(train), "testNdxs": col(test)})
    return path


def _write_matlab_cell_of_strings(f: h5py.File, name: str, texts: list[str]) -> None:
    """A MATLAB K x 1 cell of char row vectors as v7.3 stores it: a (1, K) dataset of object
    references (MATLAB_class 'cell') to datasets in '#refs#', each a 1 x L char array stored
    column-major, i.e. (L, 1) uint16 UTF-16 code units with MATLAB_class 'char'."""
    refs = f.require_group("#refs#")
    cell = f.create_dataset(name, shape=(1, len(texts)), dtype=h5py.ref_dtype)
    for k, text in enumerate(texts):
        chars = refs.create_dataset(f"{name}_{k}", data=np.array([[ord(c)] for c in text], np.uint16))
        chars.attrs["MATLAB_class"] = np.bytes_(b"char")
        chars.attrs["MATLAB_int_decode"] = np.int32(2)
        cell[0, k] = chars.ref
    cell.attrs["MATLAB_class"] = np.bytes_(b"cell")


# ---------------------------------------------------------------- iBims-1 (per-image .mat struct)

IBIMS_W, IBIMS_H = 640, 480
IBIMS_CALIB = (559.62, 558.14, 362.87, 242.99)  # fx, fy and the 1-based cx, cy of the release
IBIMS_INVALID = (slice(0, 10), slice(0, 640))  # top rows marked invalid
IBIMS_TRANSP = (slice(100, 120), slice(400, 450))  # a window


def ibims_depth(i: int) -> np.ndarray:
    y, x = np.mgrid[0:IBIMS_H, 0:IBIMS_W]
    return (2.0 + 0.002 * x + 0.003 * y + 0.25 * i).astype(np.float32)


def ibims_struct(i: int, calib=IBIMS_CALIB, depth: np.ndarray | None = None) -> dict:
    fx, fy, cx1, cy1 = calib
    y, x = np.mgrid[0:IBIMS_H, 0:IBIMS_W]
    mask_invalid = np.ones((IBIMS_H, IBIMS_W), np.uint8)
    mask_invalid[IBIMS_INVALID] = 0
    mask_transp = np.ones((IBIMS_H, IBIMS_W), np.uint8)
    mask_transp[IBIMS_TRANSP] = 0
    return {
        "rgb": np.stack([x % 256, y % 256, np.full_like(x, 30 * i)], -1).astype(np.uint8),
        "depth": ibims_depth(i) if depth is None else depth,
        "edges": np.zeros((IBIMS_H, IBIMS_W), np.uint8),
        "calib": np.array([[fx, 0, 0], [0, fy, 0], [cx1, cy1, 1]], dtype=np.float64),  # MATLAB layout
        "mask_invalid": mask_invalid,
        "mask_transp": mask_transp,
        "mask_wall": np.zeros((IBIMS_H, IBIMS_W), np.uint8),
        "mask_wall_paras": np.zeros((0, 7)),
        "mask_table": np.zeros((IBIMS_H, IBIMS_W), np.uint8),
        "mask_table_paras": np.zeros((0, 7)),
        "mask_floor": np.zeros((IBIMS_H, IBIMS_W), np.uint8),
        "mask_floor_paras": np.zeros((0, 7)),
    }


def write_ibims(root: Path, names=("corridor_01", "kitchen_02")) -> Path:
    folder = root / "ibims1_core_mat"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        scipy.io.savemat(folder / f"{name}.mat", {"data": ibims_struct(i)})
    (folder / "imagelist.txt").write_text("".join(f"{n}\n" for n in names))
    return folder


# ---------------------------------------------------------------- SUN RGB-D (per-sensor folders)

SUN_W, SUN_H = 64, 48
SUN_K = (51.9, 52.0, 33.5, 25.0)  # fx, fy, 1-based cx, cy as in intrinsics.txt
SUN_FAR_PIXEL = (5, 7)  # (x, y) holding 9.5 m: beyond the toolbox's 8 m
SUN_SCENES = {
    "kv1/NYUdata/NYU0001": ("NYU0001", "train"),
    "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize": ("0000103", "val"),
    "realsense/lg/2014_10_24-13_49_47-1311000073": ("0000030", "test"),
    "xtion/sun3ddata/mit_32_d507/d507_2/d507_2_1": ("0000200", "test"),
}


def sun_plane(i: int) -> tuple[np.ndarray, float]:
    """The tilted plane n . X = c (camera frame, metres) that scene i shows."""
    return np.array([0.2, -0.3, 1.0]), 2.0 + 0.2 * i


def sun_k(scale: int = 1) -> tuple[float, float, float, float]:
    """SUN_K for the image SUN_W*scale x SUN_H*scale (scale 10: 640x480, as the kv1 frames)."""
    return tuple(v * scale for v in SUN_K)


def sun_depth(i: int, k=SUN_K, scale: int = 1) -> np.ndarray:
    """z-depth of scene i's plane at every pixel, by the toolbox's own back-projection
    (read3dPoints.m: [x, y] = meshgrid(1:W, 1:H), X = (x - cx) z / fx): array index (row, col)
    is MATLAB pixel (col + 1, row + 1). Millimetre steps (what the 16-bit PNG holds); one far
    pixel at 9.5 m, beyond the toolbox's 8 m cap. The image is SUN_W*scale x SUN_H*scale."""
    fx, fy, cx, cy = k
    n, c = sun_plane(i)
    rows, cols = np.mgrid[0 : SUN_H * scale, 0 : SUN_W * scale]
    xm, ym = cols + 1.0, rows + 1.0  # MATLAB's 1-based pixel coordinates
    z = c / (n[0] * (xm - cx) / fx + n[1] * (ym - cy) / fy + n[2])
    d = np.round(z * 1000) / 1000
    d[SUN_FAR_PIXEL[1], SUN_FAR_PIXEL[0]] = 9.5
    return d


def toolbox_png(metres: np.ndarray) -> np.ndarray:
    """The uint16 a SUN RGB-D depth PNG stores for these depths, inverted from the toolbox's read
    rule (read3dPoints.m: depth = bitor(bitshift(v, -3), bitshift(v, 16 - 3)) / 1000, i.e. v
    rotated right by 3 bits in 16): v is the millimetres rotated LEFT by 3 bits."""
    mm = np.round(np.asarray(metres, dtype=np.float64) * 1000).astype(np.int64)
    low13, high3 = mm % 8192, mm // 8192  # the 13 low bits move up, the 3 high bits wrap to the bottom
    return (low13 * 8 + high3).astype(np.uint16)


# seg.mat's ``names``: one entry per annotated polygon, so a class repeats (two chairs); entry 6
# ("picture") has no pixel in seglabel (say, hidden behind another polygon): no object.
SUN_SEG_NAMES = ["wall", "chair", "chair", "table", "night_stand", "picture"]


def sun_objects(scale: int = 1) -> list[tuple[int, np.ndarray]]:
    """(1-based index into SUN_SEG_NAMES, mask (H, W) bool) of every scene's annotated objects, in
    fractions of the image: a wall band holding SUN_FAR_PIXEL (9.5 m: no valid depth), two chairs,
    an L-shaped table, a night stand (disjoint masks)."""
    h, w = SUN_H * scale, SUN_W * scale

    def rects(*parts) -> np.ndarray:
        m = np.zeros((h, w), bool)
        for x0, x1, y0, y1 in parts:
            m[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)] = True
        return m

    return [
        (1, rects((0.0, 1.0, 0.0, 0.25))),
        (2, rects((0.1, 0.3, 0.55, 0.85))),
        (3, rects((0.6, 0.8, 0.55, 0.85))),
        (4, rects((0.35, 0.55, 0.4, 0.7), (0.35, 0.45, 0.7, 0.9))),
        (5, rects((0.85, 0.95, 0.3, 0.5))),
    ]


def sun_seglabel(scale: int = 1) -> np.ndarray:
    label = np.zeros((SUN_H * scale, SUN_W * scale), np.float64)  # MATLAB's default class, double
    for j, mask in sun_objects(scale):
        label[mask] = j
    return label


def write_sun_seg(scene: Path, scale: int = 1) -> Path:
    """The scene's seg.mat (MATLAB v5): seglabel (H x W) and names (a 1 x K cell of strings)."""
    path = scene / "seg.mat"
    names = np.array(SUN_SEG_NAMES, dtype=object).reshape(1, -1)
    scipy.io.savemat(path, {"seglabel": sun_seglabel(scale), "names": names})
    return path


def write_sun_scene(data_root: Path, rel: str, stem: str, i: int, k=SUN_K, scale: int = 1) -> Path:
    scene = data_root / rel
    for sub in ("image", "depth", "depth_bfx", "extrinsics"):
        (scene / sub).mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : SUN_H * scale, 0 : SUN_W * scale]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, np.full_like(x, 20 * i)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(scene / "image" / f"{stem}.jpg", quality=95)
    Image.fromarray(toolbox_png(sun_depth(i, k, scale))).save(scene / "depth" / f"{stem}.png")
    Image.fromarray(toolbox_png(sun_depth(i, k, scale) + 1.0)).save(scene / "depth_bfx" / f"{stem}.png")
    fx, fy, cx, cy = k
    (scene / "intrinsics.txt").write_text(f"{fx} 0 {cx}\n0 {fy} {cy}\n0 0 1\n")
    (scene / "scene.txt").write_text("office")
    write_sun_seg(scene, scale)
    return scene


def write_sunrgbd(root: Path, scale: int = 1) -> Path:
    """Every SUN_SCENES scene (SUN_W*scale x SUN_H*scale) with its seg.mat, and allsplit.mat."""
    data = root / "SUNRGBD"
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (rel, (stem, split)) in enumerate(sorted(SUN_SCENES.items())):
        write_sun_scene(data, rel, stem, i, sun_k(scale), scale)
        slash = "/" if i % 2 else ""  # the release mixes paths with and without a trailing slash
        splits[split].append(f"/n/fs/sun3d/data/SUNRGBD/{rel}{slash}")
    cell = lambda v: np.array(v, dtype=object).reshape(1, -1)  # noqa: E731  (a MATLAB 1xN cell)
    toolbox = root / "SUNRGBDtoolbox" / "traintestSUNRGBD"
    toolbox.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        toolbox / "allsplit.mat",
        {
            "alltrain": cell(splits["train"] + splits["val"]),
            "alltest": cell(splits["test"]),
            "trainvalsplit": {"train": cell(splits["train"]), "val": cell(splits["val"])},
        },
    )
    return data


# ---------------------------------------------------------------- ETH3D (COLMAP text + raw float32)

ETH_W, ETH_H = 96, 64  # the ORIGINAL (distorted) image and its depth map
ETH_PINHOLE = (54.0, 54.0, 48.5, 32.5)  # its COLMAP fx fy cx cy (pixel (0, 0)'s centre at 0.5, 0.5)
ETH_K1 = 0.05  # THIN_PRISM_FISHEYE k1 of the original camera (other coefficients 0)
ETH_HOLE_COL = 80  # original-image column without ground truth (inf)
# The undistorted PINHOLE camera is another camera: its own size and fx != fy, as in the release
# (COLMAP's undistorter picks the size and focal lengths of the undistorted view).
ETH_UND = (90, 60, 52.0, 52.5, 45.2, 30.1)  # width, height, COLMAP fx fy cx cy


def eth_plane(i: int) -> tuple[np.ndarray, float]:
    """The tilted plane n . X = c (camera frame) image i shows."""
    return np.array([0.2, 0.1, 1.0]), 2.0 + 0.5 * i


def eth_rays_of_original_pixels(height: int, width: int, pinhole=ETH_PINHOLE, k1=ETH_K1, scale: int = 1):
    """(xn, yn) of the ray each ORIGINAL pixel sees: COLMAP's THIN_PRISM_FISHEYE with only k1
    (pixel = f * u * (1 + k1 theta^2) + c, u = x theta / r, theta = atan(r)) inverted here by
    Newton on theta (rho = theta (1 + k1 theta^2) is monotonic)."""
    fx, fy, cx, cy = (v * scale for v in pinhole)
    r_idx, c_idx = np.mgrid[0:height, 0:width]
    ud, vd = (c_idx + 0.5 - cx) / fx, (r_idx + 0.5 - cy) / fy  # distorted normalised coordinates
    rho = np.hypot(ud, vd)
    theta = rho.copy()
    for _ in range(30):
        theta -= (theta * (1 + k1 * theta**2) - rho) / (1 + 3 * k1 * theta**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 1e-12, np.tan(theta) / rho, 1.0)
    return ud * ratio, vd * ratio


def eth_depth_original(i: int, scale: int = 1) -> np.ndarray:
    """z-depth of the ORIGINAL (distorted) image: plane i seen through the fisheye, float32 with
    inf where the scan has no point. scale=63 gives the real 6048x4032 (for timing)."""
    n, c = eth_plane(i)
    xn, yn = eth_rays_of_original_pixels(ETH_H * scale, ETH_W * scale, scale=scale)
    d = (c / (n[0] * xn + n[1] * yn + n[2])).astype(np.float32)
    d[:, ETH_HOLE_COL * scale] = np.inf  # a column the scan missed
    return d


def _images_txt(names: list[str], folder: str, empty_points: bool) -> str:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
    ]
    for i, name in enumerate(names, start=1):
        lines.append(f"{i} 1 0 0 0 0 0 0 {i} {folder}/{name}")
        lines.append("" if empty_points and i == 1 else "10.5 20.5 -1 30.5 40.5 7")
    return "\n".join(lines) + "\n"


def write_eth3d_scene(
    root: Path, scene: str, names=("DSC_0001.JPG", "DSC_0002.JPG"), pinhole=ETH_PINHOLE, scale: int = 1
) -> Path:
    base = root / scene
    width, height = ETH_W * scale, ETH_H * scale
    uw, uh, ufx, ufy, ucx, ucy = (v * scale for v in ETH_UND)
    for sub in (
        "images/dslr_images_undistorted",
        "dslr_calibration_undistorted",
        "dslr_calibration_jpg",
        "ground_truth_depth/dslr_images",
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    fx, fy, cx, cy = (v * scale for v in pinhole)
    und = ["# Camera list with one line of data per camera:"]
    dist = ["# Camera list with one line of data per camera:"]
    for i, name in enumerate(names, start=1):
        und.append(f"{i} PINHOLE {uw} {uh} {ufx} {ufy} {ucx} {ucy}")
        dist.append(f"{i} THIN_PRISM_FISHEYE {width} {height} {fx} {fy} {cx} {cy} {ETH_K1} 0 0 0 0 0 0 0")
        y, x = np.mgrid[0:uh, 0:uw]  # the undistorted image has the undistorted camera's size
        rgb = np.stack([x * 2 % 256, y * 3 % 256, np.full_like(x, 50 * i)], -1).astype(np.uint8)
        Image.fromarray(rgb).save(base / "images/dslr_images_undistorted" / name, quality=95)
        depth = eth_depth_original(i - 1, scale)
        depth.astype("<f4").tofile(base / "ground_truth_depth/dslr_images" / name)
    (base / "dslr_calibration_undistorted/cameras.txt").write_text("\n".join(und) + "\n")
    (base / "dslr_calibration_jpg/cameras.txt").write_text("\n".join(dist) + "\n")
    names = list(names)
    (base / "dslr_calibration_undistorted/images.txt").write_text(
        _images_txt(names, "dslr_images_undistorted", empty_points=True)
    )
    (base / "dslr_calibration_jpg/images.txt").write_text(
        _images_txt(names, "dslr_images", empty_points=False)
    )
    return base
