"""Records folder <-> Hugging Face `datasets` parquet shards (images embedded).

Why: training at scale streams parquet shards (local or on the Hub) instead of millions of
small files, and a parquet folder is what ``push_to_hub`` uploads. Rows have the record
fields as columns -- ``image`` (embedded bytes, a `datasets.Image`), ``image_path`` (the
record's path, for provenance), ``intrinsics`` [fx, fy, cx, cy, W, H], ``pixel_coords``,
``depth``, ``depth_type``, ``dataset``, ``split``, ``id`` -- and ``extras`` as a JSON
string (paths inside extras, e.g. synthetic masks, are not embedded).

    from data_builders.export import to_hf_dataset, read_hf_records
    to_hf_dataset("data/synth", "data/synth_hf")                 # data/synth_hf/data/train-00000-of-00001.parquet
    for record, image in read_hf_records("data/synth_hf"):       # streams, nothing cached
        ...
    # or directly: datasets.load_dataset("parquet", data_files="data/synth_hf/data/*.parquet",
    #                                    split="train", streaming=True)
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.records import Record, Reject, iter_records


def features():
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
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


def to_hf_dataset(
    records_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    rows_per_shard: int = 2000,
    split: str | None = None,
) -> dict:
    """Write every record under `records_dir` into ``out_dir/data/<split>-NNNNN-of-MMMMM.parquet``.

    Streams: at most `rows_per_shard` rows (with their image bytes) are held at once.
    Returns {"rows", "files", "rejects"}; records that fail validation are counted, not exported.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats = features()
    schema = feats.arrow_schema
    data = Path(out_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.parquet"):
        old.unlink()
    rejects: list[Reject] = []
    parts: list[Path] = []
    rows: list[dict] = []
    n = 0
    base = Path(records_dir).resolve()

    def flush() -> None:
        if rows:
            part = data / f"part-{len(parts):05d}.parquet.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), part)
            parts.append(part)
            rows.clear()

    for rec in iter_records(records_dir, rejects=rejects, default_depth_type="z"):
        split = split or rec.split or "train"
        try:
            image_bytes = Path(rec.image).read_bytes()
        except OSError as err:
            raise DepthLMError(f"cannot read image {rec.image} of record {rec.id}: {err}") from None
        row = rec.to_json(base)
        rows.append(
            feats.encode_example(
                {
                    "image": {"bytes": image_bytes, "path": Path(rec.image).name},
                    "image_path": row["image"],
                    "intrinsics": [float(v) for v in rec.intrinsics.to_list()],
                    "pixel_coords": rec.points.tolist(),
                    "depth": rec.depths.tolist(),
                    "depth_type": rec.depth_type,
                    "dataset": rec.dataset,
                    "split": rec.split,
                    "id": rec.id,
                    "extras": json.dumps(rec.extras, sort_keys=True),
                }
            )
        )
        n += 1
        if len(rows) >= rows_per_shard:
            flush()
    flush()
    files = []
    for i, part in enumerate(parts):
        final = data / f"{split or 'train'}-{i:05d}-of-{len(parts):05d}.parquet"
        os.replace(part, final)
        files.append(final)
    return {"rows": n, "files": [str(f) for f in files], "rejects": len(rejects)}


def row_to_record(row: dict) -> tuple[Record, Image.Image]:
    """One dataset row -> (Record, decoded RGB image). Record.image keeps the original path string."""
    image = row["image"]
    if isinstance(image, dict):  # undecoded column: {"bytes", "path"}
        image = Image.open(io.BytesIO(image["bytes"]))
    rec = Record(
        image=row["image_path"],
        intrinsics=Intrinsics.from_list(row["intrinsics"]),
        points=row["pixel_coords"],
        depths=row["depth"],
        depth_type=row["depth_type"],
        dataset=row["dataset"],
        split=row["split"],
        id=row["id"],
        extras=json.loads(row["extras"]) if row.get("extras") else {},
    )
    return rec, image.convert("RGB")


def read_hf_records(
    path: str | os.PathLike, *, streaming: bool = True, split: str = "train"
) -> Iterator[tuple[Record, Image.Image]]:
    """Stream (Record, image) pairs from a folder written by to_hf_dataset (or its data/ folder)."""
    import datasets

    root = Path(path)
    folder = root / "data" if (root / "data").is_dir() else root
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise DepthLMError(f"no .parquet files in {folder}")
    ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)
    for row in ds:
        yield row_to_record(row)
