"""How often the tasks' pre-split pixel mapping rounded a pixel differently from render's.

Before depthlm.render.render_view / points_to_view, the multi-point tasks mapped source pixels
into a view through the intrinsics (cx' + fx' (x - cx) / fx); render maps its query pixel by
resizing into the normalised frame and shifting by the view box. Equal in exact arithmetic,
the two can round apart by floating-point error when a pixel lies exactly on the border between
two view pixels. This counts such pixels in render's evaluation view (docs/rendering.md):

    .venv/bin/python benchmarks/view_borders.py                       # random plausible cameras
    DEPTHLM_IBIMS1=/work/shared/data/ibims1 .venv/bin/python benchmarks/view_borders.py

The last line is one JSON object.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from depthlm.geometry import Intrinsics, focal_size, grid_box, resize_points
from depthlm.render import View, render_view, view_pixels
from depthlm.settings import RenderSettings


def old_pixel(p, source: Intrinsics, view: Intrinsics) -> tuple[int, int]:
    """The pre-split tasks' mapping (depthlm/tasks/view.py::view_pixels before 2026-11-27)."""
    x = view.cx + view.fx * (p[0] - source.cx) / source.fx
    y = view.cy + view.fy * (p[1] - source.cy) / source.fy
    return int(math.floor(x + 0.5)), int(math.floor(y + 0.5))


def differing(k: Intrinsics, f_uni: float, points: np.ndarray) -> int:
    """Points whose pre-split view pixel differs from render's, in the evaluation view of each."""
    s = RenderSettings(f_uni=f_uni)
    size_n = focal_size(k, f_uni)
    n = 0
    for p in points:
        pt_n = resize_points(p[None], k.size, size_n)[0]
        box = grid_box(size_n, s.grid, s.max_pixels, center=(pt_n[0], pt_n[1]))
        intr = k.resized(*size_n).cropped(*box)
        view = View(None, intr, (0, 0), k.size, size_n, box)  # render_view's View, without pixels
        n += view_pixels(p[None], view)[0] != old_pixel(p, k, intr)
    return n


def random_cameras(n_cameras: int = 4000, per_camera: int = 200, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    total = diff = 0
    for t in range(n_cameras):
        w, h = [(640, 480), (320, 240), (1280, 720), (480, 360)][t % 4]
        fx = round(float(rng.uniform(0.5, 1.5) * w), 2)
        fy = fx if t % 3 else round(fx * float(rng.uniform(0.95, 1.05)), 2)
        cx, cy = round(w / 2 + float(rng.uniform(-20, 20)), 2), round(h / 2 + float(rng.uniform(-20, 20)), 2)
        f_uni = float(rng.choice([1000.0, 500.0, 400.0, 750.0]))
        pts = rng.integers(0, [w, h], (per_camera, 2)).astype(np.float64)
        total += len(pts)
        diff += differing(Intrinsics(fx, fy, cx, cy, w, h), f_uni, pts)
    return {"points": total, "differing": diff}


def ibims(root: Path) -> dict:
    from depthlm.records import read_records

    out = {}
    recs = read_records(root / "ibims1_val.jsonl")
    for f_uni in (150.0, 400.0, 1000.0):
        diff = sum(differing(r.intrinsics, f_uni, r.points) for r in recs)
        out[f"f_uni_{f_uni:g}"] = {"points": sum(len(r) for r in recs), "differing": diff}
    return out


def main() -> None:
    # the View built in `differing` is the one render_view makes, pixels aside
    k, s = Intrinsics(559.62, 558.14, 361.87, 241.99, 640, 480), RenderSettings()
    v = render_view(Image.new("RGB", k.size), k, (100.0, 200.0), s)
    assert view_pixels(np.array([[100.0, 200.0]]), v)[0] == v.anchor_px
    result = {"random_cameras": random_cameras()}
    if os.environ.get("DEPTHLM_IBIMS1"):
        result["ibims1"] = ibims(Path(os.environ["DEPTHLM_IBIMS1"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
