"""The ``region`` task fed by real-dataset builders: NYUv2 instances and SUN RGB-D ``seg.mat``.

Each test builds from release-format fixtures (``fixtures_indoor_a``) with ``--objects``, reads the
records back, asks ``region`` about every object, and compares the truth with the object's
median depth computed HERE from the fixture's own depth formula, masks and the release's
documented valid-pixel rules and camera (1-based principal points), never through our readers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fixtures_indoor_a as fx
import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_builders.cli import source_parser
from data_builders.framework import build
from data_builders.sources.nyuv2 import NYUv2
from data_builders.sources.sunrgbd import SUNRGBD
from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import Record, read_records
from depthlm.settings import RenderSettings
from depthlm.tasks.extras import object_name

RAY, Z = RenderSettings(), RenderSettings(depth_target="z")
# The SUN fixture's wall spans the whole image: at f_uni 1000 its view (1233 px wide) is over the
# pixel budget, so those queries are asked at f_uni 500 (the truth does not depend on f_uni).
SUN_SETTINGS = (RenderSettings(f_uni=500), RenderSettings(f_uni=500, depth_target="z"))
REGION = tasks.get("region")
# NYU toolbox camera_params.m (MATLAB 1-based pixels) and the Eigen crop (rows 45:471, cols 41:601)
NYU_CAMERA = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_CROP = (slice(45, 471), slice(41, 601))


def built(out: Path) -> tuple[list[Record], dict]:
    return read_records(out), json.loads((out / "summary.json").read_text())


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def median_distance(z: np.ndarray, mask: np.ndarray, camera: tuple, target: str) -> float:
    """Median of the z map over the mask, as z or as ray length through MATLAB's 1-based pixel grid
    (X = (x - cx) z / fx with x = column + 1, as the NYU and SUN RGB-D toolboxes back-project)."""
    rows, cols = np.nonzero(mask)
    d = z[rows, cols].astype(np.float64)
    if target == "ray":
        fxx, fyy, cx1, cy1 = camera
        d = d * np.sqrt(((cols + 1 - cx1) / fxx) ** 2 + ((rows + 1 - cy1) / fyy) ** 2 + 1)
    return float(np.median(d))


def ask(record: Record, obj: dict, settings: RenderSettings):
    sample = tasks.Sample(info={"object_id": obj["id"], "box": obj["box"], "name": object_name(obj)})
    return REGION.build(record, sample, settings)


def read_png(out: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(out / rel))


# ---------------------------------------------------------------------------------- NYUv2


def nyu_valid(i: int) -> np.ndarray:
    """Pixels the NYU frame labels by default: the Eigen crop AND rawDepths > 0 (fixture's hole)."""
    valid = np.zeros((fx.NYU_H, fx.NYU_W), bool)
    valid[NYU_CROP] = True
    valid[fx.NYU_HOLE] = False
    return valid


@pytest.fixture(scope="module")
def nyu_build(tmp_path_factory) -> tuple[Path, list[Record], dict]:
    root = tmp_path_factory.mktemp("nyu")
    fx.write_nyu(root / "raw", n=3, train=(1,), test=(2, 3))
    out = root / "out"
    build("nyuv2", root / "raw", out, split="test", points_per_image=20, objects=True, progress=False)
    return (out, *built(out))


def test_nyuv2_objects_give_region_truth_equal_to_the_independent_median(nyu_build):
    out, records, summary = nyu_build
    assert summary["frames"] == {"input": 2, "kept": 2, "rejected": 0}
    assert [r.id.rsplit("/", 1)[1] for r in records] == ["0002", "0003"]
    for rec in records:
        i = int(rec.id.rsplit("/", 1)[1]) - 1
        objects = {tuple(o["box"]): o for o in rec.extras["objects"]}
        labels = read_png(out, rec.extras["masks"])
        assert labels.dtype == np.uint16 and len(objects) == 4
        for name, instance, mask in fx.nyu_objects(i):
            obj = objects[box_of(mask)]  # the box the fixture drew, inclusive
            assert (obj["class"], obj["label"], obj["instance"]) == (name, fx.NYU_CLASS_INDEX[name], instance)
            np.testing.assert_array_equal(labels == obj["id"], mask)
            for settings in (RAY, Z):
                q = ask(rec, obj, settings)
                want = median_distance(
                    fx.nyu_depth(i), mask & nyu_valid(i), NYU_CAMERA, settings.depth_target
                )
                assert q.truth == pytest.approx(want, abs=1e-3)  # depth_map holds millimetres
                assert q.meta["support"] == (mask & nyu_valid(i)).sum()
                assert q.question == f"How far from the camera is the {name} inside the green box?"
        # the task's own pick among these objects gives the same truths
        for seed in range(3):
            q = REGION.query(rec, RAY, np.random.default_rng(seed))
            (mask,) = [m for _, _, m in fx.nyu_objects(i) if np.array_equal(m, labels == q.meta["object_id"])]
            want = median_distance(fx.nyu_depth(i), mask & nyu_valid(i), NYU_CAMERA, "ray")
            assert q.truth == pytest.approx(want, abs=1e-3)


def test_nyuv2_two_instances_of_one_class_are_two_objects(nyu_build):
    out, records, _ = nyu_build
    rec = records[0]  # image 0002: fixture index 1
    chairs = [o for o in rec.extras["objects"] if o["class"] == "chair"]
    assert sorted(o["instance"] for o in chairs) == [1, 2] and chairs[0]["id"] != chairs[1]["id"]
    labels = read_png(out, rec.extras["masks"])
    want = {box_of(m): m for name, _, m in fx.nyu_objects(1) if name == "chair"}
    truths = []
    for obj in chairs:
        mask = want[tuple(obj["box"])]
        np.testing.assert_array_equal(labels == obj["id"], mask)
        truths.append(ask(rec, obj, Z).truth)
        assert truths[-1] == pytest.approx(
            median_distance(fx.nyu_depth(1), mask & nyu_valid(1), NYU_CAMERA, "z"), abs=1e-3
        )
    assert abs(truths[0] - truths[1]) > 1.0  # one merged "chair" would give one number for both


def test_nyuv2_depth_map_holds_only_the_frames_valid_pixels(nyu_build, tmp_path):
    out, records, _ = nyu_build
    rec = records[1]  # 0003: fixture index 2
    depth_map = read_png(out, rec.extras["depth_map"])
    assert depth_map.dtype == np.uint16
    valid = nyu_valid(2)
    np.testing.assert_array_equal(depth_map[~valid], 0)  # crop border and the unmeasured hole
    np.testing.assert_array_equal(depth_map[valid], np.round(fx.nyu_depth(2)[valid] * 1000))
    # labelled "wall" pixels with instance 0 are no object, and the record says how many
    labels = read_png(out, rec.extras["masks"])
    assert not labels[fx.NYU_STRAY].any()
    assert rec.extras["notes"] == ["pixels outside objects: 1000 labelled pixels with instance 0"]
    # the existing options widen the valid mask, and the depth map with it
    opts = argparse.Namespace(objects=True, nyu_include_filled=True, nyu_no_crop=True)
    frame = NYUv2(out.parent / "raw", "test", opts).load("0003")
    assert (frame.extras["depth_map"] > 0).all()


def test_nyuv2_default_build_writes_no_region_extras(tmp_path):
    fx.write_nyu(tmp_path / "raw", n=3, test=(2, 3))  # the file holds labels, instances, names
    build("nyuv2", tmp_path / "raw", tmp_path / "out", split="test", points_per_image=5, progress=False)
    records, summary = built(tmp_path / "out")
    assert [r.extras for r in records] == [{"source_index": 2}, {"source_index": 3}]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["0002.png", "0003.png"]
    assert summary["settings"]["source_options"]["objects"] is False


def test_nyuv2_objects_need_the_segmentation_arrays(tmp_path):
    fx.write_nyu(tmp_path, n=3, test=(2, 3))
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "r+") as f:
        del f["instances"]
    opts = argparse.Namespace(objects=True)
    with pytest.raises(DepthLMError, match=r"nyuv2 --objects: .*nyu_depth_v2_labeled.mat has no instances"):
        NYUv2(tmp_path, "test", opts).list_frames()
    assert NYUv2(tmp_path, "test").list_frames() == ["0002", "0003"]  # without the flag: as before


# ---------------------------------------------------------------------------------- SUN RGB-D

SUN_SCALE = 10  # 640x480, the size of the kv1 frames
SCENES = sorted(fx.SUN_SCENES)
WITH_SEG, WITHOUT_SEG = SCENES[3], SCENES[2]  # the two test-split scenes (xtion, realsense)


@pytest.fixture(scope="module")
def sun_build(tmp_path_factory) -> tuple[Path, list[Record], dict]:
    root = tmp_path_factory.mktemp("sun")
    data = fx.write_sunrgbd(root / "raw", scale=SUN_SCALE)
    (data / WITHOUT_SEG / "seg.mat").unlink()
    out = root / "out"
    build(
        "sunrgbd", root / "raw", out, split="test", points_per_image=20, objects=True, copy_images=True,
        progress=False,
    )  # fmt: skip
    return (out, *built(out))


def sun_valid(i: int) -> np.ndarray:
    """SUN RGB-D's valid pixels: decoded depth in (0, 8 m] (the toolbox clamps beyond 8 m)."""
    z = fx.sun_depth(i, fx.sun_k(SUN_SCALE), SUN_SCALE)
    return (z > 0) & (z <= 8.0)


def test_sunrgbd_seg_objects_give_region_truth_equal_to_the_independent_median(sun_build):
    out, records, _ = sun_build
    (rec,) = [r for r in records if WITH_SEG in r.id]
    i = SCENES.index(WITH_SEG)
    z = fx.sun_depth(i, fx.sun_k(SUN_SCALE), SUN_SCALE)
    objects = {tuple(o["box"]): o for o in rec.extras["objects"]}
    labels = read_png(out, rec.extras["masks"])
    seglabel = fx.sun_seglabel(SUN_SCALE)
    assert len(objects) == 5  # "picture" (index 6) has no pixel left
    for j, _ in fx.sun_objects(SUN_SCALE):
        mask = seglabel == j  # what is left of polygon j after the later ones
        obj = objects[box_of(mask)]
        name = fx.SUN_SEG_NAMES[j - 1].replace("_", " ")
        assert (obj["class"], obj["seg_index"]) == (name, j)
        np.testing.assert_array_equal(labels == obj["id"], mask)
        for settings in SUN_SETTINGS:
            q = ask(rec, obj, settings)
            want = median_distance(z, mask & sun_valid(i), fx.sun_k(SUN_SCALE), settings.depth_target)
            assert q.truth == pytest.approx(want, abs=1e-3)
            assert q.question == f"How far from the camera is the {name} inside the green box?"
    chairs = [o for o in rec.extras["objects"] if o["class"] == "chair"]
    assert len(chairs) == 2  # two polygons named "chair": two objects
    depth_map = read_png(out, rec.extras["depth_map"])
    fxp, fyp = fx.SUN_FAR_PIXEL
    assert depth_map[fyp, fxp] == 0  # 9.5 m: beyond the toolbox's 8 m, not a valid pixel
    np.testing.assert_array_equal(depth_map[sun_valid(i)], np.round(z[sun_valid(i)] * 1000))


def test_sunrgbd_region_extras_resolve_without_copy_images(tmp_path):
    fx.write_sunrgbd(tmp_path / "raw")
    build("sunrgbd", tmp_path / "raw", tmp_path / "out", split="test", objects=True, progress=False)
    records, _ = built(tmp_path / "out")
    rec = next(r for r in records if "objects" in r.extras)
    REGION.query(rec, SUN_SETTINGS[0], np.random.default_rng(0))


def test_sunrgbd_scene_without_seg_mat_is_written_without_region_extras_and_counted(sun_build):
    out, records, summary = sun_build
    assert summary["frames"] == {"input": 2, "kept": 2, "rejected": 0}
    (rec,) = [r for r in records if WITHOUT_SEG in r.id]
    assert rec.extras == {
        "sensor": "realsense",
        "notes": ["segmentation missing: no seg.mat in the scene folder"],
    }
    assert REGION.check(rec) == "needs extras objects, masks"
    notes = [n for r in records for n in r.extras.get("notes", [])]
    assert notes.count("segmentation missing: no seg.mat in the scene folder") == 1


def test_sunrgbd_summary_counts_the_records_without_seg_mat(sun_build):
    _, _, summary = sun_build
    assert summary["record_notes"] == {"segmentation missing": 1}


@pytest.mark.parametrize(
    "change, reason",
    [
        ("garbage", "seg.mat: cannot read it"),
        ("no_names", "seg.mat: no names"),
        ("beyond_names", "seg.mat: seglabel holds 6, beyond the 5 names"),
        ("small", "seg.mat: seglabel is 32x24, the image 64x48"),
        ("fractional", "seg.mat: seglabel must hold whole numbers"),
    ],
)
def test_sunrgbd_bad_seg_mat_keeps_the_record_and_says_why(tmp_path, change, reason):
    data = fx.write_sunrgbd(tmp_path)
    key = "kv1/NYUdata/NYU0001"
    path = data / key / "seg.mat"
    names = np.array(fx.SUN_SEG_NAMES, dtype=object).reshape(1, -1)
    seglabel = fx.sun_seglabel()
    if change == "garbage":
        path.write_bytes(b"not a mat file" * 10)
    elif change == "no_names":
        scipy.io.savemat(path, {"seglabel": seglabel})
    elif change == "beyond_names":
        seglabel[0, 0] = 6
        scipy.io.savemat(path, {"seglabel": seglabel, "names": names[:, :5]})
    elif change == "small":
        scipy.io.savemat(path, {"seglabel": seglabel[:24, :32], "names": names})
    elif change == "fractional":
        scipy.io.savemat(path, {"seglabel": seglabel + 0.5, "names": names})
    frame = SUNRGBD(tmp_path, "train", argparse.Namespace(objects=True)).load(key)
    assert frame.depth is not None and "objects" not in frame.extras and "masks" not in frame.extras
    (note,) = frame.extras["notes"]
    assert note.startswith(f"segmentation unusable: {reason}")


def test_sunrgbd_seginstances_split_one_index_into_instances(tmp_path):
    data = fx.write_sunrgbd(tmp_path)
    key = "kv1/NYUdata/NYU0001"
    seglabel = fx.sun_seglabel()
    instances = np.zeros_like(seglabel)
    table = seglabel == 4
    instances[table] = 1
    instances[table & (np.arange(fx.SUN_W)[None, :] >= 26)] = 2  # the right half of the table
    names = np.array(fx.SUN_SEG_NAMES, dtype=object).reshape(1, -1)
    scipy.io.savemat(
        data / key / "seg.mat", {"seglabel": seglabel, "names": names, "seginstances": instances}
    )
    frame = SUNRGBD(tmp_path, "train", argparse.Namespace(objects=True)).load(key)
    tables = [o for o in frame.extras["objects"] if o["class"] == "table"]
    assert sorted(o["instance"] for o in tables) == [1, 2]
    assert sum(o["pixels"] for o in tables) == table.sum()


def test_sunrgbd_default_build_writes_no_region_extras(tmp_path):
    fx.write_sunrgbd(tmp_path / "raw")  # every scene has its seg.mat
    build("sunrgbd", tmp_path / "raw", tmp_path / "out", split="test", points_per_image=5, progress=False)
    records, _ = built(tmp_path / "out")
    assert [r.extras for r in records] == [{"sensor": "realsense"}, {"sensor": "xtion"}]
    assert not (tmp_path / "out" / "images").exists()  # images stay where the release has them


def test_both_builders_offer_the_objects_flag():
    for name in ("nyuv2", "sunrgbd"):
        parser = source_parser(name)
        assert parser.parse_args(["--root", "r", "--out", "o", "--objects"]).objects is True
        assert parser.parse_args(["--root", "r", "--out", "o"]).objects is False


def test_nyuv2_unusable_segmentation_keeps_the_frame_and_says_why(tmp_path):
    fx.write_nyu(tmp_path, n=3, test=(2, 3))
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "r+") as f:  # a names cell too short
        del f["names"], f["#refs#"]
        fx._write_matlab_cell_of_strings(f, "names", fx.nyu_names()[:20])
    frame = NYUv2(tmp_path, "test", argparse.Namespace(objects=True)).load("0002")
    assert frame.depth is not None and frame.extras == {
        "source_index": 2,
        "notes": ["segmentation unusable: label 88 beyond the 20 names"],
    }
