"""Pinhole geometry: intrinsics that always describe the image they belong to.

Convention (OpenCV's): pixel (x, y) with integer x, y is the *centre* of the pixel in
column x, row y; the image spans [-0.5, W-0.5] x [-0.5, H-0.5]. Resizing by s maps a
coordinate u to (u + 0.5) * s - 0.5, for points and principal points alike, so a
point keeps lying on the same scene ray after any resize, crop or pad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from depthlm.errors import DepthLMError

DepthType = Literal["z", "ray"]


@dataclass(frozen=True)
class Intrinsics:
    """fx, fy, cx, cy in pixels of an image of width x height pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_list(cls, values: list[float] | tuple[float, ...]) -> Intrinsics:
        """DepthLMBench order: [fx, fy, cx, cy, W, H]."""
        fx, fy, cx, cy, w, h = (float(v) for v in values)
        return cls(fx, fy, cx, cy, int(round(w)), int(round(h)))

    def to_list(self) -> list[float]:
        return [self.fx, self.fy, self.cx, self.cy, self.width, self.height]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> Intrinsics:
        """The intrinsics of this image resized to width x height (any aspect change)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def cropped(self, left: int, top: int, width: int, height: int) -> Intrinsics:
        """Crop box may extend beyond the image (that part is padding)."""
        return replace(self, cx=self.cx - left, cy=self.cy - top, width=width, height=height)


# The one plausibility range for intrinsics (build, eval, render, ask, the app). Outside it
# the intrinsics belong to another resolution, are in the wrong unit, or are garbage; inside
# it, rendering costs memory bounded by the view (see resample_view).
FOV_RANGE_DEG = (1.0, 170.0)  # horizontal and vertical field of view
PIXEL_ASPECT_RANGE = (0.5, 2.0)  # fx / fy: real pixels are square or close to it
MAX_IMAGE_SIDE = 1 << 16  # pixels


class ImplausibleIntrinsics(DepthLMError):
    """Intrinsics outside the one documented range; the message says which value and why."""


def intrinsics_problem(intr: Intrinsics) -> str | None:
    """Why `intr` cannot describe a real camera image, or None if it can (see FOV_RANGE_DEG...)."""
    values = [intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return f"intrinsics must be numbers, got {values!r}"
    if not all(math.isfinite(v) for v in numbers):
        return f"intrinsics are not finite: {values}"
    fx, fy, cx, cy, w, h = numbers
    if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE) or w != int(w) or h != int(h):
        return f"image size must be whole pixels between 1 and {MAX_IMAGE_SIDE}, got {w:g}x{h:g}"
    if fx <= 0 or fy <= 0:
        return f"focal length must be positive, got fx={fx:g}, fy={fy:g}"
    lo, hi = FOV_RANGE_DEG
    for name, f, side, axis in (("fx", fx, w, "wide"), ("fy", fy, h, "high")):
        fov = math.degrees(2 * math.atan(side / (2 * f)))
        if not lo <= fov <= hi:
            return (
                f"absurd focal length {name}={f:g} px for a {side:g} px {axis} image "
                f"(field of view {fov:.3g} deg, expected {lo:g}-{hi:g})"
            )
    a_lo, a_hi = PIXEL_ASPECT_RANGE
    if not a_lo <= fx / fy <= a_hi:
        return f"fx={fx:g} and fy={fy:g} differ too much to be one camera (fx/fy {fx / fy:.3g}, expected {a_lo:g}-{a_hi:g})"
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        return f"principal point ({cx:g}, {cy:g}) lies outside the {w:g}x{h:g} image"
    return None


def check_intrinsics(intr: Intrinsics, where: str = "") -> Intrinsics:
    """`intr` if plausible, else ImplausibleIntrinsics naming `where` and the problem."""
    problem = intrinsics_problem(intr)
    if problem is not None:
        raise ImplausibleIntrinsics(f"{where}: {problem}" if where else problem)
    return intr


def resize_points(points: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Map (x, y) pixel coordinates from an image of size src to one of size dst."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    scale = np.array([dst[0] / src[0], dst[1] / src[1]])
    return (pts + 0.5) * scale - 0.5


def inside(points: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Mask of points whose pixel lies in an image of size (W, H), `margin` px from the border."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    w, h = size
    return (
        (pts[:, 0] >= margin - 0.5)
        & (pts[:, 0] < w - 0.5 - margin)
        & (pts[:, 1] >= margin - 0.5)
        & (pts[:, 1] < h - 0.5 - margin)
    )


def focal_size(intr: Intrinsics, f_uni: float) -> tuple[int, int]:
    """Image size at which both focal lengths become f_uni (rounded to whole pixels)."""
    return max(1, round(intr.width * f_uni / intr.fx)), max(1, round(intr.height * f_uni / intr.fy))


def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bicubic resample to size (w, h), antialiased when shrinking: the one resampler of depthlm.

    8-bit images go through torch's uint8 kernel: about 3x faster than Pillow's bicubic on
    one thread, within 2 grey levels of it, and bit-identical with and without SIMD, so
    every machine renders the same pixels. Other modes (16-bit, float) use Pillow.
    """
    if image.size == tuple(size):
        return image
    if image.mode not in ("RGB", "RGBA", "L"):
        return image.resize(size, Image.Resampling.BICUBIC)
    import torch
    import torch.nn.functional as F

    planes = torch.from_numpy(np.array(image)).reshape(image.height, image.width, -1).permute(2, 0, 1)
    out = F.interpolate(planes[None], size=(size[1], size[0]), mode="bicubic", antialias=True)[0]
    bands = [Image.fromarray(band) for band in out.numpy()]
    return bands[0] if image.mode == "L" else Image.merge(image.mode, bands)


def resample_view(image: Image.Image, frame: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """Pixels of `box` = (left, top, w, h) of `image` resized to `frame` (w, h), computed
    without resizing the whole frame: memory grows with the view, not with the frame.

    Bit-identical to ``resize_image(image, frame).crop(box)`` (parts of the box outside
    the frame are black). A frame up to _WHOLE_FRAME_MAX_RATIO times the view is resized
    whole (fastest). A larger one never is: torch's antialiased bicubic is separable,
    horizontal pass then vertical, each row (column) of a pass independent of the others,
    so the horizontal pass runs on the source rows the view needs only, and the vertical
    pass on the view's columns only, in strips, with the source rows it does not need left
    black. The cost is then one strip of frame height (or width) at a time.
    """
    import torch
    import torch.nn.functional as F

    left, top, w, h = (int(v) for v in box)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    x0, x1 = max(left, 0), min(left + w, frame[0])
    y0, y1 = max(top, 0), min(top + h, frame[1])
    if x0 >= x1 or y0 >= y1:
        return Image.new("RGB", (w, h))
    if frame[0] * frame[1] <= _WHOLE_FRAME_MAX_RATIO * w * h:  # the usual case: one fused call
        whole = resize_image(rgb, frame)
        if (x0, y0, x1, y1) == (left, top, left + w, top + h):
            return whole.crop((x0, y0, x1, y1))
        canvas = Image.new("RGB", (w, h))
        canvas.paste(whole, (-left, -top))
        return canvas
    out = np.zeros((h, w, 3), dtype=np.uint8)

    def resize(hwc, size_hw):  # (H, W, 3) -> (h, w, 3), channels last as resize_image passes them
        planes = hwc.permute(2, 0, 1)[None]  # torch's AVX kernel also fails on 1-px-wide contiguous RGB
        return F.interpolate(planes, size=size_hw, mode="bicubic", antialias=True)[0].permute(1, 2, 0)

    src = torch.from_numpy(np.array(rgb))  # (H, W, 3)
    r0, r1 = _source_span(y0, y1, rgb.height, frame[1])
    if frame[0] == rgb.width:
        part = src[r0:r1, x0:x1]
    else:  # horizontal pass on the source rows the view needs, a block of rows at a time
        part = torch.empty((r1 - r0, x1 - x0, 3), dtype=torch.uint8)
        block = max(1, _STRIP_PIXELS // frame[0])
        for r in range(r0, r1, block):
            band = src[r : min(r + block, r1)]
            part[r - r0 : r - r0 + band.shape[0]] = resize(band, (band.shape[0], frame[0]))[:, x0:x1]
    view = torch.from_numpy(out)[y0 - top : y1 - top, x0 - left : x1 - left]
    if frame[1] == rgb.height:
        view.copy_(part[y0 - r0 : y1 - r0])
        return Image.fromarray(out)
    strip = max(1, _STRIP_PIXELS // frame[1])  # vertical pass, a strip of the view's columns at a time
    for c in range(0, x1 - x0, strip):
        width = min(strip, x1 - x0 - c)
        if (r0, r1) == (0, rgb.height) and width == x1 - x0:
            column = part  # the whole source height is needed: no copy
        else:  # rows the view does not read stay black (they get zero weight)
            column = torch.zeros((rgb.height, width, 3), dtype=torch.uint8)
            column[r0:r1] = part[:, c : c + width]
        view[:, c : c + width] = resize(column, (frame[1], width))[y0:y1]
    return Image.fromarray(out)


# A frame at most this many times the view is resampled whole, in one call: torch fuses its two
# passes (about twice as fast as two calls), and the memory stays a few views. That covers
# lenses up to about 90 degrees at f_uni 1000 with a 1 Mpx view. Larger frames (wider lenses,
# high f_uni) take the two-pass region path: memory bounded (31 MB at 168 degrees, where the
# whole frame took 1.8 GB), time growing with the frame's height (0.7 s there; docs/models.md).
_WHOLE_FRAME_MAX_RATIO = 4.0
_STRIP_PIXELS = 1 << 20  # pixels per pass strip: about 3 MB of uint8 RGB, whatever the frame size


def _source_span(start: int, stop: int, n_in: int, n_out: int) -> tuple[int, int]:
    """Source indices [lo, hi) that outputs [start, stop) of an n_in -> n_out antialiased
    bicubic resize read (torch: centre scale*(i+0.5), support 2*max(scale, 1)), with margin."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    lo = int(math.floor(scale * start - support)) - 2
    hi = int(math.ceil(scale * stop + support)) + 2
    return max(lo, 0), min(hi, n_in)


def random_crop_box(
    size: tuple[int, int],
    crop_w: tuple[int, int],
    crop_h: tuple[int, int],
    rng: np.random.Generator,
    grid: int = 1,
    max_pixels: int | None = None,
    must_contain: tuple[float, float] | None = None,
) -> tuple[int, int, int, int]:
    """A random crop box inside an image of `size`, sides multiples of `grid`.

    Side lengths are uniform in the given ranges (capped by the image and by
    `max_pixels`); the position is uniform among those that keep `must_contain`
    (a query pixel) inside, so a training sample never loses its own label.
    """
    w_img, h_img = size
    w = int(rng.integers(min(crop_w[0], w_img), min(crop_w[1], w_img) + 1))
    h = int(rng.integers(min(crop_h[0], h_img), min(crop_h[1], h_img) + 1))
    if max_pixels and w * h > max_pixels:
        k = math.sqrt(max_pixels / (w * h))
        w, h = int(w * k), int(h * k)
    w, h = max(grid, w // grid * grid), max(grid, h // grid * grid)
    left = _random_offset(w_img, w, rng, None if must_contain is None else must_contain[0])
    top = _random_offset(h_img, h, rng, None if must_contain is None else must_contain[1])
    return left, top, w, h


def _random_offset(full: int, side: int, rng: np.random.Generator, keep: float | None) -> int:
    lo, hi = min(0, full - side), max(0, full - side)  # side > full: the crop pads, centred range
    if keep is not None:
        k = int(math.floor(keep + 0.5))  # the pixel index holding the query
        lo, hi = max(lo, k - side + 1), min(hi, k)
        if lo > hi:  # cannot happen unless side < 1
            lo = hi = k - side // 2
    return int(rng.integers(lo, hi + 1))


def grid_box(size: tuple[int, int], grid: int, max_pixels: int, center: tuple[float, float] | None = None):
    """Deterministic box of grid-multiple sides covering the image (padding up to one cell),
    shrunk around `center` when the padded image would exceed max_pixels."""
    w_img, h_img = size
    w, h = -(-w_img // grid) * grid, -(-h_img // grid) * grid
    if w * h > max_pixels:
        k = math.sqrt(max_pixels / (w * h))
        w, h = max(grid, int(w * k) // grid * grid), max(grid, int(h * k) // grid * grid)
    cx, cy = center if center is not None else ((w_img - 1) / 2, (h_img - 1) / 2)

    def start(full: int, side: int, c: float) -> int:
        if side >= full:
            return -((side - full) // 2)
        return int(min(max(round(c - side / 2), 0), full - side))

    return start(w_img, w, cx), start(h_img, h, cy), w, h


def ray_scale(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """|ray| / z for each pixel: ray distance = z * ray_scale."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    xn = (pts[:, 0] - intrinsics.cx) / intrinsics.fx
    yn = (pts[:, 1] - intrinsics.cy) / intrinsics.fy
    return np.sqrt(1.0 + xn * xn + yn * yn)


def convert_depth(
    depths: np.ndarray, points: np.ndarray, intrinsics: Intrinsics, src: DepthType, dst: DepthType
) -> np.ndarray:
    """The one place where z-depth and Euclidean ray distance are converted."""
    d = np.asarray(depths, dtype=np.float64)
    if src == dst:
        return d
    scale = ray_scale(points, intrinsics)
    if (src, dst) == ("z", "ray"):
        return d * scale
    if (src, dst) == ("ray", "z"):
        return d / scale
    raise ValueError(f"unknown depth types {src!r} -> {dst!r} (expected 'z' or 'ray')")


def unproject(
    points: np.ndarray, depths: np.ndarray, intrinsics: Intrinsics, depth_type: DepthType
) -> np.ndarray:
    """Camera-frame 3D points (x right, y down, z forward), metres, shape (N, 3)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    z = convert_depth(depths, pts, intrinsics, depth_type, "z")
    x = (pts[:, 0] - intrinsics.cx) / intrinsics.fx * z
    y = (pts[:, 1] - intrinsics.cy) / intrinsics.fy * z
    return np.stack([x, y, z], axis=1)
