"""SUN RGB-D: 10,335 indoor RGB-D frames from four sensors (Kinect v1/v2, RealSense, Xtion).

Download: https://rgbd.cs.princeton.edu/ -- ``SUNRGBD.zip`` (images, depth,
intrinsics) and ``SUNRGBDtoolbox.zip`` (the official split ``allsplit.mat``).
Licence: no explicit licence; research use, cite Song et al., CVPR 2015 (and the
NYU, B3DO and SUN3D papers whose frames it includes).

Expected layout (``--root`` holds ``SUNRGBD/`` and ``SUNRGBDtoolbox/``)::

    ROOT/SUNRGBD/<sensor>/<collection>/.../<scene>/image/<name>.jpg
                                                   depth/<name>.png     (depth_bfx/ filled)
                                                   intrinsics.txt       3x3, row-major
    ROOT/SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat

with ``<sensor>`` one of kv1, kv2, realsense, xtion; the nesting below it varies
(kv1/NYUdata/NYU0001, kv2/kinect2data/000002_..., realsense/lg/...), so scenes are
found as the folders holding ``intrinsics.txt``. Keys are the scene folder's path
below ``SUNRGBD/`` (e.g. ``kv1/NYUdata/NYU0001``).

Decoding follows the official toolbox (``read3dPoints.m``):
- depth PNGs are 16-bit with the bits rotated: metres = (((d >> 3) | (d << 13)) & 0xFFFF) / 1000;
  the toolbox then clamps everything beyond 8 m to 8 m -- we mark those pixels
  invalid instead of inventing an 8 m label. ``--sunrgbd-depth bfx`` reads the
  toolbox's hole-filled ``depth_bfx`` maps instead of the measured ``depth`` (default).
- ``intrinsics.txt`` is K = [[fx 0 cx]; [0 fy cy]; [0 0 1]] read row by row; the toolbox
  back-projects MATLAB's 1-based pixel grid with it (x3 = (x - cx) z / fx, z3 = z), so
  depth is z-depth and the principal point is 1-based: we use (cx - 1, cy - 1). (The
  kv1 NYU frames' files are already a pixel off NYU's own calibration; a 1-2 px principal
  point error changes no z label and ray distances by well under 1%.)

Splits (``allsplit.mat``): ``test`` = alltest (5,050 frames), ``train`` / ``val`` =
trainvalsplit.train / .val (the toolbox's split of the 5,285 alltrain frames). Paths in
the file start with the authors' ``/n/fs/sun3d/data/SUNRGBD/``; they are matched on
the part after ``SUNRGBD/``. ``--sunrgbd-split-file`` points elsewhere. Every frame
the split names is listed; one whose folder is absent is rejected, not silently dropped.

Objects (``--objects``, off by default: default builds are unchanged): each scene folder's
``seg.mat`` (MATLAB v5; read with scipy.io.loadmat) holds ``seglabel`` (H x W, the image's size)
and ``names`` (a 1 x K cell of strings). ``seglabel`` is a PER-IMAGE index into ``names``
(1-based, 0 = no annotation), not the 37 benchmark classes: the same bed has index 3 in one
image and 5 in another, indices above 37 occur (e-lab/ENet-training issue 37), and each index
is one annotated polygon of ``annotation2Dfinal``, so two chairs are two indices both named
"chair" (public converters treat one index as one instance: crmauceri/SUNRGBD_COCO, "the seg.mat
file contains instance segmentation"). So an object = one index j > 0, split further by
``seginstances`` in the files that carry that optional field. No connected-component
splitting: an object the annotator drew as one polygon stays one object even when something
in front cuts it in two. Each object gets an id in a uint16 label map (``extras.masks``), its
inclusive box and class (``names{j}``, underscores as spaces) in ``extras.objects``, and
``extras.depth_map`` holds the decoded depth at the frame's valid pixels only, 0 elsewhere.
A scene without ``seg.mat`` (or with an unusable one) is still written, without these keys,
with the reason in ``extras.notes`` ("segmentation missing: no seg.mat in the scene folder", "segmentation unusable: seg.mat ...").
Build with ``--copy-images``: records otherwise point at the release's image, and the region
task looks for extras files (written under OUT/images/) only among the image's parent folders.

Reference-code faults fixed: depth decoded by bit rotation then /1000 as the toolbox
does (the reference reads raw/10000, wrong for every pixel); stored as z-depth with
``depth_type="z"`` (the reference labels SUN RGB-D as ray distance).
"""

from __future__ import annotations

import argparse
import os
import posixpath
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics, check_same_size, image_size
from data_builders.sources._region import RegionProblem, class_name, label_objects, valid_depth_mm
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

SPLIT_FILE = Path("SUNRGBDtoolbox") / "traintestSUNRGBD" / "allsplit.mat"
MAX_DEPTH_M = 8.0  # the toolbox clamps beyond this; such pixels are not trustworthy labels
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SEG_FILE = "seg.mat"  # per scene folder: seglabel (H x W) + names (1 x K cell)
NO_SEG_NOTE = "segmentation missing: no seg.mat in the scene folder"


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D 16-bit depth PNG values -> metres (the toolbox's bit rotation, then /1000)."""
    d = raw.astype(np.uint32)
    return (((d >> 3) | (d << 13)) & 0xFFFF).astype(np.float32) / 1000.0


def encode_depth(metres: np.ndarray) -> np.ndarray:
    """Inverse of decode_depth (millimetre precision): used to write release-format fixtures."""
    mm = np.round(np.asarray(metres, dtype=np.float64) * 1000.0).astype(np.uint32) & 0xFFFF
    return (((mm << 3) | (mm >> 13)) & 0xFFFF).astype(np.uint16)


@register_source("sunrgbd")
class SUNRGBD(Source):
    splits = ("train", "val", "test")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--sunrgbd-depth",
            choices=("raw", "bfx"),
            default="raw",
            help="sunrgbd: measured depth/ (default) or the toolbox's hole-filled depth_bfx/",
        )
        parser.add_argument(
            "--sunrgbd-split-file",
            type=Path,
            default=None,
            help=f"sunrgbd: allsplit.mat (default ROOT/{SPLIT_FILE.as_posix()})",
        )
        parser.add_argument(
            "--objects",
            action="store_true",
            help="sunrgbd: also write each annotated object of the scene's seg.mat: extras.objects "
            "(id, box, class), extras.masks and extras.depth_map (valid pixels only), for the region "
            "task; scenes without seg.mat are written without them (reason in extras.notes). Use with "
            "--copy-images: the region task finds extras files only near the record's image",
        )

    def list_frames(self) -> list[str]:
        if self.split not in self.splits:
            raise DepthLMError(f"sunrgbd has splits {', '.join(self.splits)}; got {self.split!r}")
        data = self._data_root()
        if not find_scenes(data):
            raise DepthLMError(f"sunrgbd: no scene folders with intrinsics.txt below {data}")
        # every frame the split names, present or not: a missing folder becomes a listed reject
        return sorted(read_split(self._split_file(), self.split))

    def load(self, key: str) -> Frame:
        scene = self._data_root() / key
        if not scene.is_dir():
            raise SkipFrame(f"{key}: scene folder missing: {scene}")
        image_path, depth_path = pair_files(scene, self._depth_dir(), key)
        width, height = image_size(image_path, key)
        intr = check_intrinsics(read_intrinsics(scene / "intrinsics.txt", width, height, key), key)
        depth = read_depth_png(depth_path, key)
        check_same_size((width, height), depth, key)
        valid = depth <= MAX_DEPTH_M
        check_depth(depth, valid, key)
        extras: dict = {"sensor": key.split("/", 1)[0]}
        if getattr(self.options, "objects", False):
            extras.update(region_extras(scene / SEG_FILE, (width, height), depth, valid))
        return Frame(
            key=key,
            intrinsics=intr,
            image_path=image_path,
            depth=depth,
            depth_type="z",
            valid=valid,
            split=self.split,
            extras=extras,
        )

    def _depth_dir(self) -> str:
        return "depth_bfx" if getattr(self.options, "sunrgbd_depth", "raw") == "bfx" else "depth"

    def _data_root(self) -> Path:
        return self.root / "SUNRGBD" if (self.root / "SUNRGBD").is_dir() else self.root

    def _split_file(self) -> Path:
        given = getattr(self.options, "sunrgbd_split_file", None)
        candidates = [Path(given)] if given else [self.root / SPLIT_FILE, self.root.parent / SPLIT_FILE]
        for path in candidates:
            if path.is_file():
                return path
        raise DepthLMError(
            f"sunrgbd: split file not found (looked at {', '.join(str(p) for p in candidates)}); "
            "extract SUNRGBDtoolbox.zip next to SUNRGBD/ or pass --sunrgbd-split-file"
        )


def find_scenes(data_root: Path) -> list[str]:
    """Relative paths of every folder holding intrinsics.txt (not descending into them)."""
    found = []
    for folder, dirs, files in os.walk(data_root):
        if "intrinsics.txt" in files:
            found.append(Path(folder).relative_to(data_root).as_posix())
            dirs[:] = []
        else:
            dirs.sort()
    return found


def read_split(path: Path, split: str) -> set[str]:
    """Scene paths (relative to SUNRGBD/) of one split of the toolbox's allsplit.mat."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DepthLMError(f"sunrgbd: cannot read {path}: {err}") from None
    try:
        if split == "test":
            entries = mat["alltest"]
        else:
            entries = getattr(mat["trainvalsplit"], split)
    except (KeyError, AttributeError):
        raise DepthLMError(f"sunrgbd: {path} lacks the {split!r} list (alltest / trainvalsplit)") from None
    return {_scene_key(str(p)) for p in np.atleast_1d(entries)}


def _scene_key(path: str) -> str:
    path = posixpath.normpath(path.strip().replace("\\", "/"))  # also drops trailing and double slashes
    marker = "SUNRGBD/"
    at = path.find(marker)
    return path[at + len(marker) :] if at >= 0 else path.lstrip("/")


def pair_files(scene: Path, depth_dir: str, where: str) -> tuple[Path, Path]:
    """The scene's one colour image and its depth PNG (paired by file stem)."""
    images = sorted(p for p in (scene / "image").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SkipFrame(f"{where}: no image: {scene / 'image'}")
    if len(images) > 1:
        raise SkipFrame(f"{where}: several images, expected one: {scene / 'image'}")
    depth = scene / depth_dir / f"{images[0].stem}.png"
    if not depth.is_file():
        pngs = sorted((scene / depth_dir).glob("*.png"))
        if len(pngs) != 1:
            raise SkipFrame(f"{where}: depth file missing: {depth}")
        depth = pngs[0]
    return images[0], depth


def read_intrinsics(path: Path, width: int, height: int, where: str) -> Intrinsics:
    if not path.is_file():
        raise SkipFrame(f"{where}: intrinsics file missing: {path}")
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as err:
        raise SkipFrame(f"{where}: unreadable intrinsics: {path}: {err}") from None
    if len(values) != 9:
        raise SkipFrame(f"{where}: intrinsics hold {len(values)} numbers, expected a 3x3 matrix: {path}")
    k = np.array(values).reshape(3, 3)
    if not np.allclose(k[2], [0, 0, 1]) or k[1, 0] != 0:
        raise SkipFrame(
            f"{where}: intrinsics are not a camera matrix [[fx 0 cx]; [0 fy cy]; [0 0 1]]: {path}"
        )
    return Intrinsics(
        float(k[0, 0]), float(k[1, 1]), float(k[0, 2]) - 1.0, float(k[1, 2]) - 1.0, width, height
    )


def read_depth_png(path: Path, where: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise SkipFrame(f"{where}: depth is a {im.mode} image, not a 16-bit depth PNG: {path}")
            raw = np.array(im)
    except (OSError, ValueError) as err:
        raise SkipFrame(f"{where}: unreadable depth: {path}: {err}") from None
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 0xFFFF:
        raise SkipFrame(f"{where}: depth values outside 16 bits: {path}")
    return decode_depth(raw)


def region_extras(path: Path, size: tuple[int, int], depth: np.ndarray, valid: np.ndarray) -> dict:
    """objects + masks + depth_map from a scene's seg.mat, or only ``notes`` saying why there are none."""
    if not path.is_file():
        return {"notes": [NO_SEG_NOTE]}
    try:
        seglabel, instances, names = read_seg(path)
        width, height = size
        if seglabel.shape != (height, width):
            raise RegionProblem(
                f"seglabel is {seglabel.shape[1]}x{seglabel.shape[0]}, the image {width}x{height}"
            )
        base = 1 if instances is None else int(instances.max(initial=0)) + 1  # key = j * base + instance
        keys = seglabel * base + (0 if instances is None else instances)
        keys[seglabel == 0] = 0

        def describe(key: int) -> dict:
            j, k = divmod(key, base)
            obj = {"class": class_name(names[j - 1]), "seg_index": j}
            if instances is not None:
                obj["instance"] = k
            return obj

        masks, objects = label_objects(keys, describe)
    except RegionProblem as err:
        return {"notes": [f"segmentation unusable: {SEG_FILE}: {err}"]}
    return {"objects": objects, "masks": masks, "depth_map": valid_depth_mm(depth, valid)}


def read_seg(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(seglabel, seginstances or None, names) of a seg.mat, checked: whole non-negative labels
    within names, seginstances (when present) of seglabel's shape."""
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise RegionProblem(f"cannot read it: {err}") from None
    missing = [k for k in ("seglabel", "names") if k not in mat]
    if missing:
        raise RegionProblem(f"no {', '.join(missing)}")
    seglabel = _whole(mat["seglabel"], "seglabel")
    if seglabel.ndim != 2:
        raise RegionProblem(f"seglabel has shape {seglabel.shape}, expected H x W")
    names = [_cell_text(v) for v in np.asarray(mat["names"], dtype=object).ravel()]
    if seglabel.max(initial=0) > len(names):
        raise RegionProblem(f"seglabel holds {seglabel.max()}, beyond the {len(names)} names")
    instances = None
    if "seginstances" in mat:
        instances = _whole(mat["seginstances"], "seginstances")
        if instances.shape != seglabel.shape:
            raise RegionProblem(f"seginstances {instances.shape} does not match seglabel {seglabel.shape}")
    return seglabel, instances, names


def _whole(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if (
        arr.dtype.kind not in "iuf"
        or not np.all(np.isfinite(arr))
        or np.any(arr != np.round(arr))
        or arr.min(initial=0) < 0
    ):
        raise RegionProblem(f"{what} must hold whole numbers >= 0 (got dtype {arr.dtype})")
    return arr.astype(np.int64)


def _cell_text(value: object) -> str:
    """One entry of a MATLAB cell of strings as scipy loads it (a 1-element str array; empty: '')."""
    arr = np.asarray(value)
    return "" if arr.size == 0 else str(arr.ravel()[0])
