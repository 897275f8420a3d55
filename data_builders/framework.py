"""The build framework: any Source -> DepthLMBench records, the same way for every dataset.

A build lists the source's frames (sorted keys), cuts the list into chunks of
`chunk_size` consecutive frames, and turns each chunk into one record shard
``OUT/records-<chunk>.jsonl``. A chunk is finished when its stats file
``OUT/.build/chunk-<chunk>.json`` exists (written atomically, last), so a killed build
resumes at the first unfinished chunk. ``--shard I/N`` takes the chunks c with
c % N == I, so a cluster job array writes disjoint files into one OUT folder, byte for
byte the files a single job would write. Each frame draws its points with its own RNG
seeded from (seed, key): the output does not depend on --num-proc or --shard.

When every chunk is finished, the build writes ``summary.json`` (counts, reject reasons,
depth histogram, settings, version) and ``rejects.jsonl`` (every skipped frame, and
every rejected label with its reason: per point for sparse frames, counted per frame and
reason for dense maps, whose labels are pixels).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import pkgutil
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

import depthlm
from data_builders.base import SOURCES, Frame, SkipFrame, Source
from data_builders.sampling import SamplingConfig, Selection, sample_dense, sample_sparse
from data_builders.sources import _checks
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, intrinsics_problem

HIST_EDGES_M = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 80.0, 120.0]
STATE_DIR = ".build"
DEPTH_DECIMALS = 6  # micrometres: far below any sensor's accuracy, keeps files short


def discover_sources() -> dict[str, type[Source]]:
    """Import every module in data_builders/sources so each registers itself."""
    import data_builders.sources as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    return SOURCES


def get_source(name: str) -> type[Source]:
    sources = discover_sources()
    if name not in sources:
        raise DepthLMError(f"unknown source {name!r}; available: {', '.join(sorted(sources))}")
    return sources[name]


def source_defaults(cls: type[Source]) -> dict[str, Any]:
    """The defaults of a source's own command-line options, by dest name."""
    parser = argparse.ArgumentParser(add_help=False)
    cls.add_arguments(parser)
    return {a.dest: a.default for a in parser._actions if a.dest != argparse.SUPPRESS}


@dataclass(frozen=True)
class BuildSettings:
    """Everything that decides the output bytes (stored in summary.json; a resumed build must match)."""

    source: str
    root: str
    split: str
    dataset: str
    seed: int
    chunk_size: int
    max_images: int | None
    copy_images: bool
    sampling: SamplingConfig
    source_options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        out["sampling"] = asdict(self.sampling)
        return out


def build(
    source: str,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike = "records",
    *,
    split: str = "train",
    points_per_image: int | None = None,
    sampling: str = "uniform",
    seed: int = 0,
    num_proc: int = 1,
    shard: str | tuple[int, int] | None = None,
    max_images: int | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    edge_threshold: float | None = None,
    edge_radius: int = 1,
    border: int | None = None,
    copy_images: bool = False,
    chunk_size: int = 64,
    dataset: str | None = None,
    export_hf: str | os.PathLike | None = None,
    progress: bool = True,
    **source_options: Any,
) -> dict:
    """Build records from `source` (a registered name) reading `root` into `out`.

    Returns the summary (or, for a shard whose siblings are unfinished, its own counts).
    Defaults left as None come from the source's ``build_defaults``, then from the split:
    1 point per image for train (the paper's best), 100 for val/test.
    """
    cls = get_source(source)
    defaults = dict(cls.build_defaults)
    options = source_defaults(cls)
    unknown = set(source_options) - set(options)
    if unknown:
        known = ", ".join(sorted(options)) or "none"
        raise DepthLMError(
            f"unknown option(s) for source {source!r}: {', '.join(sorted(unknown))} (known: {known})"
        )
    options.update(source_options)
    if root is None and cls.needs_root:
        raise DepthLMError(f"source {source!r} needs --root (the folder of the raw dataset)")
    if root is not None and cls.needs_root and not Path(root).exists():
        raise DepthLMError(f"--root {root} does not exist")
    if split not in cls.splits:
        raise DepthLMError(f"source {source!r} has no split {split!r} (available: {', '.join(cls.splits)})")

    def pick(value, key, fallback):
        return value if value is not None else defaults.get(key, fallback)

    ppi = pick(points_per_image, "points_per_image", 1 if split == "train" else 100)
    try:
        cfg = SamplingConfig(
            points_per_image=int(ppi),
            mode=sampling,
            min_depth=float(pick(min_depth, "min_depth", 0.0)),
            max_depth=pick(max_depth, "max_depth", None),
            edge_threshold=float(pick(edge_threshold, "edge_threshold", 0.1)),
            edge_radius=int(edge_radius),
            border=int(pick(border, "border", 0)),
        )
    except ValueError as err:
        raise DepthLMError(str(err)) from None
    src = cls(Path(root) if root is not None else Path("."), split, argparse.Namespace(**options))
    src.requested_dataset = dataset  # the --dataset name, for sources whose conventions depend on it
    settings = BuildSettings(
        source=source,
        root=str(Path(root).resolve()) if root is not None else "",
        split=split,
        dataset=dataset or getattr(src, "dataset", "") or source,
        seed=int(seed),
        chunk_size=int(chunk_size),
        max_images=max_images,
        copy_images=bool(copy_images),
        sampling=cfg,
        source_options={k: _plain(v) for k, v in sorted(options.items())},
    )
    result = Builder(src, settings, Path(out)).run(
        num_proc=num_proc, shard=parse_shard(shard), progress=progress
    )
    if export_hf is not None and result.get("complete"):
        from data_builders.export import to_hf_dataset

        to_hf_dataset(out, export_hf)
    return result


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        i, n = (int(v) for v in (shard.split("/") if isinstance(shard, str) else shard))
    except ValueError:
        raise DepthLMError(f"--shard must look like I/N (e.g. 3/16), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise DepthLMError(f"--shard I/N needs 0 <= I < N, got {shard!r}")
    return i, n


def frame_seed(seed: int, key: str) -> np.random.SeedSequence:
    """A frame's own random stream: independent of worker, order and shard."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.SeedSequence([int(seed), *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


class Builder:
    def __init__(self, source: Source, settings: BuildSettings, out: Path):
        self.source, self.settings, self.out = source, settings, out
        self.state = out / STATE_DIR

    # --- orchestration -------------------------------------------------------------------
    def run(self, num_proc: int = 1, shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
        keys = self.list_keys()
        self.prepare(keys)
        size = self.settings.chunk_size
        chunks = [(c, keys[c * size : (c + 1) * size]) for c in range(math.ceil(len(keys) / size))]
        mine = [(c, ks) for c, ks in chunks if c % shard[1] == shard[0]]
        todo = [(c, ks) for c, ks in mine if not self.chunk_done(c)]
        bar = tqdm(
            total=sum(len(ks) for _, ks in mine),
            initial=sum(len(ks) for _, ks in mine) - sum(len(ks) for _, ks in todo),
            desc=f"build {self.settings.source}",
            unit="img",
            disable=not progress,
        )
        worker = FrameWorker(self.source, self.settings, self.out)
        flat = [k for _, ks in todo for k in ks]
        if num_proc > 1 and len(flat) > 1:
            ctx = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            )
            with ctx.Pool(num_proc, initializer=_init_worker, initargs=(worker,)) as pool:
                self.write_chunks(todo, pool.imap(_run_worker, flat, chunksize=2), bar)
        else:
            self.write_chunks(todo, map(worker, flat), bar)
        bar.close()
        return self.finalize(len(chunks), mine)

    def list_keys(self) -> list[str]:
        name, root = self.settings.source, self.source.root
        try:
            keys = list(self.source.list_frames())
        except SkipFrame as err:
            raise DepthLMError(f"{name}: {err}") from None
        except OSError as err:
            raise DepthLMError(f"{name}: cannot list frames under {root}: {err}") from None
        if not keys and type(self.source).needs_root:
            raise DepthLMError(
                f"{root} does not look like the {name} dataset: no frames found for split "
                f"{self.settings.split!r} (see `depthlm build {name} --help` for the expected layout)"
            )
        if len(set(keys)) != len(keys):
            dup = next(k for k, n in Counter(keys).items() if n > 1)
            raise DepthLMError(
                f"source {self.settings.source!r} listed frame {dup!r} twice under {self.source.root}"
            )
        if self.settings.max_images is not None:
            keys = keys[: self.settings.max_images]
        return keys

    def prepare(self, keys: list[str]) -> None:
        """Create OUT, or check that an existing build there used the same settings and frames."""
        self.state.mkdir(parents=True, exist_ok=True)
        expected = {
            "settings": self.settings.to_json(),
            "frames": len(keys),
            "frames_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        }
        path = self.state / "settings.json"
        if path.exists():
            found = self.with_new_defaults(json.loads(path.read_text()), expected)
            if found != expected:
                diff = _first_difference(found, expected)
                raise DepthLMError(
                    f"{self.out} holds a build with other settings or frames ({diff}); "
                    "use a new --out folder or delete it"
                )
        else:
            _write_atomic(path, json.dumps(expected, indent=1, sort_keys=True) + "\n")

    def with_new_defaults(self, found: dict, expected: dict) -> dict:
        """A build's recorded settings with the source options it predates (added to depthlm since,
        e.g. --objects) filled in at their defaults: an option at its default writes what the build
        wrote before, so such a build resumes; any other value still differs and is refused."""
        options = found.get("settings", {}).get("source_options")
        if not isinstance(options, dict):
            return found
        defaults = source_defaults(type(self.source))
        new = {
            k: v
            for k, v in expected["settings"].get("source_options", {}).items()
            if k not in options and k in defaults and v == defaults[k]
        }
        if not new:
            return found
        return {**found, "settings": {**found["settings"], "source_options": {**options, **new}}}

    def chunk_done(self, c: int) -> bool:
        return (self.state / f"chunk-{c:05d}.json").exists()

    def write_chunks(self, todo, results, bar) -> None:
        results = iter(results)
        for c, ks in todo:
            stats = ChunkStats()
            lines, rejects = [], []
            for key in ks:
                res = next(results)
                if res["key"] != key:  # imap keeps order; anything else is a framework bug
                    raise RuntimeError(f"result for {res['key']!r} arrived in place of {key!r}")
                stats.add(res)
                if res["record"] is not None:
                    lines.append(res["record"])
                rejects.extend(res["rejects"])
                bar.update(1)
            _write_atomic(self.out / f"records-{c:05d}.jsonl", "".join(line + "\n" for line in lines))
            _write_atomic(
                self.state / f"rejects-{c:05d}.jsonl", "".join(json.dumps(r) + "\n" for r in rejects)
            )
            _write_atomic(self.state / f"chunk-{c:05d}.json", json.dumps(asdict(stats), sort_keys=True))

    def finalize(self, n_chunks: int, mine) -> dict:
        done = [c for c in range(n_chunks) if self.chunk_done(c)]
        if len(done) < n_chunks:
            return {
                "complete": False,
                "chunks_done": len(done),
                "chunks": n_chunks,
                "message": f"{len(done)} of {n_chunks} chunks done; summary.json is written "
                "when all shards have finished (rerun without --shard to finish or check)",
            }
        total = ChunkStats()
        tmp = self.out / f"rejects.jsonl.{os.getpid()}.tmp"  # shard jobs may finish together
        with open(tmp, "w", encoding="utf-8") as fh:
            for c in range(n_chunks):
                total.merge(json.loads((self.state / f"chunk-{c:05d}.json").read_text()))
                with open(self.state / f"rejects-{c:05d}.jsonl", encoding="utf-8") as part:
                    shutil.copyfileobj(part, fh)
        os.replace(tmp, self.out / "rejects.jsonl")
        summary = total.summary(self.settings, n_chunks)
        if getattr(self.source, "convention_reports", None):  # jsonl: measured depth conventions
            summary["depth_conventions"] = self.source.convention_reports
        _write_atomic(self.out / "summary.json", json.dumps(summary, indent=1) + "\n", unique=True)
        return summary


@dataclass
class ChunkStats:
    frames: int = 0
    images: int = 0
    frame_rejects: dict = field(default_factory=dict)
    points_input: int = 0
    points: int = 0
    points_unsampled: int = 0
    point_rejects: dict = field(default_factory=dict)
    histogram: list = field(default_factory=lambda: [0] * len(HIST_EDGES_M))
    depth_min: float | None = None
    depth_max: float | None = None
    record_notes: dict = field(default_factory=dict)  # kept records lacking something, by kind

    def add(self, res: dict) -> None:
        self.frames += 1
        for note in res.get("notes", []):
            cat = reason_category(note, res["key"])
            self.record_notes[cat] = self.record_notes.get(cat, 0) + 1
        if res["frame_reason"] is not None:
            cat = reason_category(res["frame_reason"], res["key"])
            self.frame_rejects[cat] = self.frame_rejects.get(cat, 0) + 1
        else:
            self.images += 1
        self.points_input += res["n_input"]
        self.points_unsampled += res["n_unsampled"]
        for reason, n in res["point_rejects"].items():
            self.point_rejects[reason] = self.point_rejects.get(reason, 0) + n
        depths = res["depths"]
        self.points += len(depths)
        if depths:
            idx = np.searchsorted(HIST_EDGES_M, depths, side="right") - 1
            for i in idx:
                self.histogram[int(i)] += 1
            lo, hi = min(depths), max(depths)
            self.depth_min = lo if self.depth_min is None else min(self.depth_min, lo)
            self.depth_max = hi if self.depth_max is None else max(self.depth_max, hi)

    def merge(self, other: dict) -> None:
        for name in ("frames", "images", "points_input", "points", "points_unsampled"):
            setattr(self, name, getattr(self, name) + other[name])
        for name in ("frame_rejects", "point_rejects", "record_notes"):
            mine = getattr(self, name)
            for k, v in other.get(name, {}).items():
                mine[k] = mine.get(k, 0) + v
        self.histogram = [a + b for a, b in zip(self.histogram, other["histogram"])]
        for name, fn in (("depth_min", min), ("depth_max", max)):
            if other[name] is not None:
                mine = getattr(self, name)
                setattr(self, name, other[name] if mine is None else fn(mine, other[name]))

    def summary(self, settings: BuildSettings, n_chunks: int) -> dict:
        rejected_points = sum(self.point_rejects.values())
        summary = {
            "complete": True,
            "source": settings.source,
            "dataset": settings.dataset,
            "split": settings.split,
            "images": self.images,
            "points": self.points,
            "frames": {"input": self.frames, "kept": self.images, "rejected": self.frames - self.images},
            "frame_rejects": dict(sorted(self.frame_rejects.items())),
            "labels": {
                "input": self.points_input,
                "sampled": self.points,
                "unsampled": self.points_unsampled,
                "rejected": rejected_points,
            },
            "label_rejects": dict(sorted(self.point_rejects.items())),
            "depth_type": "z",
            "depth_range_m": [self.depth_min, self.depth_max],
            "depth_histogram": {
                "edges_m": HIST_EDGES_M + [None],
                "counts": self.histogram,
            },
            "record_files": n_chunks,
            "settings": settings.to_json(),
            "depthlm_version": depthlm.__version__,
        }
        if self.record_notes:  # records kept but lacking something (no segmentation, no second view)
            summary["record_notes"] = dict(sorted(self.record_notes.items()))
        return summary


def reason_category(reason: str, key: str = "") -> str:
    """The group of a reject reason in summary.json: its first ': '-separated part that says
    something once the frame key, paths, file names and numbers are taken out, so reasons of
    one kind from any frame share one category (the full text is in rejects.jsonl).

    'x/0001: depth file missing: /a/b.png' -> 'depth file missing';
    'unreadable image /a/0001.png: cannot identify image file' -> 'unreadable image';
    'absurd focal length fx=3 px' -> 'absurd focal length fx=# px'."""
    for part in reason.split(": "):
        words = [_category_word(w, key, first=i == 0) for i, w in enumerate(part.split())]
        text = re.sub(r"\(\s*\)|\[\s*\]", "", " ".join(w for w in words if w))
        text = re.sub(r"\s+", " ", text).strip(" ,;:")
        if re.search(r"[A-Za-z]{2}", text) and not re.fullmatch(r"\S*[#\d]\S*", text):  # not a lone id
            return text[:120]
    return "other"


_PATH = re.compile(r"^(/|~|\.\.?[/\\]|[A-Za-z]:\\)|[/\\].*(\d|\.[A-Za-z]\w{0,4}$)|\\")
_FILE_NAME = re.compile(r"^\w[\w.-]*\.[A-Za-z][A-Za-z0-9]{0,4}$")  # frame_0001.png, 17DRP5sb8fy.conf
_NUMBER = re.compile(r"(?<![A-Za-z0-9])[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _category_word(word: str, key: str, first: bool) -> str:
    """One word of a reason with what varies per frame removed (the key where it names the
    frame -- first, or quoted -- paths, file names) or made generic (numbers -> #)."""
    bare = word.strip("'\"()[]{},;:")
    is_key = key and bare == key and (first or word.strip("()[]{},;:")[:1] in "'\"")
    if not bare or is_key or _PATH.search(bare) or _FILE_NAME.match(bare):
        return ""
    return _NUMBER.sub("#", word)


# --- per-frame work (runs in worker processes) ----------------------------------------------


class FrameWorker:
    """Load one frame, check it, sample its points, save its image; return plain data."""

    def __init__(self, source: Source, settings: BuildSettings, out: Path):
        self.source, self.settings, self.out = source, settings, out.resolve()

    def __call__(self, key: str) -> dict:
        res = {
            "key": key,
            "record": None,
            "frame_reason": None,
            "rejects": [],
            "n_input": 0,
            "n_unsampled": 0,
        }
        res.update(point_rejects={}, depths=[], notes=[])
        try:
            frame = self.source.load(key)
            image = self.check(frame)
            sel = self.select(frame, key)
        except SkipFrame as err:
            return self.skip(res, key, str(err))
        except DepthLMError as err:
            return self.skip(res, key, f"unusable input: {err}")
        except Exception as err:  # a source bug must not kill a long build: count it, say what it was
            return self.skip(res, key, f"error in source: {type(err).__name__}: {err}")
        res["n_input"], res["n_unsampled"] = sel.n_input, sel.n_unsampled
        res["point_rejects"] = {r: len(v) for r, v in sel.rejected.items()}
        sparse = frame.depth is None
        for reason, idx in sel.rejected.items():
            line = {"key": key, "reason": reason, "labels": len(idx)}
            if sparse:
                line["points"] = idx.tolist()
            res["rejects"].append(line)
        if len(sel.depths) == 0:
            res["frame_reason"] = "no valid point left"
            res["rejects"].append({"key": key, "reason": "no valid point left", "frame": True})
            return res
        try:
            res["record"] = json.dumps(self.record(frame, key, image, sel), default=_plain)
        except (
            OSError
        ) as err:  # OUR side (disk full, quota, permissions): stop; only input faults are rejects
            raise DepthLMError(
                f"cannot write the output of frame {key} under {self.out}: {err.strerror or err} (disk full, "
                "quota or permissions?); the build stopped with this chunk unfinished: fix it and rerun "
                "the same command to complete it"
            ) from None
        except (TypeError, ValueError) as err:  # e.g. extras that JSON cannot hold
            return self.skip(res, key, f"error in source: {key}: unusable extras: {err}")
        except SkipFrame as err:  # e.g. a second view's file missing
            return self.skip(res, key, str(err))
        res["depths"] = [round(float(d), DEPTH_DECIMALS) for d in sel.depths]
        res["notes"] = [str(n) for n in frame.extras.get("notes", [])]  # kept, but lacking something
        return res

    @staticmethod
    def skip(res: dict, key: str, reason: str) -> dict:
        res["frame_reason"] = reason
        res["rejects"] = [{"key": key, "reason": reason, "frame": True}]
        res["n_input"] = res["n_unsampled"] = 0
        res["point_rejects"], res["depths"] = {}, []
        return res

    def check(self, frame: Frame) -> Image.Image | None:
        """Intrinsics, image and depth must agree; returns the decoded image if the source made one."""
        intr = frame.intrinsics
        check_intrinsics(intr)
        if frame.image is not None:
            size = frame.image.size
        else:
            if frame.image_path is None:
                raise SkipFrame("no image: the source gave neither an image nor an image path")
            size = image_size(Path(frame.image_path))
        if size != intr.size:
            raise SkipFrame(
                f"image size mismatch: expected {intr.width}x{intr.height} (the intrinsics), found "
                f"{size[0]}x{size[1]} in {frame.image_path or 'the image the source decoded'}"
            )
        if frame.depth is not None:
            if frame.depth.shape != (intr.height, intr.width):
                raise SkipFrame(
                    f"depth size mismatch: expected {intr.width}x{intr.height} (the image), "
                    f"found a {_wxh(frame.depth.shape)} depth map"
                )
            if frame.valid is not None and frame.valid.shape != frame.depth.shape:
                raise SkipFrame(
                    f"mask size mismatch: expected {intr.width}x{intr.height} (the depth map), "
                    f"found a {_wxh(frame.valid.shape)} valid mask"
                )
        elif frame.points is None or frame.point_depths is None:
            raise SkipFrame("no depth: the source gave neither a depth map nor depth points")
        elif len(np.asarray(frame.points).reshape(-1, 2)) != len(np.asarray(frame.point_depths).reshape(-1)):
            raise SkipFrame(
                f"points/depths mismatch: {len(frame.points)} points, {len(frame.point_depths)} depths"
            )
        return frame.image

    def select(self, frame: Frame, key: str) -> Selection:
        rng = np.random.default_rng(frame_seed(self.settings.seed, key))
        cfg = self.settings.sampling
        if frame.depth is not None:
            return sample_dense(frame.depth, frame.intrinsics, frame.depth_type, cfg, rng, frame.valid)
        return sample_sparse(frame.points, frame.point_depths, frame.intrinsics, frame.depth_type, cfg, rng)

    def record(self, frame: Frame, key: str, image: Image.Image | None, sel: Selection) -> dict:
        name = safe_name(key)
        if image is not None:
            path = self.out / "images" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.convert("RGB").save(path, compress_level=3)
        else:
            path = self.image_file(Path(frame.image_path), name)
        pts = sel.points
        coords = pts.astype(int).tolist() if np.all(pts == np.round(pts)) else pts.tolist()
        rec = {
            "image": os.path.relpath(path, self.out),
            "intrinsics": _intrinsics_list(frame.intrinsics),
            "pixel_coords": coords,
            "depth": [round(float(d), DEPTH_DECIMALS) for d in sel.depths],
            "depth_type": "z",
            "dataset": self.settings.dataset,
            "split": frame.split or self.settings.split,
            "id": f"{self.settings.dataset}/{frame.split or self.settings.split}/{key}",
        }
        extras = self.extras(frame, name)
        if extras:
            rec["extras"] = extras
        return rec

    def image_file(self, src: Path, name: str) -> Path:
        """Where the records point for an image file the source read: a copy under images/ with
        --copy-images, else the file itself (absolute, then written relative to the output)."""
        if not self.settings.copy_images:
            return src.resolve()
        path = self.out / "images" / f"{name}{src.suffix.lower()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        return path

    def extras(self, frame: Frame, name: str, items: dict | None = None, prefix: str = "") -> dict:
        """A frame's extras, with 2-D arrays (masks, label maps, depth maps) and images (a second
        view) saved as PNGs referenced by path, image files on disk (a release's second view,
        ``pathlib.Path``) referenced like the frame's own image; one level of nested dicts
        (``pair``) likewise."""
        out = {}
        for k, v in (frame.extras if items is None else items).items():
            if isinstance(v, dict) and items is None:
                out[k] = self.extras(frame, name, v, prefix=f"{k}-")
            elif isinstance(v, Path):
                if not v.is_file():
                    raise SkipFrame(f"extras[{prefix + k!r}]: file not found: {v}")
                out[k] = os.path.relpath(self.image_file(v, f"{name}-{safe_name(prefix + k)}"), self.out)
            elif isinstance(v, Image.Image) or (isinstance(v, np.ndarray) and v.ndim == 2):
                path = self.out / "images" / f"{name}-{safe_name(prefix + k)}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(v, Image.Image):
                    v.save(path, compress_level=3)
                else:
                    arr = v.astype(np.uint8) * 255 if v.dtype == bool else v
                    if arr.dtype not in (np.uint8, np.uint16):
                        arr = arr.astype(np.uint16)
                    Image.fromarray(arr).save(path, compress_level=3)
                out[k] = os.path.relpath(path, self.out)
            else:
                out[k] = v
        return out


_WORKER: FrameWorker | None = None


def _init_worker(worker: FrameWorker) -> None:
    global _WORKER
    _WORKER = worker


def _run_worker(key: str) -> dict:
    assert _WORKER is not None
    return _WORKER(key)


# --- small helpers -------------------------------------------------------------------------


def check_intrinsics(intr: Intrinsics) -> None:
    """depthlm's one plausibility range (depthlm.geometry), as a rejected frame."""
    problem = intrinsics_problem(intr)
    if problem is not None:
        raise SkipFrame(f"absurd intrinsics: {problem}")


def image_size(path: Path) -> tuple[int, int]:
    """Decode the image fully (a truncated file must be caught here, not at training time)."""
    return _checks.image_size(path, decode=True)


def safe_name(key: str) -> str:
    """A file name for a frame key; keys that needed changing get a short hash so names stay unique."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "frame"
    if name != key:
        name = f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return name


def _wxh(shape: tuple[int, ...]) -> str:
    """An array shape as an image size: (H, W) -> 'WxH' (other ranks as they are, reversed)."""
    return "x".join(str(n) for n in shape[::-1])


def _intrinsics_list(intr: Intrinsics) -> list:
    return [float(intr.fx), float(intr.fy), float(intr.cx), float(intr.cy), int(intr.width), int(intr.height)]


def _plain(value: Any) -> Any:
    """JSON for numpy scalars/arrays and paths (extras and options come from sources)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _write_atomic(path: Path, text: str, unique: bool = False) -> None:
    """Write then rename. Chunk files have one writer, so a fixed temp name (overwritten on
    resume) is enough; files several shard jobs may write at once use a per-process name."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _first_difference(found: dict, expected: dict, prefix: str = "") -> str:
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key), expected.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}{key}.")
            return f"{prefix}{key}: {a!r} there, {b!r} now"
    return "no difference"
