"""``rgbd``: a folder of RGB images + depth images + intrinsics (your own captures, HM3D renders).

Layout (one of the per-split folder ``ROOT/<split>/`` or ``ROOT/`` itself)::

    rgb/<name>.png|.jpg           colour image; <name> may include subfolders
    depth/<name>.png|.npy|.tif    depth of the same pixels (same size as the image)
    intrinsics/<name>.json        {"fx", "fy", "cx", "cy", "width", "height"} (pixels of this image)
      or intrinsics.json          one shared file for every frame (same keys)
    valid/<name>.png              optional mask: nonzero = trustworthy depth

Depth values: integer images (16-bit PNG, integer .npy/.tif) are divided by
``--depth-scale`` (units per metre; 1000 = millimetres, the common RGB-D convention);
float arrays (.npy, 32-bit float .tif) are metres already. 0 or non-finite = no depth.
``--depth-type z`` (default; what RGB-D sensors and most renderers store) or ``ray``
(Euclidean distance from the camera centre). OpenEXR is not read: convert to .npy first.
Frames are paired by name, never by listing order.

    depthlm build rgbd --root my_captures --out data/mine --split val --depth-scale 1000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source, register_source
from depthlm.geometry import Intrinsics

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
DEPTH_EXTS = (".png", ".npy", ".tif", ".tiff")


@register_source("rgbd")
class RgbdSource(Source):
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--depth-scale", type=float, default=1000.0, help="integer depth units per metre")
        parser.add_argument(
            "--depth-type", choices=("z", "ray"), default="z", help="what the depth images store"
        )

    @property
    def base(self) -> Path:
        split_dir = self.root / self.split
        return split_dir if (split_dir / "rgb").is_dir() else self.root

    def list_frames(self) -> list[str]:
        rgb = self.base / "rgb"
        if not rgb.is_dir():
            raise SkipFrame(
                f"{self.root} has no rgb/ folder (nor {self.split}/rgb/): expected rgb/, depth/ and "
                "intrinsics/ or intrinsics.json"
            )
        keys = [
            p.relative_to(rgb).with_suffix("").as_posix()
            for p in rgb.rglob("*")
            if p.suffix.lower() in IMAGE_EXTS
        ]
        return sorted(keys)

    def load(self, key: str) -> Frame:
        image_path = _find(self.base / "rgb", key, IMAGE_EXTS)
        if image_path is None:
            raise SkipFrame(f"image missing: {self.base / 'rgb' / key}.*")
        depth_path = _find(self.base / "depth", key, DEPTH_EXTS)
        if depth_path is None:
            raise SkipFrame(f"depth file missing: {self.base / 'depth' / key}.(png|npy|tif)")
        intr = self.intrinsics(key)
        depth = read_depth(depth_path, float(getattr(self.options, "depth_scale", 1000.0)))
        valid = None
        valid_path = _find(self.base / "valid", key, (".png",))
        if valid_path is not None:
            try:
                valid = np.asarray(Image.open(valid_path)) > 0
            except OSError as err:
                raise SkipFrame(f"unreadable mask: {valid_path}: {err}") from None
            if valid.ndim == 3:
                valid = valid.any(axis=2)
        return Frame(
            key=key,
            intrinsics=intr,
            image_path=image_path,
            depth=depth,
            depth_type=getattr(self.options, "depth_type", "z"),
            valid=valid,
            split=self.split,
        )

    def intrinsics(self, key: str) -> Intrinsics:
        own = self.base / "intrinsics" / f"{key}.json"
        shared = [self.base / "intrinsics.json", self.root / "intrinsics.json"]
        path = own if own.is_file() else next((p for p in shared if p.is_file()), None)
        if path is None:
            raise SkipFrame(f"intrinsics missing: neither {own} nor {shared[0]}")
        return read_intrinsics(path)


def _find(folder: Path, key: str, exts: tuple[str, ...]) -> Path | None:
    for ext in exts:
        for cand in (folder / f"{key}{ext}", folder / f"{key}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def read_intrinsics(path: Path) -> Intrinsics:
    """{"fx", "fy", "cx", "cy", "width", "height"}, or [fx, fy, cx, cy, W, H], or {"intrinsics": [...]}."""
    try:
        obj = json.loads(path.read_text())
        if isinstance(obj, dict) and "intrinsics" in obj:
            obj = obj["intrinsics"]
        if isinstance(obj, dict):
            obj = [obj[k] for k in ("fx", "fy", "cx", "cy", "width", "height")]
        values = [float(v) for v in obj]
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            raise ValueError("need 6 finite numbers")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SkipFrame(
            f"bad intrinsics file: {path}: {err} (expected fx, fy, cx, cy, width, height in pixels)"
        ) from None
    return Intrinsics.from_list(values)


def read_depth(path: Path, scale: float) -> np.ndarray:
    """Metres as float32; integer data / scale, float data as is."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA", "L", "P"):
                    raise SkipFrame(
                        f"unusable depth image: {path} is {im.mode} (8-bit or colour); expected 16-bit or float"
                    )
                arr = np.asarray(im)
    except SkipFrame:
        raise
    except (OSError, ValueError) as err:
        raise SkipFrame(f"unreadable depth: {path}: {err}") from None
    if arr.ndim != 2:
        raise SkipFrame(f"unusable depth: {path} has shape {arr.shape}, expected (H, W)")
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float64) / scale).astype(np.float32)
    return arr.astype(np.float32)
