"""``synthetic``: procedural scenes with exact metric depth (see data_builders.scenes).

No raw data: frame i is the scene rendered from seed (--scene-seed, i), so the same
options always give the same images. Frames carry per-object masks (a label map saved as
``images/<key>-masks.png``, 0 = room or sky, k = object k) and the objects' kinds, sizes,
positions and boxes in ``extras["objects"]``, for region questions; with ``--depth-map`` the
dense depth (``extras["depth_map"]``, 16-bit mm PNG), with ``--second-view`` a second view from a
camera moved by an exact, known translation (``extras["pair"]``, for motion questions).

    depthlm build synthetic --out data/synth --num-images 1000 --image-size 320x240
    depthlm build synthetic --out data/synth-tasks --num-images 1000 --points-per-image 16 --depth-map --second-view
"""

from __future__ import annotations

import argparse

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.scenes import PRESETS, moved_view, render, sample_scene
from data_builders.sources._region import valid_depth_mm


def image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 320x240, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"image size must be at least 8x8, got {text!r}")
    return w, h


def focal_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"focal range must look like 150,600, got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"focal range needs 0 < low <= high, got {text!r}")
    return lo, hi


@register_source("synthetic")
class SyntheticSource(Source):
    needs_root = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--num-images", type=int, default=1000, help="scenes per split")
        parser.add_argument("--image-size", type=image_size, default=(320, 240), help="WxH (default 320x240)")
        parser.add_argument(
            "--focal-range",
            type=focal_range,
            default=(150.0, 600.0),
            help="fx=fy range in px (default 150,600)",
        )
        parser.add_argument(
            "--preset", choices=PRESETS, default="default", help="easy: fixed camera height/pitch"
        )
        parser.add_argument(
            "--scene-seed", type=int, default=0, help="which scenes (sampling points uses --seed)"
        )
        parser.add_argument(
            "--depth-map",
            action="store_true",
            help="also write each scene's dense z-depth (16-bit PNG, millimetres; extras.depth_map): "
            "the ground truth of the region task over whole objects",
        )
        parser.add_argument(
            "--second-view",
            action="store_true",
            help="also render each scene from a second camera position 0.2-1.5 m away (extras.pair: "
            "image, intrinsics, exact translation_m and rotation): the motion task's two views",
        )

    def list_frames(self) -> list[str]:
        n = int(getattr(self.options, "num_images", 1000))
        if n < 0:
            raise SkipFrame(f"--num-images must be >= 0, got {n}")
        return [f"{i:06d}" for i in range(n)]

    def load(self, key: str) -> Frame:
        opts = self.options
        split_offset = {"train": 0, "val": 1, "test": 2}.get(self.split, 3)
        seed = np.random.SeedSequence([int(getattr(opts, "scene_seed", 0)), split_offset, int(key)])
        scene_seed = int(seed.generate_state(1)[0])
        spec = sample_scene(
            np.random.default_rng(scene_seed),
            tuple(getattr(opts, "image_size", (320, 240))),
            tuple(getattr(opts, "focal_range", (150.0, 600.0))),
            getattr(opts, "preset", "default"),
        )
        scene = render(spec)  # = render_scene(scene_seed, ...): the same image, byte for byte
        extras: dict = {"masks": scene.masks, "objects": scene.objects}
        if getattr(opts, "depth_map", False):
            extras["depth_map"] = valid_depth_mm(scene.depth, None)  # 0 = sky (no depth)
        if getattr(opts, "second_view", False):
            second, translation = moved_view(spec, np.random.default_rng([scene_seed, 2]))
            extras["pair"] = {
                "image": second.image,
                "intrinsics": second.intrinsics.to_list(),
                "translation_m": translation,
                "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            }
        return Frame(
            key=key,
            intrinsics=scene.intrinsics,
            image=scene.image,
            depth=scene.depth,
            depth_type="z",
            split=self.split,
            extras=extras,
        )
