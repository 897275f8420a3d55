"""The resumable dense run: sample pixels, ask in chunks, keep every answer, interpolate.

Answers are appended to ``answers.jsonl`` a chunk at a time (flushed and fsynced), like
``depthlm eval``'s predictions: a killed run, rerun with the same output folder, keeps every
complete chunk and asks only the rest. ``run.json`` holds a digest of the plan (photo pixels,
intrinsics, render settings, strategy, model); a folder holding another plan is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from depthlm.dense import sampling, strategy
from depthlm.dense.interpolate import densify
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, check_intrinsics, convert_depth
from depthlm.settings import RenderSettings

ANSWERS_FILE = "answers.jsonl"
RUN_FILE = "run.json"


@dataclass
class DenseOptions:
    """What to ask: a ``grid`` (columns, rows) or an ``adaptive`` set of about that many
    pixels, optionally restricted to / concentrated in ``box``; ``k`` pixels per query."""

    grid: tuple[int, int] | None = (32, 24)
    adaptive: int | None = None
    box: tuple[int, int, int, int] | None = None
    k: int = 1
    method: str = "jbu"
    seed: int = 0
    chunk_size: int = 64
    max_tokens: int | None = None
    structured: bool = False  # vLLM structured decoding of the depth template (k = 1 only)

    def describe(self) -> dict:
        d = asdict(self)
        d["sampling"] = "adaptive" if self.adaptive else "grid"
        d["query"] = (
            "depth task, one point per query" if self.k == 1 else f"points task, {self.k} points per query"
        )
        return d


@dataclass
class DenseResult:
    depth: np.ndarray  # (H, W) float32 z-depth, metres, NaN where none
    samples: list[dict]  # one per queried pixel: pixel, label, query, text, metres, z
    intrinsics: Intrinsics
    answered: str  # what the model's metres measure: "ray" or "z" (settings.depth_target)
    strategy: dict
    timing: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def points(self) -> np.ndarray:
        return np.array([s["pixel"] for s in self.samples], dtype=np.float64).reshape(-1, 2)


def pick_pixels(image: Image.Image, options: DenseOptions) -> np.ndarray:
    if options.adaptive:
        return sampling.adaptive_points(image, options.adaptive, options.box, seed=options.seed)
    if options.grid is None:
        raise DepthLMError("give a grid (e.g. 32x24) or an adaptive point count")
    return sampling.grid_points(image.size, options.grid, options.box)


def run_dense(
    backend,
    image: Image.Image,
    intrinsics: Intrinsics,
    settings: RenderSettings,
    options: DenseOptions | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
) -> DenseResult:
    """Ask `backend` (depthlm.inference.make_backend) about a grid/adaptive set of pixels of
    `image` and interpolate a dense z-depth map; with `out_dir`, resumable (see module doc)."""
    options = options or DenseOptions()
    check_intrinsics(intrinsics)
    if image.size != intrinsics.size:
        raise DepthLMError(f"photo is {image.size[0]}x{image.size[1]}, intrinsics describe {intrinsics.size}")
    if options.box is not None:
        options.box = sampling.check_box(options.box, image.size)
    timing: dict[str, float] = {}
    t = time.perf_counter()
    pixels = pick_pixels(image, options)
    groups = strategy.group_points(pixels, options.k, intrinsics, settings, options.seed)
    timing["sample"] = time.perf_counter() - t

    plan = _plan_digest(image, intrinsics, settings, options, backend)
    timing["render"] = 0.0
    rows = _ask(
        backend, image, intrinsics, pixels, groups, settings, options, plan, out_dir, progress, timing
    )

    t = time.perf_counter()
    samples = _samples(rows, intrinsics, settings)
    pts = np.array([s["pixel"] for s in samples], dtype=np.float64).reshape(-1, 2)
    z = np.array([np.nan if s["z"] is None else s["z"] for s in samples], dtype=np.float64)
    depth = densify(pts, z, image, options.method)
    if options.box is not None and not options.adaptive:
        x0, y0, x1, y1 = options.box
        keep = np.zeros(depth.shape, dtype=bool)
        keep[y0 : y1 + 1, x0 : x1 + 1] = True
        depth[~keep] = np.nan
    timing["interpolate"] = time.perf_counter() - t
    answered = int(np.isfinite(z).sum())
    stats = {
        "queries": len(groups),
        "points": len(samples),
        "answered_points": answered,
        "missing_points": len(samples) - answered,
        "resumed_queries": sum(1 for r in rows if r.get("resumed")),
        "visual_tokens": int(sum(r["visual_tokens"] for r in rows)),
        "generated_tokens": int(sum(r.get("new_tokens") or 0 for r in rows)),
        "points_per_query": len(samples) / max(1, len(groups)),
    }
    return DenseResult(depth, samples, intrinsics, settings.depth_target, options.describe(), timing, stats)


def visual_tokens(image: Image.Image, settings: RenderSettings) -> int:
    """Image tokens of a view on the processor grid (Qwen-VL: one token per grid x grid pixels)."""
    return (image.width // settings.grid) * (image.height // settings.grid)


def _ask(
    backend, image, intrinsics, pixels, groups, settings, options, plan, out_dir, progress, timing
) -> list[dict]:
    """Rows (one per query: pixels, labels, view pixels, answer text, token counts) for every
    group, reusing the complete chunks a previous run left in out_dir; renders chunk by chunk
    (memory: one chunk of views)."""
    chunk = max(1, int(options.chunk_size))
    n = len(groups)
    n_chunks = math.ceil(n / chunk)
    wanted = [[[float(v) for v in pixels[i]] for i in g] for g in groups]
    done: dict[int, list[dict]] = {}
    path = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _check_plan(out / RUN_FILE, plan)
        path = out / ANSWERS_FILE
        done = {
            c: rows
            for c, rows in _complete_chunks(_read_rows(path), n, chunk).items()
            if all(r["pixels"] == wanted[r["query"]] for r in rows)
        }
        _rewrite(path, [r for c in sorted(done) for r in done[c]])
        for rows in done.values():
            for r in rows:
                r["resumed"] = True
    todo = [c for c in range(n_chunks) if c not in done]
    bar = None
    if progress:
        from tqdm import tqdm

        left = sum(min(chunk, n - c * chunk) for c in todo)
        bar = tqdm(total=n, initial=n - left, desc="dense", unit="q")
    max_tokens = options.max_tokens or strategy.max_tokens_for(backend, options.k)
    gen = 0.0
    fh = open(path, "a", encoding="utf-8") if path is not None else None
    try:
        for c in todo:
            t = time.perf_counter()
            part = strategy.build_prompts(
                image, intrinsics, pixels, groups[c * chunk : (c + 1) * chunk], settings, options.k
            )
            timing["render"] += time.perf_counter() - t
            t = time.perf_counter()
            texts = backend.generate(part, max_tokens=max_tokens, structured=options.structured)
            counts = list(getattr(backend, "last_token_counts", []) or [])
            gen += time.perf_counter() - t
            rows = []
            for i, (p, text) in enumerate(zip(part, texts)):
                row = {
                    "query": c * chunk + i,
                    "chunk": c,
                    "pixels": wanted[c * chunk + i],
                    "labels": p.labels,
                    "view_pixels": [list(v) for v in p.view_pixels],
                    "text": text,
                    "visual_tokens": visual_tokens(p.image, settings),
                }
                if len(counts) == len(texts):
                    row["new_tokens"] = int(counts[i])
                rows.append(row)
            done[c] = rows
            if fh is not None:
                fh.write("".join(json.dumps(r) + "\n" for r in rows))
                fh.flush()
                os.fsync(fh.fileno())
            if bar is not None:
                bar.update(len(part))
    finally:
        if fh is not None:
            fh.close()
        if bar is not None:
            bar.close()
    timing["generate"] = gen
    return [r for c in sorted(done) for r in done[c]]


def _samples(rows: list[dict], intrinsics: Intrinsics, settings: RenderSettings) -> list[dict]:
    out = []
    for r in rows:
        found = strategy.parse_answer(r["text"], r["labels"])
        for label, pixel, view_px, metres in zip(r["labels"], r["pixels"], r["view_pixels"], found):
            z = None
            if metres is not None and math.isfinite(metres) and metres > 0:
                z = float(
                    convert_depth([metres], np.array([pixel]), intrinsics, settings.depth_target, "z")[0]
                )
            out.append(
                {
                    "pixel": pixel,
                    "label": label,
                    "query": r["query"],
                    "view_pixel": view_px,
                    "text": r["text"],
                    "metres": metres,
                    "z": z,
                }
            )
    return out


def _plan_digest(image, intrinsics, settings, options, backend) -> str:
    h = hashlib.sha256()
    h.update(np.asarray(image.convert("RGB")).tobytes())
    h.update(
        json.dumps(
            [
                intrinsics.to_list(),
                settings.to_dict(),
                options.describe(),
                str(getattr(backend, "model", "")),
            ],
            sort_keys=True,
            default=str,
        ).encode()
    )
    return h.hexdigest()[:16]


def _check_plan(path: Path, plan: str) -> None:
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("plan")
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None and old != plan:
            raise DepthLMError(
                f"{path.parent} holds a dense run of another photo, model or strategy (plan {old}, now {plan}); "
                "use a new --out folder or delete it"
            )
    from depthlm.dense.writers import write_json

    write_json({"plan": plan}, path)


def _read_rows(path: Path) -> list[dict]:
    """Rows of answers.jsonl; a torn last line (killed mid-write) ends the read."""
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


def _complete_chunks(rows: list[dict], n: int, chunk: int) -> dict[int, list[dict]]:
    by_chunk: dict[int, dict[int, dict]] = {}
    for r in rows:
        by_chunk.setdefault(int(r["chunk"]), {})[int(r["query"])] = r
    done = {}
    for c, found in by_chunk.items():
        want = range(c * chunk, min((c + 1) * chunk, n))
        if len(want) and all(i in found for i in want):
            done[c] = [found[i] for i in want]
    return done


def _rewrite(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
