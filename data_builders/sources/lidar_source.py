"""The base of the driving sources (nuScenes, Argoverse 2, Waymo, DDAD): images labelled by LiDAR.

What every LiDAR source shares lives here once: the command-line options (occlusion test,
cameras, ego-motion switch), the visibility settings built from them and the sensor's
steps, and the frame tail (visible labels -> empty check -> a z-depth :class:`Frame` with
the point counts in ``extras.lidar_points``). A subclass keeps only what is its own: the
release's file layout, its calibration and how images and sweeps are paired, and ends
``load`` with ``self.labels(...)`` and ``self.frame(...)``. The geometry itself
(transforms, projection, occlusion) is :mod:`data_builders.lidar`'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source
from data_builders.lidar import VisibilityConfig, VisibilityStats, camera_labels, visible_points
from data_builders.pairs import add_pair_argument, checked_pair_offset
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

Labels = tuple[np.ndarray, np.ndarray, VisibilityStats]  # (N, 2) pixels, (N,) z-depths, counts


class LidarSource(Source):
    """Base class of a LiDAR source. Subclasses set the class attributes below and implement
    ``list_frames`` and ``load`` (not registered itself: it reads no release)."""

    # the sensor's azimuth step and beam (elevation) step in degrees: the occlusion test's patch size
    sensor_steps_deg: ClassVar[tuple[float, float]]
    default_cameras: ClassVar[tuple[str, ...]] = ()
    cameras_help: ClassVar[str] = "comma-separated camera names"
    upper_case_cameras: ClassVar[bool] = False  # names are capitals in the release: accept any case
    known_cameras: ClassVar[tuple[str, ...]] = ()  # when set, other --cameras names are an error
    pair_unit: ClassVar[str] = "frames"  # what --pair-offset counts in this release (help text)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The depth range of the labels is the framework's (--min-depth/--max-depth); the
        VisibilityConfig's own range only drops points at the lens and beyond any LiDAR's reach."""
        defaults = VisibilityConfig()
        parser.add_argument(
            "--occlusion",
            choices=("beams", "window"),
            default=defaults.method,
            help="how see-through LiDAR points are found: beams = each return hides what lies behind the "
            "surface patch its beam swept (sensor geometry); window = a fixed pixel window (the old test)",
        )
        parser.add_argument(
            "--occlusion-window",
            type=int,
            default=defaults.window,
            help="--occlusion window: side in pixels of the minimum-depth window (1 = off)",
        )
        parser.add_argument(
            "--occlusion-tol",
            type=float,
            default=defaults.rel_tol,
            help="--occlusion window: relative depth margin behind the window minimum before a point "
            "counts as occluded",
        )
        parser.add_argument("--cameras", default=None, help=cls.cameras_help)
        parser.add_argument(
            "--ignore-ego-motion",
            action="store_true",
            help="project as if the car stood still between LiDAR and camera (what the DepthLM reference "
            "does for nuScenes; for comparison only)",
        )
        add_pair_argument(parser, unit=cls.pair_unit)

    @cached_property
    def pair_offset(self) -> int:
        """--pair-offset: the second view (extras.pair) is this many frames later (0: none)."""
        return checked_pair_offset(self.options, self.name)

    @cached_property
    def cameras(self) -> tuple[str, ...]:
        """--cameras, comma-separated, or the source's default cameras."""
        chosen = getattr(self.options, "cameras", None)
        if not chosen:
            return self.default_cameras
        names = tuple(c.strip().upper() if self.upper_case_cameras else c.strip() for c in chosen.split(","))
        unknown = [n for n in names if self.known_cameras and n not in self.known_cameras]
        if unknown:
            raise DepthLMError(
                f"{self.name}: unknown cameras {unknown} (choose from {', '.join(self.known_cameras)})"
            )
        return names

    @staticmethod
    def parse_key(key: str, layout: str, *types: Callable[[str], Any]) -> tuple:
        """The parts of a frame key ("a/b/c"), each converted by its type; a malformed key skips
        the frame with the layout it should have had."""
        parts = key.split("/")
        try:
            if len(parts) != len(types):
                raise ValueError(key)
            return tuple(convert(part) for convert, part in zip(types, parts))
        except (ValueError, KeyError):
            raise SkipFrame(f"malformed frame key {key!r} (expected {layout})") from None

    @property
    def ignore_ego_motion(self) -> bool:
        return bool(getattr(self.options, "ignore_ego_motion", False))

    @cached_property
    def visibility(self) -> VisibilityConfig:
        """The occlusion options with this sensor's azimuth and beam steps."""
        d = VisibilityConfig()
        azimuth, elevation = self.sensor_steps_deg
        return VisibilityConfig(
            method=getattr(self.options, "occlusion", d.method),
            window=getattr(self.options, "occlusion_window", d.window),
            rel_tol=getattr(self.options, "occlusion_tol", d.rel_tol),
            azimuth_step_deg=azimuth,
            elevation_step_deg=elevation,
        )

    def labels(
        self,
        key: str,
        points_cam: np.ndarray,
        intrinsics: Intrinsics,
        sensor_origins: np.ndarray,
        beams: np.ndarray | None = None,
    ) -> Labels:
        """Visible pixels and z-depths of camera-frame points (data_builders.lidar.camera_labels);
        a frame where none is visible is skipped."""
        found = camera_labels(
            points_cam, intrinsics, self.visibility, sensor_origins=sensor_origins, beams=beams
        )
        return _some(key, found)

    def visible(
        self,
        key: str,
        pixels: np.ndarray,
        depths: np.ndarray,
        intrinsics: Intrinsics,
        hidden: np.ndarray | None = None,
    ) -> Labels:
        """The same from pixels the source projected itself (Waymo's projection component)."""
        return _some(key, visible_points(pixels, depths, intrinsics.size, self.visibility, hidden=hidden))

    def frame(
        self,
        key: str,
        intrinsics: Intrinsics,
        labels: Labels,
        extras: dict,
        image_path: Path | None = None,
        image: Image.Image | None = None,
    ) -> Frame:
        """The frame of one image and its labels; ``extras`` (scene, camera, ...) gets the point counts."""
        pixels, depths, stats = labels
        extras = {**extras, "lidar_points": stats.as_dict()}
        return Frame(
            key,
            intrinsics,
            image,
            image_path,
            points=pixels,
            point_depths=depths,
            depth_type="z",  # every LiDAR label is the z of a projected point
            split=self.split,
            extras=extras,
        )


def _some(key: str, labels: Labels) -> Labels:
    if len(labels[1]) == 0:
        raise SkipFrame(f"{key}: no LiDAR point is visible in the image")
    return labels
