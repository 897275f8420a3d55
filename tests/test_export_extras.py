"""The parquet export embeds the files a record's extras name (issue 13), so region and motion
train from a parquet set on a machine without the records folder.

Ground truth comes from outside the parquet path: the set is built as ``depthlm build synthetic
--depth-map --second-view`` writes it (docs/tasks.md: every record names ``masks``, ``depth_map``
and ``pair.image``), every question, truth and image is taken from the jsonl set BEFORE its folder
is deleted, the embedded bytes are checked against the files' sha256 (hashlib on the files on
disk, the parquet read with pyarrow, not our reader), and the jsonl training rows against the
documented slot rule (rng ``[seed, 0, slot]`` -> TaskMix). Then the folder is deleted and the
parquet alone must give the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_helpers import task_scenes

from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import EXTRAS_PATHS, extras_files, read_records
from depthlm.training.config import DataArguments, render_settings
from depthlm.training.data import build_dataset
from depthlm.training.rows import EXTRAS_FILES, materialise, row_extras

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(f_uni=150, max_pixels=18816, train_crop=False)
MIX = "depth=1,region=2,motion=2"
KEYS = sorted(".".join(k) for k in EXTRAS_PATHS)  # "depth_map", "masks", "pair.image"
N = 8  # records


def asked(query) -> tuple:
    """What a user relies on in a query: the truth, the question and every image's pixels."""
    return query.truth, query.question, [(im.size, im.tobytes()) for im in query.images]


def region_and_motion(record, image=None) -> dict:
    s = render_settings(DataArguments(record_sets=["x"], **SMALL))
    seed = int(record.id.rsplit("/", 1)[-1])
    return {
        name: asked(tasks.get(name).query(record, s, np.random.default_rng([seed, k]), image=image))
        for k, name in enumerate(("region", "motion"))
    }


def training_rows(record_sets: list[str], *, streaming: bool = False) -> tuple[list, list]:
    """Epoch 0's rendered rows (messages, image bytes) and the record ids they came from."""
    args = DataArguments(
        record_sets=record_sets, tasks=MIX, samples_per_epoch=24, streaming=streaming, **SMALL
    )
    ds, renderer = build_dataset(args, render_settings(args), seed=4)
    rows = list(ds) if streaming else [ds[i] for i in range(len(ds))]
    sources = list(renderer.source) if streaming else [renderer.source[i] for i in range(len(ds))]
    shown = [(r["messages"], [(i.size, i.tobytes()) for i in r["images"]]) for r in rows]
    return shown, [s["id"] for s in sources]


def slot_rule(records, ids: list[str]) -> list:
    """The documented rows: slot i renders TaskMix(MIX) of its record with rng [seed, 0, i]."""
    from depthlm.tasks.mix import TaskMix

    by_id = {r.id: r for r in records}
    settings = render_settings(DataArguments(record_sets=["x"], tasks=MIX, **SMALL))
    rows = []
    for slot, rid in enumerate(ids):
        query = TaskMix(MIX).query(by_id[rid], settings, np.random.default_rng([4, 0, slot]), train=True)
        ex = query.sft_example()
        rows.append((ex["messages"], [(i.size, i.tobytes()) for i in ex["images"]]))
    return rows


def no_parquet_shutdown_sleep(monkeypatch) -> None:
    """datasets sleeps 5 s each time a streamed parquet iterator closes (a pyarrow thread-shutdown
    workaround, datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN): 40 s of this module's minute."""
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The schema of an export made before extras files were embedded (docs/data-builders.md "Export"
# before this change): ten columns, extras as JSON with the files' absolute paths.
def old_features():
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


def write_old_export(records, base: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats = old_features()
    rows = [
        feats.encode_example(
            {
                "image": {"bytes": Path(r.image).read_bytes(), "path": os.path.relpath(r.image, base)},
                "image_path": os.path.relpath(r.image, base),
                "intrinsics": list(r.intrinsics.to_list()),
                "pixel_coords": r.points.tolist(),
                "depth": r.depths.tolist(),
                "depth_type": r.depth_type,
                "dataset": r.dataset,
                "split": r.split,
                "id": r.id,
                "extras": json.dumps(r.extras, sort_keys=True),
            }
        )
        for r in records
    ]
    (out / "data").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=feats.arrow_schema), out / "data" / "train-00000-of-00001.parquet"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Everything taken from the jsonl set, then its export, then the set's folder deleted."""
    from data_builders.export import to_hf_dataset

    root = tmp_path_factory.mktemp("export-extras")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPTHLM_CACHE", str(root / "cache"))
        src = task_scenes(root / "set", num_images=N)
        records = read_records(src)
        before = {
            "asked": {r.id: region_and_motion(r) for r in records},
            "files": {
                r.id: {".".join(k): sha(Path(v).read_bytes()) for k, v in extras_files(r.extras)}
                for r in records
            },
            "pixels": {r.id: sha(Image.open(r.image).convert("RGB").tobytes()) for r in records},
            "rows": training_rows([str(src)]),
            "streamed": training_rows([str(src)], streaming=True),
            "extras": {r.id: r.extras for r in records},
        }
        before["slot_rule"] = slot_rule(records, before["rows"][1])
        info = to_hf_dataset(src, root / "hf")
        write_old_export(records, src, root / "old")
        shutil.rmtree(src)  # the parquet alone, as on another machine
        assert not (root / "cache").exists()  # exporting materialises nothing
        yield {
            "root": root,
            "hf": root / "hf",
            "old": root / "old",
            "info": info,
            "before": before,
            "records": records,
        }


def test_the_export_embeds_every_extras_file_byte_for_byte(world):
    """Read with pyarrow (not our reader): each row holds masks, depth_map and pair.image, the
    bytes of the files the jsonl named; the extras name them relative to the set, as image_path."""
    import pyarrow.parquet as pq

    info = world["info"]
    assert info["rows"] == N and info["extras_embedded"] == 3 * N
    assert info["extras_not_embedded"] == 0 and info["extras_missing"] == []
    table = pq.read_table(info["files"][0]).to_pylist()
    assert [r["id"] for r in table] == [r.id for r in world["records"]]
    for row in table:
        files = {e["key"]: sha(e["bytes"]) for e in row[EXTRAS_FILES]}
        assert sorted(files) == KEYS and files == world["before"]["files"][row["id"]]
        extras = json.loads(row["extras"])
        assert re.fullmatch(r"images/\d+-masks\.png", extras["masks"]), extras["masks"]
        assert not os.path.isabs(extras["pair"]["image"]) and not os.path.isabs(extras["depth_map"])


def test_region_and_motion_from_the_parquet_alone_ask_what_the_jsonl_asked(world):
    from data_builders.export import read_hf_records

    before = world["before"]
    got = list(read_hf_records(world["hf"]))
    assert [r.id for r, _ in got] == list(before["asked"])
    cache = world["root"] / "cache" / "extras"
    for record, image in got:
        assert sha(image.tobytes()) == before["pixels"][record.id]
        assert region_and_motion(record, image) == before["asked"][record.id]
        for keys, path in extras_files(record.extras):  # each a cached copy named by its hash
            p = Path(path)
            assert (
                p.parent.parent == cache
                and sha(p.read_bytes()) == p.stem == before["files"][record.id][".".join(keys)]
            )
        orig = before["extras"][record.id]  # everything but the paths is the record's own
        assert {k: v for k, v in record.extras.items() if k not in ("masks", "depth_map", "pair")} == {
            k: v for k, v in orig.items() if k not in ("masks", "depth_map", "pair")
        }
        assert {k: v for k, v in record.extras["pair"].items() if k != "image"} == {
            k: v for k, v in orig["pair"].items() if k != "image"
        }
    assert len(list(cache.rglob("*.png"))) == len({h for f in before["files"].values() for h in f.values()})


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_training_rows_from_the_parquet_equal_the_jsonl_rows(world, streaming, monkeypatch):
    """A region/motion/depth mix: the same slots give the same questions, answers and pixels, and
    both carry region and motion rows (a missing file would have made the mix draw depth)."""
    no_parquet_shutdown_sleep(monkeypatch)
    want = world["before"]["streamed" if streaming else "rows"]
    got = training_rows([str(world["hf"])], streaming=streaming)
    assert got[1] == want[1]  # the same records in the same slots
    assert got[0] == want[0]
    questions = [m[0]["content"][-1]["text"] for m, _ in got[0]]
    assert any("green box" in q for q in questions) and any("camera move" in q for q in questions)


def test_jsonl_rows_follow_the_slot_rule_unchanged(world):
    """The jsonl rows are what TaskMix renders from the records as read from the jsonl for slot i
    with rng [seed, 0, i] (both taken before deletion): the new column changes nothing for jsonl."""
    rows, ids = world["before"]["rows"]
    assert rows == world["before"]["slot_rule"]
    assert len(set(ids)) == N  # every record served


def test_an_export_made_before_the_column_reads_as_before(world, tmp_path, monkeypatch):
    """A parquet set with no extras_files column: the records keep the extras they had (absolute
    paths of the building machine), nothing is cached, and it still trains and mixes with a new export."""
    from data_builders.export import read_hf_records

    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path / "cache"))
    no_parquet_shutdown_sleep(monkeypatch)
    got = list(read_hf_records(world["old"], streaming=False))
    assert [r.extras for r, _ in got] == [world["before"]["extras"][r.id] for r, _ in got]
    assert [sha(im.tobytes()) for _, im in got] == [world["before"]["pixels"][r.id] for r, _ in got]
    assert not (tmp_path / "cache").exists()
    for sets in ([world["old"]], [world["old"], world["hf"]]):  # alone, and mixed with a new export
        for streaming in (False, True):
            args = DataArguments(
                record_sets=[str(p) for p in sets],
                mixing_weights=[1.0] * len(sets),
                samples_per_epoch=12,
                streaming=streaming,
                **SMALL,
            )
            ds, _ = build_dataset(args, render_settings(args), seed=1)
            rows = list(ds) if streaming else [ds[i] for i in range(len(ds))]
            assert len(rows) == 12 and sorted(rows[0]) == ["images", "messages"], sorted(rows[0])
    # its region/motion files are gone with the folder: said per record, as before
    s = render_settings(DataArguments(record_sets=["x"], **SMALL))
    with pytest.raises(tasks.TaskError, match=r"region: extras masks file not found: /"):
        tasks.get("region").query(got[0][0], s, np.random.default_rng(0), image=got[0][1])


def test_an_unreadable_extras_file_is_counted_named_and_left_as_a_path(tmp_path, monkeypatch, caplog):
    from data_builders.export import read_hf_records, to_hf_dataset

    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path / "cache"))
    src = task_scenes(tmp_path / "set", num_images=2)
    (rec0, rec1) = read_records(src)
    Path(rec1.extras["masks"]).unlink()
    with caplog.at_level(logging.WARNING, logger="data_builders.export"):
        info = to_hf_dataset(src, tmp_path / "hf", max_shard_bytes=1)  # a shard per record
    assert info["rows"] == 2 and info["extras_embedded"] == 5 and info["extras_not_embedded"] == 1
    assert [Path(f).name for f in info["files"]] == [f"train-0000{i}-of-00002.parquet" for i in (0, 1)]
    gone = rec1.extras["masks"]
    assert info["extras_missing"] == [
        f"{rec1.id}: extras masks: cannot read {gone}: No such file or directory"
    ]
    assert "1 extras file(s) of 1 of 2 records could not be read" in caplog.text and gone in caplog.text
    (a, _), (b, image) = read_hf_records(tmp_path / "hf")
    assert (
        b.extras["masks"] == gone
        and Path(b.extras["pair"]["image"]).parent.parent == tmp_path / "cache" / "extras"
    )
    assert tasks.get("region").check(b) == f"extras masks file not found: {gone}"
    assert tasks.get("motion").check(b) is None and tasks.get("region").check(a) is None


# --- the cache ---------------------------------------------------------------------------------


def test_a_cached_file_is_written_once_and_named_by_its_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path))
    data = os.urandom(5000)
    path = materialise(data, ".npy")
    digest = hashlib.sha256(data).hexdigest()
    assert path == tmp_path / "extras" / digest[:2] / f"{digest}.npy" and path.read_bytes() == data
    stat = path.stat()
    time.sleep(0.01)
    assert materialise(data, ".npy") == path
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # never rewritten
    path.write_bytes(data[:100])  # damaged (not the hash's size): written again, whole
    assert materialise(data, ".npy").read_bytes() == data
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [f"{digest}.npy"]


def test_without_depthlm_cache_the_cache_is_under_the_users_cache(tmp_path, monkeypatch):
    from depthlm.training.rows import extras_cache_dir

    monkeypatch.delenv("DEPTHLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert extras_cache_dir() == tmp_path / "xdg" / "depthlm" / "extras"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert extras_cache_dir() == tmp_path / "home" / ".cache" / "depthlm" / "extras"


WORKER = """
import hashlib, sys, time
from pathlib import Path
from depthlm.training.rows import materialise
go, n = Path(sys.argv[1]), int(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
bad = 0
for i in range(n):
    data = hashlib.sha256(str(i).encode()).digest() * 2**16  # 2 MiB each
    if materialise(data, ".bin").read_bytes() != data:  # read right after: whole or not returned
        bad += 1
print(bad)
"""


def test_two_processes_materialising_the_same_files_leave_one_correct_copy_each(tmp_path):
    """Two processes (as two dataloader workers or ranks) write the same 16 files at the same
    moments: each reads back whole files, and the cache holds exactly one correct copy of each."""
    n = 16
    env = {**os.environ, "DEPTHLM_CACHE": str(tmp_path / "cache")}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(n)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # both past their imports, waiting
    go.touch()
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["0", "0"]
    files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    want = {hashlib.sha256(hashlib.sha256(str(i).encode()).digest() * 2**16).hexdigest() for i in range(n)}
    assert {f.name for f in files} == {f"{h}.bin" for h in want}  # no temporary file left
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() + ".bin" == f.name


# --- bad rows ----------------------------------------------------------------------------------


def test_a_bad_extras_files_entry_is_one_line_naming_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path))
    row = {"id": "set/3", "extras": json.dumps({"masks": "images/3-masks.png"})}
    with pytest.raises(DepthLMError, match=r"^record set/3: extras_files holds key 'mask', not one of "):
        row_extras({**row, EXTRAS_FILES: [{"key": "mask", "bytes": b"x"}]})
    with pytest.raises(
        DepthLMError,
        match=r"^record set/3: extras_files embeds 'pair.image' but its extras name no pair.image path$",
    ):
        row_extras({**row, EXTRAS_FILES: [{"key": "pair.image", "bytes": b"x"}]})
    with pytest.raises(DepthLMError, match=r"^record set/3: extras_files entry 'masks' holds no bytes$"):
        row_extras({**row, EXTRAS_FILES: [{"key": "masks", "bytes": None}]})
    assert row_extras({**row, EXTRAS_FILES: []}) == {"masks": "images/3-masks.png"}  # jsonl rows: as they are


def test_a_npy_depth_map_is_cached_as_npy_and_reads_the_same(tmp_path, monkeypatch):
    """A depth map stored as .npy float metres (docs/tasks.md extras) is read by its suffix: the
    cached copy keeps it, so the dense depth read from the parquet equals the file's."""
    from data_builders.export import read_hf_records, to_hf_dataset
    from depthlm.tasks.extras import read_depth_map

    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "set"
    (src / "maps").mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 150)).save(src / "a.png")
    depth = np.random.default_rng(0).uniform(0.5, 9.0, (48, 64)).astype(np.float32)
    np.save(src / "maps" / "a.npy", depth)
    line = {
        "image": "a.png",
        "intrinsics": [60, 60, 31.5, 23.5, 64, 48],
        "pixel_coords": [[10, 20]],
        "depth": [float(depth[20, 10])],
        "depth_type": "z",
        "id": "npy/0",
        "extras": {"depth_map": "maps/a.npy"},
    }
    (src / "recs.jsonl").write_text(json.dumps(line) + "\n")
    assert to_hf_dataset(src, tmp_path / "hf")["extras_embedded"] == 1
    shutil.rmtree(src)
    ((record, _),) = read_hf_records(tmp_path / "hf")
    assert record.extras["depth_map"].endswith(".npy")
    np.testing.assert_array_equal(read_depth_map(record), depth.astype(np.float64))
