"""Records folder <-> Hugging Face `datasets` parquet shards (images and extras files embedded).

Why: training at scale reads parquet shards (local or on the Hub) instead of millions of small
files, and a parquet folder is what ``push_to_hub`` uploads. The rows have the schema of
:mod:`depthlm.training.rows` (the one training reads jsonl sets into): ``image`` (embedded bytes,
a `datasets.Image`), ``image_path`` (the record's path, for provenance), ``intrinsics``
[fx, fy, cx, cy, W, H], ``pixel_coords``, ``depth``, ``depth_type``, ``dataset``, ``split``,
``id``, ``extras`` as a JSON string and ``extras_files``.

``extras_files`` embeds the files the extras name (the masks, depth maps and second views that
``region`` and ``motion`` read, depthlm.records.EXTRAS_PATHS) as ``[{"key", "bytes"}]``; the
extras keep those files' paths relative to the exported folder, for provenance. Reading a row
(``read_hf_records``, training) writes each file once into a cache folder named by its sha256
(``$DEPTHLM_CACHE/extras``, default ``~/.cache/depthlm/extras``) and points the record's extras
there, so a parquet set answers every task on any machine. A parquet set exported before the
column existed reads as before (its extras keep the absolute paths of the machine that built it).

    from data_builders.export import to_hf_dataset, read_hf_records
    to_hf_dataset("data/synth", "data/synth_hf")                 # data/synth_hf/data/train-00000-of-00001.parquet
    for record, image in read_hf_records("data/synth_hf"):       # streams; extras files cached once
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
from dataclasses import replace
from pathlib import Path

from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.records import Record, Reject, extras_files, iter_records, with_extras_path

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
    max_shard_bytes: int = 512 * 2**20,
    split: str | None = None,
) -> dict:
    """Write every record under `records_dir` into ``out_dir/data/<split>-NNNNN-of-MMMMM.parquet``.

    Streams: a shard is written once it holds `rows_per_shard` rows or `max_shard_bytes` of image
    and extras bytes (a set with depth maps and second views holds several files per row).
    Returns {"rows", "files", "rejects", "extras_embedded", "extras_not_embedded",
    "extras_missing"}: records that fail validation are counted, not exported; the files a
    record's extras name are embedded (``extras_embedded`` files); a named file that cannot be read
    is not embedded: the record is exported with that file's absolute path (a region/motion query
    of it says the file is missing, as from its jsonl), counted per record in
    ``extras_not_embedded``, listed in ``extras_missing`` ("id: extras KEY: cannot read PATH:
    why") and warned about."""
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
    held = 0  # bytes of the rows held
    n = embedded = 0
    base = Path(records_dir).resolve()
    missing: list[str] = []  # one line per extras file that could not be read
    not_embedded: set[str] = set()  # ids of the records with such a file

    def flush() -> None:
        nonlocal held
        if rows:
            part = data / f"part-{len(parts):05d}.parquet.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), part)
            parts.append(part)
            rows.clear()
            held = 0

    for rec in iter_records(records_dir, rejects=rejects, default_depth_type="z"):
        split = split or rec.split or "train"
        try:
            image_bytes = Path(rec.image).read_bytes()
        except OSError as err:
            raise DepthLMError(f"cannot read image {rec.image} of record {rec.id}: {err}") from None
        extras, files, problems = _extras_bytes(rec, base)
        if problems:
            missing.extend(problems)
            not_embedded.add(rec.id)
        embedded += len(files)
        row = record_row(
            replace(rec, extras=extras),
            image_bytes=image_bytes,
            image_path=rec.to_json(base)["image"],
            extras_bytes=files,
        )
        rows.append(feats.encode_example(row))
        held += len(image_bytes) + sum(len(b) for b in files.values())
        n += 1
        if len(rows) >= rows_per_shard or held >= max_shard_bytes:
            flush()
    flush()
    files = []
    for i, part in enumerate(parts):
        final = data / f"{split or 'train'}-{i:05d}-of-{len(parts):05d}.parquet"
        os.replace(part, final)
        files.append(final)
    if missing:
        log.warning(
            "%s: %d extras file(s) of %d of %d records could not be read and are not embedded "
            "(their region/motion queries will say the file is missing), e.g. %s",
            out_dir,
            len(missing),
            len(not_embedded),
            n,
            missing[0],
        )
    return {
        "rows": n,
        "files": [str(f) for f in files],
        "rejects": len(rejects),
        "extras_embedded": embedded,
        "extras_not_embedded": len(not_embedded),
        "extras_missing": missing,
    }


def _extras_bytes(rec: Record, base: Path) -> tuple[dict, dict[str, bytes], list[str]]:
    """(the row's extras, {key: bytes} of the files they name, a line per file that cannot be read).

    An embedded file's path is written relative to the exported folder, as ``image_path`` is
    (provenance: the reader points the key at its cached copy); an unreadable one stays absolute."""
    extras, files, problems = rec.extras, {}, []
    for keys, value in extras_files(rec.extras):
        key = ".".join(keys)
        try:
            files[key] = Path(value).read_bytes()
        except OSError as err:
            problems.append(f"{rec.id}: extras {key}: cannot read {value}: {err.strerror or err}")
            continue
        try:
            extras = with_extras_path(extras, keys, os.path.relpath(value, base))
        except ValueError:  # another drive (Windows): keep the absolute path
            pass
    return extras, files, problems


def row_to_record(row: dict) -> tuple[Record, Image.Image]:
    """One dataset row -> (Record, decoded RGB image). Record.image keeps the original path string;
    the extras name the cached copies of the files the row embeds."""
    from depthlm.training.rows import row_record

    record, image = row_record(row)
    if image is None:
        raise DepthLMError(f"record {record.id}: the row embeds no image")
    return record, image


def read_hf_records(
    path: str | os.PathLike, *, streaming: bool = True, split: str = "train"
) -> Iterator[tuple[Record, Image.Image]]:
    """Stream (Record, image) pairs from a folder written by to_hf_dataset (or its data/ folder);
    embedded extras files are materialised in the cache and the records' extras point there."""
    import datasets

    root = Path(path)
    folder = root / "data" if (root / "data").is_dir() else root
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise DepthLMError(f"no .parquet files in {folder}")
    ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)
    for row in ds:
        yield row_to_record(row)
