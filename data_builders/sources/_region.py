"""Region extras (``objects``, ``masks``, ``depth_map``) from a release's segmentation, shared by the
sources that have one (NYUv2 instances, SUN RGB-D ``seg.mat``).

A source turns its segmentation into one integer key per pixel (0 = no object; any other value
names one object, e.g. NYU's (class, instance) pair), and a class name per key. This module
numbers the objects 1..K in key order, writes the label map the ``region`` task reads
(``depthlm.tasks.extras``: value k = object k, 0 = none; uint16), each object's inclusive box,
and the depth map of the frame's VALID pixels only (16-bit PNG millimetres, 0 elsewhere), so a
region's ground truth never sits on a pixel the frame itself would not label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.ndimage

MAX_MM = 65535  # a 16-bit PNG of millimetres holds up to 65.535 m (and a label map 65535 objects)
_LUT_LIMIT = 1 << 20  # keys below this are numbered through a lookup table (8 MB at most)


class RegionProblem(ValueError):
    """A segmentation that cannot give objects; the message says why (a record note, not a reject)."""


def class_name(raw: str) -> str | None:
    """Words for a release's class name in a question: underscores as spaces, spaces collapsed."""
    words = " ".join(str(raw).replace("_", " ").split())
    return words or None


def label_objects(keys: np.ndarray, describe: Callable[[int], dict]) -> tuple[np.ndarray, list[dict]]:
    """(label map uint16 (H, W), objects) from per-pixel object keys (int, 0 = none).

    Objects are numbered 1..K in increasing key order; each gets ``id``, inclusive ``box``
    [x0, y0, x1, y1], ``pixels`` and whatever ``describe(key)`` adds (its class, release indices)."""
    keys = np.asarray(keys, dtype=np.int64)
    if keys.min(initial=0) < 0:
        raise RegionProblem("negative object keys")
    if keys.max(initial=0) < _LUT_LIMIT:  # a lookup table: linear time, no sort of every pixel
        present = np.flatnonzero(np.bincount(keys.ravel()))
        objects_keys = present[present != 0]
        lut = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        lut[objects_keys] = np.arange(1, len(objects_keys) + 1)
        numbered = lut[keys]
    else:
        uniq, inverse = np.unique(keys, return_inverse=True)
        objects_keys = uniq[uniq != 0]
        numbered = inverse.reshape(keys.shape) + (0 if uniq[0] == 0 else 1)  # key 0 -> 0, others 1..K
    if len(objects_keys) > MAX_MM:
        raise RegionProblem(f"{len(objects_keys)} objects do not fit a 16-bit label map")
    labels = numbered.astype(np.uint16)
    counts = np.bincount(labels.ravel(), minlength=len(objects_keys) + 1)
    objects = []
    for k, (key, where) in enumerate(zip(objects_keys, scipy.ndimage.find_objects(labels)), start=1):
        rows, cols = where
        obj = {"id": k, "box": [cols.start, rows.start, cols.stop - 1, rows.stop - 1]}
        obj.update(describe(int(key)))
        obj["pixels"] = int(counts[k])
        objects.append(obj)
    return labels, objects


def valid_depth_mm(depth: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Depth in millimetres (uint16) at the frame's valid pixels with finite, positive depth that
    a 16-bit PNG can hold; 0 (unknown) everywhere else."""
    d = np.asarray(depth, dtype=np.float64)
    ok = np.isfinite(d) & (d > 0)
    if valid is not None:
        ok &= valid
    mm = np.zeros(d.shape, dtype=np.float64)
    mm[ok] = np.round(d[ok] * 1000.0)
    mm[(mm < 1) | (mm > MAX_MM)] = 0
    return mm.astype(np.uint16)
