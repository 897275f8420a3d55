"""Views for tasks that mark more than one pixel, through the ONE rendering path.

``depthlm.render.render`` makes the view (focal normalisation, crop on the processor grid,
one resample) for one anchor pixel; asked with the marker-less ``text_coords`` template it
returns the bare view and the intrinsics that describe it exactly. Every other pixel of
the record maps into that view through the intrinsics alone, because resizing and
cropping keep each pixel's normalised image coordinates (x - cx) / fx, (y - cy) / fy
(see depthlm.geometry). The tasks then draw their own markers.

To move into depthlm.render later: a ``draw_marker=False`` switch (instead of borrowing
``text_coords``) and a ``points_to_view`` helper beside it, so multi-point callers never
need this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.geometry import Intrinsics, inside
from depthlm.render import load_image, render
from depthlm.settings import RenderSettings

BARE_TEMPLATE = "text_coords"  # the registered template that draws no marker


@dataclass
class View:
    image: Image.Image
    intrinsics: Intrinsics  # of `image`


def bare_view(
    image: Image.Image,
    intrinsics: Intrinsics,
    anchor: tuple[float, float],
    settings: RenderSettings,
    rng: np.random.Generator | None = None,
) -> View:
    """The view render() makes for `anchor` (training crop with rng, evaluation view without), unmarked."""
    q = render(image, intrinsics, anchor, settings.with_(template=BARE_TEMPLATE), rng=rng)
    return View(q.image, q.intrinsics)


def to_view(points: np.ndarray, source: Intrinsics, view: Intrinsics) -> np.ndarray:
    """Source pixels (N, 2) to float view coordinates, exactly as render maps its query pixel."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x = view.cx + view.fx * (pts[:, 0] - source.cx) / source.fx
    y = view.cy + view.fy * (pts[:, 1] - source.cy) / source.fy
    return np.stack([x, y], axis=1)


def view_pixels(points: np.ndarray, source: Intrinsics, view: Intrinsics) -> list[tuple[int, int]]:
    """The view pixel holding each source pixel (render's rounding: floor(v + 0.5))."""
    return [(int(math.floor(x + 0.5)), int(math.floor(y + 0.5))) for x, y in to_view(points, source, view)]


def box_to_view(box: Sequence[float], source: Intrinsics, view: Intrinsics) -> tuple[int, int, int, int]:
    """An inclusive pixel box (x0, y0, x1, y1) of the source as the inclusive view box that covers it:
    the box's outer edges (x0 - 0.5 ... x1 + 0.5) are mapped, then rounded outwards to pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    edges = to_view(np.array([[x0 - 0.5, y0 - 0.5], [x1 + 0.5, y1 + 0.5]]), source, view)
    return (
        int(math.floor(edges[0, 0] + 0.5)),
        int(math.floor(edges[0, 1] + 0.5)),
        int(math.ceil(edges[1, 0] - 0.5)),
        int(math.ceil(edges[1, 1] - 0.5)),
    )


def all_inside(points: np.ndarray, view: View, margin: float = 0.0) -> bool:
    return bool(np.all(inside(points, view.image.size, margin)))


def marker_size(settings: RenderSettings) -> int:
    return settings.marker_size or markers.marker_size(settings.f_uni)


def min_separation(settings: RenderSettings) -> float:
    """Closest two labelled markers may be, in view pixels: marker plus letter do not overlap."""
    return 2.0 * marker_size(settings)


def open_image(record_image: str, intrinsics: Intrinsics, settings: RenderSettings) -> Image.Image:
    return load_image(record_image, intrinsics, settings.f_uni)
