"""A DepthLMBench record as a `datasets` row: the one schema of training data and the parquet export.

Why one schema: a jsonl set (validated by depthlm.records) and a parquet set written by
``data_builders/export.py`` become datasets of the same features, so ``interleave_datasets``
mixes them and one transform renders both. ``image`` is a ``datasets.Image`` struct
``{"bytes", "path"}``: the parquet export embeds the bytes, a jsonl row names the file on disk.

``extras_files`` holds the bytes of the files a record's extras name (``masks``, ``depth_map``,
``pair.image``: depthlm.records.EXTRAS_PATHS) as ``[{"key": "pair.image", "bytes": ...}]``, so a
parquet set answers ``region`` and ``motion`` on any machine. Reading such a row writes each file
once into a cache folder named by the sha256 of its bytes (:func:`extras_cache_dir`) and points
the record's extras there, so the tasks read them by path as they read a jsonl set's files. A
jsonl row (and a parquet set exported before the column existed) has an empty list: its extras
keep their paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.records import EXTRAS_PATHS, Record, with_extras_path

EXTRAS_FILES = "extras_files"  # the column of embedded extras files
EXTRAS_KEYS = {".".join(keys): keys for keys in EXTRAS_PATHS}  # "pair.image" -> ("pair", "image")
CACHE_ENV = "DEPTHLM_CACHE"  # depthlm's cache folder; default ~/.cache/depthlm (or XDG_CACHE_HOME)


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
            EXTRAS_FILES: extras_files_feature(),
        }
    )


def extras_files_feature():
    """``extras_files``: one ``{"key", "bytes"}`` per embedded extras file (keys of EXTRAS_KEYS)."""
    import datasets

    return datasets.List({"key": datasets.Value("string"), "bytes": datasets.Value("binary")})


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
    EXTRAS_FILES,
)


def record_row(
    record: Record,
    *,
    image_bytes: bytes | None = None,
    image_path: str | None = None,
    extras_bytes: Mapping[str, bytes] | None = None,
) -> dict:
    """The row of a validated record: the image embedded when ``image_bytes`` is given, else named.
    ``extras_bytes`` ({"masks": bytes, ...}, keys of EXTRAS_KEYS) embeds extras files (the export);
    without it the extras keep their paths (jsonl sets)."""
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
        EXTRAS_FILES: [{"key": k, "bytes": v} for k, v in sorted((extras_bytes or {}).items())],
    }


def row_record(row: dict) -> tuple[Record, Image.Image | None]:
    """One row -> (Record, its image decoded as RGB when the row embeds it, else None: read from disk).

    ``Record.image`` is the path on disk (jsonl rows) or the exported record's path (provenance);
    embedded extras files are materialised in the cache and the extras point there (:func:`row_extras`)."""
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
        extras=row_extras(row),
    )
    return record, None if decoded is None else decoded.convert("RGB")


def row_extras(row: Mapping) -> dict:
    """The row's extras, each embedded file's path replaced by its cached copy (written once).

    The path an embedded key had at export (relative to the exported folder: provenance) gives
    the cached copy its suffix, so a ``.npy`` depth map is still read as one. A row without the
    column (jsonl, an older export) keeps its extras as they are."""
    extras = json.loads(row["extras"]) if row.get("extras") else {}
    rid = row.get("id")
    for entry in row.get(EXTRAS_FILES) or ():
        key, data = entry.get("key"), entry.get("bytes")
        keys = EXTRAS_KEYS.get(key)
        if keys is None:
            raise DepthLMError(
                f"record {rid}: {EXTRAS_FILES} holds key {key!r}, not one of {', '.join(EXTRAS_KEYS)}"
            )
        if data is None:
            raise DepthLMError(f"record {rid}: {EXTRAS_FILES} entry {key!r} holds no bytes")
        value: object = extras
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if not isinstance(value, str):
            raise DepthLMError(
                f"record {rid}: {EXTRAS_FILES} embeds {key!r} but its extras name no {key} path"
            )
        extras = with_extras_path(extras, keys, str(materialise(data, _suffix(value))))
    return extras


def _suffix(path: str) -> str:
    """The file's extension when it is a plain one (``.png``, ``.npy``), else none."""
    suffix = os.path.splitext(path)[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def extras_cache_dir() -> Path:
    """Where embedded extras files are materialised: ``$DEPTHLM_CACHE/extras``, else
    ``$XDG_CACHE_HOME/depthlm/extras``, else ``~/.cache/depthlm/extras``."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "depthlm")
    return Path(root) / "extras"


def materialise(data: bytes, suffix: str = "") -> Path:
    """The cached file holding ``data``: ``<cache>/<h[:2]>/<h><suffix>``, h = sha256 of the bytes.

    Why this way: dataloader workers and ranks read the same rows at once. A file is written under
    a temporary name in its folder, then hard-linked to its name, which never replaces a file that
    is there (where links are not supported: renamed, atomic, the same bytes). A reader sees the
    whole file or none, and a file already there with this hash (and size) is never written again."""
    digest = hashlib.sha256(data).hexdigest()
    folder = extras_cache_dir() / digest[:2]
    path = folder / f"{digest}{suffix}"
    try:
        if path.stat().st_size == len(data):
            return path
        exists = True  # not a file we wrote (its size is wrong): replaced below
    except FileNotFoundError:
        exists = False
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if exists:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:  # another worker or rank wrote it first
                pass
            except OSError:  # no hard links on this file system
                os.replace(tmp, path)
    except OSError as err:
        raise DepthLMError(f"cannot write {path} in the extras cache (set {CACHE_ENV}): {err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
