"""The four LiDAR sources, run through data_builders.build on tiny releases of known geometry.

Each fixture (tests/fixtures_lidar.py) holds a wall at 30 m and a box in front of it,
seen by a LiDAR at t_lidar and a camera 1 m further down the road at t_camera.
"""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_lidar as fx
import numpy as np
import pytest
from PIL import Image

from data_builders import build
from depthlm.errors import DepthLMError

RIG = fx.Rig()


def records(out: Path) -> list[dict]:
    return [
        json.loads(line) for p in sorted(out.glob("records-*.jsonl")) for line in p.read_text().splitlines()
    ]


def labels(rec: dict) -> dict[tuple[int, int], float]:
    return {tuple(p): d for p, d in zip(rec["pixel_coords"], rec["depth"])}


def run(source: str, root: Path, out: Path, split: str, **options) -> tuple[dict, list[dict]]:
    """Every label kept (points_per_image=0) and the framework's own edge filter off, so
    what is checked is the source's projection, z-buffer and occlusion test."""
    summary = build(
        source, root, out, split=split, points_per_image=0, edge_threshold=0, progress=False, **options
    )
    return summary, records(out)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, tuple[Path, str, np.ndarray]]:
    """source -> (root, split, world points of its sweep)."""
    root = tmp_path_factory.mktemp("lidar")
    fx.write_nuscenes(root / "nuscenes", RIG)
    fx.write_argoverse2(root / "argoverse2", RIG)
    fx.write_ddad(root / "ddad", RIG)
    waymo_hits = fx.write_waymo(root / "waymo", RIG)
    sweep = fx.sweep_world(RIG)
    return {
        "nuscenes": (root / "nuscenes", "mini_val", sweep),
        "argoverse2": (root / "argoverse2", "val", sweep),
        "ddad": (root / "ddad", "val", sweep),
        "waymo": (root / "waymo", "val", waymo_hits),
    }


SOURCES = ("nuscenes", "argoverse2", "ddad", "waymo")


@pytest.mark.parametrize("source", SOURCES)
def test_depths_and_pixels_match_the_analytic_scene(source, releases, tmp_path):
    root, split, sweep = releases[source]
    summary, recs = run(source, root, tmp_path / "out", split)
    assert summary["images"] == 1 and len(recs) == 1
    rec = recs[0]
    assert rec["depth_type"] == "z"
    assert rec["intrinsics"] == pytest.approx([fx.F, fx.F, fx.CX, fx.CY, fx.W, fx.H])
    built = labels(rec)
    exp = fx.expected(RIG, sweep)
    truth = exp.truth()  # nearest visible depth at every pixel a visible point falls in
    # every label sits at the pixel its 3D point projects to, with that point's exact z-depth
    assert set(built) <= set(truth)
    np.testing.assert_allclose([built[k] for k in built], [truth[k] for k in built], atol=1e-3)
    # ... and nearly every visible pixel is labelled (the occlusion window trims box edges)
    assert len(built) >= 0.97 * len(truth)
    # both surfaces are there: the box front (~12.5 m) and the wall (~28.5 m)
    depths = np.array(list(built.values()))
    assert (depths < 14).sum() > 300 and (depths > 27).sum() > 3000


@pytest.mark.parametrize("source", SOURCES)
def test_see_through_points_are_removed(source, releases, tmp_path):
    """The LiDAR sees wall behind the box where the camera sees the box; none of it is labelled,
    and it is the occlusion test (not the z-buffer alone) that removes it."""
    root, split, sweep = releases[source]
    exp = fx.expected(RIG, sweep)
    hidden = {tuple(p) for p in exp.pixels[exp.in_image & ~exp.visible]}
    hidden -= set(exp.truth())  # pixels that also hold a visible point are the z-buffer's job
    assert len(hidden) > 100
    _, recs = run(source, root, tmp_path / "default", split)
    assert not hidden & set(labels(recs[0]))
    _, recs = run(source, root, tmp_path / "no-window", split, occlusion="window", occlusion_window=1)
    leaked = hidden & set(labels(recs[0]))
    assert len(leaked) > 100
    # the old 7 px window catches them on this dense sweep (0.25 deg, 1.3 px apart) but not at
    # real density: tests/test_lidar_visibility.py
    assert recs[0]["extras"]["lidar_points"]["kept"] == len(labels(recs[0]))


@pytest.mark.parametrize("source", SOURCES)
def test_ego_motion_compensation_changes_the_labels(source, releases, tmp_path):
    """The car drives 1 m between LiDAR and camera: ignoring it puts every label ~1 m too far."""
    root, split, sweep = releases[source]
    truth = fx.expected(RIG, sweep).truth()
    _, recs = run(source, root, tmp_path / "still", split, ignore_ego_motion=True)
    still = labels(recs[0])
    if source != "waymo":  # Waymo's pixels come from its projection component, which moved with the car
        # the labels of a camera that stayed where the LiDAR was: what the reference computes for nuScenes
        static_cam = RIG.world_from_ego_lidar @ RIG.ego_from_cam
        static_truth = fx.expected(RIG, sweep, static_cam).truth()
        assert set(still) <= set(static_truth)
        np.testing.assert_allclose([still[k] for k in still], [static_truth[k] for k in still], atol=1e-3)
    wall = [k for k in still if k in truth and truth[k] > 27]
    err = np.array([still[k] - truth[k] for k in wall])
    assert len(wall) > 1000 and np.median(err) == pytest.approx(1.0, abs=0.05)


def test_waymo_labels_follow_the_undistorted_image(releases, tmp_path):
    """Waymo images are raw; the build writes the undistorted image and labels at pinhole pixels
    (forward mapping of the projection component's pixels)."""
    root, split, sweep = releases["waymo"]
    _, recs = run("waymo", root, tmp_path / "out", split)
    rec = recs[0]
    assert rec["extras"]["pixels_from"] == "lidar_camera_projection"
    image = Image.open(tmp_path / "out" / rec["image"])
    assert image.size == (fx.W, fx.H)
    built = labels(rec)
    truth = fx.expected(RIG, sweep).truth()
    # near the image corners the distortion moves pixels by several px: labels still match
    corner = [k for k in built if abs(k[0] - fx.CX) > 120 and abs(k[1] - fx.CY) > 60]
    assert len(corner) > 50 and all(k in truth for k in corner)


def test_argoverse2_images_are_used_as_released(releases, tmp_path):
    """AV2 images come undistorted (k1..k3 are for reference): no warp, the original JPEG is the record's
    image, and labels follow the pinhole intrinsics even though the fixture's k1..k3 are non-zero."""
    root, split, sweep = releases["argoverse2"]
    _, recs = run("argoverse2", root, tmp_path / "out", split)
    image = (tmp_path / "out" / recs[0]["image"]).resolve()
    assert image.suffix == ".jpg" and image.is_relative_to(root.resolve())
    assert set(labels(recs[0])) <= set(fx.expected(RIG, sweep).truth())


def test_waymo_without_projection_component_projects_itself(releases, tmp_path):
    root, split, sweep = releases["waymo"]
    copy = tmp_path / "waymo"
    for p in root.rglob("*.parquet"):
        if "lidar_camera_projection" not in p.parts:
            (copy / p.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            (copy / p.relative_to(root)).write_bytes(p.read_bytes())
    _, recs = run("waymo", copy, tmp_path / "out", split)
    assert recs[0]["extras"]["pixels_from"] == "pinhole"
    built, truth = labels(recs[0]), fx.expected(RIG, sweep).truth()
    assert set(built) <= set(truth) and len(built) >= 0.97 * len(truth)


def test_nuscenes_official_splits_do_not_overlap(tmp_path):
    fx.write_nuscenes(tmp_path / "mini", RIG, "v1.0-mini", scenes=("scene-0061", "scene-0103"))
    from data_builders.sources.nuscenes import NuScenes

    train = NuScenes(tmp_path / "mini", "mini_train").list_frames()
    val = NuScenes(tmp_path / "mini", "mini_val").list_frames()
    assert [k.split("/")[0] for k in train] == ["scene-0061"]
    assert [k.split("/")[0] for k in val] == ["scene-0103"]
    # trainval: train is every scene of the release except the official val (and test) scenes
    fx.write_nuscenes(
        tmp_path / "full", RIG, "v1.0-trainval", scenes=("scene-0001", "scene-0003", "scene-0004")
    )
    train = {k.split("/")[0] for k in NuScenes(tmp_path / "full", "train").list_frames()}
    val = {k.split("/")[0] for k in NuScenes(tmp_path / "full", "val").list_frames()}
    assert train == {"scene-0001", "scene-0004"} and val == {"scene-0003"}


def test_ddad_splits_come_from_the_index(releases):
    from data_builders.sources.ddad import DDAD

    root = releases["ddad"][0]
    assert [k.split("/")[0] for k in DDAD(root, "val").list_frames()] == ["000150"]
    assert [k.split("/")[0] for k in DDAD(root, "train").list_frames()] == ["000000"]


@pytest.mark.parametrize("source", SOURCES)
def test_wrong_root_is_one_clear_error(source, tmp_path):
    with pytest.raises(DepthLMError, match=source):
        build(
            source,
            tmp_path,
            tmp_path / "out",
            split="val" if source != "nuscenes" else "mini_val",
            progress=False,
        )


def test_broken_lidar_file_is_a_listed_reject(tmp_path):
    fx.write_nuscenes(tmp_path / "nus", RIG)
    for p in (tmp_path / "nus" / "samples" / "LIDAR_TOP").glob("*.pcd.bin"):
        p.write_bytes(b"\0" * 7)  # not float32 x 5
    summary, recs = run("nuscenes", tmp_path / "nus", tmp_path / "out", "mini_val")
    assert summary["images"] == 0 and not recs
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 1 and "not a multiple of 5" in rejects[0]["reason"] and rejects[0]["frame"]


def test_waymo_euler_convention_is_yaw_pitch_roll():
    """Waymo per-pixel poses are 3-2-1 Euler angles: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    from scipy.spatial.transform import Rotation

    from data_builders.sources.waymo import euler_to_matrix

    roll, pitch, yaw = 0.1, -0.2, 0.7
    expected = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()
    np.testing.assert_allclose(euler_to_matrix(roll, pitch, yaw), expected, atol=1e-12)
    assert not np.allclose(euler_to_matrix(yaw, pitch, roll), expected, atol=1e-3)


def test_ddad_lower_case_datum_names_are_found(tmp_path):
    """DDAD's README writes the datums camera_01 and lidar; frames must not all be rejected."""
    fx.write_ddad(tmp_path / "ddad", RIG, datum_names=("camera_01", "lidar"))
    summary, recs = run("ddad", tmp_path / "ddad", tmp_path / "out", "val")
    assert summary["images"] == 1 and summary["frames"]["rejected"] == 0
    exp = fx.expected(RIG, fx.sweep_world(RIG))
    assert set(labels(recs[0])) <= set(exp.truth())


@pytest.mark.parametrize("dt_ms, paired", [(24, True), (30, False)])
def test_argoverse2_pairs_images_within_25_ms_as_av2_does(tmp_path, dt_ms, paired):
    """av2's SensorDataloader matches a sweep to an image at most CAM_SHUTTER_INTERVAL_MS / 2 =
    25 ms away (cameras at 20 Hz); an image 30 ms off belongs to no sweep."""
    fx.write_argoverse2(tmp_path / "av2", RIG, camera_dt_ns=dt_ms * 1_000_000)
    if paired:
        summary, _ = run("argoverse2", tmp_path / "av2", tmp_path / "out", "val")
        assert summary["images"] == 1
    else:
        with pytest.raises(DepthLMError, match="no frames"):
            run("argoverse2", tmp_path / "av2", tmp_path / "out", "val")


def test_waymo_depth_follows_the_rolling_shutter_of_each_row(releases, tmp_path):
    """A top-to-bottom rolling shutter read out over 40 ms while the car drives 10 m/s: a point
    exposed dt after the image pose is seen from 10 m/s * dt further along, so its z-depth is
    shorter by that much times the camera axis' share of the motion (the test's own geometry)."""
    speed, readout = 10.0, 0.04
    root = tmp_path / "rs"
    fx.write_waymo(
        root, RIG, rolling_shutter={"direction": 1, "velocity": (speed, 0, 0), "readout_s": readout}
    )
    _, rs = run("waymo", root, tmp_path / "out-rs", "val")
    root_g, split, _ = releases["waymo"]
    _, glob = run("waymo", root_g, tmp_path / "out-global", split)
    assert rs[0]["extras"]["depth_pose"] == "per-point rolling-shutter pose"
    moved, still = labels(rs[0]), labels(glob[0])
    common = sorted(set(moved) & set(still))
    assert len(common) > 1000
    # camera z axis in the world: the vehicle's x axis turned by the heading
    along = np.cos(np.deg2rad(RIG.heading_deg))
    for x, y in common[:: max(1, len(common) // 300)]:
        # raw (distorted) row of this undistorted pixel, by the fixture's own lens model
        xn, yn = (x - fx.CX) / fx.F, (y - fx.CY) / fx.F
        _, yd = fx.opencv_distort(np.array([xn]), np.array([yn]), **fx.WAYMO_DIST)
        row = float(yd[0]) * fx.F + fx.CY
        dt = (row + 0.5) / fx.H * readout - readout / 2
        assert moved[(x, y)] == pytest.approx(still[(x, y)] - speed * dt * along, abs=2e-3)


@pytest.mark.parametrize(
    "source, split, key, layout",
    [
        ("argoverse2", "val", "log/ring_front_center", "log_id/camera/lidar_timestamp_ns"),
        ("ddad", "val", "000150/CAMERA_01/first", "scene/camera/sample_index"),
        ("waymo", "val", "seg/123/REAR", "segment/timestamp_micros/CAMERA"),
    ],
)
def test_malformed_frame_key_is_a_reject_naming_the_layout(releases, source, split, key, layout):
    from data_builders.base import SkipFrame
    from data_builders.framework import get_source

    src = get_source(source)(releases[source][0], split)
    with pytest.raises(SkipFrame, match=f"malformed frame key '{key}' \\(expected {layout}\\)"):
        src.load(key)


def test_lidar_sources_share_their_options_and_check_camera_names(releases):
    """One LiDAR base: every driving source takes the same options with the same defaults;
    Waymo's --cameras take any case and an unknown name is one clear error."""
    import argparse

    from data_builders.framework import get_source, source_defaults
    from data_builders.sources.waymo import Waymo

    defaults = [source_defaults(get_source(s)) for s in SOURCES]
    assert all(d == defaults[0] for d in defaults)
    assert set(defaults[0]) == {
        "occlusion",
        "occlusion_window",
        "occlusion_tol",
        "cameras",
        "ignore_ego_motion",
        "pair_offset",
    }
    root = releases["waymo"][0]
    assert Waymo(root, "val", argparse.Namespace(cameras="front, side_left")).cameras == (
        "FRONT",
        "SIDE_LEFT",
    )
    with pytest.raises(DepthLMError, match=r"waymo: unknown cameras \['REAR'\]"):
        Waymo(root, "val", argparse.Namespace(cameras="front,rear")).list_frames()
