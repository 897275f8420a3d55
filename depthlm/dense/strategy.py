"""How sampled pixels become model queries, and answers become metres per pixel.

``k = 1``: one query per pixel through ``depthlm.render.render``, the view, marker and question
``depthlm eval`` asks (the ``depth`` task). ``k > 1``: the ``points`` task, K labelled markers
in one view, so the image's visual tokens are paid once for K answers (needs a model trained
on ``points``). Pixels are grouped so the markers of one query are far apart (greedy over a
seeded order, at least ``tasks.pick.min_separation`` in the view, all within one evaluation
view of the pixel budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.geometry import Intrinsics, focal_size, grid_box, resize_points
from depthlm.parsing import parse_distance, parse_labelled
from depthlm.records import Record
from depthlm.render import Query, View, mark_view, marker_size, render, render_view, view_pixels
from depthlm.settings import RenderSettings
from depthlm.tasks.base import Sample, TaskError, TaskQuery, join_words, letters
from depthlm.tasks.pick import min_separation
from depthlm.tasks.points import PointsTask

MAX_K = 26  # labelled markers A..Z


@dataclass
class Prompt:
    """One query as every backend takes it (``image``, ``messages``, ``meta``, as render.Query)."""

    image: Image.Image
    question: str
    pixels: list[tuple[float, float]]  # the photo's pixels this query answers, in label order
    labels: list[str]
    view_pixels: list[tuple[int, int]]
    _messages: list[dict] = field(repr=False, default_factory=list)
    meta: dict = field(default_factory=dict)
    task: str | None = None  # "points" for K > 1: backends take its answer regex, length and words

    def messages(self, with_answer: bool = False) -> list[dict]:
        return self._messages

    @property
    def points(self) -> dict[str, tuple[int, int]]:
        """Label -> view pixel, as tasks.TaskQuery.points (what the points task's answer lists)."""
        return dict(zip(self.labels, self.view_pixels))


def group_points(
    points: np.ndarray, k: int, intrinsics: Intrinsics, settings: RenderSettings, seed: int = 0
) -> list[list[int]]:
    """Indices of `points` in groups of at most k whose markers stay apart in the view and
    whose spread fits one evaluation view (greedy over a seeded order, as tasks.pick does)."""
    if k == 1:
        return [[i] for i in range(len(points))]
    if not 1 <= k <= MAX_K:
        raise TaskError(f"--points-per-query must be 1..{MAX_K}, got {k}")
    scale = np.array([settings.f_uni / intrinsics.fx, settings.f_uni / intrinsics.fy])
    norm = np.asarray(points, dtype=np.float64) * scale  # view pixels up to a shift
    sep = min_separation(settings)
    box = grid_box(focal_size(intrinsics, settings.f_uni), settings.grid, settings.max_pixels)
    span = np.array(box[2:], dtype=np.float64) - 2.0 * marker_size(settings)
    groups: list[list[int]] = []
    open_groups: list[list[int]] = []  # not yet full: the only ones a point is tried in
    for i in np.random.default_rng(seed).permutation(len(points)):
        i = int(i)
        for g in open_groups:
            if np.min(np.linalg.norm(norm[g] - norm[i], axis=1)) < sep:
                continue
            together = norm[[*g, i]]
            if np.all(together.max(axis=0) - together.min(axis=0) <= span):
                g.append(i)
                if len(g) == k:
                    open_groups.remove(g)
                break
        else:
            groups.append([i])
            open_groups.append(groups[-1])
    return [sorted(g) for g in groups]


def build_prompts(
    image: Image.Image,
    intrinsics: Intrinsics,
    points: np.ndarray,
    groups: Sequence[Sequence[int]],
    settings: RenderSettings,
    k: int,
) -> list[Prompt]:
    """One Prompt per group: the depth task's query (k = 1) or a points query."""
    pts = np.asarray(points, dtype=np.float64)
    if k == 1:
        return single_point_prompts(image, intrinsics, pts[[g[0] for g in groups]], settings)
    return points_prompts(image, intrinsics, [pts[list(g)] for g in groups], settings)


def single_point_prompts(
    image: Image.Image, intrinsics: Intrinsics, points: np.ndarray, settings: RenderSettings
) -> list[Prompt]:
    """depthlm.render.render's query for each pixel, resampling each distinct view once.

    render's evaluation view is the padded photo, or, over the pixel budget, the budget-sized
    box around the pixel, clamped to the photo (geometry.grid_box): most pixels share one of a
    few boxes. The view of each box is made once (render's view step, render_view) and each
    pixel marked on a copy by render's marking step (mark_view). Pixel-identical to render (tested)."""
    size_n = focal_size(intrinsics, settings.f_uni)
    views: dict[tuple, View] = {}
    out = []
    for p in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        center = resize_points(p[None], intrinsics.size, size_n)[0]
        box = grid_box(size_n, settings.grid, settings.max_pixels, center=(center[0], center[1]))
        if box[2] * box[3] < settings.min_pixels:  # render pads such views: leave it to render
            q = render(image, intrinsics, tuple(p), settings)
            out.append(
                Prompt(q.image, q.question, [tuple(p)], [""], [q.point], q.messages(with_answer=False))
            )
            continue
        if box not in views:
            views[box] = render_view(image, intrinsics, tuple(p), settings)
        view = views[box]
        px = view_pixels(p[None], view)[0]
        marked, question = mark_view(view.image, px, settings)
        msgs = Query(marked, px, view.intrinsics, question, None, None, settings).messages(with_answer=False)
        out.append(Prompt(marked, question, [tuple(p)], [""], [px], msgs))
    return out


def points_prompts(
    image: Image.Image, intrinsics: Intrinsics, groups: Sequence[np.ndarray], settings: RenderSettings
) -> list[Prompt]:
    """The ``points`` task's query for each group of pixels (tasks.points.PointsTask.build:
    the evaluation view anchored at the centre of the group's bounding box, labelled markers,
    its question), resampling each distinct view once. Pixel-identical to PointsTask.build (tested)."""
    size_n = focal_size(intrinsics, settings.f_uni)
    views: dict[tuple, View] = {}
    out = []
    for pts in groups:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        labels = letters(len(pts))
        anchor = (pts.min(axis=0) + pts.max(axis=0)) / 2
        center = resize_points(anchor[None], intrinsics.size, size_n)[0]
        box = grid_box(size_n, settings.grid, settings.max_pixels, center=(center[0], center[1]))
        if box[2] * box[3] < settings.min_pixels:  # padded by render: let the task build it
            out.append(_task_points_prompt(image, intrinsics, pts, settings))
            continue
        if box not in views:
            views[box] = render_view(image, intrinsics, tuple(anchor), settings)
        view = views[box]
        if not view.holds(pts):
            raise TaskError(f"{len(pts)} pixels do not fit one view of the pixel budget")
        px = view_pixels(pts, view)
        marked = markers.draw_labelled_markers(view.image, px, labels, size=marker_size(settings))
        question = PointsTask.template.question.format(labels=join_words(labels))
        msgs = TaskQuery("points", [marked], [view.intrinsics], question, None, None, settings).messages(
            with_answer=False
        )
        out.append(Prompt(marked, question, [tuple(p) for p in pts], labels, px, msgs, task="points"))
    return out


def _task_points_prompt(
    image: Image.Image, intrinsics: Intrinsics, pts: np.ndarray, settings: RenderSettings
) -> Prompt:
    """The points task's own build (the reference points_prompts is tested against)."""
    labels = letters(len(pts))
    record = Record("photo", intrinsics, pts, np.full(len(pts), np.nan), settings.depth_target, id="photo")
    task = PointsTask(len(pts))
    q = task.build(record, Sample(indices=list(range(len(pts))), labels=labels), settings, image=image)
    return Prompt(
        q.images[0],
        q.question,
        [tuple(p) for p in pts],
        labels,
        [q.points[label] for label in labels],
        q.messages(with_answer=False),
        task="points",
    )


def parse_answer(text: str, labels: Sequence[str]) -> list[float | None]:
    """Metres per pixel of a query, in its label order (None: the answer lacks that label);
    labels [""]: a single-point depth answer."""
    if list(labels) == [""]:
        return [parse_distance(text)]
    found = parse_labelled(text, tuple(labels)) or {}
    return [found.get(label) for label in labels]


def max_tokens_for(backend, k: int) -> int | None:
    """New tokens a K-point answer needs ("A: 9999.99 m" per line) plus a margin; None for k = 1
    (the backend's own default for the depth template)."""
    if k == 1:
        return None
    longest = "\n".join(f"{label}: 9999.99 m" for label in letters(k))
    tok = getattr(backend, "tokenizer", None) or getattr(
        getattr(backend, "processor", None), "tokenizer", None
    )
    if tok is None:
        return len(longest.encode()) + 1
    return len(tok(longest, add_special_tokens=False)["input_ids"]) + 8
