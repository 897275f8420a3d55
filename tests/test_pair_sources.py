"""Second views (extras.pair, ``--pair-offset``) from ScanNet++, nuScenes and DDAD.

Each release's fixture (tests/fixtures_pairs.py) moves its camera by motions chosen in words,
written in that release's own pose conventions. The expected relative poses below are written
from those words (cosines and sines of the turn, metres of the step), and checked once more
against world points seen from both fixture cameras; the motion task's truth must be the
distance moved.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import fixtures_pairs as fp
import numpy as np
import pytest
from PIL import Image

from data_builders import build
from data_builders.pairs import NO_PAIR_NOTE
from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import read_records
from depthlm.settings import RenderSettings

SETTINGS = RenderSettings(f_uni=500, marker_size=15)
C10, S10 = math.cos(math.radians(10)), math.sin(math.radians(10))
# the second camera's axes in the first camera's frame after turning 10 degrees LEFT about the
# (downward) y axis: its x axis (right) swings forward, its z axis (forward) swings to -x
TURN_LEFT_10 = np.array([[C10, 0.0, -S10], [0.0, 1.0, 0.0], [S10, 0.0, C10]])


def unpaired(extras: dict) -> str | None:
    """Why a record built with --pair-offset has no second view (its extras.notes), or None."""
    found = [n[len(NO_PAIR_NOTE) :] for n in extras.get("notes", []) if n.startswith(NO_PAIR_NOTE)]
    return found[0] if found else None


def run(source: str, root: Path, out: Path, split: str, **options) -> tuple[dict, dict[str, dict]]:
    summary = build(source, root, out, split=split, progress=False, seed=1, **options)
    recs = {}
    for path in sorted(out.glob("records-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            recs[rec["id"]] = rec
    return summary, recs


def rejects(out: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return {r["key"]: r["reason"] for r in lines if r.get("frame")}


def pair_of(rec: dict) -> dict:
    assert unpaired(rec["extras"]) is None, rec["extras"]["notes"]
    return rec["extras"]["pair"]


def assert_motion(pair: dict, move, rotation) -> None:
    assert pair["translation_m"] == pytest.approx(list(move), abs=1e-5)
    assert np.allclose(pair["rotation"], rotation, atol=1e-6)


def assert_maps_world_points(pair: dict, world_from_first: np.ndarray, world_from_second: np.ndarray) -> None:
    """A world point expressed in both fixture cameras: first = R @ second + t."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5, 3)) * 10
    in_first = (pts - world_from_first[:3, 3]) @ world_from_first[:3, :3]
    in_second = (pts - world_from_second[:3, 3]) @ world_from_second[:3, :3]
    r, t = np.asarray(pair["rotation"]), np.asarray(pair["translation_m"])
    assert np.allclose(in_second @ r.T + t, in_first, atol=1e-4)


def motion_truth(out: Path, record_id: str) -> tuple[float, str]:
    """The motion task's ground truth and second image for a written record, read back as a user would."""
    rec = next(r for r in read_records(out) if r.id == record_id)
    q = tasks.get("motion").query(rec, SETTINGS, np.random.default_rng(0))
    assert len(q.images) == 2
    return q.truth, q.meta["second_image"]


def without_pair_keys(recs: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for rid, rec in recs.items():
        rec = json.loads(json.dumps(rec))
        extras = rec.get("extras", {})
        extras.pop("pair", None)
        extras.pop("notes", None)
        if "extras" in rec and not extras:
            del rec["extras"]
        out[rid] = rec
    return out


# --- ScanNet++ --------------------------------------------------------------------------------


def sp_id(index: int) -> str:
    return f"scannetpp/train/{fp.SP_SCENE}/frame_{index:06d}"


def test_scannetpp_pairs_carry_the_aligned_pose_motion_and_the_next_extracted_frame(tmp_path):
    poses = fp.write_scannetpp_sequence(tmp_path / "raw")
    summary, recs = run("scannetpp", tmp_path / "raw", tmp_path / "out", "train", pair_offset=1)
    assert summary["frames"] == {"input": 4, "kept": 4, "rejected": 0}
    iphone = tmp_path / "raw" / "data" / fp.SP_SCENE / "iphone"
    # 0 -> 10: 1.5 m forward, turned 10 degrees left (the raw ARKit 'pose' would say: no motion)
    first = pair_of(recs[sp_id(0)])
    assert_motion(first, (0.0, 0.0, 1.5), TURN_LEFT_10)
    assert (tmp_path / "out" / first["image"]).resolve() == (iphone / "rgb" / "frame_000010.jpg").resolve()
    k = fp.SP_K
    assert first["intrinsics"] == [k[0][0], k[1][1], k[0][2], k[1][2], 120, 90]
    # 10 -> 20: half a metre to the right, no turn; 20 -> 30 as designed
    assert_motion(pair_of(recs[sp_id(10)]), (0.5, 0.0, 0.0), np.eye(3))
    for i, j in ((0, 10), (10, 20), (20, 30)):
        assert_maps_world_points(pair_of(recs[sp_id(i)]), poses[i], poses[j])
    assert recs[sp_id(30)]["extras"] == {"notes": [NO_PAIR_NOTE + "no frame 1 later in the scene"]}
    assert summary["record_notes"] == {"no second view": 1}  # counted, not only logged


def test_scannetpp_motion_query_of_a_copied_build_asks_the_distance_moved(tmp_path):
    fp.write_scannetpp_sequence(tmp_path / "raw")
    out = tmp_path / "out"
    run("scannetpp", tmp_path / "raw", out, "train", pair_offset=1, copy_images=True)
    truth, second = motion_truth(out, sp_id(0))
    assert truth == pytest.approx(1.5, abs=1e-5)
    release = tmp_path / "raw" / "data" / fp.SP_SCENE / "iphone" / "rgb" / "frame_000010.jpg"
    assert Path(second).parent == out / "images" and Path(second).read_bytes() == release.read_bytes()


def test_scannetpp_motion_query_of_an_uncopied_build(tmp_path):
    fp.write_scannetpp_sequence(tmp_path / "raw")
    run("scannetpp", tmp_path / "raw", tmp_path / "out", "train", pair_offset=1)
    truth, _ = motion_truth(tmp_path / "out", sp_id(0))
    assert truth == pytest.approx(1.5, abs=1e-5)


def test_scannetpp_default_build_writes_no_pair_and_otherwise_the_same_records(tmp_path):
    fp.write_scannetpp_sequence(tmp_path / "raw")
    _, plain = run("scannetpp", tmp_path / "raw", tmp_path / "plain", "train")
    _, paired = run("scannetpp", tmp_path / "raw", tmp_path / "paired", "train", pair_offset=1)
    assert all("extras" not in rec for rec in plain.values())  # as before pairs existed
    assert plain == without_pair_keys(paired)


def test_scannetpp_offset_counts_kept_frames_and_the_frame_step_applies(tmp_path):
    fp.write_scannetpp_sequence(tmp_path / "raw")
    _, recs = run(
        "scannetpp", tmp_path / "raw", tmp_path / "out", "train", pair_offset=1, scannetpp_frame_step=20
    )
    assert sorted(recs) == [sp_id(0), sp_id(20)]
    # frames 0 and 20 are kept: 0's second view is 20 (1.5 m forward then 0.5 m right of that camera)
    pair = pair_of(recs[sp_id(0)])
    assert pair["image"].endswith("frame_000020.jpg")
    assert pair["translation_m"] == pytest.approx([0.5 * C10, 0.0, 1.5 + 0.5 * S10], abs=1e-5)


def test_scannetpp_downsampled_rgb_pairs_with_the_downsampled_second_view(tmp_path):
    fp.write_scannetpp_sequence(tmp_path / "raw")
    out = tmp_path / "out"
    _, recs = run(
        "scannetpp", tmp_path / "raw", out, "train", pair_offset=1, scannetpp_register="downsample-rgb"
    )
    pair, later = pair_of(recs[sp_id(0)]), recs[sp_id(10)]
    # the very image and intrinsics frame 10's own record got: same file content, 16x12
    assert pair["image"].endswith(".png") and pair["intrinsics"] == later["intrinsics"]
    assert np.array_equal(
        np.asarray(Image.open(out / pair["image"])), np.asarray(Image.open(out / later["image"]))
    )
    assert Image.open(out / pair["image"]).size == (16, 12)
    assert_motion(pair, (0.0, 0.0, 1.5), TURN_LEFT_10)


def test_scannetpp_frames_without_aligned_pose_keep_their_record_without_pair(tmp_path, caplog):
    fp.write_scannetpp_sequence(tmp_path / "raw", without_aligned_pose=(20,))
    with caplog.at_level("WARNING"):
        summary, recs = run("scannetpp", tmp_path / "raw", tmp_path / "out", "train", pair_offset=1)
    assert summary["frames"]["kept"] == 4
    assert "1 of 4 frames have no image of their camera 1 frame later in their scene" in caplog.text
    assert pair_of(recs[sp_id(0)])["translation_m"] == pytest.approx([0, 0, 1.5], abs=1e-5)
    for i in (10, 20):
        assert recs[sp_id(i)]["extras"] == {
            "notes": [NO_PAIR_NOTE + "no usable aligned_pose for frame_000020 in pose_intrinsic_imu.json"]
        }


# --- nuScenes ---------------------------------------------------------------------------------


def nu_id(scene: str, files: dict, i: int) -> str:
    stamp = files[scene][i].rsplit("__", 1)[1].split(".")[0]
    return f"nuscenes/{fp.NU_SPLIT}/{scene}/CAM_FRONT/{stamp}"


def nu_world_from_cam(i: int) -> np.ndarray:
    ego = fp.transform(fp.turn("z", 30.0), [100.0, 50.0, 0.0])
    for forward, left in fp.NU_EGO_STEPS[:i]:
        ego = ego @ fp.ego_step(forward, left)
    return ego @ fp.NU_EGO_FROM_CAM


@pytest.mark.parametrize("ignore_ego_motion", [False, True])
def test_nuscenes_pairs_follow_the_sample_chain_with_ego_pose_at_the_camera_time(tmp_path, ignore_ego_motion):
    files = fp.write_nuscenes_drive(tmp_path / "raw")
    out = tmp_path / "out"
    summary, recs = run(
        "nuscenes", tmp_path / "raw", out, fp.NU_SPLIT, pair_offset=1, ignore_ego_motion=ignore_ego_motion
    )
    # The car drove 1.5 m and turned 10 degrees left; CAM_FRONT sits 1.5 m ahead of the ego origin,
    # so the camera centre moved (1.5 cos10, 1.5 sin10) in the car's (forward, left) axes: in the
    # camera's axes (x right = -left, z = forward) that is (-1.5 sin10, 0, 1.5 cos10), 1.5 m long.
    first = pair_of(recs[nu_id(fp.NU_DRIVE, files, 0)])
    assert_motion(first, (-1.5 * S10, 0.0, 1.5 * C10), TURN_LEFT_10)
    assert (out / first["image"]).resolve() == (tmp_path / "raw" / files[fp.NU_DRIVE][1]).resolve()
    assert first["intrinsics"] == [fp.F, fp.F, fp.CX, fp.CY, fp.W, fp.H]
    assert_motion(pair_of(recs[nu_id(fp.NU_DRIVE, files, 1)]), (0.0, 0.0, 2.0), np.eye(3))  # 2 m straight
    for i in (0, 1):
        assert_maps_world_points(
            pair_of(recs[nu_id(fp.NU_DRIVE, files, i)]), nu_world_from_cam(i), nu_world_from_cam(i + 1)
        )
    assert unpaired(recs[nu_id(fp.NU_DRIVE, files, 2)]["extras"]) == "the scene has no sample 1 later"
    # the broken scene: a missing second image rejects the frame with the path; its own image is missing too
    reasons = rejects(out)
    missing = tmp_path / "raw" / files[fp.NU_BROKEN][1]
    assert reasons[nu_id(fp.NU_BROKEN, files, 0).split("/", 2)[2]].endswith(
        f"second view image missing: {missing}"
    )
    assert summary["frame_rejects"] == {"image missing": 1, "second view image missing": 1}
    truth, second = motion_truth(out, nu_id(fp.NU_DRIVE, files, 0))
    assert truth == pytest.approx(1.5, abs=1e-5)
    assert Path(second).resolve() == (tmp_path / "raw" / files[fp.NU_DRIVE][1]).resolve()


def test_nuscenes_default_build_writes_no_pair_and_otherwise_the_same_records(tmp_path):
    fp.write_nuscenes_drive(tmp_path / "raw")
    plain_summary, plain = run("nuscenes", tmp_path / "raw", tmp_path / "plain", fp.NU_SPLIT)
    _, paired = run("nuscenes", tmp_path / "raw", tmp_path / "paired", fp.NU_SPLIT, pair_offset=1)
    assert plain_summary["frames"]["kept"] == 4  # the frame whose second view is missing is kept here
    assert not any("pair" in rec["extras"] or "notes" in rec["extras"] for rec in plain.values())
    assert {k: v for k, v in plain.items() if k in paired} == without_pair_keys(paired)


# --- DDAD -------------------------------------------------------------------------------------


def dd_id(scene: str, i: int) -> str:
    return f"ddad/val/{scene}/CAMERA_01/{i:05d}"


def test_ddad_pairs_use_datum_poses_and_undistort_the_second_view_like_the_frame(tmp_path):
    files = fp.write_ddad_drive(tmp_path / "raw")
    out = tmp_path / "out"
    summary, recs = run("ddad", tmp_path / "raw", out, "val", pair_offset=1)
    first, later = pair_of(recs[dd_id(fp.DD_DISTORTED, 0)]), recs[dd_id(fp.DD_DISTORTED, 1)]
    assert_motion(first, (0.0, 0.0, 1.5), TURN_LEFT_10)  # 1.5 m forward, 10 degrees left
    c4, s4 = math.cos(math.radians(4)), math.sin(math.radians(4))
    turn_right_4 = np.array([[c4, 0.0, s4], [0.0, 1.0, 0.0], [-s4, 0.0, c4]])
    assert_motion(pair_of(later), (0.3, 0.0, 2.0), turn_right_4)
    # the second view is undistorted exactly as the later frame's own image was, same intrinsics
    pair_pixels = np.asarray(Image.open(out / first["image"]))
    assert np.array_equal(pair_pixels, np.asarray(Image.open(out / later["image"])))
    raw = np.asarray(
        Image.open(tmp_path / "raw" / fp.DD_DISTORTED / files[fp.DD_DISTORTED][1]).convert("RGB")
    )
    assert pair_pixels.shape == raw.shape and np.abs(pair_pixels.astype(int) - raw).mean() > 5
    assert first["intrinsics"] == later["intrinsics"] == [fp.F, fp.F, fp.CX, fp.CY, fp.W, fp.H]
    # the scene without distortion: sample 1's image is missing (sample 0 rejected with its path),
    # sample 3's camera has no pose (sample 2 kept without pair), sample 3 ends the scene
    missing = tmp_path / "raw" / fp.DD_GAPS / files[fp.DD_GAPS][1]
    assert rejects(out)[f"{fp.DD_GAPS}/CAMERA_01/00000"].endswith(f"second view image missing: {missing}")
    assert summary["frame_rejects"]["second view image missing"] == 1
    assert unpaired(recs[dd_id(fp.DD_GAPS, 2)]["extras"]) == "the later CAMERA_01 datum has no pose"
    assert unpaired(recs[dd_id(fp.DD_GAPS, 3)]["extras"]) == "the scene has no sample 1 later"
    truth, _ = motion_truth(out, dd_id(fp.DD_DISTORTED, 1))
    assert truth == pytest.approx(math.hypot(0.3, 2.0), abs=1e-5)


def test_ddad_undistorted_release_pairs_reference_the_jpeg(tmp_path):
    files = fp.write_ddad_drive(tmp_path / "raw")
    (tmp_path / "raw" / fp.DD_GAPS / files[fp.DD_GAPS][1]).unlink(missing_ok=True)
    camera = fp.camera_image(0)
    camera.save(tmp_path / "raw" / fp.DD_GAPS / files[fp.DD_GAPS][1], quality=95)
    _, recs = run("ddad", tmp_path / "raw", tmp_path / "out", "val", pair_offset=1)
    pair = pair_of(recs[dd_id(fp.DD_GAPS, 0)])
    target = (tmp_path / "raw" / fp.DD_GAPS / files[fp.DD_GAPS][1]).resolve()
    assert (tmp_path / "out" / pair["image"]).resolve() == target
    assert_motion(pair, (0.0, 0.0, 1.5), TURN_LEFT_10)


def test_ddad_default_build_writes_no_pair_and_otherwise_the_same_records(tmp_path):
    fp.write_ddad_drive(tmp_path / "raw")
    _, plain = run("ddad", tmp_path / "raw", tmp_path / "plain", "val")
    _, paired = run("ddad", tmp_path / "raw", tmp_path / "paired", "val", pair_offset=1)
    assert not any("pair" in rec["extras"] or "notes" in rec["extras"] for rec in plain.values())
    assert {k: v for k, v in plain.items() if k in paired} == without_pair_keys(paired)


# --- shared -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "writer", "split"),
    [
        ("scannetpp", fp.write_scannetpp_sequence, "train"),
        ("nuscenes", fp.write_nuscenes_drive, fp.NU_SPLIT),
        ("ddad", fp.write_ddad_drive, "val"),
    ],
)
def test_a_negative_pair_offset_is_one_clear_error(tmp_path, source, writer, split):
    writer(tmp_path / "raw")
    with pytest.raises(DepthLMError, match=f"^{source}: --pair-offset must be >= 0, got -1$"):
        build(source, tmp_path / "raw", tmp_path / "out", split=split, progress=False, pair_offset=-1)
