"""Choosing labelled points for a query, and the view that shows them all.

The view is depthlm.render's view step (render_view); what is the tasks' own is where their
markers may go: at least min_separation apart, all inside one view."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from depthlm.geometry import focal_size, grid_box
from depthlm.records import Record
from depthlm.render import View, load_image, marker_size, render_view
from depthlm.settings import RenderSettings
from depthlm.tasks.base import TaskError

Accept = Callable[[list[int], int], bool]
CROP_TRIES = 4  # random crops tried before a training query falls back to the evaluation view


def min_separation(settings: RenderSettings) -> float:
    """Closest two labelled markers may be, in view pixels: marker plus letter do not overlap."""
    return 2.0 * marker_size(settings)


def normalised(record: Record, indices: list[int] | np.ndarray, settings: RenderSettings) -> np.ndarray:
    """Points in the focal-normalised frame (pixels at f_uni), where marker spacing is measured."""
    pts = record.points[np.asarray(indices, dtype=int)]
    k = record.intrinsics
    return np.stack(
        [(pts[:, 0] - k.cx) * settings.f_uni / k.fx, (pts[:, 1] - k.cy) * settings.f_uni / k.fy], 1
    )


def pick_points(
    record: Record,
    k: int,
    rng: np.random.Generator,
    settings: RenderSettings,
    accept: Accept | None = None,
    *,
    task: str,
) -> list[int]:
    """k labelled points in random order, at least min_separation apart in the view (markers and
    letters must not cover each other), together within one evaluation view (a large image is
    cropped to the pixel budget) and passing `accept(chosen, candidate)`; greedy over a seeded
    permutation, so the same rng state picks the same points."""
    if len(record) < k:
        raise TaskError(f"{record.id}: {task}: needs {k} labelled points, record has {len(record)}")
    norm = normalised(record, np.arange(len(record)), settings)
    sep = min_separation(settings)
    span = np.array(eval_view_size(record, settings), dtype=np.float64) - 2.0
    chosen: list[int] = []
    for i in rng.permutation(len(record)):
        i = int(i)
        if chosen and np.min(np.linalg.norm(norm[chosen] - norm[i], axis=1)) < sep:
            continue
        together = norm[[*chosen, i]]
        if np.any(together.max(axis=0) - together.min(axis=0) > span):
            continue
        if accept is not None and not accept(chosen, i):
            continue
        chosen.append(i)
        if len(chosen) == k:
            return chosen
    raise TaskError(
        f"{record.id}: {task}: no {k} labelled points at least {sep:g} view pixels apart"
        + (" that the task can ask about" if accept else "")
    )


def eval_view_size(record: Record, settings: RenderSettings) -> tuple[int, int]:
    """Width and height of render's evaluation view of this record (the budget-capped grid box)."""
    box = grid_box(focal_size(record.intrinsics, settings.f_uni), settings.grid, settings.max_pixels)
    return box[2], box[3]


def view_showing(
    record: Record,
    points: np.ndarray,
    settings: RenderSettings,
    rng: np.random.Generator | None,
    image: Image.Image | None,
    *,
    task: str,
) -> View:
    """The view that shows every source pixel in `points` (N, 2): render's view anchored at the
    centre of their bounding box. With rng, a training crop (CROP_TRIES draws, each must keep
    every marker whole), else or when every crop cuts one off, the evaluation view; TaskError
    when even that cannot hold them (pixel budget)."""
    if image is None:
        image = load_image(record.image, record.intrinsics, settings.f_uni)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    anchor = tuple((pts.min(axis=0) + pts.max(axis=0)) / 2)
    whole = marker_size(settings) // 3 + 1  # a crop must not cut a centred marker in half
    for r in [rng] * CROP_TRIES + [None] if rng is not None else [None]:
        view = render_view(image, record.intrinsics, anchor, settings, r)
        if view.holds(pts, 0 if r is None else whole):
            return view
    raise TaskError(f"{record.id}: {task}: the marked pixels do not fit in one view of the pixel budget")
