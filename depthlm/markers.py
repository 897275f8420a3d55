"""Visual markers that point at a query pixel.

The paper finds a drawn marker beats pixel coordinates in text and that its shape
barely matters. Ours are outlined (visible on any background), always drawn fully
inside the image, and the tip/centre lands exactly on the query pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from depthlm.errors import DepthLMError

STYLES = ("arrow", "circle", "cross", "dot")
COLOR_NAMES = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def describe(style: str, color: str | tuple[int, int, int]) -> str:
    """Words for the question: "red arrow", "blue circle"..."""
    name = color if isinstance(color, str) else "colored"
    return f"{name} {style}"


def marker_size(f_uni: float) -> int:
    """Marker length in pixels, proportional to the normalised focal length so it covers the
    same visual angle at every f_uni (9 px at the reference's f_uni 1000 would be a speck)."""
    return max(7, round(0.02 * f_uni))


def draw_marker(
    image: Image.Image,
    point: tuple[float, float],
    style: str = "arrow",
    color: str | tuple[int, int, int] = "red",
    size: int = 20,
) -> Image.Image:
    """A new image with one marker at `point` (the input is left untouched)."""
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    _draw(ImageDraw.Draw(out), out.size, _pixel(point, out.size), style, _rgb(color), size)
    return out


def draw_markers(
    image: Image.Image,
    points: Sequence[tuple[float, float]],
    labels: Sequence[str] | None = None,
    style: str = "arrow",
    color: str | tuple[int, int, int] = "red",
    size: int = 20,
) -> Image.Image:
    """Several markers, each labelled (A, B, C... by default), on a new image."""
    labels = list(labels) if labels is not None else [chr(ord("A") + i % 26) for i in range(len(points))]
    if len(labels) != len(points):
        raise DepthLMError(f"{len(points)} points but {len(labels)} labels")
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(out)
    rgb = _rgb(color)
    font = ImageFont.load_default(size=max(10, size))
    for pt, label in zip(points, labels):
        px = _pixel(pt, out.size)
        tail = _draw(draw, out.size, px, style, rgb, size)
        tx = min(max(tail[0] - size // 2, 0), out.width - size)
        ty = min(max(tail[1] - size, 0), out.height - size)
        draw.text((tx, ty), label, fill=rgb, font=font, stroke_width=2, stroke_fill=_outline(rgb))
    return out


def _pixel(point: tuple[float, float], size: tuple[int, int]) -> tuple[int, int]:
    x, y = int(round(point[0])), int(round(point[1]))
    if not (0 <= x < size[0] and 0 <= y < size[1]):
        raise DepthLMError(f"point ({point[0]:g}, {point[1]:g}) is outside the {size[0]}x{size[1]} image")
    return x, y


def _rgb(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(color, str):
        if color not in COLOR_NAMES:
            raise DepthLMError(
                f"unknown marker colour {color!r}; known: {', '.join(COLOR_NAMES)} or an (r, g, b) tuple"
            )
        return COLOR_NAMES[color]
    return tuple(int(c) for c in color)  # type: ignore[return-value]


def _outline(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _draw(
    draw: ImageDraw.ImageDraw, size, px: tuple[int, int], style: str, rgb, length: int
) -> tuple[int, int]:
    """Draw one marker; return the point farthest from the target (where a label goes)."""
    if style not in STYLES:
        raise DepthLMError(f"unknown marker style {style!r}; known: {', '.join(STYLES)}")
    x, y = px
    edge = _outline(rgb)
    width = max(1, length // 10)
    if style == "arrow":
        return _arrow(draw, size, px, rgb, edge, length, width)
    # Centred shapes keep their size and are clipped by the border rather than shrunk to a speck.
    r = max(2, length // 3)
    box = [x - r, y - r, x + r, y + r]
    if style == "circle":
        draw.ellipse(box, outline=edge, width=width + 2)
        draw.ellipse([x - r + 1, y - r + 1, x + r - 1, y + r - 1], outline=rgb, width=width)
    elif style == "dot":
        draw.ellipse(box, fill=rgb, outline=edge)
    else:  # cross, with the centre pixel itself left visible
        gap = max(1, r // 3)
        for colour, grow in ((edge, 1), (rgb, 0)):
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                draw.line(
                    [(x + dx * gap, y + dy * gap), (x + dx * r, y + dy * r)],
                    fill=colour,
                    width=width + 2 * grow,
                )
    return (x, max(0, y - r))


def _arrow(draw, size, px, rgb, edge, length, width) -> tuple[int, int]:
    """A straight arrow whose tip is the query pixel, coming from the left like the
    reference "-->" where it fits, else from the first direction where the whole arrow
    (shaft, head and outline) fits inside the image, so it is never cut off."""
    w, h = size
    x, y = px
    r2 = 0.5**0.5
    directions = [(-1, 0), (1, 0), (0, -1), (0, 1), (-r2, -r2), (r2, -r2), (-r2, r2), (r2, r2)]

    def shape(d: tuple[float, float], n: int):
        head = max(2, n // 3)
        base = (x + d[0] * head, y + d[1] * head)
        wings = [
            (base[0] - d[1] * head, base[1] + d[0] * head),
            (base[0] + d[1] * head, base[1] - d[0] * head),
        ]
        return (x + d[0] * n, y + d[1] * n), base, wings

    def fits(d: tuple[float, float], n: int) -> bool:
        tail, _, wings = shape(d, n)
        pad = width / 2  # the shaft's half width (its one-pixel outline may touch the border)
        ok = all(0 <= a <= w - 1 and 0 <= b <= h - 1 for a, b in wings)
        return ok and pad <= tail[0] <= w - 1 - pad and pad <= tail[1] <= h - 1 - pad

    n = length
    while True:
        good = [d for d in directions if fits(d, n)]
        if good or n <= 3:
            break
        n = max(3, int(n * 0.8))  # image too small for a full-size arrow anywhere: shrink
    d = good[0] if good else directions[0]
    tail, base, wings = shape(d, n)
    tail = (round(tail[0]), round(tail[1]))
    draw.line([tail, base], fill=edge, width=width + 2)
    head = [(x, y), *wings]
    draw.polygon(_grown(head, 1.0), fill=edge)  # outline outside the head, so a small head stays coloured
    draw.polygon(head, fill=rgb)
    draw.line([tail, base], fill=rgb, width=width)
    draw.point((x, y), fill=rgb)
    return tail


def _grown(points: list[tuple[float, float]], by: float) -> list[tuple[float, float]]:
    """The polygon with every vertex pushed `by` pixels away from the centroid."""
    cx = sum(p[0] for p in points) / len(points)
    cy = sum(p[1] for p in points) / len(points)
    out = []
    for px, py in points:
        dx, dy = px - cx, py - cy
        norm = max((dx * dx + dy * dy) ** 0.5, 1e-9)
        out.append((px + by * dx / norm, py + by * dy / norm))
    return out


# --- labelled markers and boxes (depthlm.tasks) ---------------------------------------------

# Okabe & Ito's colour-blind-safe palette (name, rgb); red is left to the query marker.
LABEL_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky blue", (86, 180, 233)),
    ("orange", (230, 159, 0)),
    ("bluish green", (0, 158, 115)),
    ("yellow", (240, 228, 66)),
    ("blue", (0, 114, 178)),
    ("reddish purple", (204, 121, 167)),
    ("vermillion", (213, 94, 0)),
    ("black", (0, 0, 0)),
)
LABEL_STYLES = ("circle", "cross", "dot")  # centred on the pixel; cycled with the colours


def labelled_style(i: int) -> tuple[str, tuple[int, int, int]]:
    """Shape and colour of the i-th labelled marker: neighbours differ in both, so labels stay
    apart for readers who confuse colours (8 colours x 3 shapes before a pair repeats)."""
    return LABEL_STYLES[i % len(LABEL_STYLES)], LABEL_PALETTE[i % len(LABEL_PALETTE)][1]


def draw_labelled_markers(
    image: Image.Image,
    points: Sequence[tuple[float, float]],
    labels: Sequence[str],
    size: int = 20,
    first: int = 0,
) -> Image.Image:
    """A new image with marker i (style ``labelled_style(first + i)``) centred on points[i] and
    its letter beside it; letters sit inside the image, on the side away from the border."""
    if len(labels) != len(points):
        raise DepthLMError(f"{len(points)} points but {len(labels)} labels")
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, size))
    for i, (pt, label) in enumerate(zip(points, labels)):
        style, rgb = labelled_style(first + i)
        x, y = _pixel(pt, out.size)
        _draw(draw, out.size, (x, y), style, rgb, size)
        r = max(2, size // 3)
        tx = x + r + 1 if x + r + size < out.width else x - r - 1 - size
        ty = min(max(y - size, 0), out.height - size)
        draw.text((tx, ty), label, fill=rgb, font=font, stroke_width=2, stroke_fill=_outline(rgb))
    return out


def draw_box(
    image: Image.Image,
    box: tuple[float, float, float, float],
    color: str | tuple[int, int, int] = "green",
    width: int = 2,
) -> Image.Image:
    """A new image with an outlined rectangle around box = (x0, y0, x1, y1), pixel indices
    inclusive: the lines are drawn just outside those pixels, so the object stays unpainted."""
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    rgb = _rgb(color)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 < x0 or y1 < y0:
        raise DepthLMError(f"empty box {tuple(box)}")
    draw = ImageDraw.Draw(out)
    for grow, colour, w in ((width + 1, _outline(rgb), 1), (width, rgb, width)):
        draw.rectangle([x0 - grow, y0 - grow, x1 + grow, y1 + grow], outline=colour, width=w)
    return out
