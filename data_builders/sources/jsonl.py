"""``jsonl``: passthrough of DepthLMBench jsonl files (the reference format), validated.

--root is one .jsonl file or a folder of them (image paths relative to each file's
folder, as the reference release has them). Every line is checked with
depthlm.records.parse_record -- the validation iter_records applies -- so a broken line
becomes a rejected frame and a bad point (NaN depth, pixel outside the image) a rejected
label, each listed in rejects.jsonl. By default every valid point is kept
(--points-per-image 0) and the depth-discontinuity test is off: the file's author already
chose the points.

Reference files carry no ``depth_type``, and the reference scripts wrote z-depth for some
datasets (nuScenes, DDAD, iBims-1) and ray distance for the others. ``--depth-type auto`` (the
default) reads a line by its dataset's convention (depthlm.conventions: the line's ``dataset``,
else ``--dataset``, else the file's or folder's name; unknown datasets: ray); ``--depth-type z``
or ``ray`` overrides that; a line's own depth_type always wins. Every file is also measured
(plane fits of its labelled points under both readings, depthlm.conventions.detect) and the
build warns when the measurement contradicts the reading applied; ``depthlm build
check-convention FILE`` prints the measurement alone.

    depthlm build jsonl --root ../shared/data/ibims1/ibims1_val.jsonl --out data/ibims1 --split val --dataset ibims1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from depthlm.conventions import canonical_dataset, detect, guess_dataset, reference_depth_type
from depthlm.errors import RecordError
from depthlm.records import extras_files, parse_record, record_files, with_extras_path


@register_source("jsonl")
class JsonlSource(Source):
    build_defaults = {"points_per_image": 0, "edge_threshold": 0.0}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--depth-type",
            choices=("auto", "ray", "z"),
            default="auto",
            help="how to read depths of lines without a depth_type key; auto = the dataset's "
            "convention (docs/data-builders.md)",
        )

    def __init__(self, root: Path, split: str, options: argparse.Namespace | None = None):
        super().__init__(root, split, options)
        self._where: dict[str, tuple[Path, int, int]] = {}  # key -> (file, line number, byte offset)
        self.convention_reports: dict[str, dict] = {}  # file -> measured convention (summary.json)

    def _override(self) -> str | None:
        choice = getattr(self.options, "depth_type", "auto")
        return None if choice == "auto" else choice

    def _hint(self, file: Path) -> str | None:
        return canonical_dataset(self.requested_dataset) or guess_dataset(file)

    def check_conventions(self, files: list[Path]) -> None:
        """Measure each file's convention and warn where it contradicts the reading applied."""
        for file in files:
            rep = detect(file)
            applied = self._override() or reference_depth_type(self._hint(file))
            self.convention_reports[str(file)] = {
                **rep.as_dict(),
                "applied_to_lines_without_depth_type": applied,
            }
            if rep.verdict in ("z", "ray") and rep.verdict != applied:
                print(
                    f"warning: {file}: depths look like {'z-depth' if rep.verdict == 'z' else 'ray distance'} "
                    f"but lines without depth_type are read as {applied} ({rep}); "
                    f"pass --depth-type {rep.verdict} if the measurement is right",
                    file=sys.stderr,
                )

    def list_frames(self) -> list[str]:
        try:
            files = record_files(self.root)
        except RecordError as err:
            raise SkipFrame(f"{err} (expected a DepthLMBench .jsonl file or a folder of them)") from None
        self.check_conventions(files)
        return self._index(files)

    def _index(self, files: list[Path]) -> list[str]:
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
            self._index(record_files(self.root))
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
                default_depth_type=self._override(),
                dataset_hint=self._hint(file),
            )
        except RecordError as err:
            raise SkipFrame(str(err)) from None
        points = np.asarray(obj["pixel_coords"], dtype=np.float64).reshape(-1, 2)
        depths = np.asarray(obj["depth"], dtype=np.float64).reshape(-1)
        extras = dict(rec.extras)
        for keys, value in extras_files(extras):  # files (masks, second views): copied like the image
            extras = with_extras_path(extras, keys, Path(value))
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
