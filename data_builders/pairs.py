"""Second views for the ``motion`` task, from sources that ship camera poses.

A record's ``extras.pair`` (format: depthlm.tasks.extras) names a second image of the same
scene and where its camera stood relative to the first: the second camera's centre and axes
in the FIRST camera's frame (x right, y down, z forward, metres). Every source computes it
the same way from its two camera-to-world poses, once each pose is expressed with OpenCV
camera axes (a source whose camera frame differs -- Waymo's x forward, y left, z up; ARKit's
x right, y up, z backward -- converts first):

    first_from_second = inverse(world_from_first) @ world_from_second

Sources add ``--pair-offset N`` (:func:`add_pair_argument`): the second view is the same
camera N frames later in the same scene, log or segment; a frame with no such frame keeps
its record without a pair, never an error: the build prints one line counting them when it
lists the frames (:func:`report_unpaired`) and each such record carries ``extras.notes``, the
reason in words, so they can be counted afterwards. A second view whose image file is missing
rejects the frame with the path (:func:`pair_image`), as a missing image of the frame itself does.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import SkipFrame
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

log = logging.getLogger(__name__)

# Camera axes of other conventions in OpenCV's (x right, y down, z forward): columns are the
# other convention's axes written in OpenCV coordinates, so opencv_from_other @ v converts.
OPENCV_FROM_OPENGL = np.diag([1.0, -1.0, -1.0])  # ARKit / nerfstudio: x right, y up, z backward
OPENCV_FROM_FLU = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # x fwd, y left, z up


def add_pair_argument(parser: argparse.ArgumentParser, unit: str = "frames") -> None:
    parser.add_argument(
        "--pair-offset",
        type=int,
        default=0,
        help=f"also write extras.pair for the motion task: the same camera this many {unit} later in the "
        "same sequence, with the exact relative pose from the release's poses (0: off)",
    )


def with_opencv_axes(world_from_camera: np.ndarray, opencv_from_camera: np.ndarray) -> np.ndarray:
    """A camera-to-world pose whose camera axes are another convention's, re-expressed with OpenCV
    camera axes (the camera centre is unchanged)."""
    out = np.array(world_from_camera, dtype=np.float64, copy=True)
    out[:3, :3] = out[:3, :3] @ np.asarray(opencv_from_camera, dtype=np.float64).T
    return out


def relative_pose(
    world_from_first: np.ndarray, world_from_second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(translation (3,), rotation (3, 3)): the second camera's centre and axes in the first's frame.
    Both poses are 4x4 camera-to-world with OpenCV camera axes."""
    a = np.asarray(world_from_first, dtype=np.float64)
    b = np.asarray(world_from_second, dtype=np.float64)
    if a.shape != (4, 4) or b.shape != (4, 4) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("camera poses must be finite 4x4 matrices")
    rel = np.linalg.solve(a, b)
    return rel[:3, 3], rel[:3, :3]


def pair_extras(
    image: Path | Image.Image,
    intrinsics: Intrinsics,
    world_from_first: np.ndarray,
    world_from_second: np.ndarray,
) -> dict:
    """The ``extras["pair"]`` of a record: the second image (a file of the release, referenced like
    the frame's own image, or a decoded image saved as PNG), its intrinsics and the relative pose."""
    t, r = relative_pose(world_from_first, world_from_second)
    return {
        "image": image,
        "intrinsics": intrinsics.to_list(),
        "translation_m": [round(float(v), 6) for v in t],
        "rotation": [[round(float(v), 9) for v in row] for row in r],
    }


# --- what the sources share beyond the geometry ------------------------------------------------

NO_PAIR_NOTE = "no second view: "


def no_pair(why: str) -> dict:
    """The extras of a frame built with --pair-offset that has no second view: a note saying why
    (``extras.notes``, counted by kind in the build's summary.json as ``record_notes``)."""
    return {"notes": [NO_PAIR_NOTE + why]}


def checked_pair_offset(options: argparse.Namespace, source: str) -> int:
    """--pair-offset of a source's options, a negative one refused in one line naming the source."""
    n = int(getattr(options, "pair_offset", 0) or 0)
    if n < 0:
        raise DepthLMError(f"{source}: --pair-offset must be >= 0, got {n}")
    return n


def report_unpaired(source: str, offset: int, unpaired: int, total: int, unit: str, where: str) -> None:
    """The one line a build prints for the frames that will carry no extras.pair (counted when
    the frames are listed; each such record says why in extras.notes)."""
    if offset and unpaired:
        unit = unit[:-1] if offset == 1 and unit.endswith("s") else unit
        log.warning(
            "%s: --pair-offset %d: %d of %d frames have no image of their camera %d %s later in their "
            "%s; their records are kept without extras.pair (extras.notes says why)",
            source,
            offset,
            unpaired,
            total,
            offset,
            unit,
            where,
        )


def pair_image(path: Path, intrinsics: Intrinsics, key: str) -> Path:
    """The second view's image file, checked: a missing file or one of another size than its
    intrinsics rejects the frame with the path (a broken download is reported, never hidden)."""
    if not path.is_file():
        raise SkipFrame(f"{key}: second view image missing: {path}")
    try:
        with Image.open(path) as im:
            size = im.size
    except (OSError, ValueError) as err:
        raise SkipFrame(f"{key}: second view image unreadable: {path}: {err}") from None
    if size != intrinsics.size:
        raise SkipFrame(
            f"{key}: second view size mismatch: {path} is {size[0]}x{size[1]}, its "
            f"intrinsics describe {intrinsics.width}x{intrinsics.height}"
        )
    return path


def finite_pose(value: object) -> np.ndarray | None:
    """A 4x4 camera-to-world matrix from a release's nested list, or None when absent or unusable
    (not 4x4, not finite, or its rotation part not a rotation)."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        return None
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) <= 0:
        return None
    return m
