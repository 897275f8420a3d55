"""The one code path from (image, intrinsics, query pixel, depth) to a chat sample.

Training, evaluation, chat and the demo all call :func:`render` (or
:func:`render_record`), so what a model sees can never drift between them.

Two steps, each in one place. The VIEW step (:func:`render_view`): rescale to focal length
f_uni (x by f_uni/fx, y by f_uni/fy), choose the view -- a random crop that keeps the anchor
pixel in training, the whole image padded to the processor grid in evaluation (cropped around
the anchor only when it exceeds the pixel budget) -- and resample ONCE, straight from the
source pixels to the final size, reading only the source region it needs (memory bounded by
the view, not by the normalised frame), with sides on the processor's grid, so the processor
never resizes it again and the view's intrinsics describe the image the model sees. The
MARKING step (:func:`mark_view`): the marker on the query pixel and the question about it.
:func:`render` is the two in a row; tasks that mark several pixels, a box or nothing (and
depthlm.dense, which marks one view many times) call :func:`render_view` and map their own
source pixels into the view with :func:`points_to_view` / :func:`view_pixels` /
:func:`box_to_view`, the same mapping render uses for its query pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.errors import DepthLMError
from depthlm.geometry import (
    DepthType,
    Intrinsics,
    check_intrinsics,
    convert_depth,
    focal_size,
    grid_box,
    inside,
    random_crop_box,
    resample_view,
    resize_points,
)
from depthlm.prompts import get_template
from depthlm.records import Record
from depthlm.settings import RenderSettings


@dataclass
class Query:
    """What the model sees and what it must answer, for one query pixel."""

    image: Image.Image
    point: tuple[int, int]  # query pixel in `image`
    intrinsics: Intrinsics  # describes `image` exactly
    question: str
    answer: str | None  # target text (None when the depth is unknown: chat)
    depth: float | None  # target metres, of kind settings.depth_target
    settings: RenderSettings
    meta: dict = field(default_factory=dict)

    def messages(self, with_answer: bool = True) -> list[dict]:
        """TRL's conversational format; the image goes in a separate `images` list."""
        template = get_template(self.settings.template)
        msgs: list[dict] = []
        if template.system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": template.system}]})
        msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question}]})
        if with_answer:
            if self.answer is None:
                raise DepthLMError("this query has no known depth, so no answer to train on")
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": self.answer}]})
        return msgs

    def sft_example(self) -> dict:
        """One row for TRL's SFTTrainer (vision datasets: `images` + `messages`)."""
        return {"images": [self.image], "messages": self.messages(with_answer=True)}

    def prompt_example(self) -> dict:
        """One prompt for generation (GRPO, evaluation, chat)."""
        return {"images": [self.image], "prompt": self.messages(with_answer=False)}


@dataclass(frozen=True)
class View:
    """One focal-normalised, grid-cut view of a source image, unmarked: what every task and
    depthlm.dense draw on. It remembers how it was cut from the source (``source`` size of the
    intrinsics' frame, normalised ``frame`` size, ``box`` in that frame) so that any other
    source pixel maps into it exactly as render maps its query pixel (:func:`points_to_view`)."""

    image: Image.Image
    intrinsics: Intrinsics  # describes `image` exactly
    anchor_px: tuple[int, int]  # the anchor pixel (render's query pixel) in `image`
    source: tuple[int, int]  # (W, H) of the source intrinsics' frame
    frame: tuple[int, int]  # (W, H) of the focal-normalised frame
    box: tuple[int, int, int, int]  # (left, top, w, h) of the view in the frame (may pad)

    def holds(self, points: np.ndarray, margin: float = 0.0) -> bool:
        """Whether every source pixel in `points` (N, 2) lands `margin` view pixels inside the view."""
        return bool(np.all(inside(points_to_view(points, self), self.image.size, margin)))


def render_view(
    image: Image.Image,
    intrinsics: Intrinsics,
    anchor: tuple[float, float],
    settings: RenderSettings,
    rng: np.random.Generator | None = None,
) -> View:
    """The view step, the same for every task: rescale to f_uni, choose the view around `anchor` --
    a random crop keeping it with `rng` (training), else the whole image padded to the grid
    (cropped around it only over the pixel budget) -- and resample once. No marker, no words.

    `image` may be smaller than `intrinsics` describe by a uniform factor (e.g. a JPEG
    decoded with draft mode); it is read through the intrinsics' frame.
    """
    s = settings
    check_intrinsics(intrinsics)
    pt = np.asarray(anchor, dtype=np.float64).reshape(1, 2)
    if not np.all(np.isfinite(pt)) or not inside(pt, intrinsics.size)[0]:
        raise DepthLMError(
            f"query pixel {tuple(anchor)} is outside the {intrinsics.width}x{intrinsics.height} image"
        )
    size_n = focal_size(intrinsics, s.f_uni)
    pt_n = resize_points(pt, intrinsics.size, size_n)[0]
    if rng is not None and s.train_crop:
        box = random_crop_box(
            size_n,
            (round(s.crop_width[0] * s.f_uni), round(s.crop_width[1] * s.f_uni)),
            (round(s.crop_height[0] * s.f_uni), round(s.crop_height[1] * s.f_uni)),
            rng,
            grid=s.grid,
            max_pixels=s.max_pixels,
            must_contain=(pt_n[0], pt_n[1]),
        )
    else:
        box = grid_box(size_n, s.grid, s.max_pixels, center=(pt_n[0], pt_n[1]))
    box = _at_least(box, s.min_pixels, s.grid)
    pixels = _resample(image, intrinsics.size, size_n, box)
    left, top, w, h = box
    intr_v = intrinsics.resized(*size_n).cropped(left, top, w, h)
    view = View(pixels, intr_v, (0, 0), intrinsics.size, size_n, box)
    return replace(view, anchor_px=view_pixels(pt, view)[0])


def points_to_view(points: np.ndarray, view: View) -> np.ndarray:
    """Source pixels (N, 2) as float coordinates of `view`: resized into the normalised frame
    (geometry.resize_points), then shifted by the view's box -- the one mapping, render's query
    pixel included, so a task's marker lands where render would put the same pixel's."""
    left, top = view.box[:2]
    return resize_points(points, view.source, view.frame) - np.array([left, top], dtype=np.float64)


def view_pixels(points: np.ndarray, view: View) -> list[tuple[int, int]]:
    """The view pixel holding each source pixel (N, 2): :func:`points_to_view` rounded half up."""
    return [(int(math.floor(x + 0.5)), int(math.floor(y + 0.5))) for x, y in points_to_view(points, view)]


def box_to_view(box: Sequence[float], view: View) -> tuple[int, int, int, int]:
    """An inclusive source pixel box (x0, y0, x1, y1) as the inclusive view box covering it: its
    outer edges (x0 - 0.5 ... x1 + 0.5) mapped by :func:`points_to_view`, rounded outwards."""
    x0, y0, x1, y1 = (float(v) for v in box)
    edges = points_to_view(np.array([[x0 - 0.5, y0 - 0.5], [x1 + 0.5, y1 + 0.5]]), view)
    return (
        int(math.floor(edges[0, 0] + 0.5)),
        int(math.floor(edges[0, 1] + 0.5)),
        int(math.ceil(edges[1, 0] - 0.5)),
        int(math.ceil(edges[1, 1] - 0.5)),
    )


def render(
    image: Image.Image,
    intrinsics: Intrinsics,
    point: tuple[float, float],
    settings: RenderSettings,
    *,
    depth: float | None = None,
    depth_type: DepthType | None = None,
    rng: np.random.Generator | None = None,
    meta: dict | None = None,
) -> Query:
    """Render one query: :func:`render_view` anchored at `point`, then :func:`mark_view`.
    `rng` given: a training view (random crop); None: evaluation view."""
    s = settings
    view = render_view(image, intrinsics, point, s, rng)
    marked, question = mark_view(view.image, view.anchor_px, s)
    target = None
    if depth is not None:
        if depth_type is None:
            raise DepthLMError("depth given without its depth_type ('z' or 'ray')")
        pt = np.asarray(point, dtype=np.float64).reshape(1, 2)
        target = float(convert_depth([depth], pt, intrinsics, depth_type, s.depth_target)[0])
    answer = get_template(s.template).format_answer(target) if target is not None else None
    return Query(marked, view.anchor_px, view.intrinsics, question, answer, target, s, dict(meta or {}))


def mark_view(view: Image.Image, px: tuple[int, int], settings: RenderSettings) -> tuple[Image.Image, str]:
    """The marker on view pixel `px` and the question about it: the one place both are made
    (render, and callers that reuse one resampled view for many pixels, e.g. depthlm.dense)."""
    template = get_template(settings.template)
    if template.draws_marker:
        view = markers.draw_marker(
            view, px, style=settings.marker, color=settings.marker_color, size=marker_size(settings)
        )
    words = markers.describe(settings.marker, settings.marker_color)
    w, h = view.size
    return view, template.format_question(marker=words, x=px[0], y=px[1], width=w, height=h)


def marker_size(settings: RenderSettings) -> int:
    """Marker side in view pixels: the settings' own, else proportional to f_uni."""
    return settings.marker_size or markers.marker_size(settings.f_uni)


def render_record(
    record: Record,
    index: int,
    settings: RenderSettings,
    *,
    rng: np.random.Generator | None = None,
    image: Image.Image | None = None,
) -> Query:
    """Render labelled point `index` of a record (image loaded from disk unless given)."""
    if not 0 <= index < len(record):
        raise DepthLMError(f"{record.id}: point index {index} out of range (record has {len(record)} points)")
    if image is None:
        image = load_image(record.image, record.intrinsics, settings.f_uni)
    return render(
        image,
        record.intrinsics,
        tuple(record.points[index]),
        settings,
        depth=float(record.depths[index]),
        depth_type=record.depth_type,
        rng=rng,
        meta={"record_id": record.id, "point_index": index, "dataset": record.dataset, "image": record.image},
    )


def load_image(path: str, intrinsics: Intrinsics | None = None, f_uni: float | None = None) -> Image.Image:
    """Open an image as RGB; JPEGs that will be shrunk a lot are decoded at reduced size
    (draft mode), which `render` handles through the intrinsics' frame."""
    try:
        im = Image.open(path)
        if intrinsics is not None and f_uni is not None and im.format == "JPEG":
            target = focal_size(intrinsics, f_uni)
            if im.size == intrinsics.size:
                im.draft("RGB", target)
        return im.convert("RGB")
    except FileNotFoundError:
        raise DepthLMError(f"image not found: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DepthLMError(f"cannot read image {path}: {err}") from None


def _at_least(box: tuple[int, int, int, int], min_pixels: int, grid: int) -> tuple[int, int, int, int]:
    """Pad a view that is below the processor's minimum (it would upscale it)."""
    left, top, w, h = box
    while w * h < min_pixels:
        if w <= h:
            w += grid
            left -= grid // 2
        else:
            h += grid
            top -= grid // 2
    return left, top, w, h


def _resample(image: Image.Image, frame: tuple[int, int], size_n: tuple[int, int], box) -> Image.Image:
    """Pixels of `box` (in the focal-normalised frame of size size_n) from the source image,
    in one bicubic resample of only the source region the view needs (memory bounded by the
    view, equal to resampling the whole frame and cropping); outside the image: black."""
    if image.size != frame and abs(image.width / frame[0] - image.height / frame[1]) > 0.02:
        raise DepthLMError(
            f"image is {image.width}x{image.height}, intrinsics describe {frame[0]}x{frame[1]}"
        )
    return resample_view(image, size_n, box)
