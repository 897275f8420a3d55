"""``jsonl``: passthrough of DepthLMBench jsonl files (the reference format), validated.

--root is one .jsonl file or a folder of them (image paths relative to each file's
folder, as the reference release has them). Every line is checked with
depthlm.records.parse_record -- the validation iter_records applies -- so a broken line
becomes a rejected frame and a bad point (NaN depth, pixel outside the image) a rejected
label, each listed in rejects.jsonl. By default every valid point is kept
(--points-per-image 0) and the depth-discontinuity test is off: the file's author already
chose the points.

Reference files carry no ``depth_type``: their question asks how far a point is "from the
camera", so their depths are read as ray distance (``--depth-type ray``, the default) and
converted to z-depth like every other source; lines that name their own depth_type keep it.

    depthlm build jsonl --root ../shared/data/ibims1/ibims1_val.jsonl --out data/ibims1 --split val --dataset ibims1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from depthlm.errors import RecordError
from depthlm.records import parse_record, record_files


@register_source("jsonl")
class JsonlSource(Source):
    build_defaults = {"points_per_image": 0, "edge_threshold": 0.0}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--depth-type",
            choices=("ray", "z"),
            default="ray",
            help="how to read depths of lines without a depth_type key (reference files: ray)",
        )

    def __init__(self, root: Path, split: str, options: argparse.Namespace | None = None):
        super().__init__(root, split, options)
        self._where: dict[str, tuple[Path, int, int]] = {}  # key -> (file, line number, byte offset)

    def list_frames(self) -> list[str]:
        try:
            files = record_files(self.root)
        except RecordError as err:
            raise SkipFrame(f"{err} (expected a DepthLMBench .jsonl file or a folder of them)") from None
        base = self.root if self.root.is_dir() else self.root.parent
        keys = []
        for file in files:
            name = file.relative_to(base).as_posix()
            offset = 0
            with open(file, "rb") as fh:
                for lineno, raw in enumerate(fh, start=1):
                    if raw.strip():
                        key = f"{name}:{lineno:07d}"
                        self._where[key] = (file, lineno, offset)
                        keys.append(key)
                    offset += len(raw)
        return keys

    def load(self, key: str) -> Frame:
        if not self._where:
            self.list_frames()
        file, lineno, offset = self._where[key]
        with open(file, "rb") as fh:
            fh.seek(offset)
            raw = fh.readline()
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SkipFrame(f"{file}:{lineno}: invalid JSON: {err}") from None
        try:
            # validates image, intrinsics and array shapes; bad points are judged (and listed) by the
            # framework's sampler below, which sees the raw arrays
            rec = parse_record(
                obj,
                file.parent,
                file=str(file),
                line=lineno,
                rejects=[],
                default_depth_type=getattr(self.options, "depth_type", "ray"),
            )
        except RecordError as err:
            raise SkipFrame(str(err)) from None
        points = np.asarray(obj["pixel_coords"], dtype=np.float64).reshape(-1, 2)
        depths = np.asarray(obj["depth"], dtype=np.float64).reshape(-1)
        extras = dict(rec.extras)
        for name in ("dataset", "id"):
            if obj.get(name):
                extras[f"source_{name}"] = obj[name]
        return Frame(
            key=key,
            intrinsics=rec.intrinsics,
            image_path=Path(rec.image),
            points=points,
            point_depths=depths,
            depth_type=rec.depth_type,
            split=rec.split or self.split,
            extras=extras,
        )
