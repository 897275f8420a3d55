"""Records folder <-> Hugging Face `datasets` parquet shards (images embedded).

Why: training at scale reads parquet shards (local or on the Hub) instead of millions of small
files, and a parquet folder is what ``push_to_hub`` uploads. The rows have the schema of
:mod:`depthlm.training.rows` (the one training reads jsonl sets into): ``image`` (embedded bytes,
a `datasets.Image`), ``image_path`` (the record's path, for provenance), ``intrinsics``
[fx, fy, cx, cy, W, H], ``pixel_coords``, ``depth``, ``depth_type``, ``dataset``, ``split``,
``id`` and ``extras`` as a JSON string.

Extras FILES are not embedded: the masks, depth maps and second views that ``region`` and
``motion`` read (depthlm.records.EXTRAS_PATHS) stay paths, absolute as depthlm.records read them,
so a parquet set answers those tasks only on a machine where those files are, at those paths;
elsewhere the task says which record, key and file it misses (and a training mix draws another
task). The export counts such records (``extras_not_embedded``) and warns. Every other task
needs only the embedded image.

    from data_builders.export import to_hf_dataset, read_hf_records
    to_hf_dataset("data/synth", "data/synth_hf")                 # data/synth_hf/data/train-00000-of-00001.parquet
    for record, image in read_hf_records("data/synth_hf"):       # streams, nothing cached
        ...

Training reads such a folder as a record set, in memory or streamed, alone or mixed with jsonl
sets (tests/test_training_data.py::test_training_reads_the_parquet_export_as_it_reads_jsonl)::

    depthlm sft --config recipes/configs/tiny_cpu.yaml --record_sets data/synth_hf ...
    depthlm sft ... --record_sets data/synth_hf --streaming true --samples_per_epoch 100000 --max_steps N
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.records import Record, Reject, extras_files, iter_records

log = logging.getLogger(__name__)


def features():
    """The parquet schema: training's row schema (depthlm.training.rows), images decoded on read."""
    from depthlm.training.rows import features as row_features

    return row_features(decode_images=True)


def to_hf_dataset(
    records_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    rows_per_shard: int = 2000,
    split: str | None = None,
) -> dict:
    """Write every record under `records_dir` into ``out_dir/data/<split>-NNNNN-of-MMMMM.parquet``.

    Streams: at most `rows_per_shard` rows (with their image bytes) are held at once.
    Returns {"rows", "files", "rejects", "extras_not_embedded"}; records that fail validation are
    counted, not exported; records naming extras files are exported with those files' absolute
    paths (not embedded: see the module docstring), counted and warned about.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from depthlm.training.rows import record_row

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
    not_embedded: list[tuple[str, str]] = []  # (record id, first extras file) per record naming files

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
        rows.append(
            feats.encode_example(
                record_row(rec, image_bytes=image_bytes, image_path=rec.to_json(base)["image"])
            )
        )
        files_named = extras_files(rec.extras)
        if files_named:
            not_embedded.append((rec.id, files_named[0][1]))
        n += 1
        if len(rows) >= rows_per_shard:
            flush()
    flush()
    files = []
    for i, part in enumerate(parts):
        final = data / f"{split or 'train'}-{i:05d}-of-{len(parts):05d}.parquet"
        os.replace(part, final)
        files.append(final)
    if not_embedded:
        rid, path = not_embedded[0]
        log.warning(
            "%s: %d of %d records name extras files (masks, depth_map, pair.image) that the parquet does "
            "not embed; region and motion queries from it work only where those files are, e.g. %s: %s",
            out_dir,
            len(not_embedded),
            n,
            rid,
            path,
        )
    return {
        "rows": n,
        "files": [str(f) for f in files],
        "rejects": len(rejects),
        "extras_not_embedded": len(not_embedded),
    }


def row_to_record(row: dict) -> tuple[Record, Image.Image]:
    """One dataset row -> (Record, decoded RGB image). Record.image keeps the original path string."""
    from depthlm.training.rows import row_record

    record, image = row_record(row)
    if image is None:
        raise DepthLMError(f"record {record.id}: the row embeds no image")
    return record, image


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
