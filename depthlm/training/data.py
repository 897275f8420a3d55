"""Training datasets: DepthLMBench record sets through `datasets`, rendered on the fly.

Design (why it looks like this):

- Every record set is a `datasets` dataset of record rows (:mod:`depthlm.training.rows`, the
  schema of the parquet export). A jsonl set is read and validated line by line by
  :func:`depthlm.records.read_records` (a bad line is one reject, counted and logged with
  ``file:line`` and its reason; pyarrow's json reader would fail the whole file on it) and the
  validated records become a ``Dataset``; a parquet set (``data_builders/export.py``) is read with
  ``load_dataset("parquet")``.
- Mixing is ``datasets.interleave_datasets(probabilities=weights, seed=seed)`` over the sets, each
  shuffled and cycled so the mixture has ``samples_per_epoch`` rows. No weights and no
  ``samples_per_epoch``: the sets are concatenated (one pass over every record per epoch).
- A map-style mixture row carries its ``slot`` (position in the epoch). The query point and
  random crop of slot ``i`` in epoch ``e`` come from ``numpy.random.default_rng([seed, e, i])``:
  the trainer's sampler gives every rank and dataloader worker different slots, so they never
  repeat each other's samples, every epoch draws new crops and points, a resumed run renders
  exactly what the uninterrupted one would have (transformers skips the sampler's batches), and
  a run is reproducible whatever the number of ranks or workers.
- The image is rendered when the row is read (``Dataset.with_transform``), through the one
  rendering path :func:`depthlm.render.render_record`; nothing is pre-rendered. The transform
  holds no records (they live in arrow), so datasets' fingerprint of it is instant.
- ``streaming=True``: ``IterableDataset`` sets (jsonl: one shard per file, validated line by
  line while streaming; parquet: ``load_dataset(..., streaming=True)``), each shuffled in a
  buffer and repeated, interleaved by weight, ``take(samples_per_epoch)``. accelerate gives each
  rank its own shards (dispatch_batches off, see run.prepare_run), datasets each dataloader
  worker its own; a sample's rng key is (position in this rank's stream, its record id).
- Per-set task mixes (``record_set_tasks``, or ``tasks:`` in a ``datasets`` entry): each set gets a
  ``record_set`` column (its index) before mixing, and the renderer draws the row's task from that
  set's mix; the rng is still keyed by the row's slot (or stream key), so the global-mix and
  default rows are unchanged. Records no task of their set's mix can use are counted per reason
  and left out before mixing (a set none of whose records can serve its mix is an error).
- The epoch reaches the renderer through :class:`depthlm.training.callbacks.EpochCallback`
  before the dataloader workers start (so ``dataloader_persistent_workers`` must stay off).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.records import Record, Reject, iter_records, read_records, record_files
from depthlm.render import Query, render_record
from depthlm.settings import RenderSettings
from depthlm.training.config import DataArguments
from depthlm.training.rows import (
    COLUMNS,
    EXTRAS_FILES,
    extras_files_feature,
    features,
    record_row,
    row_extras,
    row_record,
)

log = logging.getLogger(__name__)

KINDS = ("sft", "grpo")  # the recipe the rows are for
SHOWN_REJECTS = 20  # rejects listed one per line in the log (all are counted)


# ------------------------------------------------------------------------------ record sets


def parquet_files(path: str | os.PathLike) -> list[str] | None:
    """The parquet files of a set (a .parquet file, a folder of them, or an export folder with
    data/), or None when the set is jsonl."""
    p = Path(path)
    if p.is_file():
        return [str(p)] if p.suffix == ".parquet" else None
    folder = p / "data" if (p / "data").is_dir() else p
    files = sorted(str(f) for f in folder.glob("*.parquet")) if folder.is_dir() else []
    return files or None


def _log_rejects(path: str, rejects: list[Reject], kept: int) -> None:
    log.info("%s: %d records (%d problems skipped)", path, kept, len(rejects))
    for reject in rejects[:SHOWN_REJECTS]:
        log.warning("skipped %s", reject)
    if len(rejects) > SHOWN_REJECTS:
        log.warning("%s: %d more problems skipped", path, len(rejects) - SHOWN_REJECTS)


def load_record_set(path: str, *, check_images: bool = True):
    """One record set as a ``datasets.Dataset`` of record rows; a set with no usable record is an error."""
    import datasets

    files = parquet_files(path)
    if files is not None:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
        ds = ds.cast_column("image", datasets.Image(decode=False))
        if EXTRAS_FILES not in ds.column_names:  # exported before extras files were embedded
            ds = ds.add_column(EXTRAS_FILES, [[]] * len(ds), feature=extras_files_feature())
        if len(ds) == 0:
            raise DepthLMError(f"{path}: no records in {len(files)} parquet file(s)")
        log.info("%s: %d records (parquet)", path, len(ds))
        return ds
    rejects: list[Reject] = []
    records = read_records(path, check_images=check_images, rejects=rejects)
    _log_rejects(str(path), rejects, len(records))
    if not records:
        first = f", first: {rejects[0]}" if rejects else ""
        raise DepthLMError(f"{path}: no usable records ({len(rejects)} skipped{first})")
    return datasets.Dataset.from_list([record_row(r) for r in records], features=features(False))


def _jsonl_rows(files: list[str], check_images: bool) -> Iterator[dict]:
    """Rows of these jsonl files, validated line by line (a bad line is one logged reject)."""
    for file in files:
        rejects: list[Reject] = []
        n = 0
        for rec in iter_records(file, check_images=check_images, rejects=rejects):
            n += 1
            yield record_row(rec)
        if rejects:
            _log_rejects(file, rejects, n)


def stream_record_set(path: str, *, check_images: bool = True):
    """One record set as a ``datasets.IterableDataset`` of record rows (one shard per file)."""
    import datasets

    files = parquet_files(path)
    if files is not None:
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
        ds = ds.cast_column("image", datasets.Image(decode=False))
        if ds.features is not None and EXTRAS_FILES not in ds.features:  # an export from before the column
            ds = ds.map(_no_extras_files, features=features(False))
        return ds
    jsonl = [str(f) for f in record_files(path)]
    return datasets.IterableDataset.from_generator(
        _jsonl_rows, features=features(False), gen_kwargs={"files": jsonl, "check_images": check_images}
    )


def _no_extras_files(row: dict) -> dict:
    return {EXTRAS_FILES: []}


SET_COLUMN = "record_set"  # the index of a row's record set, when sets have their own task mixes


def tag_set(ds, index: int):
    """The set's rows with its index in ``record_set`` (map-style and streaming)."""
    if hasattr(ds, "__len__"):
        return ds.add_column(SET_COLUMN, np.full(len(ds), index, dtype=np.int64))
    return ds.map(_set_index, fn_kwargs={"index": index})


def _set_index(row: dict, index: int) -> dict:
    return {SET_COLUMN: index}


def servable(ds, path: str, weights: dict[str, float] | None):
    """The rows of a map-style set that some task of ``weights`` can use; the others are counted
    per task and reason and logged. A set none of whose records can serve its mix is an error."""
    from depthlm.tasks.mix import TaskMix

    mix = TaskMix(weights)
    light = ds.select_columns(
        ["intrinsics", "pixel_coords", "depth", "extras", EXTRAS_FILES, "id", "image_path"]
    )
    keep = []
    for i, row in enumerate(light):  # embedded extras files are materialised here, once per cache
        record = Record(
            image=row["image_path"],
            intrinsics=Intrinsics.from_list(row["intrinsics"]),
            points=row["pixel_coords"],
            depths=row["depth"],
            id=row["id"],
            extras=row_extras(row),
        )
        if mix.usable(record):
            keep.append(i)
    if len(keep) == len(ds):
        return ds
    reasons = "; ".join(f"{t}: {r} ({n})" for t, rs in mix.stats()["skipped"].items() for r, n in rs.items())
    if not keep:
        raise DepthLMError(
            f"{path}: no record can serve its task mix {', '.join(mix.weights)} ({len(ds)} records; {reasons})"
        )
    log.warning(
        "%s: %d of %d records left out: no task of its mix (%s) can use them (%s)",
        path,
        len(ds) - len(keep),
        len(ds),
        ", ".join(mix.weights),
        reasons,
    )
    return ds.select(keep)


def mix(sets: Sequence, weights: Sequence[float] | None, samples: int | None, seed: int):
    """The epoch's rows: ``interleave_datasets`` by weight (each set shuffled and cycled to
    ``samples`` rows), or the sets concatenated when neither weights nor a sample count is given."""
    import datasets

    sizes = [len(s) for s in sets]
    if not weights and samples in (None, sum(sizes)):
        return datasets.concatenate_datasets(list(sets))
    samples = samples or sum(sizes)
    probs = np.asarray(weights or sizes, dtype=np.float64)
    cycled, p = [], []
    for s, (ds, w) in enumerate(zip(sets, probs)):
        if w > 0:
            cycled.append(ds.shuffle(seed=seed + s).select(np.arange(samples) % len(ds)))
            p.append(w)
    p = np.asarray(p) / np.sum(p)
    mixed = datasets.interleave_datasets(
        cycled, probabilities=p.tolist(), seed=seed, stopping_strategy="first_exhausted"
    )
    return mixed.select(range(samples))


def mix_streams(streams: Sequence, weights: Sequence[float] | None, samples: int | None, seed: int):
    """Streaming: each set shuffled in a buffer and repeated, interleaved by weight (equal weights
    when none are given: sizes are unknown without a pass), ``samples`` rows per epoch."""
    import datasets

    if samples is None:
        raise DepthLMError("streaming needs samples_per_epoch (the size of a stream is unknown)")
    probs = np.asarray(weights or [1.0] * len(streams), dtype=np.float64)
    kept = [
        (s.shuffle(seed=seed + i, buffer_size=1000).repeat(None), w)
        for i, (s, w) in enumerate(zip(streams, probs))
        if w > 0
    ]
    p = np.asarray([w for _, w in kept]) / sum(w for _, w in kept)
    if len(kept) == 1:
        mixed = kept[0][0]
    else:
        mixed = datasets.interleave_datasets(
            [s for s, _ in kept], probabilities=p.tolist(), seed=seed, stopping_strategy="first_exhausted"
        )
    return mixed.take(samples)


# ------------------------------------------------------------------------------ rendering


def rank_and_worker() -> tuple[int, int]:
    """(global rank, dataloader worker id) of the calling process; 0 where not distributed."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return int(os.environ.get("RANK", 0)), (info.id if info is not None else 0)


class SampleRenderer:
    """Turns record rows into rendered training rows (the datasets transform).

    ``kind="sft"``: ``{"images": [PIL], "messages": [...]}`` for SFTTrainer;
    ``kind="grpo"``: ``{"images", "prompt", "depth", "template"}`` for GRPOTrainer and its rewards.
    """

    def __init__(
        self,
        settings: RenderSettings,
        *,
        kind: str = "sft",
        seed: int = 0,
        sample_log_dir: str | os.PathLike | None = None,
        set_mixes: Sequence[dict[str, float] | None] | None = None,
    ):
        """``set_mixes``: each record set's task mix (None: depth alone), picked by a row's
        ``record_set``; None: every row uses ``settings.tasks`` (the global mix)."""
        if kind not in KINDS:
            raise DepthLMError(f"unknown sample kind {kind!r}; known: {', '.join(KINDS)}")
        self.settings = settings
        self.kind = kind
        self.seed = seed
        self.sample_log_dir = None if sample_log_dir is None else str(sample_log_dir)
        self.set_mixes = None if set_mixes is None else list(set_mixes)
        self.epoch = 0
        # Off while the trainer merely peeks at a row (TRL reads the first one); on from train start.
        self.record_samples = True
        self.source = None  # the record rows before rendering (preview); not pickled

    def __getstate__(self) -> dict:
        return {**self.__dict__, "source": None}

    def render(
        self, record: Record, key: Sequence[int], *, image=None, record_set: int | None = None
    ) -> tuple[Query, dict]:
        """Render one random point of ``record`` with the rng of ``key``; the row and its log entry.
        ``image``: the record's decoded image when the rows carry it (parquet), else read from disk;
        ``record_set``: the row's set, whose own task mix is used (with per-set mixes)."""
        rng = np.random.default_rng([self.seed, self.epoch, *key])
        if self.set_mixes is not None:  # every row a task row, so GRPO rows share one set of columns
            if record_set is None or not 0 <= record_set < len(self.set_mixes):
                raise DepthLMError(
                    f"record {record.id}: row has no record set of the {len(self.set_mixes)} mixed"
                )
            query, out = self._render_task(record, key, rng, image, self.set_mixes[record_set])
            out["log"]["record_set"] = record_set
            return query, out
        if self.settings.tasks is not None:  # a task mix: the task is drawn with the same rng
            return self._render_task(record, key, rng, image, self.settings.tasks)
        index = int(rng.integers(len(record)))
        try:
            query = render_record(record, index, self.settings, rng=rng, image=image)
        except DepthLMError as err:
            raise DepthLMError(f"record {record.id}: {err}") from None
        if self.kind == "sft":
            row = query.sft_example()
        else:
            row = {**query.prompt_example(), "depth": query.depth, "template": self.settings.template}
        entry = {"epoch": self.epoch, "key": list(key), "record_id": record.id, "point_index": index}
        return query, {"row": row, "log": entry}

    def _render_task(self, record: Record, key: Sequence[int], rng, image, weights) -> tuple:
        """One query of a task drawn from ``weights`` (depthlm.tasks.mix), seeded by ``key``. GRPO
        rows carry ``task`` and ``truth`` (JSON) for the ``task`` reward; ``depth`` is the truth of
        metre-answer tasks (NaN otherwise) so depth rewards keep one column type."""
        from depthlm.tasks.mix import TaskMix

        mix = TaskMix(weights)
        try:
            query = mix.query(record, self.settings, rng, train=True, image=image)
        except DepthLMError as err:
            raise DepthLMError(f"record {record.id}: {err}") from None
        if query is None:
            reasons = "; ".join(f"{t}: {r}" for t, rs in mix.stats()["skipped"].items() for r in rs)
            raise DepthLMError(f"record {record.id}: no task of the mix can use it ({reasons})")
        if self.kind == "sft":
            row = query.sft_example()
        else:
            depth = float(query.truth) if isinstance(query.truth, (int, float)) else float("nan")
            row = {**query.prompt_example(), "depth": depth, "template": self.settings.template}
        entry = {"epoch": self.epoch, "key": list(key), "record_id": record.id, "task": query.task}
        skipped = mix.stats()["skipped"]
        if skipped:  # a drawn task found nothing to ask: another was drawn -- said, never silent
            entry["skipped"] = skipped
            self._warn_fallback(skipped)
        return query, {"row": row, "log": entry}

    def _warn_fallback(self, skipped: dict) -> None:
        """One warning per (task, kind of reason) and process: the mix's share of a task is lower
        than its weight when its draws fall back (the sample log lists every one)."""
        seen = self.__dict__.setdefault("_fallbacks_warned", set())
        for task, reasons in skipped.items():
            for reason in reasons:
                kind = (task, reason)
                if kind not in seen:
                    seen.add(kind)
                    log.warning(
                        "task %s found nothing to ask in a record (%s); another task of the mix was drawn "
                        "instead (once per reason and process here; sample_log: true lists each)",
                        task,
                        reason,
                    )

    def row(self, row: dict, key: Sequence[int]) -> dict:
        """The rendered training row of one record row, logged as seen."""
        record, image = row_record(row)
        _, out = self.render(record, key, image=image, record_set=row.get(SET_COLUMN))
        self._log([out["log"]])
        return out["row"]

    def __call__(self, batch: dict) -> dict:
        """Map-style transform: a batch of record rows with their slots -> rendered rows."""
        n = len(batch["slot"])
        columns = [*COLUMNS, SET_COLUMN] if SET_COLUMN in batch else COLUMNS
        rows = [self.row({k: batch[k][i] for k in columns}, (int(batch["slot"][i]),)) for i in range(n)]
        return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}

    def stream_row(self, row: dict, idx: int) -> dict:
        """Streaming transform: the key is the position in this rank's stream and the record id."""
        return self.row(row, (idx, zlib.crc32(row["id"].encode())))

    def _log(self, entries: list[dict]) -> None:
        if self.sample_log_dir is None or not self.record_samples:
            return
        rank, worker = rank_and_worker()
        path = Path(self.sample_log_dir) / f"rank{rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for e in entries:
                fh.write(json.dumps({**e, "rank": rank, "worker": worker}) + "\n")


def build_dataset(
    args: DataArguments,
    settings: RenderSettings,
    *,
    seed: int = 0,
    kind: str = "sft",
    sample_log_dir: str | os.PathLike | None = None,
):
    """The training dataset for ``args`` and the :class:`SampleRenderer` behind it.

    Returns ``(dataset, renderer)``: a ``datasets.Dataset`` of record rows rendered on access, a
    fixed pre-rendered ``datasets.Dataset``, or a streaming ``datasets.IterableDataset``."""
    if not args.record_sets:
        raise DepthLMError("no record sets to train on (set record_sets)")
    set_mixes = args.set_task_mixes()
    renderer = SampleRenderer(
        settings, kind=kind, seed=seed, sample_log_dir=sample_log_dir, set_mixes=set_mixes
    )
    if args.streaming:
        streams = [stream_record_set(p, check_images=args.check_images) for p in args.record_sets]
        if set_mixes is not None:
            streams = [tag_set(s, i) for i, s in enumerate(streams)]
        mixed = mix_streams(streams, args.mixing_weights, args.samples_per_epoch, seed)
        renderer.source = mixed
        drop = [*COLUMNS, SET_COLUMN] if set_mixes is not None else list(COLUMNS)
        return mixed.map(renderer.stream_row, with_indices=True, remove_columns=drop), renderer
    sets = [load_record_set(p, check_images=args.check_images) for p in args.record_sets]
    if set_mixes is not None:
        sets = [
            tag_set(servable(s, p, m), i)
            for i, (s, p, m) in enumerate(zip(sets, args.record_sets, set_mixes))
        ]
    elif settings.tasks is not None:
        sets = [servable(s, p, settings.tasks) for s, p in zip(sets, args.record_sets)]
    mixed = mix(sets, args.mixing_weights, args.samples_per_epoch, seed)
    mixed = mixed.add_column("slot", np.arange(len(mixed), dtype=np.int64))
    renderer.source = mixed
    dataset = mixed.with_transform(renderer)
    if args.pre_rendered:
        dataset = _pre_render(dataset, kind)
        if args.pre_rendered_dir:
            dataset.save_to_disk(args.pre_rendered_dir)
    return dataset, renderer


def _pre_render(dataset, kind: str):
    from datasets import Dataset
    from tqdm import tqdm

    column = "messages" if kind == "sft" else "prompt"

    def rows() -> Iterator[dict]:
        for i in tqdm(range(len(dataset)), desc="pre-rendering", unit="sample"):
            row = dataset[i]  # a fixed schema: content parts are either image or text
            yield {**row, column: json.dumps(row[column])}

    fixed = Dataset.from_list(list(rows()))
    return fixed.map(lambda r: {column: json.loads(r[column])}, desc="decoding messages")


def preview(renderer: SampleRenderer, n: int) -> list[Query]:
    """``n`` training queries rendered as epoch 0 renders them (not logged as seen samples)."""
    if n <= 0 or renderer.source is None:
        return []
    if hasattr(renderer.source, "__len__"):
        rows = [(renderer.source[i], (i,)) for i in range(min(n, len(renderer.source)))]
    else:  # streaming: the first rows, with a key no stream position uses
        rows = [(row, (1 << 30, j)) for j, row in enumerate(renderer.source.take(n))]
    queries = []
    for row, key in rows:
        record, image = row_record(row)
        queries.append(renderer.render(record, key, image=image, record_set=row.get(SET_COLUMN))[0])
    return queries
