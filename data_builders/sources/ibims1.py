"""iBims-1: 100 indoor images (640x480) with laser-scanner ground-truth depth.

Download: https://www.asg.ed.tum.de/lmf/ibims1/ -- ``ibims1_core_mat.zip`` (the per-image
.mat release with calibration and masks). Licence: research and non-commercial use
only (terms on the download page); cite Koch et al., ECCV-W 2018.

Expected layout (``--root`` is the folder holding ``ibims1_core_mat/`` or that folder
itself)::

    ROOT/ibims1_core_mat/imagelist.txt      one image name per line (e.g. corridor_01)
    ROOT/ibims1_core_mat/corridor_01.mat    ...

Each .mat file (MATLAB v5, read with ``scipy.io.loadmat``) holds a struct ``data``
with fields -- as the official ``evaluate_ibims_error_metrics.py`` reads them --
``rgb`` (480x640x3 uint8), ``depth`` (metres, 0 = missing), ``edges``, ``calib``,
``mask_invalid`` and ``mask_transp`` (1 = usable, 0 = invalid / transparent surface),
plus plane masks (``mask_wall``, ``mask_table``, ``mask_floor`` and their ``_paras``).

- Depth is z-depth: the official planarity metric back-projects X = (c - cx) d / fx,
  with d the stored value as the coordinate along the optical axis.
- ``calib`` is MATLAB's transposed intrinsic matrix [[fx 0 0]; [0 fy 0]; [cx cy 1]]
  (the evaluation reads ``calib[2,0]`` as cx) with a 1-based principal point (it
  builds its pixel grid from 1); we convert to 0-based pixel centres (cx - 1, cy - 1).
  A ``calib`` already in the usual [[fx 0 cx]; [0 fy cy]; [0 0 1]] layout is accepted.
- valid = mask_invalid AND mask_transp (the evaluation's own combination; missing
  depth is dropped by the framework's depth > 0 rule).

Split: iBims-1 is an evaluation set; all images listed in ``imagelist.txt`` form the
one split ``test``. Keys are the image names.

Reference-code faults fixed: depth is stored as z-depth with ``depth_type="z"``
(no silent mix of conventions); invalid and transparent pixels are never labelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

MAT_DIR = "ibims1_core_mat"
IMAGE_LIST = "imagelist.txt"
REQUIRED_FIELDS = ("rgb", "depth", "calib", "mask_invalid", "mask_transp")


@register_source("ibims1")
class IBims1(Source):
    splits = ("test",)

    def list_frames(self) -> list[str]:
        if self.split not in self.splits:
            raise DepthLMError(f"ibims1 has one split, 'test'; got {self.split!r}")
        folder = self._folder()
        listing = folder / IMAGE_LIST
        if listing.is_file():
            names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            names = [n[:-4] if n.endswith(".mat") else n for n in names]
        else:  # a hand-copied folder without the list: every .mat file, in name order
            names = [p.stem for p in folder.glob("*.mat")]
        if not names:
            raise DepthLMError(f"ibims1: no images listed in {listing} and no .mat files in {folder}")
        return sorted(set(names))

    def load(self, key: str) -> Frame:
        path = self._folder() / f"{key}.mat"
        data = read_struct(path, key)
        rgb = np.asarray(data["rgb"])
        depth = np.asarray(data["depth"], dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise SkipFrame(f"{key}: rgb has shape {rgb.shape}, expected HxWx3")
        height, width = rgb.shape[:2]
        masks = [np.asarray(data[k]) for k in ("mask_invalid", "mask_transp")]
        for name, arr in (("depth", depth), ("mask_invalid", masks[0]), ("mask_transp", masks[1])):
            if arr.shape != (height, width):
                raise SkipFrame(f"{key}: size mismatch: rgb is {width}x{height} but {name} is {arr.shape}")
        valid = (masks[0] != 0) & (masks[1] != 0)
        intr = check_intrinsics(intrinsics_from_calib(np.asarray(data["calib"]), width, height, key), key)
        check_depth(depth, valid, key)
        return Frame(
            key=key,
            intrinsics=intr,
            image=Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)), "RGB"),
            depth=depth,
            depth_type="z",
            valid=valid,
            split=self.split,
        )

    def _folder(self) -> Path:
        for folder in (self.root / MAT_DIR, self.root):
            if (folder / IMAGE_LIST).is_file() or any(folder.glob("*.mat")):
                return folder
        raise DepthLMError(
            f"ibims1: {self.root} holds neither {MAT_DIR}/{IMAGE_LIST} nor .mat files "
            "(extract ibims1_core_mat.zip there)"
        )


def read_struct(path: Path, where: str) -> dict:
    """The fields of the ``data`` struct of one iBims-1 .mat file."""
    if not path.is_file():
        raise SkipFrame(f"{where}: file missing: {path}")
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise SkipFrame(f"{where}: unreadable .mat file: {path}: {err}") from None
    data = mat.get("data")
    names = getattr(getattr(data, "dtype", None), "names", None) or ()
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise SkipFrame(f"{where}: no struct 'data' with fields {missing}: {path}")
    return {name: data[name][0][0] for name in names}


def intrinsics_from_calib(calib: np.ndarray, width: int, height: int, where: str) -> Intrinsics:
    """iBims-1 ``calib`` (MATLAB layout, 1-based principal point) -> 0-based Intrinsics."""
    k = np.asarray(calib, dtype=np.float64)
    if k.shape != (3, 3):
        raise SkipFrame(f"{where}: calib has shape {k.shape}, expected 3x3")
    if k[2, 0] == 0 and k[2, 1] == 0 and (k[0, 2] != 0 or k[1, 2] != 0):
        cx, cy = k[0, 2], k[1, 2]  # already [[fx 0 cx]; [0 fy cy]; [0 0 1]]
    else:
        cx, cy = k[2, 0], k[2, 1]  # MATLAB's transposed layout, as the official evaluation reads it
    return Intrinsics(float(k[0, 0]), float(k[1, 1]), float(cx) - 1.0, float(cy) - 1.0, width, height)
