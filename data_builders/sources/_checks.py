"""Sanity checks shared by the indoor RGB-D sources (NYUv2, iBims-1, SUN RGB-D, ETH3D).

Each raises :class:`~data_builders.base.SkipFrame` with a reason that names the frame,
so one bad file costs one rejected frame (listed in rejects.jsonl), never the build.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import SkipFrame
from depthlm.geometry import Intrinsics

# Horizontal field of view a real camera of these datasets can have. Outside it the
# intrinsics belong to another resolution, are in the wrong unit, or are garbage.
MIN_FOV_DEG, MAX_FOV_DEG = 2.0, 160.0
MAX_ASPECT = 1.5  # fx / fy beyond this is not a real pixel shape


def check_intrinsics(intr: Intrinsics, where: str) -> Intrinsics:
    """Reject non-finite, non-positive or implausible focal lengths and principal points."""
    values = (intr.fx, intr.fy, intr.cx, intr.cy)
    if not all(math.isfinite(v) for v in values):
        raise SkipFrame(f"{where}: intrinsics are not finite: {list(values)}")
    if intr.fx <= 0 or intr.fy <= 0:
        raise SkipFrame(f"{where}: focal length must be positive, got fx={intr.fx:g}, fy={intr.fy:g}")
    if intr.width <= 0 or intr.height <= 0:
        raise SkipFrame(f"{where}: image size must be positive, got {intr.width}x{intr.height}")
    fov = math.degrees(2 * math.atan(intr.width / (2 * intr.fx)))
    if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
        raise SkipFrame(
            f"{where}: absurd focal length fx={intr.fx:g} px for a {intr.width} px wide image "
            f"(field of view {fov:.1f} deg, expected {MIN_FOV_DEG:g}-{MAX_FOV_DEG:g})"
        )
    if max(intr.fx, intr.fy) / min(intr.fx, intr.fy) > MAX_ASPECT:
        raise SkipFrame(f"{where}: fx={intr.fx:g} and fy={intr.fy:g} differ too much to be one camera")
    if not (-0.5 <= intr.cx <= intr.width - 0.5 and -0.5 <= intr.cy <= intr.height - 0.5):
        raise SkipFrame(
            f"{where}: principal point ({intr.cx:g}, {intr.cy:g}) lies outside the "
            f"{intr.width}x{intr.height} image"
        )
    return intr


def image_size(
    path: Path, where: str, expected: tuple[int, int] | None = None, described_by: str = "the intrinsics"
) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels. With `expected`
    (the size `described_by` gives, e.g. a camera model), any other size is a rejected frame."""
    if not path.is_file():
        raise SkipFrame(f"{where}: image file missing: expected an image at {path}, found no file")
    try:
        with Image.open(path) as im:
            size = im.size
    except (OSError, ValueError) as err:
        detail = str(err).replace(repr(str(path)), "").strip() or type(err).__name__  # no second path
        raise SkipFrame(
            f"{where}: unreadable image: {path} is not an image Pillow can read ({detail})"
        ) from None
    if expected is not None and tuple(size) != tuple(expected):
        raise SkipFrame(
            f"{where}: image size mismatch: expected {expected[0]}x{expected[1]} ({described_by}), "
            f"found {size[0]}x{size[1]} in {path}"
        )
    return size


def check_same_size(image_wh: tuple[int, int], depth: np.ndarray, where: str) -> None:
    """A depth map (or mask) must have the image's size: same pixels, same intrinsics."""
    if depth.ndim != 2 or (depth.shape[1], depth.shape[0]) != tuple(image_wh):
        raise SkipFrame(
            f"{where}: size mismatch: expected {image_wh[0]}x{image_wh[1]} (the image), found "
            f"{'x'.join(str(s) for s in depth.shape[::-1])}"
        )


def check_depth(depth: np.ndarray, valid: np.ndarray | None, where: str) -> None:
    """A frame needs at least one finite, positive, trusted depth pixel."""
    usable = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        usable &= valid
    if not usable.any():
        what = "inside the valid mask " if valid is not None else ""
        raise SkipFrame(f"{where}: no valid depth {what}(all zero, negative or NaN)")
