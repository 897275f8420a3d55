"""Training datasets rendered on the fly from DepthLMBench record sets.

Design (why it looks like this):

- A dataset row is only a *slot* number. Each epoch has a plan: slot -> (record set,
  record), with each set's share of the epoch given by its float mixing weight (a set with
  a large weight is cycled, a small one sub-sampled; records are permuted per epoch).
- The query point and the random crop of slot ``i`` in epoch ``e`` come from
  ``numpy.random.default_rng([seed, e, i])``. Ranks and dataloader workers therefore never
  repeat each other's samples (the distributed sampler gives every rank different slots),
  every epoch sees new crops and points, and a run is reproducible whatever the number of
  ranks or workers -- the reference code seeded every rank alike, so all ranks drew the same
  crops.
- The image is rendered when the row is read (``datasets`` ``set_transform``), through the
  one rendering path :func:`depthlm.render.render_record`; nothing is pre-rendered, so 16M
  images need no second copy. ``pre_rendered=True`` renders epoch 0 once into a fixed
  dataset for inspection.
- ``streaming=True`` never holds the records in memory: a ``datasets.IterableDataset`` whose
  shards are line-interleaved slices of the jsonl files; accelerate gives each rank its own
  shards and each dataloader worker its own sub-shards.
- The epoch reaches the renderer through :class:`depthlm.training.callbacks.EpochCallback`
  before the dataloader workers start (so ``dataloader_persistent_workers`` must stay off).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthlm.errors import DepthLMError
from depthlm.records import Record, Reject, parse_record, read_records, record_files
from depthlm.render import Query, render_record
from depthlm.settings import RenderSettings
from depthlm.training.config import DataArguments

log = logging.getLogger(__name__)

KINDS = ("sft", "prompt")


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainders)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


@dataclass
class RecordSet:
    name: str  # the path it was read from
    records: list[Record]


class RecordMixture:
    """Several record sets and their mixing weights; the per-epoch plan of which record each slot gets."""

    def __init__(
        self,
        sets: Sequence[RecordSet],
        weights: Sequence[float] | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ):
        if not sets:
            raise DepthLMError("no record sets to train on (set record_sets)")
        for s in sets:
            if not s.records:
                raise DepthLMError(f"{s.name}: no usable records")
        self.sets = list(sets)
        sizes = [len(s.records) for s in self.sets]
        self.weights = list(weights) if weights else [float(n) for n in sizes]
        if len(self.weights) != len(self.sets):
            raise DepthLMError(f"{len(self.weights)} mixing weights for {len(self.sets)} record sets")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise DepthLMError(f"mixing weights must be >= 0 with a positive sum, got {self.weights}")
        self.samples_per_epoch = samples_per_epoch or sum(sizes)
        self.counts = apportion(self.samples_per_epoch, self.weights)
        self.seed = seed
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.samples_per_epoch

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(set index, record index) of every slot in ``epoch``: each set's records in a fresh
        permutation (repeated when its share exceeds its size), then the slots shuffled."""
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1], self._plan[2]
        set_idx, rec_idx = [], []
        for s, (rs, count) in enumerate(zip(self.sets, self.counts)):
            rng = np.random.default_rng([self.seed, epoch, s])
            n = len(rs.records)
            reps = -(-count // n) if count else 0
            order = np.concatenate([rng.permutation(n) for _ in range(reps)])[:count] if reps else []
            rec_idx.append(np.asarray(order, dtype=np.int64))
            set_idx.append(np.full(count, s, dtype=np.int32))
        sets, recs = np.concatenate(set_idx), np.concatenate(rec_idx)
        shuffle = np.random.default_rng([self.seed, epoch]).permutation(len(sets))
        self._plan = (epoch, sets[shuffle], recs[shuffle])
        return self._plan[1], self._plan[2]

    def record(self, epoch: int, slot: int) -> Record:
        sets, recs = self.plan(epoch)
        return self.sets[int(sets[slot])].records[int(recs[slot])]


def read_record_sets(paths: Sequence[str], check_images: bool = True) -> list[RecordSet]:
    """Read each record set; skipped records are counted and their reasons logged (records.read_records)."""
    sets = []
    for path in paths:
        rejects: list[Reject] = []
        records = read_records(path, check_images=check_images, rejects=rejects)
        log.info("%s: %d records (%d problems skipped)", path, len(records), len(rejects))
        if not records and rejects:
            raise DepthLMError(f"{path}: no usable records ({len(rejects)} skipped, first: {rejects[0]})")
        sets.append(RecordSet(str(path), records))
    return sets


def rank_and_worker() -> tuple[int, int]:
    """(global rank, dataloader worker id) of the calling process; 0 where not distributed."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return int(os.environ.get("RANK", 0)), (info.id if info is not None else 0)


class SampleRenderer:
    """Turns slot numbers into rendered training rows (a ``datasets`` transform).

    ``kind="sft"``: ``{"images": [PIL], "messages": [...]}`` for SFTTrainer;
    ``kind="prompt"``: ``{"images", "prompt", "depth", "template"}`` for GRPOTrainer and its rewards.
    """

    def __init__(
        self,
        mixture: RecordMixture | None,
        settings: RenderSettings,
        *,
        kind: str = "sft",
        seed: int = 0,
        sample_log_dir: str | os.PathLike | None = None,
        source: dict | None = None,
    ):
        if kind not in KINDS:
            raise DepthLMError(f"unknown sample kind {kind!r}; known: {', '.join(KINDS)}")
        self.mixture = mixture
        self.settings = settings
        self.kind = kind
        self.seed = seed
        self.sample_log_dir = None if sample_log_dir is None else str(sample_log_dir)
        self.source = source  # how to re-read the records in another process (see __getstate__)
        self.epoch = 0
        # Off while the trainer merely peeks at a row (TRL reads the first one); on from train start.
        self.record_samples = True

    # datasets fingerprints a transform by pickling it; pickling every record of a large set took
    # tens of seconds, so when the records came from files only their paths travel (re-read lazily).
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.source is not None:
            state["mixture"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _mixture(self) -> RecordMixture:
        if self.mixture is None:
            if self.source is None:
                raise DepthLMError("SampleRenderer has neither records nor record_sets to read them from")
            sets = read_record_sets(self.source["record_sets"], self.source["check_images"])
            self.mixture = RecordMixture(
                sets, self.source["weights"], self.source["samples_per_epoch"], self.source["seed"]
            )
        return self.mixture

    def render(self, record: Record, key: Sequence[int], *, image=None) -> tuple[Query, dict]:
        """Render one random point of ``record`` with the rng of ``key``; the row and its log entry.
        ``image``: the record's decoded image when the rows carry it (parquet), else read from disk."""
        rng = np.random.default_rng([self.seed, self.epoch, *key])
        if self.settings.tasks is not None:  # a task mix: the task is drawn with the same rng
            return self._render_task(record, key, rng, image)
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

    def _render_task(self, record: Record, key: Sequence[int], rng, image) -> tuple:
        """One query of a task drawn from settings.tasks (depthlm.tasks.mix), seeded by ``key``. GRPO
        rows carry ``task`` and ``truth`` (JSON) for the ``task`` reward; ``depth`` is the truth of
        metre-answer tasks (NaN otherwise) so depth rewards keep one column type."""
        from depthlm.tasks.mix import TaskMix

        mix = TaskMix(self.settings.tasks)
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
        return query, {"row": row, "log": entry}

    def row(self, slot: int) -> dict:
        """The rendered row of ``slot`` in the current epoch."""
        record = self._mixture().record(self.epoch, slot)
        _, out = self.render(record, (slot,))
        self._log([out["log"]])
        return out["row"]

    def __call__(self, batch: dict) -> dict:
        rows = [self.row(int(slot)) for slot in batch["slot"]]
        return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}

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
    records: Sequence[RecordSet] | None = None,
):
    """The training dataset for ``args`` and the :class:`SampleRenderer` behind it.

    Returns ``(dataset, renderer)``: a ``datasets.Dataset`` of slots rendered on access, a fixed
    pre-rendered ``datasets.Dataset``, or a streaming ``datasets.IterableDataset``. Pass
    ``records`` to train on record sets already in memory instead of ``args.record_sets``.
    """
    if args.streaming:
        if records is not None:
            raise DepthLMError("streaming reads record_sets from files; do not pass records")
        return _streaming_dataset(args, settings, seed=seed, kind=kind, sample_log_dir=sample_log_dir)
    from datasets import Dataset

    source = None
    if records is None:
        records = read_record_sets(args.record_sets, args.check_images)
        source = {
            "record_sets": list(args.record_sets),
            "check_images": args.check_images,
            "weights": list(args.mixing_weights),
            "samples_per_epoch": args.samples_per_epoch,
            "seed": seed,
        }
    mixture = RecordMixture(records, args.mixing_weights, args.samples_per_epoch, seed)
    renderer = SampleRenderer(
        mixture, settings, kind=kind, seed=seed, sample_log_dir=sample_log_dir, source=source
    )
    if args.pre_rendered:
        dataset = _pre_render(renderer, len(mixture))
        if args.pre_rendered_dir:
            dataset.save_to_disk(args.pre_rendered_dir)
        return dataset, renderer
    dataset = Dataset.from_dict({"slot": np.arange(len(mixture), dtype=np.int64)})
    dataset.set_transform(renderer)
    return dataset, renderer


def _pre_render(renderer: SampleRenderer, n: int):
    from datasets import Dataset
    from tqdm import tqdm

    def rows() -> Iterator[dict]:
        for slot in tqdm(range(n), desc="pre-rendering", unit="sample"):
            row = renderer.row(slot)
            if renderer.kind == "sft":  # a fixed schema: content parts are either image or text
                row = {**row, "messages": json.dumps(row["messages"])}
            else:
                row = {**row, "prompt": json.dumps(row["prompt"])}
            yield row

    dataset = Dataset.from_list(list(rows()))
    column = "messages" if renderer.kind == "sft" else "prompt"
    return dataset.map(lambda r: {column: json.loads(r[column])}, desc="decoding messages")


# ------------------------------------------------------------------------------ streaming


def _count_lines(path: str) -> int:
    n = 0
    for file in record_files(path):
        with open(file, "rb") as fh:
            n += sum(1 for line in fh if line.strip())
    return n


def _shard_records(path: str, shard: int, modulo: int, check_images: bool) -> Iterator[Record]:
    """Records on the lines ``i`` of a set with ``i % modulo == shard`` (unparsed lines are skipped cheaply)."""
    i = -1
    for file in record_files(path):
        with open(file, encoding="utf-8") as fh:
            for lineno, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                i += 1
                if i % modulo != shard:
                    continue
                try:
                    rec = parse_record(
                        json.loads(text), file.parent, file=str(file), line=lineno, check_image=check_images
                    )
                except (json.JSONDecodeError, DepthLMError) as err:
                    log.warning("%s:%d: skipped: %s", file, lineno, err)
                    continue
                if len(rec):
                    yield rec


class _ShardReader:
    """One shard's cyclic reader of each record set (small sets: every shard reads some of their lines)."""

    def __init__(self, plan: dict, shard: int):
        self.plan, self.shard = plan, shard
        self.readers: dict[int, Iterator[Record]] = {}

    def next(self, s: int) -> Record:
        modulo = min(self.plan["num_shards"], self.plan["sizes"][s])
        path = self.plan["record_sets"][s]
        for _ in range(2):
            if s not in self.readers:
                self.readers[s] = _shard_records(path, self.shard % modulo, modulo, self.plan["check_images"])
            rec = next(self.readers[s], None)
            if rec is not None:
                return rec
            self.readers.pop(s)  # exhausted: start this shard's lines of the set again
        raise DepthLMError(f"{path}: no usable records in shard {self.shard}")


def _stream(shards: list[int], renderer: SampleRenderer, plan: dict) -> Iterator[dict]:
    """Rows of the given shards: each draws its share of the epoch, choosing the record set of every
    sample by the mixing weights and cycling through that set's lines of the shard."""
    n_shards, probs = plan["num_shards"], np.asarray(plan["weights"], dtype=np.float64)
    probs = probs / probs.sum()
    quota = apportion(plan["samples_per_epoch"], [1.0] * n_shards)
    for shard in shards:
        reader = _ShardReader(plan, shard)
        choose = np.random.default_rng([renderer.seed, renderer.epoch, shard, n_shards])
        for j in range(quota[shard]):
            s = int(choose.choice(len(probs), p=probs))
            _, out = renderer.render(reader.next(s), (shard, j))
            renderer._log([out["log"]])
            yield out["row"]


def _streaming_dataset(
    args: DataArguments, settings: RenderSettings, *, seed: int, kind: str, sample_log_dir
):
    from datasets import IterableDataset

    sizes = [_count_lines(p) for p in args.record_sets]
    for path, n in zip(args.record_sets, sizes):
        if n == 0:
            raise DepthLMError(f"{path}: no records")
    plan = {
        "record_sets": list(args.record_sets),
        "sizes": sizes,
        "weights": list(args.mixing_weights) or [float(n) for n in sizes],
        "samples_per_epoch": args.samples_per_epoch or sum(sizes),
        "num_shards": args.num_shards,
        "check_images": args.check_images,
    }
    renderer = SampleRenderer(None, settings, kind=kind, seed=seed, sample_log_dir=sample_log_dir)
    dataset = IterableDataset.from_generator(
        _stream, gen_kwargs={"shards": list(range(args.num_shards)), "renderer": renderer, "plan": plan}
    )
    return dataset, renderer


def preview(renderer: SampleRenderer, n: int, record_sets: Sequence[str] = ()) -> list[Query]:
    """``n`` training queries rendered as epoch 0 renders them (not logged as seen samples)."""
    if n <= 0:
        return []
    if renderer.mixture is None and renderer.source is None:  # streaming: the first records of the first set
        records = []
        for rec in _shard_records(record_sets[0], 0, 1, check_images=False):
            records.append(rec)
            if len(records) == n:
                break
        return [renderer.render(rec, (1 << 30, j))[0] for j, rec in enumerate(records)]  # a key no shard uses
    mixture = renderer._mixture()
    return [renderer.render(mixture.record(0, slot), (slot,))[0] for slot in range(min(n, len(mixture)))]
