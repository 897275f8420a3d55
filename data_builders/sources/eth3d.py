"""ETH3D high-res multi-view: 13 indoor/outdoor scenes, 454 DSLR images (6048x4032)
with laser-scan ground-truth depth.

Download: https://www.eth3d.net/datasets (high-res multi-view, training data) --
``multi_view_training_dslr_undistorted.7z`` (undistorted images + PINHOLE calibration),
``multi_view_training_dslr_jpg.7z`` (original images + their THIN_PRISM_FISHEYE
calibration) and ``multi_view_training_dslr_depth.7z`` (or the per-scene
``<scene>_dslr_depth.7z``). Licence: CC BY-NC-SA 4.0 as we recall the site stating it
(not re-checked offline: read the download page); cite Schöps et al., CVPR 2017.

Expected layout (extract every archive into ``--root``; the scene folders merge)::

    ROOT/<scene>/images/dslr_images_undistorted/DSC_0286.JPG
    ROOT/<scene>/dslr_calibration_undistorted/{cameras,images}.txt   PINHOLE
    ROOT/<scene>/dslr_calibration_jpg/{cameras,images}.txt           THIN_PRISM_FISHEYE
    ROOT/<scene>/ground_truth_depth/dslr_images/DSC_0286.JPG         raw float32, not a JPEG

Reading the release (ETH3D documentation, COLMAP's camera models, public readers):
- Depth files are little-endian float32, row-major, H x W of the ORIGINAL image,
  ``inf`` where the scan has no point. They match the original (distorted) images,
  not the pre-undistorted ones. We therefore resample each depth map into the
  undistorted image: every undistorted pixel is a ray of the PINHOLE camera, projected
  through the original camera's THIN_PRISM_FISHEYE model (COLMAP's formula) to the
  original pixel whose depth it takes (nearest pixel). Undistortion keeps the camera
  centre and axes, so the value stays exact (checked: both images.txt must give the
  image the same pose). This needs ``dslr_calibration_jpg``.
- Depth is z-depth (distance along the optical axis), metres: the scenes are
  metrically scaled, and depth / z_cam of the SfM points is 1.000 (vs 0.90 for ray
  length) as measured by public readers. The reference notes list ETH3D as a
  Euclidean (ray) source; that is its convention, not the data's.
- COLMAP puts pixel (0, 0)'s centre at (0.5, 0.5); our pixel centres are integers,
  so cx, cy = COLMAP's minus 0.5.

Split: only the 13 training scenes have public ground truth; they are used zero-shot
as an evaluation set (DepthLM, Marigold), so all of them form the one split ``test``.
Keys are ``<scene>/<image file name>``.

Reference-code faults fixed: stored as z-depth with ``depth_type="z"`` (the reference
labels ETH3D as ray distance); depth aligned with the undistorted pinhole image the
intrinsics describe instead of the distorted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics, image_size
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

UNDISTORTED = "dslr_calibration_undistorted"
DISTORTED = "dslr_calibration_jpg"
IMAGE_DIR = Path("images") / "dslr_images_undistorted"
DEPTH_DIR = Path("ground_truth_depth") / "dslr_images"
N_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "THIN_PRISM_FISHEYE": 12}
ROWS_PER_CHUNK = 64  # bounds the temporaries of the 24-megapixel projection (~50 MB)


@dataclass(frozen=True)
class Camera:
    """One line of a COLMAP cameras.txt."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]


def read_cameras(path: Path) -> dict[int, Camera]:
    """COLMAP cameras.txt: CAMERA_ID MODEL WIDTH HEIGHT PARAMS..."""
    cameras = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        model = fields[1]
        params = tuple(float(v) for v in fields[4:])
        if N_PARAMS.get(model, len(params)) != len(params):
            raise ValueError(f"{path}: {model} camera needs {N_PARAMS[model]} parameters, got {len(params)}")
        cameras[int(fields[0])] = Camera(model, int(fields[2]), int(fields[3]), params)
    return cameras


@dataclass(frozen=True)
class ImageEntry:
    """One image of a COLMAP images.txt: its camera and its pose (world -> camera)."""

    camera_id: int
    qvec: tuple[float, ...]  # QW QX QY QZ
    tvec: tuple[float, ...]  # TX TY TZ

    def same_pose(self, other: ImageEntry, tol: float = 1e-6) -> bool:
        """q and -q are the same rotation."""
        dot = abs(float(np.dot(self.qvec, other.qvec)))
        return dot > 1 - tol and np.allclose(self.tvec, other.tvec, rtol=tol, atol=tol)


def read_images(path: Path) -> dict[str, ImageEntry]:
    """COLMAP images.txt: image file name (without folder) -> ImageEntry.

    Each image takes two lines: a header (IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME)
    and its 2D points, which may be an empty line -- so lines are consumed in pairs
    after each header, not by skipping blanks.
    """
    out = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        q, t = tuple(float(v) for v in fields[1:5]), tuple(float(v) for v in fields[5:8])
        out[Path(fields[9]).name] = ImageEntry(int(fields[8]), q, t)
        next(lines, None)  # the POINTS2D line
    return out


def pinhole_intrinsics(cam: Camera) -> Intrinsics:
    """COLMAP PINHOLE / SIMPLE_PINHOLE -> Intrinsics with integer pixel centres."""
    if cam.model == "PINHOLE":
        fx, fy, cx, cy = cam.params
    elif cam.model == "SIMPLE_PINHOLE":
        fx, cx, cy = cam.params
        fy = fx
    else:
        raise ValueError(f"expected a PINHOLE camera, got {cam.model}")
    return Intrinsics(fx, fy, cx - 0.5, cy - 0.5, cam.width, cam.height)


def project(cam: Camera, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray (x, y, 1) -> COLMAP pixel coordinates (COLMAP's ImgFromCam)."""
    p = cam.params
    if cam.model == "SIMPLE_PINHOLE":
        return p[0] * x + p[1], p[0] * y + p[2]
    if cam.model == "PINHOLE":
        return p[0] * x + p[2], p[1] * y + p[3]
    if cam.model != "THIN_PRISM_FISHEYE":
        raise ValueError(f"unsupported camera model {cam.model}")
    fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1 = p
    r = np.hypot(x, y)
    safe = np.where(r > 1e-12, r, 1.0)
    scale = np.where(r > 1e-12, np.arctan(r) / safe, 1.0)  # equidistant fisheye: radius -> angle
    u, v = x * scale, y * scale
    r2 = u * u + v * v
    radial = k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
    du = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u) + sx1 * r2
    dv = v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v) + sy1 * r2
    return fx * (u + du) + cx, fy * (v + dv) + cy


def source_index(undistorted: Camera, distorted: Camera) -> np.ndarray:
    """For every undistorted pixel, the flat index of the original pixel seeing the same
    ray (nearest pixel), or -1 where the ray leaves the original image."""
    intr = pinhole_intrinsics(undistorted)
    xs = (np.arange(undistorted.width) - intr.cx) / intr.fx
    out = np.empty((undistorted.height, undistorted.width), dtype=np.int32)  # 24 Mpx fit in int32
    for top in range(0, undistorted.height, ROWS_PER_CHUNK):
        rows = np.arange(top, min(top + ROWS_PER_CHUNK, undistorted.height))
        ys = (rows - intr.cy) / intr.fy
        u, v = project(distorted, *np.meshgrid(xs, ys))
        col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)  # COLMAP corner origin
        inside = (col >= 0) & (col < distorted.width) & (row >= 0) & (row < distorted.height)
        out[rows[0] : rows[-1] + 1] = np.where(inside, row * distorted.width + col, -1)
    return out


def read_depth(path: Path, width: int, height: int, where: str) -> np.ndarray:
    """ETH3D raw float32 depth (H x W, inf = no ground truth) -> metres, 0 = no label."""
    if not path.is_file():
        raise SkipFrame(f"{where}: depth file missing: {path}")
    try:
        raw = np.fromfile(path, dtype="<f4")
    except OSError as err:
        raise SkipFrame(f"{where}: unreadable depth: {path}: {err}") from None
    if raw.size != width * height:
        raise SkipFrame(
            f"{where}: size mismatch: {path} holds {raw.size} floats, expected {width}x{height}={width * height}"
        )
    depth = raw.reshape(height, width).astype(np.float32, copy=False)
    depth[~(np.isfinite(depth) & (depth > 0))] = 0.0  # in place: a full-size map is 97 MB
    return depth


@register_source("eth3d")
class ETH3D(Source):
    splits = ("test",)

    def __init__(self, root, split, options=None):
        super().__init__(root, split, options)
        self._index_cache: tuple[tuple, np.ndarray] | None = None  # the last camera pair's resampling map
        self._calib_cache: dict[Path, tuple[dict[int, Camera], dict[str, ImageEntry]]] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_index_cache"], state["_calib_cache"] = None, {}
        return state

    def list_frames(self) -> list[str]:
        if self.split not in self.splits:
            raise DepthLMError(f"eth3d has one split, 'test'; got {self.split!r}")
        scenes = sorted(p.parent.parent.name for p in self.root.glob(f"*/{UNDISTORTED}/images.txt"))
        if not scenes:
            raise DepthLMError(
                f"eth3d: no <scene>/{UNDISTORTED}/images.txt below {self.root} "
                "(extract multi_view_training_dslr_undistorted.7z there)"
            )
        keys = []
        for scene in scenes:
            names = read_images(self.root / scene / UNDISTORTED / "images.txt")
            keys += [f"{scene}/{name}" for name in names]
        return sorted(keys)

    def load(self, key: str) -> Frame:
        scene, name = key.split("/", 1)
        undistorted, distorted = self._cameras(scene, name, key)
        try:
            intr = pinhole_intrinsics(undistorted)
        except ValueError as err:
            raise SkipFrame(f"{key}: {err}") from None
        check_intrinsics(intr, key)
        image_path = self.root / scene / IMAGE_DIR / name
        size = image_size(image_path, key)
        if size != intr.size:
            raise SkipFrame(
                f"{key}: size mismatch: image is {size[0]}x{size[1]} but its camera is "
                f"{intr.width}x{intr.height}"
            )
        depth_original = read_depth(
            self.root / scene / DEPTH_DIR / name, distorted.width, distorted.height, key
        )
        index = self._index(undistorted, distorted)
        depth = depth_original.ravel().take(index)
        depth[index < 0] = 0.0  # the ray leaves the original image: no label
        check_depth(depth, None, key)
        return Frame(
            key=key,
            intrinsics=intr,
            image_path=image_path,
            depth=depth,
            depth_type="z",
            split=self.split,
            extras={"scene": scene},
        )

    def _cameras(self, scene: str, name: str, where: str) -> tuple[Camera, Camera]:
        """The image's undistorted PINHOLE camera and its original (distorted) camera."""
        pair = []
        for folder in (UNDISTORTED, DISTORTED):
            calib = self.root / scene / folder
            if not (calib / "cameras.txt").is_file() or not (calib / "images.txt").is_file():
                raise SkipFrame(
                    f"{where}: calibration missing: {calib}/cameras.txt and images.txt "
                    "(the depth maps follow the original images; extract the dslr_jpg archive too)"
                )
            try:
                cameras, images = self._calibration(calib)
            except (OSError, ValueError, IndexError) as err:
                raise SkipFrame(f"{where}: unreadable calibration: {calib}: {err}") from None
            if name not in images or images[name].camera_id not in cameras:
                raise SkipFrame(f"{where}: no camera for this image: {calib}")
            pair.append((cameras[images[name].camera_id], images[name]))
        (undistorted, pose_u), (distorted, pose_d) = pair
        if not pose_u.same_pose(pose_d):
            raise SkipFrame(f"{where}: original and undistorted poses differ, depth cannot be carried over")
        if not all(math.isfinite(v) for cam in (undistorted, distorted) for v in cam.params):
            raise SkipFrame(f"{where}: camera parameters are not finite")
        return undistorted, distorted

    def _calibration(self, folder: Path) -> tuple[dict[int, Camera], dict[str, ImageEntry]]:
        """Parsed once per folder: images.txt holds every 2D point of the scene (megabytes)."""
        if folder not in self._calib_cache:
            self._calib_cache[folder] = (
                read_cameras(folder / "cameras.txt"),
                read_images(folder / "images.txt"),
            )
        return self._calib_cache[folder]

    def _index(self, undistorted: Camera, distorted: Camera) -> np.ndarray:
        """Cached per camera pair: images of one scene usually share their cameras."""
        cache_key = (undistorted, distorted)
        if self._index_cache is None or self._index_cache[0] != cache_key:
            self._index_cache = (cache_key, source_index(undistorted, distorted))
        return self._index_cache[1]
