"""Camera intrinsics for a user's photo, and where they came from.

DepthLM rescales every image to one focal length before the model sees it, so a metric
answer is only as good as the focal length it was given. A photo rarely comes with
intrinsics, so they are taken, in this order, from:

1. what the user states (``--intrinsics fx,fy,cx,cy`` or ``--fov DEG``): an explicit
   statement beats anything guessed;
2. EXIF: the 35 mm-equivalent focal length (FocalLengthIn35mmFilm), else the focal length
   with the sensor's pixel density (FocalLength + FocalPlaneX/YResolution);
3. a stated default (a 26 mm-equivalent lens, a typical phone main camera), with a
   warning, because every metric answer scales with it.

A focal length that is off by a fraction e changes the answer by about the same fraction:
focal normalisation shrinks the image by 1/(1+e), objects look 1/(1+e) as large, and a
model that judges distance by apparent size answers about (1+e) times the truth
(docs/chat.md).

All intrinsics describe the photo *as displayed*, after its EXIF orientation is applied;
click coordinates are in the same frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import FOV_RANGE_DEG, Intrinsics, check_intrinsics, intrinsics_problem

DEFAULT_FOCAL_35MM = 26.0  # mm, 35 mm-equivalent: the main camera of most phones
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27 mm

# EXIF tags (Exif 2.3): IFD0 and the Exif sub-IFD.
TAG_ORIENTATION = 0x0112
TAG_EXIF_IFD = 0x8769
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_PLANE_X_RES = 0xA20E
TAG_PLANE_Y_RES = 0xA20F
TAG_PLANE_UNIT = 0xA210
TAG_PIXEL_X = 0xA002
TAG_PIXEL_Y = 0xA003
PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit -> mm per unit
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # orientations whose transposition swaps width and height


@dataclass(frozen=True)
class CameraGuess:
    """Intrinsics for a photo, with the evidence they rest on."""

    intrinsics: Intrinsics
    source: str  # "given", "fov", "exif-35mm", "exif-sensor" or "default"
    detail: str  # one human-readable line: what was read or assumed

    @property
    def warning(self) -> str | None:
        """A warning to show whenever the focal length is a guess, not evidence."""
        if self.source != "default":
            return None
        return (
            f"no intrinsics given and none in the photo's EXIF: assuming {self.detail}. Metric answers "
            "scale with this focal length (10% too long -> answers about 10% too far); give --fov or "
            "--intrinsics if you know them"
        )

    def describe(self) -> str:
        k = self.intrinsics
        return (
            f"fx={k.fx:.1f} fy={k.fy:.1f} cx={k.cx:.1f} cy={k.cy:.1f} for {k.width}x{k.height} "
            f"({self.source}: {self.detail})"
        )


def centred(size: tuple[int, int], fx: float, fy: float | None = None) -> Intrinsics:
    """Intrinsics with the principal point at the image centre (pixel-centre convention)."""
    w, h = size
    return Intrinsics(float(fx), float(fy if fy is not None else fx), (w - 1) / 2, (h - 1) / 2, w, h)


def from_fov(size: tuple[int, int], fov_degrees: float) -> Intrinsics:
    """Square pixels and the given *horizontal* field of view across the image width."""
    lo, hi = FOV_RANGE_DEG  # the one plausibility range (depthlm.geometry)
    if not lo <= fov_degrees <= hi:
        raise DepthLMError(f"field of view must be between {lo:g} and {hi:g} degrees, got {fov_degrees:g}")
    fx = (size[0] / 2) / math.tan(math.radians(fov_degrees) / 2)
    return check_intrinsics(centred(size, fx), f"a {fov_degrees:g} degree field of view")


def from_35mm(size: tuple[int, int], focal_35mm: float) -> Intrinsics:
    """A 35 mm-equivalent focal length compares the image diagonal with the 43.27 mm full-frame
    diagonal (CIPA DC-008), which holds for any aspect ratio and crop."""
    if not 1.0 <= focal_35mm <= 5000.0:
        raise DepthLMError(f"35 mm-equivalent focal length {focal_35mm:g} mm is not plausible")
    fx = focal_35mm * math.hypot(*size) / FULL_FRAME_DIAGONAL_MM
    return check_intrinsics(centred(size, fx), f"a {focal_35mm:g} mm-equivalent lens")


def parse_intrinsics(text: str, size: tuple[int, int]) -> Intrinsics:
    """``fx,fy,cx,cy`` in pixels of the photo as displayed, or ``fx,fy,cx,cy,W,H`` for another
    resolution of the same photo (rescaled to this one; the aspect ratio must match)."""
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise DepthLMError(f"intrinsics {text!r}: expected numbers fx,fy,cx,cy (pixels)") from None
    if len(values) == 4:
        values += [size[0], size[1]]
    if len(values) != 6:
        raise DepthLMError(f"intrinsics {text!r}: expected fx,fy,cx,cy or fx,fy,cx,cy,W,H")
    if not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise DepthLMError(f"intrinsics {text!r}: focal lengths must be positive finite numbers")
    given = Intrinsics.from_list(values)
    if given.size == tuple(size):
        return check_intrinsics(given, f"intrinsics {text!r}")
    if abs(given.width / given.height - size[0] / size[1]) > 0.01:
        raise DepthLMError(
            f"intrinsics are for a {given.width}x{given.height} image, the photo is {size[0]}x{size[1]} "
            "(different aspect ratio; rotated?)"
        )
    return check_intrinsics(given.resized(*size), f"intrinsics {text!r}")


def read_exif(image: Image.Image) -> dict[int, float]:
    """The few EXIF numbers intrinsics need, from a freshly opened (not yet transposed) image."""
    try:
        exif = image.getexif()
        sub = exif.get_ifd(TAG_EXIF_IFD)
    except Exception:  # malformed EXIF in an untrusted file: treat as absent
        return {}
    out: dict[int, float] = {}
    for tag in (
        TAG_FOCAL_LENGTH,
        TAG_FOCAL_35MM,
        TAG_PLANE_X_RES,
        TAG_PLANE_Y_RES,
        TAG_PLANE_UNIT,
        TAG_PIXEL_X,
        TAG_PIXEL_Y,
    ):
        value = sub.get(tag, exif.get(tag))
        try:
            number = float(value) if value is not None else math.nan
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(number) and number > 0:
            out[tag] = number
    orientation = exif.get(TAG_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        out[TAG_ORIENTATION] = orientation
    return out


def from_exif(exif: dict[int, float], size: tuple[int, int]) -> CameraGuess | None:
    """Intrinsics from EXIF for a photo of `size` *as displayed*, or None without usable tags."""
    f35 = exif.get(TAG_FOCAL_35MM)
    if f35 and 1.0 <= f35 <= 5000.0:
        k = centred(size, f35 * math.hypot(*size) / FULL_FRAME_DIAGONAL_MM)
        if intrinsics_problem(k) is None:  # else: nonsense tag, try the sensor tags
            return CameraGuess(k, "exif-35mm", f"EXIF FocalLengthIn35mmFilm {f35:g} mm (diagonal-based)")
    focal, xres, yres = exif.get(TAG_FOCAL_LENGTH), exif.get(TAG_PLANE_X_RES), exif.get(TAG_PLANE_Y_RES)
    unit = PLANE_UNIT_MM.get(int(exif.get(TAG_PLANE_UNIT, 2)))  # Exif's default unit is the inch
    if not (focal and xres and unit):
        return None
    yres = yres or xres
    rotated = int(exif.get(TAG_ORIENTATION, 1)) in ROTATED_ORIENTATIONS
    raw_w, raw_h = (size[1], size[0]) if rotated else size
    # The focal-plane resolution is per pixel of the image as captured (PixelX/YDimension);
    # a photo resized since then has proportionally fewer pixels per millimetre.
    scale_x = raw_w / exif[TAG_PIXEL_X] if exif.get(TAG_PIXEL_X) else 1.0
    scale_y = raw_h / exif[TAG_PIXEL_Y] if exif.get(TAG_PIXEL_Y) else scale_x
    fx_raw = focal * xres / unit * scale_x
    fy_raw = focal * yres / unit * scale_y
    fx, fy = (fy_raw, fx_raw) if rotated else (fx_raw, fy_raw)
    k = centred(size, fx, fy)
    if intrinsics_problem(k) is not None:
        return None  # inconsistent tags (some cameras write nonsense here): do not trust them
    return CameraGuess(
        k,
        "exif-sensor",
        f"EXIF FocalLength {focal:g} mm at {xres / unit:g} px/mm on the sensor",
    )


def guess_camera(
    size: tuple[int, int],
    exif: dict[int, float] | None = None,
    *,
    intrinsics: str | Intrinsics | None = None,
    fov: float | None = None,
) -> CameraGuess:
    """The intrinsics to use for a photo of `size` (as displayed): stated, else EXIF, else the default."""
    if intrinsics is not None and fov is not None:
        raise DepthLMError("give either intrinsics or a field of view, not both")
    if intrinsics is not None:
        k = (
            parse_intrinsics(intrinsics, size)
            if isinstance(intrinsics, str)
            else check_intrinsics(intrinsics)
        )
        if k.size != tuple(size):
            raise DepthLMError(f"intrinsics describe {k.width}x{k.height}, the photo is {size[0]}x{size[1]}")
        return CameraGuess(k, "given", "stated by the user")
    if fov is not None:
        return CameraGuess(from_fov(size, fov), "fov", f"horizontal field of view {fov:g} degrees")
    guess = from_exif(exif or {}, size)
    if guess is not None:
        return guess
    return CameraGuess(
        from_35mm(size, DEFAULT_FOCAL_35MM),
        "default",
        f"a {DEFAULT_FOCAL_35MM:g} mm-equivalent lens (typical phone main camera)",
    )
