"""Matterport3D, Taskonomy and ScanNet++ sources on fixtures written in their release formats:
known depths at known pixels must come out right -- value, unit, z/ray convention, intrinsics --
both from Source.load and after a full build read back with depthlm.records.read_records."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from fixtures_indoor_b import (
    MP_HOUSE,
    MP_SIZE,
    MP_VAL_HOUSE,
    SP_DEPTH,
    SP_K,
    SP_RGB,
    SP_SCENES,
    TK_BUILDINGS,
    TK_SIZE,
    mp_plane_units,
    plane,
    sp_depth_mm,
    sp_plane_mm,
    taskonomy_dir,
    tk_plane,
    write_matterport,
    write_png16,
    write_rgb,
    write_scannetpp,
    write_taskonomy,
)
from PIL import Image

from data_builders.base import SkipFrame
from data_builders.framework import build
from data_builders.sources.matterport3d import SPLITS, Matterport3D, parse_conf
from data_builders.sources.scannetpp import ScanNetPP
from data_builders.sources.taskonomy import Taskonomy
from depthlm.errors import DepthLMError
from depthlm.geometry import ray_scale
from depthlm.records import read_records


def build_all(source: str, root, out, split: str = "train", **options) -> tuple[dict, dict]:
    """Build keeping every valid pixel (no edge filter), return (summary, {record id: record})."""
    summary = build(
        source, root, out, split=split, points_per_image=0, edge_threshold=0, progress=False, **options
    )
    records = {r.id: r for r in read_records(out)}
    assert summary["frames"]["input"] == summary["frames"]["kept"] + summary["frames"]["rejected"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len([r for r in rejects if r.get("frame")]) == summary["frames"]["rejected"]
    return summary, records


def depth_at(record, x: int, y: int, depth_type: str = "z") -> float:
    hit = np.flatnonzero((record.points[:, 0] == x) & (record.points[:, 1] == y))
    assert len(hit) == 1, f"pixel ({x}, {y}) not labelled exactly once in {record.id}"
    return float(record.depths_as(depth_type)[hit[0]])


def frame_rejects(out) -> dict[str, str]:
    lines = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return {r["key"]: r["reason"] for r in lines if r.get("frame")}


# --- Matterport3D -----------------------------------------------------------------------------


def test_matterport_reads_z_depth_in_quarter_millimetres_with_conf_intrinsics(tmp_path):
    expected = write_matterport(tmp_path)
    src = Matterport3D(tmp_path, "train")
    keys = src.list_frames()
    assert keys == sorted(expected) and keys == sorted(keys)
    w, h = MP_SIZE
    for key, exp in expected.items():
        frame = src.load(key)
        x, y = exp["pixel"]
        assert frame.depth.shape == (h, w) and frame.depth_type == "z" and frame.split == "train"
        assert frame.depth[y, x] == pytest.approx(exp["metres"])
        assert frame.depth[0, 0] == pytest.approx(mp_plane_units(exp["plane"], exp["conf"])[0, 0] / 4000)
        assert frame.depth[5, 5] == 0  # no reading stays unlabelled
        fx, fy, cx, cy = exp["conf"]
        # .conf uses GAPS pixels: origin bottom-left, pixel i spans [i, i+1)
        assert frame.intrinsics.to_list() == pytest.approx([fx, fy, cx - 0.5, h - 0.5 - cy, w, h])
        assert frame.image_path.name == key.split("/")[1] + ".jpg" and frame.image_path.is_file()


def test_matterport_conf_parser_keeps_the_intrinsics_of_each_block(tmp_path):
    write_matterport(tmp_path)
    entries = parse_conf(tmp_path / MP_HOUSE / "undistorted_camera_parameters" / f"{MP_HOUSE}.conf")
    assert sorted(e.depth_name[-8:] for e in entries.values()) == [
        "d0_0.png",
        "d0_1.png",
        "d1_0.png",
        "d1_1.png",
    ]
    cam1 = [e for e in entries.values() if "_d1_" in e.depth_name]
    assert all((e.fx, e.fy, e.cx, e.cy) == (54.8, 55.8, 30.0, 22.0) for e in cam1)


def test_matterport_uses_the_official_house_split(tmp_path, caplog):
    write_matterport(tmp_path / "v1" / "scans", MP_HOUSE)
    write_matterport(tmp_path / "v1" / "scans", MP_VAL_HOUSE)
    assert MP_HOUSE in SPLITS["train"] and MP_VAL_HOUSE in SPLITS["val"]
    with caplog.at_level(logging.WARNING):
        val = Matterport3D(tmp_path, "val").list_frames()
    assert val and all(k.startswith(MP_VAL_HOUSE + "/") for k in val)
    assert "10 of 11 Matterport3D houses of the val split" in caplog.text
    with pytest.raises(DepthLMError, match="none of the 18 test houses"):
        Matterport3D(tmp_path, "test").list_frames()
    with pytest.raises(DepthLMError, match="no Matterport3D house"):
        Matterport3D(tmp_path / "v1" / "scans" / MP_HOUSE / "undistorted_color_images", "train").list_frames()


def break_matterport(root):
    """Make three of the four frames bad, each in a different way; returns key -> reason text."""
    house = root / MP_HOUSE
    stem = "03a8325e3b054e3fad7e1e7091f9d283"
    (house / "undistorted_color_images" / f"{stem}_i0_1.jpg").write_bytes(b"not a jpeg at all")
    (house / "undistorted_depth_images" / f"{stem}_d1_0.png").unlink()
    write_png16(house / "undistorted_depth_images" / f"{stem}_d1_1.png", np.zeros((MP_SIZE[1], MP_SIZE[0])))
    return {
        f"{MP_HOUSE}/{stem}_i0_1": "unreadable image",
        f"{MP_HOUSE}/{stem}_i1_0": "depth file missing",
        f"{MP_HOUSE}/{stem}_i1_1": "no valid depth",
    }


def test_matterport_bad_frames_are_skipped_with_reasons(tmp_path):
    write_matterport(tmp_path)
    broken = break_matterport(tmp_path)
    src = Matterport3D(tmp_path, "train")
    for key, reason in broken.items():
        with pytest.raises(SkipFrame, match=reason):
            src.load(key)


def test_matterport_absurd_intrinsics_size_mismatch_and_bad_conf_lines(tmp_path):
    write_matterport(tmp_path, fx=0.01)  # a 179.9 degree field of view
    house = tmp_path / MP_HOUSE
    stem = "03a8325e3b054e3fad7e1e7091f9d283"
    write_png16(house / "undistorted_depth_images" / f"{stem}_d1_0.png", np.full((10, 10), 4000))
    conf = house / "undistorted_camera_parameters" / f"{MP_HOUSE}.conf"
    conf.write_text("scan orphan_d0_0.png orphan_i0_0.jpg 1 0 0 0\nscan broken\n" + conf.read_text())
    src = Matterport3D(tmp_path, "train")
    keys = src.list_frames()
    reasons = {}
    for key in keys:
        with pytest.raises(SkipFrame) as err:
            src.load(key)
        reasons[key] = str(err.value)
    assert "before any intrinsics_matrix" in reasons[f"{MP_HOUSE}/orphan_i0_0"]
    assert "without depth and colour file names" in reasons[f"{MP_HOUSE}/{MP_HOUSE}.conf:2"]
    assert "absurd focal length" in reasons[f"{MP_HOUSE}/{stem}_i0_0"]
    assert "size mismatch" in reasons[f"{MP_HOUSE}/{stem}_i1_0"]


def test_matterport_build_writes_metric_z_depth_and_counts_rejects(tmp_path):
    expected = write_matterport(tmp_path / "raw")
    broken = break_matterport(tmp_path / "raw")
    out = tmp_path / "out"
    summary, records = build_all("matterport3d", tmp_path / "raw", out)
    assert summary["frames"] == {"input": 4, "kept": 1, "rejected": 3}
    # reasons group by what went wrong (paths and keys stay in rejects.jsonl)
    assert {k.split(" (")[0] for k in summary["frame_rejects"]} == {
        "depth file missing",
        "no valid depth",
        "unreadable image",
    }
    reasons = frame_rejects(out)
    assert set(reasons) == set(broken)
    assert all(text in reasons[key] for key, text in broken.items())
    key = f"{MP_HOUSE}/03a8325e3b054e3fad7e1e7091f9d283_i0_0"
    rec = records[f"matterport3d/train/{key}"]
    x, y = expected[key]["pixel"]
    assert rec.depth_type == "z" and depth_at(rec, x, y) == pytest.approx(2.5)
    assert depth_at(rec, x, y, "ray") == pytest.approx(2.5 * ray_scale(np.array([[x, y]]), rec.intrinsics)[0])
    assert not np.any((rec.points[:, 0] == 5) & (rec.points[:, 1] == 5))  # the hole is never labelled
    assert len(rec) == MP_SIZE[0] * MP_SIZE[1] - 1


# --- Taskonomy --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["omnidata", "building", "legacy"])
def test_taskonomy_reads_zbuffer_in_512ths_masks_65535_and_uses_fov(tmp_path, layout):
    fov = 1.3089969389957472
    expected = write_taskonomy(tmp_path, layout, fov)
    src = Taskonomy(tmp_path, "train")
    keys = src.list_frames()
    building = TK_BUILDINGS["train"]
    assert keys == [f"{building}/point_0_view_0", f"{building}/point_12_view_3"]
    frame = src.load(keys[1])
    x, y = expected[keys[1]]["pixel"]
    assert frame.depth_type == "z" and frame.depth[y, x] == pytest.approx(3.0)
    assert frame.depth[0, 0] == 0  # 65535 = no surface, not 128 m
    assert frame.depth[2, 2] == pytest.approx(round(tk_plane(12 + 3, fov)[0][2, 2] * 512) / 512)
    assert not frame.valid[1, 1] and frame.valid[2, 2]  # mask_valid is applied
    f = (TK_SIZE / 2) / math.tan(fov / 2)
    c = (TK_SIZE - 1) / 2
    assert frame.intrinsics.to_list() == pytest.approx([f, f, c, c, TK_SIZE, TK_SIZE])
    assert (
        frame.image_path
        == taskonomy_dir(tmp_path, layout, building, "rgb") / "point_12_view_3_domain_rgb.png"
    )


def test_taskonomy_euclidean_depth_is_recorded_as_ray_distance(tmp_path):
    write_taskonomy(tmp_path)
    src = Taskonomy(tmp_path, "train", _options(taskonomy_depth="euclidean"))
    frame = src.load(src.list_frames()[0])
    assert frame.depth_type == "ray" and frame.depth[9, 7] == pytest.approx(4.0)


def test_taskonomy_official_split_file(tmp_path, caplog):
    write_taskonomy(tmp_path)
    with caplog.at_level(logging.WARNING):
        val = Taskonomy(tmp_path, "val").list_frames()
    assert {k.split("/")[0] for k in val} == {TK_BUILDINGS["val"]}
    assert "1 of 2 Taskonomy buildings of the val split" in caplog.text and "wiconisco" in caplog.text
    assert {k.split("/")[0] for k in Taskonomy(tmp_path, "test").list_frames()} == {TK_BUILDINGS["test"]}
    everything = Taskonomy(tmp_path, "train", _options(taskonomy_split_file="all")).list_frames()
    assert len(everything) == 6
    (tmp_path / "train_val_test_tiny.csv").rename(tmp_path / "elsewhere.csv")
    with pytest.raises(DepthLMError, match="official split file"):
        Taskonomy(tmp_path, "train").list_frames()
    chosen = Taskonomy(tmp_path, "train", _options(taskonomy_split_file=str(tmp_path / "elsewhere.csv")))
    assert len(chosen.list_frames()) == 2


def break_taskonomy(root, layout="omnidata"):
    b = TK_BUILDINGS["train"]
    d = lambda domain: taskonomy_dir(root, layout, b, domain)  # noqa: E731
    (d("rgb") / "point_0_view_0_domain_rgb.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (d("depth_zbuffer") / "point_12_view_3_domain_depth_zbuffer.png").unlink()
    for building in (TK_BUILDINGS["val"],):
        dv = taskonomy_dir(root, layout, building, "depth_zbuffer")
        write_png16(dv / "point_0_view_0_domain_depth_zbuffer.png", np.full((TK_SIZE, TK_SIZE), 65535))
        write_png16(dv / "point_12_view_3_domain_depth_zbuffer.png", np.full((TK_SIZE // 2, TK_SIZE), 1000))
    for building in (TK_BUILDINGS["test"],):
        info = taskonomy_dir(root, layout, building, "point_info")
        (info / "point_0_view_0_domain_point_info.json").write_text(json.dumps({"field_of_view_rads": 3.3}))
        (info / "point_12_view_3_domain_point_info.json").unlink()
    return {
        f"{b}/point_0_view_0": "unreadable image",
        f"{b}/point_12_view_3": "depth file missing",
        f"{TK_BUILDINGS['val']}/point_0_view_0": "no valid depth",
        f"{TK_BUILDINGS['val']}/point_12_view_3": "size mismatch",
        f"{TK_BUILDINGS['test']}/point_0_view_0": "absurd intrinsics",
        f"{TK_BUILDINGS['test']}/point_12_view_3": "camera file missing",
    }


def test_taskonomy_bad_frames_are_skipped_with_reasons(tmp_path):
    write_taskonomy(tmp_path)
    broken = break_taskonomy(tmp_path)
    src = Taskonomy(tmp_path, "train", _options(taskonomy_split_file="all"))
    assert sorted(src.list_frames()) == sorted(broken)
    for key, reason in broken.items():
        with pytest.raises(SkipFrame, match=reason):
            src.load(key)


def test_taskonomy_build_stores_z_and_converts_euclidean_to_z(tmp_path):
    write_taskonomy(tmp_path / "raw")
    key = f"{TK_BUILDINGS['train']}/point_0_view_0"
    summary, records = build_all("taskonomy", tmp_path / "raw", tmp_path / "z")
    assert summary["frames"] == {"input": 2, "kept": 2, "rejected": 0}
    rec = records[f"taskonomy/train/{key}"]
    assert rec.depth_type == "z" and depth_at(rec, 7, 9) == pytest.approx(3.0, abs=1e-6)
    assert len(rec) == TK_SIZE * TK_SIZE - 2  # 65535 pixel and masked pixel dropped
    summary, records = build_all("taskonomy", tmp_path / "raw", tmp_path / "ray", taskonomy_depth="euclidean")
    rec = records[f"taskonomy/train/{key}"]
    scale = ray_scale(np.array([[7, 9]]), rec.intrinsics)[0]
    assert rec.depth_type == "z" and depth_at(rec, 7, 9) == pytest.approx(4.0 / scale, abs=1e-5)
    assert depth_at(rec, 7, 9, "ray") == pytest.approx(4.0, abs=1e-5)


def test_taskonomy_build_rejects_bad_frames_without_crashing(tmp_path):
    write_taskonomy(tmp_path / "raw")
    broken = break_taskonomy(tmp_path / "raw")
    summary, _ = build_all("taskonomy", tmp_path / "raw", tmp_path / "out", taskonomy_split_file="all")
    assert summary["frames"] == {"input": 6, "kept": 0, "rejected": 6}
    reasons = frame_rejects(tmp_path / "out")
    assert all(text in reasons[key] for key, text in broken.items())


# --- ScanNet++ --------------------------------------------------------------------------------


def test_scannetpp_pairs_frames_by_index_not_by_listing(tmp_path):
    write_scannetpp(tmp_path)  # RGB for 0, 10, 20, 30 only; depth for every frame 0..25
    src = ScanNetPP(tmp_path, "train")
    scene = SP_SCENES["train"]
    keys = src.list_frames()
    assert keys == [f"{scene}/frame_{i:06d}" for i in (0, 10, 20, 30)]
    for i in (0, 10, 20):
        frame = src.load(f"{scene}/frame_{i:06d}")
        # depth pixel (3, 5) covers RGB pixels x in 22..29, y in 37..44 (7.5x, centres aligned)
        assert frame.depth[40, 25] == pytest.approx(sp_depth_mm(i) / 1000)
    with pytest.raises(SkipFrame, match="no depth map with the same frame index: .*frame_000030.png"):
        src.load(f"{scene}/frame_000030")


def test_scannetpp_upsamples_depth_to_the_rgb_image_with_centres_aligned(tmp_path):
    write_scannetpp(tmp_path)
    frame = ScanNetPP(tmp_path, "train").load(f"{SP_SCENES['train']}/frame_000010")
    w, h = SP_RGB
    assert frame.depth.shape == (h, w) and frame.depth_type == "z" and frame.split == "train"
    block = np.argwhere(frame.depth == sp_depth_mm(10) / 1000)
    assert block[:, 1].min() == 22 and block[:, 1].max() == 29  # columns
    assert block[:, 0].min() == 37 and block[:, 0].max() == 44  # rows
    # the depth pixel's centre (3, 5) maps to (3.5 * 7.5 - 0.5, 5.5 * 7.5 - 0.5) = (25.75, 40.75): inside the block
    # depth pixel 0 ends at RGB 6; RGB 7 lies in depth pixel 1
    assert frame.depth[6, 6] == 0 and frame.depth[7, 7] == pytest.approx(sp_plane_mm(10)[1, 1] / 1000)
    k = np.array(SP_K)
    assert frame.intrinsics.to_list() == pytest.approx([k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h])


def test_scannetpp_can_downsample_the_rgb_instead(tmp_path):
    write_scannetpp(tmp_path)
    src = ScanNetPP(tmp_path, "train", _options(scannetpp_register="downsample-rgb"))
    frame = src.load(f"{SP_SCENES['train']}/frame_000020")
    w, h = SP_DEPTH
    assert frame.image.size == (w, h) and frame.image_path is None
    assert frame.depth.shape == (h, w) and frame.depth[5, 3] == pytest.approx(sp_depth_mm(20) / 1000)
    s = w / SP_RGB[0]
    k = np.array(SP_K)
    assert frame.intrinsics.to_list() == pytest.approx(
        [k[0, 0] * s, k[1, 1] * s, (k[0, 2] + 0.5) * s - 0.5, (k[1, 2] + 0.5) * s - 0.5, w, h]
    )


def test_scannetpp_splits_frame_step_and_masks(tmp_path, caplog):
    write_scannetpp(tmp_path)
    val = SP_SCENES["val"]
    assert ScanNetPP(tmp_path, "val").list_frames()[0].startswith(val + "/")
    stepped = ScanNetPP(tmp_path / "data", "train", _options(scannetpp_frame_step=20)).list_frames()
    assert stepped == [f"{SP_SCENES['train']}/frame_{i:06d}" for i in (0, 20)]
    with pytest.raises(DepthLMError, match="nvs_test.txt not found"):
        ScanNetPP(tmp_path, "test").list_frames()
    mask = np.full((SP_RGB[1], SP_RGB[0]), 255, dtype=np.uint8)
    mask[:, :60] = 3  # anonymised left half (codec noise near 0)
    path = tmp_path / "data" / val / "iphone" / "rgb_masks" / "frame_000010.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(mask).save(path)
    frame = ScanNetPP(tmp_path, "val").load(f"{val}/frame_000010")
    assert not frame.valid[:, :60].any() and frame.valid[:, 60:].all()


def break_scannetpp(root) -> dict[str, str]:
    """Train scene with frames 0..6 of which 1..6 are bad, each differently; returns key -> reason."""
    scene = SP_SCENES["train"]
    write_scannetpp(
        root, rgb_frames=range(7), depth_frames=range(7), json_frames=(0, 1, 2, 3, 5, 6), scene=scene
    )
    iphone = root / "data" / scene / "iphone"
    (iphone / "rgb" / "frame_000001.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_png16(iphone / "depth" / "frame_000002.png", np.zeros((SP_DEPTH[1], SP_DEPTH[0])))
    write_png16(iphone / "depth" / "frame_000003.png", np.full((SP_DEPTH[0], SP_DEPTH[0]), 1500))
    poses = json.loads((iphone / "pose_intrinsic_imu.json").read_text())
    poses["frame_000005"]["intrinsic"] = [[97.5, 0, 5000.0], [0, 97.5, 44.6], [0, 0, 1]]
    (iphone / "pose_intrinsic_imu.json").write_text(json.dumps(poses))
    jpeg = (iphone / "rgb" / "frame_000006.jpg").read_bytes()
    (iphone / "rgb" / "frame_000006.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # header fine, pixels cut off
    return {
        f"{scene}/frame_000001": "unreadable image",
        f"{scene}/frame_000002": "no valid depth",
        f"{scene}/frame_000003": "differ in aspect ratio",
        f"{scene}/frame_000004": "no entry for this frame",
        f"{scene}/frame_000005": "principal point",
        f"{scene}/frame_000006": "unreadable image",  # found when the framework decodes it
    }


def test_scannetpp_bad_frames_are_skipped_with_reasons(tmp_path):
    broken = break_scannetpp(tmp_path)
    other = tmp_path / "data" / SP_SCENES["val"] / "iphone"
    other.mkdir(parents=True)
    (other / "rgb.mkv").write_bytes(b"")  # downloaded, frames never extracted
    src = ScanNetPP(tmp_path, "train")
    for key, reason in list(broken.items())[:-1]:
        with pytest.raises(SkipFrame, match=reason):
            src.load(key)
    val = ScanNetPP(tmp_path, "val")
    (key,) = val.list_frames()
    with pytest.raises(SkipFrame, match="prepare_iphone_data"):
        val.load(key)


def test_scannetpp_build_rejects_bad_frames_without_crashing(tmp_path):
    broken = break_scannetpp(tmp_path / "raw")
    summary, records = build_all("scannetpp", tmp_path / "raw", tmp_path / "out")
    assert summary["frames"] == {"input": 7, "kept": 1, "rejected": 6}
    reasons = frame_rejects(tmp_path / "out")
    assert set(reasons) == set(broken)
    assert all(text in reasons[key] for key, text in broken.items())
    (rec,) = records.values()
    assert depth_at(rec, 25, 40) == pytest.approx(sp_depth_mm(0) / 1000)


def test_scannetpp_many_scenes_keep_memory_flat_and_a_broken_json_costs_its_frames(tmp_path):
    scenes = [f"scene{i:04d}ab" for i in range(6)]
    for sc in scenes:
        write_scannetpp(tmp_path, rgb_frames=(0, 1), depth_frames=(0, 1), scene=sc)
    (tmp_path / "mine.txt").write_text("\n".join(scenes) + "\n")
    (tmp_path / "data" / scenes[2] / "iphone" / "pose_intrinsic_imu.json").write_text('{"frame_000000": ')
    src = ScanNetPP(tmp_path, "train", _options(scannetpp_split_file=str(tmp_path / "mine.txt")))
    keys = src.list_frames()
    assert len(keys) == 12
    for key in keys:
        if key.startswith(scenes[2]):
            with pytest.raises(SkipFrame, match="unreadable camera file"):
                src.load(key)
        else:
            assert src.load(key).depth[40, 25] == pytest.approx(sp_depth_mm(int(key[-1])) / 1000)
    assert len(src._cache) <= 8  # the last two scenes' file maps and intrinsics, not all six


def test_scannetpp_build_records_metres_at_the_right_rgb_pixel(tmp_path):
    write_scannetpp(tmp_path / "raw")
    out = tmp_path / "out"
    summary, records = build_all("scannetpp", tmp_path / "raw", out)
    assert summary["frames"] == {"input": 4, "kept": 3, "rejected": 1}
    assert summary["frame_rejects"] == {"no depth map with the same frame index": 1}
    assert (
        "no depth map with the same frame index" in frame_rejects(out)[f"{SP_SCENES['train']}/frame_000030"]
    )
    for i in (0, 10, 20):
        rec = records[f"scannetpp/train/{SP_SCENES['train']}/frame_{i:06d}"]
        assert rec.depth_type == "z" and rec.intrinsics.size == SP_RGB
        assert depth_at(rec, 25, 40) == pytest.approx(sp_depth_mm(i) / 1000)  # metres, never normalised
        assert depth_at(rec, 60, 60) == pytest.approx(sp_plane_mm(i)[8, 8] / 1000)  # depth pixel (8, 8)


def test_scannetpp_build_with_downsampled_rgb_writes_the_image_it_labelled(tmp_path):
    write_scannetpp(tmp_path / "raw", rgb_frames=(0,), depth_frames=(0,))
    out = tmp_path / "out"
    _, records = build_all("scannetpp", tmp_path / "raw", out, scannetpp_register="downsample-rgb")
    rec = records[f"scannetpp/train/{SP_SCENES['train']}/frame_000000"]
    with Image.open(rec.image) as im:
        assert im.size == SP_DEPTH == rec.intrinsics.size
    assert depth_at(rec, 3, 5) == pytest.approx(sp_depth_mm(0) / 1000)


def _options(**values):
    import argparse

    return argparse.Namespace(**values)


def test_fixture_depth_pngs_are_16_bit(tmp_path):
    """The fixtures must be what the releases ship: single-channel 16-bit PNG depth."""
    write_png16(tmp_path / "d.png", np.array([[0, 65535]]))
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I;16") and np.asarray(im).tolist() == [[0, 65535]]
    write_rgb(tmp_path / "x.jpg", (8, 6))
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.format == "JPEG" and im.size == (8, 6)


def test_scannetpp_render_depth_is_refused_not_mislabelled(tmp_path):
    """Rendered depth follows the COLMAP camera (with distortion), the frames carry ARKit intrinsics:
    the builder says so instead of writing labels whose intrinsics describe another camera."""
    write_scannetpp(tmp_path)
    with pytest.raises(DepthLMError, match="COLMAP camera"):
        ScanNetPP(tmp_path, "train", _options(scannetpp_depth="render"))


# --- labels against the fixtures' planes (geometry computed by the test, not the reader) -------


def on_plane(rec, seed: int, pixels: np.ndarray | None = None) -> np.ndarray:
    """n . X - c of each label, X back-projected with the record's own intrinsics (at `pixels`
    where the label's depth belongs to another pixel than its own, e.g. an upsampled map)."""
    n, c = plane(seed)
    k = rec.intrinsics
    x, y = (rec.points if pixels is None else pixels).T
    z = rec.depths_as("z")
    xyz = np.stack([(x - k.cx) / k.fx * z, (y - k.cy) / k.fy * z, z], 1)
    return xyz @ n - c


def test_matterport_labels_lie_on_the_scene_plane(tmp_path):
    expected = write_matterport(tmp_path / "raw")
    _, records = build_all("matterport3d", tmp_path / "raw", tmp_path / "out")
    assert len(records) == 4
    for key, exp in expected.items():
        rec = records[f"matterport3d/train/{key}"]
        away = np.any(rec.points != exp["pixel"], axis=1)  # the marker pixel is off the plane on purpose
        assert away.sum() == MP_SIZE[0] * MP_SIZE[1] - 2  # every pixel but the marker and the hole
        np.testing.assert_allclose(on_plane(rec, exp["plane"])[away], 0, atol=2e-3)


@pytest.mark.parametrize("depth", ["zbuffer", "euclidean"])
def test_taskonomy_labels_lie_on_the_scene_plane(tmp_path, depth):
    """z-buffer (z) and depth_euclidean (ray distance) of one plane must give the same 3D points."""
    write_taskonomy(tmp_path / "raw")
    _, records = build_all(
        "taskonomy",
        tmp_path / "raw",
        tmp_path / "out",
        taskonomy_depth=depth,
    )
    assert len(records) == 2
    for rec in records.values():
        point, view = (int(t) for t in rec.id.rsplit("/", 1)[1].split("_")[1::2])
        away = np.any(rec.points != (7, 9), axis=1)
        assert away.sum() > 1000
        np.testing.assert_allclose(on_plane(rec, point + view)[away], 0, atol=8e-3)  # 1/512 m steps


def test_scannetpp_labels_lie_on_each_frames_own_plane(tmp_path):
    """ARKit depth is z in mm at 256x192 covering the RGB image: a label's depth belongs to the
    centre of its depth pixel, (j + 0.5) * 7.5 - 0.5 in RGB pixels. Each frame shows its own plane,
    so a frame paired with another frame's depth would land off it."""
    write_scannetpp(tmp_path / "raw")
    _, records = build_all("scannetpp", tmp_path / "raw", tmp_path / "out")
    for i in (0, 10, 20):
        rec = records[f"scannetpp/train/{SP_SCENES['train']}/frame_{i:06d}"]
        sx, sy = SP_RGB[0] / SP_DEPTH[0], SP_RGB[1] / SP_DEPTH[1]
        col, row = np.floor((rec.points[:, 0] + 0.5) / sx), np.floor((rec.points[:, 1] + 0.5) / sy)
        centres = np.stack([(col + 0.5) * sx - 0.5, (row + 0.5) * sy - 0.5], 1)
        away = ~((col == 3) & (row == 5))  # the pairing marker
        assert away.sum() > 5000
        np.testing.assert_allclose(on_plane(rec, i, centres)[away], 0, atol=1.5e-3)
