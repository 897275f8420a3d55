"""Readers shared by the RGB-D sources with PNG depth (Matterport3D, Taskonomy, ScanNet++).

The plausibility checks (intrinsics, sizes, empty depth) live in ``_checks``; this module
reads files. Every failure raises :class:`SkipFrame` with a reason naming the file, so one
bad frame is recorded in rejects.jsonl and never stops a build. Reasons read
"<what went wrong>: <path>[: <detail>]", so the summary can group them by their first part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import SkipFrame
from data_builders.sources._checks import image_size  # noqa: F401  (re-exported: the one image_size)

log = logging.getLogger(__name__)

PNG16_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_png16(path: Path) -> np.ndarray:
    """A single-channel 16-bit PNG as an HxW uint16 array of the raw stored values.

    An 8-bit or colour PNG is refused rather than rescaled: it means the wrong file (a
    visualisation, not the depth map).
    """
    if not path.is_file():
        raise SkipFrame(f"depth file missing: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            data = np.asarray(im)
    except (OSError, ValueError) as err:
        raise SkipFrame(f"unreadable depth file: {path}: {err}") from None
    if mode not in PNG16_MODES or data.ndim != 2:
        raise SkipFrame(f"depth file is a {mode} image, not a single-channel 16-bit PNG: {path}")
    if data.dtype != np.uint16:
        if data.min() < 0 or data.max() > 65535:
            raise SkipFrame(f"depth file holds values outside the 16-bit range: {path}")
        data = data.astype(np.uint16)
    return data


def read_mask(path: Path, threshold: int = 0) -> np.ndarray:
    """A mask image as an HxW bool array, True where the grey value exceeds threshold
    (masks decoded from a video carry codec noise around 0 and 255: use 127 there)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > threshold
    except (OSError, ValueError) as err:
        raise SkipFrame(f"unreadable mask: {path}: {err}") from None


def upsample_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an HxW map to size (W, H), pixel centres aligned.

    Output pixel x takes the input pixel whose footprint holds its centre,
    floor((x + 0.5) * w_in / W) -- the same centre convention as depthlm.geometry. Depth is
    never interpolated: blending a foreground and a background value invents a surface.
    """
    w_out, h_out = size
    h_in, w_in = values.shape
    cols = np.minimum(((np.arange(w_out) + 0.5) * w_in / w_out).astype(np.int64), w_in - 1)
    rows = np.minimum(((np.arange(h_out) + 0.5) * h_in / h_out).astype(np.int64), h_in - 1)
    return values[rows[:, None], cols[None, :]]


def warn_missing(what: str, split: str, wanted: Iterable[str], present: Iterable[str], root: Path) -> None:
    """Name the members of an official split that are not on disk: a partial download is
    legitimate, but the user should see it rather than wonder why the build is small."""
    have = set(present)
    wanted = list(wanted)
    missing = [name for name in wanted if name not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        log.warning(
            "%d of %d %s of the %s split are not under %s: %s",
            len(missing),
            len(wanted),
            what,
            split,
            root,
            shown,
        )
