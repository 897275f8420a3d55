"""Taskonomy: 512x512 renders of 537 scanned buildings, with z-buffer and Euclidean depth.

Download: https://github.com/StanfordVL/taskonomy/tree/master/data -- with the Omnidata tool,
``pip install omnidata-tools`` then ``omnitools.download rgb depth_zbuffer point_info mask_valid
--components taskonomy --subset tiny --dest RAW --agree`` (subsets: debug, tiny, medium, full,
fullplus). Split files: https://github.com/StanfordVL/taskonomy/raw/master/data/assets/splits_taskonomy.zip
Licence: Omnidata Dataset Research Terms -- research or educational, non-commercial use only.

Expected layout, either the Omnidata one (what omnitools writes)::

    ROOT/rgb/taskonomy/<building>/point_<p>_view_<v>_domain_rgb.png
    ROOT/depth_zbuffer/taskonomy/<building>/point_<p>_view_<v>_domain_depth_zbuffer.png
    ROOT/point_info/taskonomy/<building>/point_<p>_view_<v>_domain_point_info.json
    ROOT/mask_valid/taskonomy/<building>/point_<p>_view_<v>_domain_depth_zbuffer.png   (optional;
                                                       ..._domain_mask_valid.png is read too)

or the per-building one (``ROOT/<building>/rgb/...``, ``ROOT/<building>/depth_zbuffer/...``,
``ROOT/<building>/point_info/...``). The 2018 sample-building names are read too: ``depth/`` and
``mist/`` (``..._domain_depth.png`` z-buffer, ``..._domain_mist.png`` Euclidean) and
``points/..._domain_fixatedpose.json`` (the same camera fields).

Depth convention: ``depth_zbuffer`` is z-depth, ``depth_euclidean`` is the Euclidean distance
from the camera centre (ray distance); both are 16-bit PNGs in units of 1/512 m with a 128 m
range, and 65535 marks "no surface" (windows, holes in the mesh) -- masked, never read as 128 m.
``--taskonomy-depth zbuffer`` (default) records depth_type "z", ``euclidean`` records "ray".
When mask_valid is present it is ANDed in.

Intrinsics: the renders are pinhole images with square pixels and the principal point at the
image centre; point_info's ``field_of_view_rads`` is the full field of view, so
f = (W / 2) / tan(fov / 2), cx = (W - 1) / 2, cy = (H - 1) / 2 (pixel centres at integers).
The size comes from the image itself (the field of view does not depend on resolution).

Split: the official building split csv (``train_val_test_<subset>.csv`` from
splits_taskonomy.zip: rows ``building,is_train,is_val,is_test``). Pass it with
``--taskonomy-split-file``; a single ``train_val_test_*.csv`` in ROOT or ROOT/splits is found
on its own. ``--taskonomy-split-file all`` takes every building on disk (no official split).

Reference faults fixed: depth kept as z-depth with its type recorded (the reference mixes z and
ray across sources); the 65535 "no surface" value is masked; intrinsics come from each view's
own field of view; frames sorted by key, so builds are deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics, check_same_size
from data_builders.sources.rgbd_io import image_size, read_mask, read_png16, warn_missing
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

DEPTH_UNITS_PER_METRE = 512.0
NO_SURFACE = 65535
# --taskonomy-depth -> (domain, its 2018 sample-building name, depth_type)
DEPTH_DOMAINS = {"zbuffer": ("depth_zbuffer", "depth", "z"), "euclidean": ("depth_euclidean", "mist", "ray")}
RGB_NAME = re.compile(r"^(point_\d+_view_\d+)_domain_rgb\.png$")
SPLIT_COLUMNS = {"train": 1, "val": 2, "test": 3}


def intrinsics_from_fov(fov_rads: float, width: int, height: int) -> Intrinsics:
    """Pinhole intrinsics of a square-pixel render whose field of view spans the image width."""
    f = (width / 2.0) / math.tan(fov_rads / 2.0)
    return Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


def read_split_csv(path: Path) -> dict[str, list[str]]:
    """Official split csv -> {"train": [...], "val": [...], "test": [...]} (header row allowed)."""
    out: dict[str, list[str]] = {name: [] for name in SPLIT_COLUMNS}
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DepthLMError(f"cannot read Taskonomy split file {path}: {err}") from None
    for lineno, row in enumerate(rows, 1):
        if not row or (lineno == 1 and row[0].strip().lower() in ("id", "name", "building")):
            continue
        if len(row) < 4:
            raise DepthLMError(f"{path}:{lineno}: expected 'building,is_train,is_val,is_test', got {row}")
        for name, col in SPLIT_COLUMNS.items():
            if row[col].strip() == "1":
                out[name].append(row[0].strip())
    return out


@register_source("taskonomy")
class Taskonomy(Source):
    """Taskonomy renders: depth_zbuffer (z) or depth_euclidean (ray), 1/512 m units, 65535 masked."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--taskonomy-depth",
            choices=sorted(DEPTH_DOMAINS),
            default="zbuffer",
            help="depth_zbuffer (z-depth, default) or depth_euclidean (ray distance)",
        )
        parser.add_argument(
            "--taskonomy-split-file",
            default=None,
            help="official train_val_test_<subset>.csv, or 'all' for every building on disk",
        )

    def __init__(self, root, split, options=None):
        super().__init__(root, split, options)
        choice = getattr(self.options, "taskonomy_depth", "zbuffer") or "zbuffer"
        if choice not in DEPTH_DOMAINS:
            raise DepthLMError(f"--taskonomy-depth must be one of {sorted(DEPTH_DOMAINS)}, not {choice!r}")
        self.depth_domains, self.depth_type = DEPTH_DOMAINS[choice][:2], DEPTH_DOMAINS[choice][2]
        self.omnidata = (self.root / "rgb" / "taskonomy").is_dir()

    def domain_dir(self, building: str, domain: str) -> Path:
        if self.omnidata:
            return self.root / domain / "taskonomy" / building
        return self.root / building / domain

    def buildings_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            raise DepthLMError(f"Taskonomy root {self.root} is not a folder")
        if self.omnidata:
            found = [p.name for p in (self.root / "rgb" / "taskonomy").iterdir() if p.is_dir()]
        else:
            found = [p.name for p in self.root.iterdir() if (p / "rgb").is_dir()]
        if not found:
            raise DepthLMError(
                f"no Taskonomy building under {self.root}: expected rgb/taskonomy/<building>/ "
                "(omnitools layout) or <building>/rgb/"
            )
        return sorted(found)

    def split_buildings(self, on_disk: list[str]) -> list[str]:
        choice = getattr(self.options, "taskonomy_split_file", None)
        if choice == "all":
            return on_disk
        if choice:
            path = Path(choice)
        else:
            found = sorted(self.root.glob("train_val_test_*.csv")) + sorted(
                self.root.glob("splits/train_val_test_*.csv")
            )
            if len(found) != 1:
                what = "none" if not found else ", ".join(str(p) for p in found)
                raise DepthLMError(
                    f"Taskonomy needs its official split file (found {what}): pass --taskonomy-split-file "
                    "train_val_test_<subset>.csv from splits_taskonomy.zip, or --taskonomy-split-file all"
                )
            path = found[0]
        if self.split not in SPLIT_COLUMNS:
            raise DepthLMError(f"Taskonomy has splits {sorted(SPLIT_COLUMNS)}, not {self.split!r}")
        return sorted(read_split_csv(path)[self.split])

    def list_frames(self) -> list[str]:
        on_disk = self.buildings_on_disk()
        wanted = self.split_buildings(on_disk)
        present = [b for b in wanted if self.domain_dir(b, "rgb").is_dir()]
        warn_missing("Taskonomy buildings", self.split, wanted, present, self.root)
        keys = []
        for building in present:
            for path in self.domain_dir(building, "rgb").iterdir():
                match = RGB_NAME.match(path.name)
                if match:
                    keys.append(f"{building}/{match.group(1)}")
        if not keys:
            raise DepthLMError(f"no Taskonomy rgb image of the {self.split} split under {self.root}")
        return sorted(keys)

    def first_existing(self, building: str, view: str, domains, suffix: str = ".png", names=None) -> Path:
        """The file of the first domain folder that has it (else the first candidate, for the message)."""
        paths = [
            self.domain_dir(building, d) / f"{view}_domain_{n}{suffix}"
            for d, n in zip(domains, names or domains)
        ]
        return next((p for p in paths if p.is_file()), paths[0])

    def fov(self, building: str, view: str) -> float:
        path = self.first_existing(
            building, view, ("point_info", "points"), ".json", ("point_info", "fixatedpose")
        )
        if not path.is_file():
            raise SkipFrame(f"camera file missing: {path}")
        try:
            fov = float(json.loads(path.read_text())["field_of_view_rads"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SkipFrame(f"unreadable field_of_view_rads: {path}: {err!r}") from None
        if not (0.0 < fov < math.pi):
            raise SkipFrame(f"absurd intrinsics: field_of_view_rads = {fov}: {path}")
        return fov

    def load(self, key: str) -> Frame:
        building, _, view = key.partition("/")
        rgb = self.domain_dir(building, "rgb") / f"{view}_domain_rgb.png"
        depth_path = self.first_existing(building, view, self.depth_domains)
        size = image_size(rgb)
        raw = read_png16(depth_path)
        check_same_size(size, raw, f"{key} ({depth_path.name})")
        depth = raw.astype(np.float32) / DEPTH_UNITS_PER_METRE
        depth[raw == NO_SURFACE] = 0.0
        valid = None
        masks = self.domain_dir(building, "mask_valid")
        mask_path = next(
            (
                p
                for p in (masks / f"{view}_domain_depth_zbuffer.png", masks / f"{view}_domain_mask_valid.png")
                if p.is_file()
            ),
            None,
        )
        if mask_path is not None:
            valid = read_mask(mask_path)
            check_same_size(size, valid, f"{key} ({mask_path.name})")
        check_depth(depth, valid, f"{key} ({depth_path})")
        intr = check_intrinsics(intrinsics_from_fov(self.fov(building, view), *size), key)
        return Frame(
            key=key,
            intrinsics=intr,
            image_path=rgb,
            depth=depth,
            depth_type=self.depth_type,
            valid=valid,
            split=self.split,
        )
