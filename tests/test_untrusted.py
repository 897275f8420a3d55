"""Untrusted files never crash a job or lose good data (issue 11, item 5)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from PIL import Image

from depthlm.records import IMAGE_ROOTS_FILE, read_records, write_records


def row(image: str = "rgb/a.png", **kw) -> dict:
    out = {
        "image": image,
        "intrinsics": [50, 50, 31.5, 23.5, 64, 48],
        "pixel_coords": [[1, 2], [60, 40]],
        "depth": [1.5, 2.5],
    }
    out.update(kw)
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """records/ with its own rgb/a.png, and an outside/ folder beside it with x.png."""
    folder = tmp_path / "records"
    (folder / "rgb").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    Image.new("RGB", (64, 48)).save(folder / "rgb" / "a.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "outside" / "x.png")
    return folder


def test_bad_bytes_and_a_wrong_extras_type_are_per_line_rejects_and_good_lines_stay(data):
    lines = [
        json.dumps(row(id="first")).encode(),
        b'{"image": "rgb/a.png", "id": "caf\xe9"}',  # Latin-1, not UTF-8
        json.dumps(row(id="bad-extras", extras="abc")).encode(),
        json.dumps(row(id="second")).encode(),
        b"[" * 100000,  # nested past Python's recursion limit
        json.dumps(row(id="huge-int", depth=[10**400, 1])).encode(),
    ]
    path = data / "x.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejects = []
    recs = read_records(path, rejects=rejects)
    assert [r.id for r in recs] == ["first", "second"]
    got = {(r.line, r.field): str(r) for r in rejects}
    assert set(got) == {(2, None), (3, "extras"), (5, None), (6, "depth")}
    assert got[(2, None)].startswith(f"{path}:2") and "not valid UTF-8" in got[(2, None)]
    assert "extras must be a JSON object" in got[(3, "extras")]


def test_images_leaving_the_records_folder_are_rejected_unless_allowed(data, monkeypatch):
    os.symlink(data.parent / "outside" / "x.png", data / "rgb" / "link.png")  # a symlink out
    rows = [
        row(id="inside"),
        row("../outside/x.png", id="dotdot"),
        row(str(data.parent / "outside" / "x.png"), id="absolute"),  # explicit: kept
        row("rgb/link.png", id="symlink"),
    ]
    path = data / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects = []
    assert [r.id for r in read_records(path, rejects=rejects)] == ["inside", "absolute"]
    assert [(r.line, r.field) for r in rejects] == [(2, "image"), (4, "image")]
    assert all("leaves the records folder" in str(r) and "allow" in str(r) for r in rejects)

    everything = ["inside", "dotdot", "absolute", "symlink"]
    assert [r.id for r in read_records(path, allow_outside_images=True)] == everything
    monkeypatch.setenv("DEPTHLM_IMAGE_ROOTS", str(data.parent / "outside"))
    assert [r.id for r in read_records(path)] == everything


def test_sets_depthlm_writes_keep_their_images(data, tmp_path):
    """A derived set written elsewhere (write_records) and a build that reads a raw dataset in
    place both point outside their folder by design, and say where: they read back whole."""
    from data_builders.framework import build

    src = data / "x.jsonl"
    src.write_text(json.dumps(row(id="a")) + "\n")
    derived = tmp_path / "derived" / "y.jsonl"
    write_records(derived, read_records(src))
    assert (derived.parent / IMAGE_ROOTS_FILE).is_file()
    assert [r.id for r in read_records(derived)] == ["a"]

    out = tmp_path / "built"
    build("jsonl", src, out, split="val", progress=False)
    assert len(read_records(out)) == 1


def test_metrics_json_stays_valid_json_with_non_finite_values():
    from depthlm.metrics import json_safe

    obj = {"rmse": math.inf, "abs_rel": 0.1, "per": [math.nan, 1.0, -math.inf], "n": 3, "name": "x"}
    safe, n = json_safe(obj)
    assert n == 3
    text = json.dumps(safe, allow_nan=False)  # raises on NaN / Infinity
    assert json.loads(text) == {"rmse": None, "abs_rel": 0.1, "per": [None, 1.0, None], "n": 3, "name": "x"}


def test_an_eval_with_a_1e300_depth_writes_valid_json_and_counts_what_it_nulled(data, tmp_path):
    from depthlm.evaluation import evaluate, load_datasets
    from depthlm.inference import make_backend
    from depthlm.settings import RenderSettings

    path = data / "x.jsonl"
    path.write_text(json.dumps(row(depth=[1e300, 2.0], depth_type="z")) + "\n")
    settings = RenderSettings(f_uni=100)
    out = tmp_path / "run"
    evaluate(
        make_backend(None, "constant:2.0", settings),
        load_datasets([str(path)]),
        out,
        points_per_image=2,
        plots=False,
        progress=False,
    )
    text = (out / "metrics.json").read_text()
    saved = json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} in metrics.json"))
    assert saved["non_finite_values"] > 0 and saved["average"]["rmse"] is None


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_write_error_stops_the_build_and_a_rerun_completes_every_frame(tmp_path, monkeypatch, num_proc):
    """A full disk while saving frame 7 used to become a permanent 'reject' in a chunk marked
    done (exit 0): the rerun never recovered it. Now the build stops and the rerun finishes."""
    import errno

    import data_builders
    from depthlm.errors import DepthLMError

    opts = dict(num_images=12, image_size=(64, 48), points_per_image=3, chunk_size=5, progress=False)
    clean = data_builders.build("synthetic", None, tmp_path / "clean", **opts)
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):  # the disk fills up at frame 7 (in whichever worker)
        if Path(fp).name == "000006.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(DepthLMError, match="No space left on device.*rerun"):
        data_builders.build("synthetic", None, tmp_path / "out", num_proc=num_proc, **opts)
    monkeypatch.setattr(Image.Image, "save", real_save)
    done = data_builders.build("synthetic", None, tmp_path / "out", num_proc=num_proc, **opts)
    assert done["images"] == clean["images"] == 12 and done["frames"]["rejected"] == 0

    def outputs(folder: Path) -> dict[str, bytes]:
        files = [*folder.glob("records-*.jsonl"), *(folder / "images").glob("*")]
        return {p.name: p.read_bytes() for p in files}

    assert outputs(tmp_path / "out") == outputs(tmp_path / "clean")
    assert len(read_records(tmp_path / "out")) == 12  # every frame, its image on disk
