"""A DepthLMBench record as a `datasets` row: the one schema of training data and the parquet export.

Why one schema: a jsonl set (validated by depthlm.records) and a parquet set written by
``data_builders/export.py`` become datasets of the same features, so ``interleave_datasets``
mixes them and one transform renders both. ``image`` is a ``datasets.Image`` struct
``{"bytes", "path"}``: the parquet export embeds the bytes, a jsonl row names the file on disk.
"""

from __future__ import annotations

import io
import json

from PIL import Image

from depthlm.geometry import Intrinsics
from depthlm.records import Record


def features(decode_images: bool = True):
    """The row schema; ``decode_images=False`` keeps images as ``{"bytes", "path"}`` (training decodes itself)."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(decode=decode_images),
            "image_path": datasets.Value("string"),
            "intrinsics": datasets.List(datasets.Value("float64")),
            "pixel_coords": datasets.List(datasets.List(datasets.Value("float64"))),
            "depth": datasets.List(datasets.Value("float64")),
            "depth_type": datasets.Value("string"),
            "dataset": datasets.Value("string"),
            "split": datasets.Value("string"),
            "id": datasets.Value("string"),
            "extras": datasets.Value("string"),
        }
    )


COLUMNS = (
    "image",
    "image_path",
    "intrinsics",
    "pixel_coords",
    "depth",
    "depth_type",
    "dataset",
    "split",
    "id",
    "extras",
)


def record_row(record: Record, *, image_bytes: bytes | None = None, image_path: str | None = None) -> dict:
    """The row of a validated record: the image embedded when ``image_bytes`` is given, else named."""
    name = image_path if image_path is not None else record.image
    return {
        "image": {"bytes": image_bytes, "path": record.image if image_bytes is None else name},
        "image_path": name,
        "intrinsics": [float(v) for v in record.intrinsics.to_list()],
        "pixel_coords": record.points.tolist(),
        "depth": record.depths.tolist(),
        "depth_type": record.depth_type,
        "dataset": record.dataset,
        "split": record.split,
        "id": record.id,
        "extras": json.dumps(record.extras, sort_keys=True),
    }


def row_record(row: dict) -> tuple[Record, Image.Image | None]:
    """One row -> (Record, its image decoded as RGB when the row embeds it, else None: read from disk).

    ``Record.image`` is the path on disk (jsonl rows) or the exported record's path (provenance)."""
    image = row["image"]
    decoded = None
    if isinstance(image, Image.Image):
        decoded = image
    elif isinstance(image, dict) and image.get("bytes"):
        decoded = Image.open(io.BytesIO(image["bytes"]))
    path = image["path"] if isinstance(image, dict) and not image.get("bytes") else row["image_path"]
    record = Record(
        image=path,
        intrinsics=Intrinsics.from_list(row["intrinsics"]),
        points=row["pixel_coords"],
        depths=row["depth"],
        depth_type=row["depth_type"],
        dataset=row["dataset"],
        split=row["split"],
        id=row["id"],
        extras=json.loads(row["extras"]) if row.get("extras") else {},
    )
    return record, None if decoded is None else decoded.convert("RGB")
