"""DepthLMBench records: one image, its intrinsics, labelled query pixels and depths.

The file format is the reference jsonl, read as is -- one object per line::

    {"image": "rgb/x.png", "intrinsics": [fx, fy, cx, cy, W, H],
     "pixel_coords": [[x, y], ...], "depth": [metres, ...]}

plus optional keys our builders write: ``depth_type`` ("z" or "ray"), ``dataset``,
``split``, ``id`` and ``extras`` (boxes, masks, ...). Unknown keys are kept in
``extras`` so a read/write round trip is lossless. Image paths are relative to the
jsonl file's folder (absolute paths stay absolute); so are the extras that name files
(EXTRAS_PATHS: ``masks``, ``depth_map``, ``pair.image``, see depthlm.tasks.extras), which
reading makes absolute under the same rule as ``image``, so a Record knows its files wherever
it is used from.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depthlm.conventions import guess_dataset, reference_depth_type
from depthlm.errors import RecordError
from depthlm.geometry import DepthType, Intrinsics, convert_depth, inside, intrinsics_problem

log = logging.getLogger(__name__)

KNOWN_KEYS = {
    "image",
    "intrinsics",
    "pixel_coords",
    "depth",
    "depth_type",
    "dataset",
    "split",
    "id",
    "extras",
}
# The extras that name files (the format of depthlm.tasks.extras), as key paths into ``extras``.
EXTRAS_PATHS: tuple[tuple[str, ...], ...] = (("masks",), ("depth_map",), ("pair", "image"))
IMAGE_ROOTS_FILE = "image_roots.json"  # folders outside a records folder its images may come from
# Reference files carry no depth_type, and what they hold depends on the dataset (z for nuScenes,
# DDAD, iBims-1; ray distance for the others): depthlm.conventions has the table and its evidence.
# REFERENCE_DEPTH_TYPE is the reading of a line whose dataset neither the line nor the file names.
REFERENCE_DEPTH_TYPE: DepthType = "ray"


@dataclass
class Record:
    image: str
    intrinsics: Intrinsics
    points: np.ndarray  # (N, 2) float64 pixel (x, y), origin top-left, pixel centres at integers
    depths: np.ndarray  # (N,) float64 metres, of kind depth_type
    depth_type: DepthType = REFERENCE_DEPTH_TYPE
    dataset: str = ""
    split: str = ""
    id: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        self.depths = np.asarray(self.depths, dtype=np.float64).reshape(-1)
        if not self.id:
            self.id = f"{self.dataset}/{self.image}" if self.dataset else self.image

    def __len__(self) -> int:
        return len(self.depths)

    def depths_as(self, depth_type: DepthType) -> np.ndarray:
        """Depths of every point as z-depth or ray distance (conversion lives in geometry)."""
        return convert_depth(self.depths, self.points, self.intrinsics, self.depth_type, depth_type)

    def to_json(self, base_dir: str | os.PathLike | None = None) -> dict:
        image = self.image
        if base_dir is not None and os.path.isabs(image):
            try:
                image = os.path.relpath(image, base_dir)
            except ValueError:  # other drive (Windows)
                pass
        pts = self.points
        coords = pts.astype(int).tolist() if np.all(pts == np.round(pts)) else pts.tolist()
        out = {
            "image": image,
            "intrinsics": _plain(self.intrinsics.to_list()),
            "pixel_coords": coords,
            "depth": self.depths.tolist(),
            "depth_type": self.depth_type,
        }
        for key in ("dataset", "split", "id"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.extras:
            out["extras"] = self.extras if base_dir is None else relative_extras(self.extras, base_dir)
        return out


@dataclass
class Reject:
    """Something left out while reading, and why (never dropped silently)."""

    file: str
    line: int | None
    reason: str
    field: str | None = None
    point: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = f" point {self.point}" if self.point is not None else ""
        fld = f" [{self.field}]" if self.field else ""
        return f"{where}{what}{fld}: {self.reason}".replace("\n", "\\n").replace("\r", "\\r")  # one line


def parse_record(
    obj: dict,
    base_dir: Path,
    *,
    file: str = "<record>",
    line: int | None = None,
    check_image: bool = True,
    rejects: list[Reject] | None = None,
    default_depth_type: DepthType | None = None,
    dataset_hint: str | None = None,
    image_roots: Sequence[str | os.PathLike] | None = (),
) -> Record:
    """Validate one json object. Bad points are dropped (and listed in rejects);
    a record that cannot be used at all raises RecordError naming file, line and field.

    Depth kind: the line's own ``depth_type``, else `default_depth_type` (a caller's override),
    else the convention of the line's ``dataset`` or of `dataset_hint` (depthlm.conventions),
    else REFERENCE_DEPTH_TYPE.

    A relative image path (the reference format) must stay in `base_dir` or one of
    `image_roots` once symlinks are resolved: a file from elsewhere must not walk out of its
    folder (``../``, a symlink out) to make depthlm read, train on or show other files.
    Absolute paths are the author's explicit statement and kept; image_roots=None allows any
    path (the caller's explicit choice). The extras that name files (EXTRAS_PATHS) follow the
    same rule and are made absolute the same way (field ``extras.masks``, ``extras.pair.image``)."""
    rejects = rejects if rejects is not None else []

    def fail(msg: str, fld: str | None = None):
        raise RecordError(msg, file=file, line=line, field=fld)

    if not isinstance(obj, dict):
        fail("record is not a JSON object")
    for key in ("image", "intrinsics", "pixel_coords", "depth"):
        if key not in obj:
            fail("missing key", key)
    if not isinstance(obj["image"], str) or not obj["image"]:
        fail("image must be a non-empty path string", "image")
    if any(ord(c) < 32 for c in obj["image"]):
        fail(f"image path {obj['image']!r} contains control characters", "image")
    image = os.path.abspath(os.path.join(base_dir, obj["image"]))  # absolute paths stay as they are
    relative = not os.path.isabs(obj["image"])  # an absolute path is the author's explicit choice
    if relative and image_roots is not None and not _inside_any(image, [base_dir, *image_roots]):
        fail(
            f"image path {obj['image']!r} leaves the records folder {base_dir} (resolves to "
            f"{os.path.realpath(image)}); if you trust this file, allow its folder with "
            "DEPTHLM_IMAGE_ROOTS (or read with allow_outside_images=True)",
            "image",
        )
    if check_image and not os.path.isfile(image):
        fail(f"image file not found: {image}", "image")
    extras_in = obj.get("extras")
    if extras_in is not None and not isinstance(extras_in, dict):
        fail(f"extras must be a JSON object, got {type(extras_in).__name__}", "extras")
    try:
        values = [float(v) for v in obj["intrinsics"]]
    except (TypeError, ValueError, OverflowError):
        fail("intrinsics must be 6 numbers [fx, fy, cx, cy, W, H]", "intrinsics")
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        fail(
            f"intrinsics must be 6 finite numbers [fx, fy, cx, cy, W, H], got {obj['intrinsics']!r}",
            "intrinsics",
        )
    intr = Intrinsics.from_list(values)
    problem = intrinsics_problem(intr)  # the one plausibility range: build, eval and render agree
    if problem is not None:
        fail(problem, "intrinsics")
    try:
        pts = np.asarray(obj["pixel_coords"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        fail("pixel_coords must be [[x, y], ...] numbers", "pixel_coords")
    try:
        depths = np.asarray(obj["depth"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        fail("depth must be a list of numbers (metres)", "depth")
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        fail(f"pixel_coords must be a list of [x, y] pairs, got shape {pts.shape}", "pixel_coords")
    if depths.ndim != 1 or len(depths) != len(pts):
        fail(f"{len(pts)} pixel_coords but {depths.size} depths", "depth")
    depth_type = obj.get("depth_type") or default_depth_type
    if depth_type is None:
        depth_type = reference_depth_type(obj.get("dataset") or dataset_hint, REFERENCE_DEPTH_TYPE)
    if depth_type not in ("z", "ray"):
        fail(f"depth_type must be 'z' or 'ray', got {depth_type!r}", "depth_type")

    keep = np.ones(len(depths), dtype=bool)
    bad_depth = ~np.isfinite(depths) | (depths <= 0)
    bad_pixel = ~np.all(np.isfinite(pts), axis=1) | ~inside(np.nan_to_num(pts, nan=-1e9), intr.size)
    for i in np.flatnonzero(bad_depth | bad_pixel):
        if bad_pixel[i]:
            reason, fld = (
                f"pixel {pts[i].tolist()} outside the {intr.width}x{intr.height} image",
                "pixel_coords",
            )
        else:
            reason, fld = f"depth {depths[i]!r} is not a positive finite number", "depth"
        rejects.append(Reject(file, line, reason, fld, int(i)))
        keep[i] = False
    extras = dict(extras_in or {})
    extras.update({k: v for k, v in obj.items() if k not in KNOWN_KEYS})
    for keys, value in extras_files(extras):
        fld = "extras." + ".".join(keys)
        if not value or any(ord(c) < 32 for c in value):
            fail(f"{fld} must be a path string without control characters, got {value!r}", fld)
        path = os.path.abspath(os.path.join(base_dir, value))
        if (
            not os.path.isabs(value)
            and image_roots is not None
            and not _inside_any(path, [base_dir, *image_roots])
        ):
            fail(
                f"{fld} path {value!r} leaves the records folder {base_dir} (resolves to "
                f"{os.path.realpath(path)}); if you trust this file, allow its folder with "
                "DEPTHLM_IMAGE_ROOTS (or read with allow_outside_images=True)",
                fld,
            )
        extras = with_extras_path(extras, keys, path)
    return Record(
        image=image,
        intrinsics=intr,
        points=pts[keep],
        depths=depths[keep],
        depth_type=depth_type,
        dataset=str(obj.get("dataset", "")),
        split=str(obj.get("split", "")),
        id=str(obj.get("id", "")),
        extras=extras,
    )


def extras_files(extras: dict) -> list[tuple[tuple[str, ...], str]]:
    """(key path, value) of each EXTRAS_PATHS entry of `extras` that holds a string. Other values
    are left to the readers (depthlm.tasks.extras), which name the record and key."""
    out = []
    for keys in EXTRAS_PATHS:
        value: object = extras
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            out.append((keys, value))
    return out


def relative_extras(extras: dict, base_dir: str | os.PathLike) -> dict:
    """`extras` with its absolute EXTRAS_PATHS relative to `base_dir` (as to_json writes image)."""
    for keys, value in extras_files(extras):
        if os.path.isabs(value):
            try:
                extras = with_extras_path(extras, keys, os.path.relpath(value, base_dir))
            except ValueError:  # other drive (Windows)
                pass
    return extras


def with_extras_path(extras: dict, keys: tuple[str, ...], value: object) -> dict:
    """A copy of `extras` with the path at `keys` replaced (nested dicts copied, never mutated)."""
    out = dict(extras)
    if len(keys) == 1:
        out[keys[0]] = value
    else:
        out[keys[0]] = with_extras_path(out[keys[0]], keys[1:], value)
    return out


def record_files(path: str | os.PathLike) -> list[Path]:
    """A jsonl file, or every records jsonl in a folder (sorted; rejects.jsonl excluded)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise RecordError(f"no such file or folder: {p}")
    files = sorted(f for f in p.glob("*.jsonl") if f.name != "rejects.jsonl")
    if not files:
        raise RecordError(f"no .jsonl record files in {p}")
    return files


def iter_records(
    path: str | os.PathLike,
    *,
    strict: bool = False,
    check_images: bool = True,
    rejects: list[Reject] | None = None,
    default_depth_type: DepthType | None = None,
    dataset: str | None = None,
    allow_outside_images: bool = False,
) -> Iterator[Record]:
    """Stream records. Unusable records are skipped and listed in `rejects`
    (or raise with strict=True); records left with no valid point are skipped too.
    Lines without depth_type are read by their dataset's convention (`dataset`, else the
    file's or folder's name, depthlm.conventions) unless `default_depth_type` overrides it.

    Files are untrusted: a line that is not UTF-8 or not JSON is one reject, never the end
    of the job. Images must lie in the file's folder, or in the raw dataset a `depthlm build`
    there read (its settings name it), unless `allow_outside_images`."""
    rejects = rejects if rejects is not None else []
    for file in record_files(path):
        roots = None if allow_outside_images else build_roots(file.parent)
        with open(file, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise RecordError(
                            f"not valid UTF-8 (byte {err.start} of the line)", file=str(file), line=lineno
                        ) from None
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as err:
                        raise RecordError(f"invalid JSON: {err.msg}", file=str(file), line=lineno) from None
                    except RecursionError:
                        raise RecordError(
                            "invalid JSON: nested too deeply", file=str(file), line=lineno
                        ) from None
                    n_before = len(rejects)
                    rec = parse_record(
                        obj,
                        file.parent,
                        file=str(file),
                        line=lineno,
                        check_image=check_images,
                        rejects=rejects,
                        default_depth_type=default_depth_type,
                        dataset_hint=dataset or guess_dataset(file),
                        image_roots=roots,
                    )
                    if strict and len(rejects) > n_before:
                        raise RecordError(str(rejects[-1]))
                    if len(rec) == 0:
                        raise RecordError("no valid labelled point left", file=str(file), line=lineno)
                except RecordError as err:
                    if strict:
                        raise
                    rejects.append(Reject(str(file), lineno, str(err).split(": ", 1)[-1], err.field))
                    continue
                if dataset is not None and not rec.dataset:
                    rec.dataset = dataset
                    rec.id = f"{dataset}/{rec.id}"
                yield rec


def read_records(
    path: str | os.PathLike,
    *,
    strict: bool = False,
    check_images: bool = True,
    rejects: list[Reject] | None = None,
    default_depth_type: DepthType | None = None,
    dataset: str | None = None,
    allow_outside_images: bool = False,
) -> list[Record]:
    """Read a jsonl file or folder of them. Problems go to `rejects` (pass a list to get
    them) and are summarised in a warning; strict=True raises on the first one."""
    own = [] if rejects is None else rejects
    n0 = len(own)
    records = list(
        iter_records(
            path,
            strict=strict,
            check_images=check_images,
            rejects=own,
            default_depth_type=default_depth_type,
            dataset=dataset,
            allow_outside_images=allow_outside_images,
        )
    )
    if len(own) > n0:
        shown = "; ".join(str(r) for r in own[n0 : n0 + 3])
        log.warning("%s: %d problem(s) skipped while reading, e.g. %s", path, len(own) - n0, shown)
    return records


def build_roots(folder: Path) -> list[Path]:
    """Folders outside `folder` whose images its records may use: what depthlm itself wrote
    there says so (a `depthlm build` names the raw dataset it read -- image paths point into
    it unless --copy-images; write_records lists the folders of the images it referenced),
    plus any in the DEPTHLM_IMAGE_ROOTS environment variable (os.pathsep-separated)."""
    roots = [Path(r) for r in os.environ.get("DEPTHLM_IMAGE_ROOTS", "").split(os.pathsep) if r]
    for name in ("summary.json", os.path.join(".build", "settings.json")):
        try:
            root = json.loads((folder / name).read_text(encoding="utf-8"))["settings"]["root"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
            continue
        if isinstance(root, str) and root and "\x00" not in root and os.path.isabs(root):
            path = Path(root)
            roots.append(path.parent if path.is_file() else path)  # the jsonl source's root is a file
    return roots + [Path(r) for r in _listed_roots(folder / IMAGE_ROOTS_FILE)]


def _listed_roots(file: Path) -> list[str]:
    try:
        listed = json.loads(file.read_text(encoding="utf-8"))["image_roots"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return []
    if not isinstance(listed, list):
        return []
    return [r for r in listed if isinstance(r, str) and r and "\x00" not in r and os.path.isabs(r)]


def _inside_any(path: str, roots: Sequence[str | os.PathLike]) -> bool:
    """Whether `path`, symlinks resolved, lies in one of `roots` (symlinks resolved too)."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write records as jsonl, images relative to the file's folder. Returns the count.

    Images (and extras files) outside the folder (a derived set pointing at another set's
    images) are allowed on reading because the folder's IMAGE_ROOTS_FILE, written here, names
    their folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    folder = p.parent.resolve()
    n, outside = 0, set()
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_json(folder)) + "\n")
            for path in [rec.image, *(v for _, v in extras_files(rec.extras) if os.path.isabs(v))]:
                if not _inside_any(path, [folder]):
                    outside.add(os.path.dirname(os.path.realpath(path)))
            n += 1
    if outside:
        roots_file = folder / IMAGE_ROOTS_FILE
        known = set(_listed_roots(roots_file))
        if not outside <= known:
            roots_file.write_text(json.dumps({"image_roots": sorted(known | outside)}, indent=1) + "\n")
    os.replace(tmp, p)
    return n


def _plain(values: list[float]) -> list[float | int]:
    return [int(v) if float(v).is_integer() and i >= 4 else v for i, v in enumerate(values)]
