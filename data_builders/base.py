"""The contract between a dataset source and the build framework.

A source knows one public dataset's on-disk release format and nothing else: it
lists the frames of a split (cheaply, deterministically) and loads one frame into
a :class:`Frame` -- an RGB image, its intrinsics, and metric depth either as a dense
map (RGB-D sources) or as sparse pixels (LiDAR sources). Everything else --
point sampling, rejects, sharding, resume, writing records, ``datasets`` export --
is the framework's (``data_builders.framework``), the same for every source.

Register a source with ``@register_source("name")`` on a subclass of :class:`Source`;
``depthlm build name ...`` then finds it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from depthlm.geometry import DepthType, Intrinsics


class SkipFrame(Exception):
    """Raised by Source.load for a frame that cannot be used; the message is the reason
    recorded in rejects.jsonl (e.g. "depth file missing: /path/x.png")."""


@dataclass
class Frame:
    """One camera image with metric depth, as a source read it.

    Exactly one of ``depth`` (dense, HxW, same size as the image) or
    ``points``+``point_depths`` (sparse) is set. Depth values are metres of kind
    ``depth_type``; 0, negative or non-finite values mean "no label". ``valid`` is an
    optional HxW bool mask of trustworthy pixels (e.g. iBims-1's invalid/transparent
    masks); the framework ANDs it with finite positive depth.
    """

    key: str  # stable and unique within the source+split: used for ids, sharding, resume and rejects
    intrinsics: Intrinsics  # describes `image` exactly
    image: Image.Image | None = None  # decoded image when the source had to make it (e.g. from .mat/parquet)
    image_path: Path | None = None  # or an existing image file on disk (not copied unless asked)
    depth: np.ndarray | None = None
    points: np.ndarray | None = None  # (N, 2) pixel (x, y), pixel centres at integers
    point_depths: np.ndarray | None = None  # (N,)
    depth_type: DepthType = "z"
    valid: np.ndarray | None = None
    split: str = ""
    extras: dict = field(default_factory=dict)  # boxes, masks, sensor names... copied into the record

    def load_image(self) -> Image.Image:
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise SkipFrame(f"{self.key}: frame has neither an image nor an image path")
        try:
            with Image.open(self.image_path) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as err:
            raise SkipFrame(f"unreadable image {self.image_path}: {err}") from None


class Source:
    """Base class of every dataset source. Subclasses set ``name`` and implement
    ``list_frames`` and ``load``; they may add options in ``add_arguments``."""

    name: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    needs_root: ClassVar[bool] = True  # False for sources that make their frames (synthetic)
    # Framework defaults this source overrides when the user gives none, e.g. the jsonl passthrough
    # keeps every point: {"points_per_image": 0, "edge_threshold": 0}. Keys: points_per_image,
    # min_depth, max_depth, edge_threshold, border.
    build_defaults: ClassVar[dict] = {}

    def __init__(self, root: Path, split: str, options: argparse.Namespace | None = None):
        self.root = Path(root)
        self.split = split
        self.options = options or argparse.Namespace()
        self.requested_dataset: str | None = None  # --dataset, set by the framework

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Source-specific command-line options (e.g. --depth-scale)."""

    def list_frames(self) -> list[str]:
        """Keys of every frame of this split, sorted: the unit of sharding and resume.
        Raise depthlm.errors.DepthLMError if the root does not look like this dataset."""
        raise NotImplementedError

    def load(self, key: str) -> Frame:
        """Read one frame; raise SkipFrame(reason) for unusable input. Never crash the build."""
        raise NotImplementedError


SOURCES: dict[str, type[Source]] = {}


def register_source(name: str):
    def deco(cls: type[Source]) -> type[Source]:
        cls.name = name
        SOURCES[name] = cls
        return cls

    return deco
