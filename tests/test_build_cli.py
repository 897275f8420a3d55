"""`depthlm build`: the command line, the jsonl passthrough (on the real iBims-1 sample) and rgbd folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm.cli import main
from depthlm.geometry import Intrinsics, ray_scale
from depthlm.records import read_records


def test_build_synthetic_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "synth"
    code = main(
        [
            "build",
            "synthetic",
            "--out",
            str(out),
            "--num-images",
            "3",
            "--image-size",
            "64x48",
            "--no-progress",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("built 3 images, 3 points into")
    assert json.loads(lines[-1])["images"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["source_options"]["image_size"] == [64, 48]
    assert summary["depthlm_version"] and len(read_records(out)) == 3


def test_list_and_help_name_the_sources(capsys):
    assert main(["build", "list"]) == 0
    listing = capsys.readouterr().out
    assert "synthetic" in listing and "jsonl" in listing and "rgbd" in listing
    with pytest.raises(SystemExit):
        main(["build", "rgbd", "--help"])
    assert "--depth-scale" in capsys.readouterr().out


def test_user_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["build", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown source 'nosuch'" in err and len(err.splitlines()) == 1
    (tmp_path / "holiday_photos").mkdir()
    assert (
        main(["build", "rgbd", "--root", str(tmp_path / "holiday_photos"), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "holiday_photos has no rgb/ folder" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["build", "synthetic", "--out", str(tmp_path / "o"), "--image-size", "big"])
    assert "image size must look like 320x240" in capsys.readouterr().err


def test_jsonl_passthrough_of_the_real_ibims1_sample(ibims1, tmp_path, capsys):
    src = ibims1 / "ibims1_val.jsonl"
    out = tmp_path / "ibims"
    argv = ["build", "jsonl", "--root", str(src), "--out", str(out), "--split", "val", "--dataset", "ibims1"]
    assert main([*argv, "--no-progress"]) == 0
    records = read_records(out)
    reference = [json.loads(line) for line in src.read_text().splitlines()]
    assert len(records) == len(reference) == 100
    assert sum(len(r) for r in records) == sum(len(r["depth"]) for r in reference)
    for rec, ref in zip(records, reference):
        assert Path(rec.image).resolve() == (ibims1 / ref["image"]).resolve()
        assert rec.depth_type == "z" and rec.dataset == "ibims1" and rec.split == "val"
        np.testing.assert_array_equal(rec.points, ref["pixel_coords"])
        # the iBims-1 file holds z-depth (docs/data-builders.md, "DepthLMBench files"): stored as is
        np.testing.assert_allclose(rec.depths, ref["depth"], atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"]["rejected"] == 0 and summary["frames"]["rejected"] == 0
    assert "look like" not in capsys.readouterr().err  # the measured convention agrees


def test_jsonl_bad_lines_and_points_are_rejected_with_reasons(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    good = {
        "image": "a.png",
        "intrinsics": [10, 10, 3.5, 2.5, 8, 6],
        "pixel_coords": [[1, 1], [2, 2]],
        "depth": [2, 3],
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "image": "missing.png"}),
        json.dumps({**good, "pixel_coords": [[1, 1], [9, 2], [3, 3]], "depth": [2.0, 3.0, "NaN"]}),
        json.dumps({**good, "depth_type": "z"}),
    ]
    src = tmp_path / "refs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["build", "jsonl", "--root", str(src), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == {"input": 5, "kept": 3, "rejected": 2}
    assert summary["label_rejects"] == {"no depth": 1, "outside image": 1}
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = {r["key"]: r["reason"] for r in rejects}
    assert "invalid JSON" in reasons["refs.jsonl:0000002"]
    assert (
        "image file not found" in reasons["refs.jsonl:0000003"]
        and "missing.png" in reasons["refs.jsonl:0000003"]
    )
    records = read_records(out)
    intr = Intrinsics(10, 10, 3.5, 2.5, 8, 6)
    scale = ray_scale(np.array([[1, 1], [2, 2]]), intr)
    np.testing.assert_allclose(records[0].depths, np.array([2.0, 3.0]) / scale, atol=1e-6)  # ray by default
    np.testing.assert_allclose(records[2].depths, [2.0, 3.0])  # the line said z


def write_rgbd(root: Path) -> None:
    for sub in ("rgb", "depth", "intrinsics", "valid"):
        (root / sub).mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 6), (200, 100, 50)).save(root / "rgb" / f"{name}.png")
    mm = np.full((6, 8), 2500, dtype=np.uint16)
    mm[0, 0] = 0
    mm[3, 4] = 1234
    Image.fromarray(mm).save(root / "depth" / "a.png")  # 16-bit PNG, millimetres
    valid = np.full((6, 8), 255, dtype=np.uint8)
    valid[5, 7] = 0
    Image.fromarray(valid).save(root / "valid" / "a.png")
    np.save(root / "depth" / "b.npy", np.full((6, 8), 4.0, dtype=np.float32))  # float metres
    (root / "intrinsics.json").write_text(
        json.dumps({"fx": 10, "fy": 10, "cx": 3.5, "cy": 2.5, "width": 8, "height": 6})
    )
    (root / "intrinsics" / "b.json").write_text(json.dumps([20, 20, 3.5, 2.5, 8, 6]))


@pytest.mark.parametrize("depth_type", ["z", "ray"])
def test_rgbd_folder_known_depths(tmp_path, depth_type):
    root, out = tmp_path / "caps", tmp_path / "out"
    write_rgbd(root)
    argv = [
        "build",
        "rgbd",
        "--root",
        str(root),
        "--out",
        str(out),
        "--split",
        "val",
        "--points-per-image",
        "0",
    ]
    assert main([*argv, "--edge-threshold", "0", "--depth-type", depth_type, "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == {"input": 3, "kept": 2, "rejected": 1}
    assert summary["frame_rejects"] == {"depth file missing": 1}
    assert summary["label_rejects"] == {"invalid mask": 1, "no depth": 1}
    a, b = read_records(out)
    assert b.intrinsics.fx == 20  # the per-frame file wins over the shared one
    assert len(a) == 46 and len(b) == 48
    stored = {tuple(p): d for p, d in zip(a.points.astype(int).tolist(), a.depths_as(depth_type))}
    assert stored[(4, 3)] == pytest.approx(1.234) and stored[(1, 1)] == pytest.approx(2.5)
    np.testing.assert_allclose(b.depths_as(depth_type), 4.0, rtol=1e-6)
    if depth_type == "ray":
        assert a.depths.max() < 2.5  # stored as z, smaller than the ray off the optical axis


@pytest.mark.parametrize("copy_images", [False, True])
def test_jsonl_passthrough_keeps_the_files_region_and_motion_read(tmp_path, copy_images):
    """A task-ready set passed through `depthlm build jsonl` (into another folder, copied or not)
    still asks the same region and motion questions: masks, depth maps and second views travel
    like the image does."""
    from data_builders import build
    from depthlm import tasks
    from depthlm.settings import RenderSettings

    src = tmp_path / "synth"
    build(
        "synthetic",
        out=src,
        split="train",
        num_images=3,
        image_size=(96, 72),
        points_per_image=16,
        depth_map=True,
        second_view=True,
        progress=False,
    )
    out = tmp_path / "elsewhere" / "passed"
    args = ["build", "jsonl", "--root", str(src), "--out", str(out), "--no-progress"]
    assert main(args + (["--copy-images"] if copy_images else [])) == 0
    before = {r.extras.get("source_id", r.id): r for r in read_records(src)}
    after = {r.extras["source_id"]: r for r in read_records(out)}
    assert set(after) == set(before)
    settings = RenderSettings(f_uni=100, marker_size=9)
    asked = {"region": 0, "motion": 0}
    for rid, rec in after.items():
        for key in ("masks", "depth_map"):
            assert Path(rec.extras[key]).is_file()
            assert (Path(rec.extras[key]).parent == (out / "images").resolve()) is copy_images
        assert (
            Path(rec.extras["pair"]["image"]).read_bytes()
            == Path(before[rid].extras["pair"]["image"]).read_bytes()
        )
        for name in ("region", "motion"):
            try:
                want = tasks.get(name).query(before[rid], settings, np.random.default_rng(0))
            except tasks.TaskError as err:  # e.g. no object of 50+ pixels in this small scene
                with pytest.raises(tasks.TaskError, match=re.escape(str(err).split(": ", 1)[1])):
                    tasks.get(name).query(rec, settings, np.random.default_rng(0))
                continue
            got = tasks.get(name).query(rec, settings, np.random.default_rng(0))
            asked[name] += 1
            assert got.truth == want.truth and got.question == want.question
            assert [np.asarray(i).tobytes() for i in got.images] == [
                np.asarray(i).tobytes() for i in want.images
            ]
    assert asked["region"] >= 1 and asked["motion"] >= 1
