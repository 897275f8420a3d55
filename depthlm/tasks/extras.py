"""What ``region`` and ``motion`` need beyond a DepthLMBench record, carried in ``extras``.

A DepthLMBench line keeps its five reference keys; tools that read only those see nothing
new. The optional keys under ``"extras"`` (paths relative to the records file's folder, as
``image`` is; depthlm.records makes them absolute on reading, under the rule that guards
``image``, and writes them relative again):

``objects``
    list of ``{"id": k, "box": [x0, y0, x1, y1], "kind" or "class": "chair", ...}``: inclusive
    pixel box of object k in the stored image; its name, when there is one, goes in the
    question. (The synthetic builder writes these.)
``masks``
    a label-map image (8- or 16-bit PNG, the stored image's size): pixel value k belongs to
    object k, 0 to no object. (The synthetic builder writes it.)
``depth_map``
    dense depth of the stored image, of the record's depth_type: a ``.npy`` of float metres,
    or a 16-bit PNG of millimetres; 0 or non-finite means no depth. Without it ``region`` uses
    the record's labelled points that fall on the object (at least MIN_REGION_POINTS).
``pair``
    the second view of a two-view record: ``{"image": path, "intrinsics": [fx, fy, cx, cy, W, H],
    "translation_m": [x, y, z]}``: the second camera's centre in the first camera's frame (x
    right, y down, z forward, metres), optionally ``"rotation"``: 3x3, second camera's axes in
    the first camera's frame.

Every reader raises TaskError naming the record, the key and the problem.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from depthlm.geometry import Intrinsics
from depthlm.records import Record
from depthlm.tasks.base import TaskError

MIN_REGION_POINTS = 5


def resolve_path(record: Record, value: object, key: str) -> Path:
    """An extras path as a file on disk. depthlm.records makes the paths of a jsonl absolute when
    reading it (relative to its folder, under the rule that guards ``image``), so nothing is
    searched for here: the file must exist. A path still relative belongs to a record built in
    memory and is read from the working directory, as ``open`` would."""
    if not isinstance(value, str) or not value:
        raise TaskError(f"{record.id}: extras[{key!r}] must be a path string, got {value!r}")
    if not os.path.isfile(value):
        hint = "" if os.path.isabs(value) else f" (relative to the working directory {os.getcwd()})"
        raise TaskError(f"{record.id}: extras[{key!r}]: file not found: {value}{hint}")
    return Path(value)


def read_objects(record: Record) -> list[dict]:
    objects = record.extras.get("objects")
    if not isinstance(objects, list):
        raise TaskError(
            f"{record.id}: extras['objects'] must be a list of objects, got {type(objects).__name__}"
        )
    return objects


def object_box(record: Record, obj: dict) -> tuple[int, int, int, int] | None:
    """The object's inclusive box inside the image, or None when it has none (not visible)."""
    box = obj.get("box")
    if box is None:
        return None
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise TaskError(
            f"{record.id}: object {obj.get('id')!r}: box must be [x0, y0, x1, y1], got {box!r}"
        ) from None
    w, h = record.intrinsics.size
    if not (0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h):
        raise TaskError(f"{record.id}: object {obj.get('id')!r}: box {box} is not inside the {w}x{h} image")
    return x0, y0, x1, y1


def object_name(obj: dict) -> str | None:
    """Words for the object in a question: its class, or the synthetic shape kind in plain words."""
    name = obj.get("class") or obj.get("kind")
    return {"box": "block", "sphere": "ball"}.get(name, name) if isinstance(name, str) and name else None


def read_masks(record: Record) -> np.ndarray:
    path = resolve_path(record, record.extras.get("masks"), "masks")
    try:
        labels = np.asarray(Image.open(path))
    except OSError as err:
        raise TaskError(f"{record.id}: extras['masks']: cannot read {path}: {err}") from None
    if labels.ndim != 2 or labels.shape[::-1] != record.intrinsics.size:
        raise TaskError(
            f"{record.id}: extras['masks']: {path} is {labels.shape[::-1]}, the image is {record.intrinsics.size}"
        )
    return labels


def read_depth_map(record: Record) -> np.ndarray | None:
    """Dense depth (H, W) float metres of record.depth_type with NaN where unknown, or None when absent."""
    if "depth_map" not in record.extras:
        return None
    path = resolve_path(record, record.extras["depth_map"], "depth_map")
    try:
        if path.suffix == ".npy":
            depth = np.load(path).astype(np.float64)
        else:
            depth = np.asarray(Image.open(path)).astype(np.float64) / 1000.0
    except (OSError, ValueError) as err:
        raise TaskError(f"{record.id}: extras['depth_map']: cannot read {path}: {err}") from None
    if depth.ndim != 2 or depth.shape[::-1] != record.intrinsics.size:
        raise TaskError(
            f"{record.id}: extras['depth_map']: {path} is {depth.shape[::-1]}, the image is {record.intrinsics.size}"
        )
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


@dataclass
class Pair:
    """The second view of a two-view record and where its camera is relative to the first."""

    image: str
    intrinsics: Intrinsics
    translation: np.ndarray | None  # (3,) metres, second camera centre in the first's frame; None: unknown
    rotation: np.ndarray | None  # (3, 3) or None


def read_pair(record: Record) -> Pair:
    pair = record.extras.get("pair")
    if not isinstance(pair, dict):
        raise TaskError(
            f"{record.id}: extras['pair'] must be an object with image, intrinsics and translation_m"
        )
    for key in ("image", "intrinsics"):
        if key not in pair:
            raise TaskError(f"{record.id}: extras['pair'] lacks {key!r}")
    image = str(resolve_path(record, pair["image"], "pair.image"))
    try:
        values = [float(v) for v in pair["intrinsics"]]
        t = pair.get("translation_m")
        t = None if t is None else np.asarray(t, dtype=np.float64).reshape(-1)
        rot = None if pair.get("rotation") is None else np.asarray(pair["rotation"], dtype=np.float64)
    except (TypeError, ValueError):
        raise TaskError(
            f"{record.id}: extras['pair']: intrinsics, translation_m and rotation must be numbers"
        ) from None
    if (
        len(values) != 6
        or not all(math.isfinite(v) for v in values)
        or min(values[0], values[1], values[4], values[5]) <= 0
    ):
        raise TaskError(
            f"{record.id}: extras['pair']['intrinsics'] must be 6 finite numbers, positive focal and size"
        )
    if t is not None and (t.shape != (3,) or not np.all(np.isfinite(t))):
        raise TaskError(
            f"{record.id}: extras['pair']['translation_m'] must be 3 finite numbers, got {pair['translation_m']!r}"
        )
    if rot is not None and (
        rot.shape != (3, 3)
        or not np.all(np.isfinite(rot))
        or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4)
    ):
        raise TaskError(f"{record.id}: extras['pair']['rotation'] must be a 3x3 rotation matrix")
    return Pair(image, Intrinsics.from_list(values), t, rot)
