"""Argoverse 2 and Waymo with --pair-offset: the motion task's second view from the release poses.

The fixtures (tests/fixtures_pairs_av2_waymo.py) drive a car on a known circle; what each
record's extras.pair must say is the closed-form motion of a rigidly mounted camera along
it, computed here (fixtures_pairs_av2_waymo.camera_motion), not with data_builders.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fixtures_pairs_av2_waymo as fx
import numpy as np
import pytest
from fixtures_lidar import WAYMO_DIST, opencv_distort
from PIL import Image
from scipy import ndimage
from scipy.spatial.transform import Rotation

from data_builders import build
from data_builders.pairs import NO_PAIR_NOTE
from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import read_records
from depthlm.settings import RenderSettings

WAYMO_CAMERAS = {"FRONT": 1, "SIDE_LEFT": 4}


def unpaired(extras: dict) -> str | None:
    """Why a record built with --pair-offset has no second view (its extras.notes), or None."""
    found = [n[len(NO_PAIR_NOTE) :] for n in extras.get("notes", []) if n.startswith(NO_PAIR_NOTE)]
    return found[0] if found else None


def records(out: Path) -> dict[str, dict]:
    """Records by frame key (the id's part after dataset/split/)."""
    recs = [
        json.loads(line) for p in sorted(out.glob("records-*.jsonl")) for line in p.read_text().splitlines()
    ]
    return {r["id"].split("/", 2)[2]: r for r in recs}


def run(source: str, root: Path, out: Path, **options) -> tuple[dict, dict[str, dict]]:
    summary = build(source, root, out, split="val", points_per_image=5, progress=False, **options)
    return summary, records(out)


def homogeneous(rot, t) -> np.ndarray:
    return fx.matrix(np.asarray(rot, dtype=np.float64), t)


@pytest.fixture(scope="module")
def av2(tmp_path_factory) -> tuple[Path, dict[str, list[int]]]:
    root = tmp_path_factory.mktemp("av2-pairs")
    return root, fx.write_argoverse2_pairs(root)


@pytest.fixture(scope="module")
def waymo(tmp_path_factory) -> tuple[Path, dict[str, list[int]]]:
    root = tmp_path_factory.mktemp("waymo-pairs")
    return root, fx.write_waymo_pairs(root)


def chord(mount, dt_s: float) -> float:
    """How far a camera mounted at `mount` (ego frame) moves in dt_s: the chord of its own circle
    around the turn centre (0, r) -- a camera on the inside of the turn moves less than the car."""
    r = fx.SPEED / fx.YAW_RATE
    return 2 * np.hypot(mount[0], r - mount[1]) * np.sin(fx.YAW_RATE * dt_s / 2)


def check_motion(pair: dict, ego_from_camera: np.ndarray, dt_s: float) -> np.ndarray:
    """pair's translation and rotation equal the camera's closed-form motion over dt_s; returns it."""
    t, r = fx.camera_motion(ego_from_camera, dt_s)
    np.testing.assert_allclose(pair["translation_m"], t, atol=1e-3)  # AV2 poses are interpolated
    np.testing.assert_allclose(pair["rotation"], r, atol=1e-4)
    # the car turned left by YAW_RATE * dt: for a level camera a rotation about its up axis (-y)
    rotvec = Rotation.from_matrix(np.asarray(pair["rotation"])).as_rotvec()
    np.testing.assert_allclose(rotvec, [0.0, -fx.YAW_RATE * dt_s, 0.0], atol=1e-4)
    return t


# ----------------------------------------------------------------------------- Argoverse 2


def av2_ego_from_camera(cam: str) -> np.ndarray:
    return homogeneous(*fx.AV2_EGO_FROM_CAMERA[cam])


@pytest.mark.parametrize("offset", [1, 2])
def test_av2_pair_is_the_same_camera_n_frames_later_with_its_exact_motion(av2, tmp_path, caplog, offset):
    root, sweeps = av2
    with caplog.at_level("WARNING"):
        summary, recs = run("argoverse2", root, tmp_path / "out", pair_offset=offset)
    n_frames = 2 * sum(len(s) for s in sweeps.values())  # two cameras
    assert summary["images"] == len(recs) == n_frames  # no frame lost to a missing pair
    checked = 0
    for log_id, sweep_times in sweeps.items():
        images = fx.av2_image_times(len(sweep_times))
        for cam in fx.AV2_EGO_FROM_CAMERA:
            for t_lidar in sweep_times:
                rec = recs[f"{log_id}/{cam}/{t_lidar}"]
                k = images.index(t_lidar + fx.AV2_CAMERA_LAG_NS)  # the sweep's own image
                extras = rec["extras"]
                if k + offset >= len(images):  # the end of the log: kept, without a pair, and said why
                    assert "pair" not in extras
                    assert unpaired(extras).startswith(f"no {cam} image {offset} camera frames after")
                    continue
                pair = extras["pair"]
                later = images[k + offset]
                # the release's own file of the image `offset` frames later, with the camera's intrinsics
                assert (tmp_path / "out" / pair["image"]).resolve() == (
                    root / "val" / log_id / "sensors" / "cameras" / cam / f"{later}.jpg"
                ).resolve()
                assert pair["intrinsics"] == pytest.approx([fx.F, fx.F, fx.CX, fx.CY, fx.W, fx.H])
                assert unpaired(extras) is None
                dt = (later - images[k]) / 1e9
                assert dt == pytest.approx(0.05 * offset)
                t = check_motion(pair, av2_ego_from_camera(cam), dt)
                moved = np.linalg.norm(t)
                assert moved == pytest.approx(chord(fx.AV2_EGO_FROM_CAMERA[cam][1], dt), abs=1e-3)
                assert moved == pytest.approx(fx.SPEED * dt, rel=0.05)  # ~1 m per 20 Hz frame
                if cam == "ring_front_center":  # mostly along its view
                    assert t[2] > 0.99 * moved
                else:  # the car drove forward: the left camera sees that as moving to its right
                    assert t[0] > 0.95 * moved and abs(t[2]) < 0.3 * moved
                checked += 1
    ends = 2 * len(sweeps)  # each log's last sweep, per camera: its image is within `offset` of the end
    assert checked == n_frames - ends
    unit = "camera frame" if offset == 1 else "camera frames"
    assert (
        f"argoverse2: --pair-offset {offset}: {ends} of {n_frames} frames have no image of their camera "
        f"{offset} {unit} later in their log" in caplog.text
    )


def test_av2_default_build_writes_what_it_wrote_before(av2, tmp_path):
    """--pair-offset 0 (the default) adds nothing; with pairs, only extras.pair / notes differ."""
    root, _ = av2
    summary, plain = run("argoverse2", root, tmp_path / "plain")
    _, paired = run("argoverse2", root, tmp_path / "paired", pair_offset=1)
    assert summary["settings"]["source_options"]["pair_offset"] == 0
    assert not any({"pair", "notes"} & set(r["extras"]) for r in plain.values())
    assert sum("pair" in r["extras"] for r in paired.values()) == 6  # so the comparison is not vacuous
    for key, rec in paired.items():
        rec["extras"].pop("pair", None)
        rec["extras"].pop("notes", None)
        assert rec == plain[key]


def test_av2_pair_feeds_the_motion_task_with_the_distance_moved(av2, tmp_path):
    root, sweeps = av2
    log_id, sweep_times = next(iter(sweeps.items()))
    out = tmp_path / "out"
    run("argoverse2", root, out, pair_offset=2, copy_images=True)
    recs = {r.id.split("/", 2)[2]: r for r in read_records(out)}
    rec = recs[f"{log_id}/ring_side_left/{sweep_times[0]}"]
    # the copied second view is the release's image 2 frames (100 ms) later, byte for byte
    later = fx.av2_image_times(len(sweep_times))[2]
    release = root / "val" / log_id / "sensors" / "cameras" / "ring_side_left" / f"{later}.jpg"
    copied = out / json.loads((out / "records-00000.jsonl").read_text().splitlines()[0])["image"]
    assert copied.parent == out / "images"
    assert (out / rec.extras["pair"]["image"]).read_bytes() == release.read_bytes()
    q = tasks.get("motion").query(rec, RenderSettings(f_uni=500), np.random.default_rng(0))
    truth = np.linalg.norm(fx.camera_motion(av2_ego_from_camera("ring_side_left"), 0.1)[0])
    assert q.truth == pytest.approx(truth, abs=1e-3)
    assert q.truth == pytest.approx(chord(fx.AV2_EGO_FROM_CAMERA["ring_side_left"][1], 0.1), abs=1e-3)
    assert len(q.images) == 2
    assert q.answer == f"The camera moved about {truth:.2f} meters."


def test_av2_motion_query_of_an_uncopied_build(av2, tmp_path):
    """Without --copy-images extras.pair.image is the release's file, relative to the records
    folder ('../<root>/val/<log>/sensors/...'); depthlm.records resolves it on reading."""
    root, sweeps = av2
    log_id, sweep_times = next(iter(sweeps.items()))
    run("argoverse2", root, tmp_path / "out", pair_offset=2)
    recs = {r.id.split("/", 2)[2]: r for r in read_records(tmp_path / "out")}
    rec = recs[f"{log_id}/ring_side_left/{sweep_times[0]}"]
    q = tasks.get("motion").query(rec, RenderSettings(f_uni=500), np.random.default_rng(0))
    assert q.truth == pytest.approx(chord(fx.AV2_EGO_FROM_CAMERA["ring_side_left"][1], 0.1), abs=1e-3)


def test_av2_negative_pair_offset_is_one_clear_error(av2, tmp_path):
    root, _ = av2
    with pytest.raises(DepthLMError, match=r"^argoverse2: --pair-offset must be >= 0, got -1$"):
        run("argoverse2", root, tmp_path / "out", pair_offset=-1)


# ----------------------------------------------------------------------------- Waymo


def waymo_ego_from_camera(cam_id: int) -> np.ndarray:
    """vehicle_from_camera with OpenCV camera axes: Waymo's axes re-expressed by the test's own table."""
    return homogeneous(*fx.WAYMO_VEHICLE_FROM_CAMERA[cam_id]) @ homogeneous(
        fx.WAYMO_CAMERA_FROM_OPENCV, [0, 0, 0]
    )


def undistorted(jpeg: bytes) -> np.ndarray:
    """The raw image resampled onto the pinhole grid with the OpenCV distortion formula
    (tests/fixtures_lidar.opencv_distort), bilinear."""
    raw = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float64)
    ys, xs = np.mgrid[0 : fx.H, 0 : fx.W].astype(np.float64)
    xd, yd = opencv_distort((xs - fx.CX) / fx.F, (ys - fx.CY) / fx.F, **WAYMO_DIST)
    coords = [yd * fx.F + fx.CY, xd * fx.F + fx.CX]
    return np.stack([ndimage.map_coordinates(raw[..., c], coords, order=1) for c in range(3)], -1)


def test_waymo_pair_is_the_same_camera_next_frame_undistorted_with_its_exact_motion(waymo, tmp_path, caplog):
    root, segments = waymo
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        summary, recs = run("waymo", root, out, pair_offset=1, cameras="FRONT,SIDE_LEFT")
    n_frames = 2 * sum(len(t) for t in segments.values())
    assert summary["images"] == len(recs) == n_frames
    checked = 0
    for s, (segment, times) in enumerate(segments.items()):
        for cam, cam_id in WAYMO_CAMERAS.items():
            for j, ts in enumerate(times):
                extras = recs[f"{segment}/{ts}/{cam}"]["extras"]
                if j + 1 == len(times):  # the segment's last frame: kept without a pair
                    assert "pair" not in extras
                    assert unpaired(extras) == f"no {cam} image 1 frames after {ts} in segment {segment}"
                    continue
                pair = extras["pair"]
                assert pair["intrinsics"] == pytest.approx([fx.F, fx.F, fx.CX, fx.CY, fx.W, fx.H])
                # the image is the next frame's, undistorted exactly as that frame's own record image
                second = np.asarray(Image.open(out / pair["image"]), dtype=np.float64)
                following = recs[f"{segment}/{times[j + 1]}/{cam}"]
                assert np.array_equal(
                    second, np.asarray(Image.open(out / following["image"]), dtype=np.float64)
                )
                # ... and that is the undistortion of the right raw JPEG (not of this frame's)
                right = np.abs(second - undistorted(fx.waymo_raw_jpeg(s, cam_id, j + 1)))[8:-8, 8:-8]
                wrong = np.abs(second - undistorted(fx.waymo_raw_jpeg(s, cam_id, j)))[8:-8, 8:-8]
                assert right.mean() < 1.0 and wrong.mean() > 20
                t = check_motion(pair, waymo_ego_from_camera(cam_id), 0.1)  # 2 m and 5 deg
                moved = np.linalg.norm(t)
                assert moved == pytest.approx(chord(fx.WAYMO_VEHICLE_FROM_CAMERA[cam_id][1], 0.1), abs=1e-3)
                assert moved == pytest.approx(2.0, rel=0.05)
                if cam == "FRONT":
                    assert t[2] > 0.99 * moved
                else:  # the side camera sees the forward drive as sideways motion (to its right)
                    assert t[0] > 0.95 * moved and abs(t[2]) < 0.3 * moved
                checked += 1
    assert checked == n_frames - 2 * len(segments)
    assert (
        f"waymo: --pair-offset 1: {2 * len(segments)} of {n_frames} frames have no image of their camera "
        "1 frame later in their segment" in caplog.text
    )


def test_waymo_default_build_writes_what_it_wrote_before(waymo, tmp_path):
    root, _ = waymo
    summary, plain = run("waymo", root, tmp_path / "plain", cameras="FRONT,SIDE_LEFT")
    _, paired = run("waymo", root, tmp_path / "paired", pair_offset=1, cameras="FRONT,SIDE_LEFT")
    assert summary["settings"]["source_options"]["pair_offset"] == 0
    assert not any({"pair", "notes"} & set(r["extras"]) for r in plain.values())
    assert sum("pair" in r["extras"] for r in paired.values()) == 6
    assert not list((tmp_path / "plain" / "images").glob("*pair*"))
    for key, rec in paired.items():
        rec["extras"].pop("pair", None)
        rec["extras"].pop("notes", None)
        assert rec == plain[key]
        # the frame's own image is the same picture
        assert (tmp_path / "paired" / rec["image"]).read_bytes() == (
            tmp_path / "plain" / rec["image"]
        ).read_bytes()


def test_waymo_pair_feeds_the_motion_task_with_the_distance_moved(waymo, tmp_path):
    root, segments = waymo
    segment, times = next(iter(segments.items()))
    out = tmp_path / "out"
    run("waymo", root, out, pair_offset=2, cameras="SIDE_LEFT")
    recs = {r.id.split("/", 2)[2]: r for r in read_records(out)}
    assert "pair" not in recs[f"{segment}/{times[1]}/SIDE_LEFT"].extras  # 2 later would be past the end
    rec = recs[f"{segment}/{times[0]}/SIDE_LEFT"]
    q = tasks.get("motion").query(rec, RenderSettings(f_uni=500), np.random.default_rng(0))
    truth = np.linalg.norm(fx.camera_motion(waymo_ego_from_camera(4), 0.2)[0])
    assert q.truth == pytest.approx(truth, abs=1e-3)
    assert q.truth == pytest.approx(chord(fx.WAYMO_VEHICLE_FROM_CAMERA[4][1], 0.2), abs=1e-3)  # ~3.8 m
    assert q.answer == f"The camera moved about {truth:.2f} meters."


# ----------------------------------------------------------------------------- what goes wrong


@pytest.mark.parametrize("source", ["argoverse2", "waymo"])
def test_pairs_use_the_true_camera_poses_even_with_ignore_ego_motion(source, av2, waymo, tmp_path):
    """--ignore-ego-motion concerns the labels only: the second view's pose is the camera's real one."""
    root = (av2 if source == "argoverse2" else waymo)[0]
    _, moving = run(source, root, tmp_path / "moving", pair_offset=1)
    _, still = run(source, root, tmp_path / "still", pair_offset=1, ignore_ego_motion=True)
    pairs = [(k, r["extras"]["pair"]) for k, r in moving.items() if "pair" in r["extras"]]
    assert len(pairs) == 6
    for key, pair in pairs:
        other = still[key]["extras"]["pair"]
        assert other["translation_m"] == pair["translation_m"] and other["rotation"] == pair["rotation"]


def test_av2_broken_second_image_rejects_the_frame_and_an_image_past_the_pose_log_drops_only_the_pair(
    tmp_path,
):
    root = tmp_path / "raw"
    sweeps = fx.write_argoverse2_pairs(root)
    log_id, sweep_times = next(iter(sweeps.items()))
    log = root / "val" / log_id
    images = fx.av2_image_times(len(sweep_times))
    # the front camera's second image (frame 1) is truncated to half its height
    broken = log / "sensors" / "cameras" / "ring_front_center" / f"{images[1]}.jpg"
    fx.smooth_image(0).crop((0, 0, fx.W, fx.H // 2)).save(broken)
    # one more image per camera 50 ms after the last, 40 ms past the end of the pose log
    extra = images[-1] + fx.AV2_CAMERA_PERIOD_NS
    pose_times = fx.feather.read_table(log / "city_SE3_egovehicle.feather").column("timestamp_ns")
    assert np.asarray(pose_times).max() < extra - 20_000_000
    for cam in fx.AV2_EGO_FROM_CAMERA:
        fx.smooth_image(99).save(log / "sensors" / "cameras" / cam / f"{extra}.jpg", quality=95)
    summary, recs = run("argoverse2", root, tmp_path / "out", pair_offset=1)
    first = f"{log_id}/ring_front_center/{sweep_times[0]}"
    assert first not in recs
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert {r["key"]: r["reason"] for r in rejects if "reason" in r and r["key"] == first} == {
        first: f"{first}: second view size mismatch: {broken} is {fx.W}x{fx.H // 2}, its intrinsics "
        f"describe {fx.W}x{fx.H}"
    }
    assert summary["frames"]["rejected"] == 1
    for cam in fx.AV2_EGO_FROM_CAMERA:
        extras = recs[f"{log_id}/{cam}/{sweep_times[-1]}"]["extras"]  # kept: its own poses are fine
        assert "pair" not in extras and unpaired(extras).startswith(f"no pose for the {cam} image {extra}")
        assert "pair" in recs[f"{log_id}/{cam}/{sweep_times[1]}"]["extras"]


def test_waymo_image_without_pose_drops_the_pair_and_an_undecodable_one_rejects_the_frame(tmp_path):
    root = tmp_path / "raw"
    segments = fx.write_waymo_pairs(root)
    segment, times = next(iter(segments.items()))
    path = root / "validation" / "camera_image" / f"{segment}.parquet"
    table = fx.pq.read_table(path)
    ts = np.asarray(table.column("key.frame_timestamp_micros"))
    cams = np.asarray(table.column("key.camera_name"))
    poses = table.column("[CameraImageComponent].pose.transform").to_pylist()
    jpegs = table.column("[CameraImageComponent].image").to_pylist()
    for i in range(len(ts)):
        if ts[i] == times[1] and cams[i] == 1:  # FRONT of frame 1: no pose
            poses[i] = None
        if ts[i] == times[2] and cams[i] == 4:  # SIDE_LEFT of frame 2: not a JPEG
            jpegs[i] = b"not a jpeg"
    table = table.set_column(
        table.schema.get_field_index("[CameraImageComponent].pose.transform"),
        "[CameraImageComponent].pose.transform",
        fx.pa.array(poses, fx.pa.list_(fx.pa.float64())),
    )
    table = table.set_column(
        table.schema.get_field_index("[CameraImageComponent].image"),
        "[CameraImageComponent].image",
        fx.pa.array(jpegs, fx.pa.binary()),
    )
    fx.pq.write_table(table, path)
    summary, recs = run("waymo", root, tmp_path / "out", pair_offset=1, cameras="FRONT,SIDE_LEFT")
    # frames 0 and 1 of FRONT lose their pair (frame 1's pose is missing), and keep their records
    for j in (0, 1):
        extras = recs[f"{segment}/{times[j]}/FRONT"]["extras"]
        assert "pair" not in extras and unpaired(extras).startswith(
            "no usable pose.transform (finite rigid 4x4, row-major) for the FRONT image"
        )
    # SIDE_LEFT frame 1 points at the undecodable image: rejected with the reason (frame 2 too: its own)
    rejects = {
        r["key"]: r["reason"]
        for r in map(json.loads, (tmp_path / "out" / "rejects.jsonl").read_text().splitlines())
        if "reason" in r
    }
    key = f"{segment}/{times[1]}/SIDE_LEFT"
    assert key not in recs and rejects[key].startswith(f"{key}: second view undecodable: SIDE_LEFT JPEG at")
    assert f"{segment}/{times[2]}/SIDE_LEFT" in rejects
    assert summary["frames"]["rejected"] == 2
