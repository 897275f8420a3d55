"""Sanity checks shared by the indoor RGB-D sources (NYUv2, iBims-1, SUN RGB-D, ETH3D).

Each raises :class:`~data_builders.base.SkipFrame` with a reason that names the frame,
so one bad file costs one rejected frame (listed in rejects.jsonl), never the build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import SkipFrame
from depthlm.geometry import Intrinsics, intrinsics_problem


def check_intrinsics(intr: Intrinsics, where: str) -> Intrinsics:
    """depthlm's one plausibility check (depthlm.geometry.check_intrinsics), as a rejected frame."""
    problem = intrinsics_problem(intr)
    if problem is not None:
        raise SkipFrame(f"{where}: {problem}")
    return intr


def image_size(
    path: Path,
    where: str = "",
    expected: tuple[int, int] | None = None,
    described_by: str = "the intrinsics",
    *,
    decode: bool = False,
) -> tuple[int, int]:
    """(width, height) of an image file; the one image_size of the builders.

    Without `decode` only the header is read (fast; sources call it to build intrinsics);
    the framework decodes every kept image (`decode=True`), so a file corrupt past its
    header is still a rejected frame, never a crash at training time. With `expected`
    (the size `described_by` gives, e.g. a camera model), any other size is a rejected frame.
    """
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise SkipFrame(f"{prefix}image file missing: expected an image at {path}, found no file")
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            size = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        detail = str(err).replace(repr(str(path)), "").strip() or type(err).__name__  # no second path
        raise SkipFrame(
            f"{prefix}unreadable image: {path} is not an image Pillow can read ({detail})"
        ) from None
    if expected is not None and tuple(size) != tuple(expected):
        raise SkipFrame(
            f"{prefix}image size mismatch: expected {expected[0]}x{expected[1]} ({described_by}), "
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
