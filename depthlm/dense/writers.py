"""Files a dense run writes: what depth tools, viewers and robotics code read.

- ``depth.png``: 16-bit greyscale PNG, millimetres of z-depth (0 = no depth; 65.535 m at most),
  the convention of NYUv2, ScanNet, TUM RGB-D and Open3D's ``depth_scale=1000``.
- ``depth.npy``: float32 metres of z-depth, NaN where there is none.
- ``preview.png``: the map in matplotlib's ``turbo`` colour map (blue near, red far, over the
  2nd-98th percentile) with a scale bar in metres.
- ``points.json``: every queried pixel, the answer text and the parsed metres.
- ``cloud.ply``: binary little-endian PLY, one vertex per pixel with depth: float32 x, y, z
  (metres, camera frame: x right, y down, z forward) and uchar red, green, blue from the photo,
  the layout Open3D, MeshLab and CloudCompare read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

MAX_MM = 65535


def write_png_mm(depth: np.ndarray, path: str | os.PathLike) -> Path:
    """16-bit PNG of millimetres (rounded); NaN and <= 0 become 0, beyond 65.535 m clipped."""
    mm = np.where(np.isfinite(depth) & (depth > 0), np.rint(np.asarray(depth, np.float64) * 1000), 0)
    Image.fromarray(np.clip(mm, 0, MAX_MM).astype(np.uint16)).save(path)
    return Path(path)


def read_png_mm(path: str | os.PathLike) -> np.ndarray:
    """A 16-bit millimetre PNG as float32 metres, NaN where 0."""
    mm = np.asarray(Image.open(path)).astype(np.float32)
    return np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)


def write_npy(depth: np.ndarray, path: str | os.PathLike) -> Path:
    np.save(path, np.asarray(depth, dtype=np.float32))
    return Path(path)


def colourise(
    depth: np.ndarray, vmin: float | None = None, vmax: float | None = None
) -> tuple[np.ndarray, float, float]:
    """(H, W, 3) uint8 turbo colours of `depth` over [vmin, vmax] (default 2nd-98th percentile),
    black where unknown; returns the range used, for a scale bar."""
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float64)
    ok = np.isfinite(d) & (d > 0)
    if vmin is None or vmax is None:
        lo, hi = np.percentile(d[ok], [2, 98]) if ok.any() else (0.0, 1.0)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    vmax = max(vmax, vmin + 1e-3)
    t = np.clip((np.where(ok, d, vmin) - vmin) / (vmax - vmin), 0, 1)
    rgb = (colormaps["turbo"](t)[..., :3] * 255).astype(np.uint8)
    rgb[~ok] = 0
    return rgb, float(vmin), float(vmax)


def preview(
    depth: np.ndarray, path: str | os.PathLike | None = None, title: str | None = None
) -> Image.Image:
    """The colourised map with a labelled scale bar (metres) on the right."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    rgb, vmin, vmax = colourise(depth)
    h, w = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(6.4 * 1.18, 6.4 * h / w), dpi=100)
    ax.imshow(rgb)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    bar = cm.ScalarMappable(norm=colors.Normalize(vmin, vmax), cmap="turbo")
    fig.colorbar(bar, ax=ax, fraction=0.046, pad=0.02, label="depth (m, z)")
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    if path is not None:
        image.save(path)
    return image


def cloud(
    depth: np.ndarray, intrinsics: Intrinsics, image: Image.Image, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) float32 camera-frame points and (M, 3) uint8 colours of every `stride`-th pixel
    with a depth: x = (u - cx) / fx * z, y = (v - cy) / fy * z."""
    h, w = depth.shape
    if image.size != (w, h) or intrinsics.size != (w, h):
        raise DepthLMError(f"depth {w}x{h}, photo {image.size}, intrinsics {intrinsics.size}: sizes differ")
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = np.asarray(depth, dtype=np.float64)[v, u]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    xyz = np.stack([(u - intrinsics.cx) / intrinsics.fx * z, (v - intrinsics.cy) / intrinsics.fy * z, z], 1)
    rgb = np.asarray(image.convert("RGB"))[v, u]
    return xyz.astype(np.float32), rgb.astype(np.uint8)


def write_ply(xyz: np.ndarray, rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Binary little-endian PLY with vertex properties x, y, z (float) and red, green, blue (uchar)."""
    vertex = np.empty(
        len(xyz),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    for i, name in enumerate("xyz"):
        vertex[name] = xyz[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, i]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment depthlm dense: camera frame, metres\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vertex.tobytes())
    return Path(path)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Atomic JSON write (a killed run never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
