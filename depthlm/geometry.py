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


def normalize_focal(
    image: Image.Image, intrinsics: Intrinsics, points: np.ndarray, f_uni: float = 1000.0
) -> tuple[Image.Image, Intrinsics, np.ndarray]:
    """Rescale x by f_uni/fx and y by f_uni/fy, so both focal lengths become f_uni.

    The reference code scales both axes by f_uni/fx, leaving fy != f_uni when the
    pixels are not square. Sizes are rounded to whole pixels; the returned intrinsics
    describe the returned image exactly (fx within half a pixel of f_uni per image width).
    """
    _check_image(image, intrinsics)
    size = focal_size(intrinsics, f_uni)
    return resize_image(image, size), intrinsics.resized(*size), resize_points(points, intrinsics.size, size)


def crop(
    image: Image.Image,
    intrinsics: Intrinsics,
    points: np.ndarray,
    box: tuple[int, int, int, int],
    fill=(0, 0, 0),
) -> tuple[Image.Image, Intrinsics, np.ndarray, np.ndarray]:
    """Crop (or pad, where box leaves the image) to box = (left, top, width, height).

    Returns the new image, intrinsics, all points in the new frame, and the mask of
    points still inside it (callers drop the rest and say so).
    """
    left, top, width, height = (int(v) for v in box)
    if (left, top, width, height) == (0, 0, *image.size):
        out = image
    elif 0 <= left and 0 <= top and left + width <= image.width and top + height <= image.height:
        out = image.crop((left, top, left + width, top + height))
    else:
        out = Image.new(image.mode, (width, height), fill if image.mode == "RGB" else 0)
        out.paste(image, (-left, -top))
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) - np.array([left, top])
    return out, intrinsics.cropped(left, top, width, height), pts, inside(pts, (width, height))


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


def _check_image(image: Image.Image, intrinsics: Intrinsics) -> None:
    if image.size != intrinsics.size:
        raise ValueError(
            f"image is {image.width}x{image.height} but its intrinsics describe "
            f"{intrinsics.width}x{intrinsics.height}"
        )
