"""Procedural synthetic scenes: depth equals the analytic value, scenes are deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

import data_builders
from data_builders.scenes import Camera, SceneSpec, Shape, render, render_scene, sample_scene
from depthlm.geometry import Intrinsics, convert_depth, ray_scale
from depthlm.records import read_records

INTR = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)


@pytest.mark.parametrize("yaw", [0.0, 37.0])
def test_ground_plane_depth_matches_camera_height_and_pitch(yaw):
    h, pitch = 1.5, 10.0
    scene = render(SceneSpec(Camera(h, pitch, yaw), INTR, room=None))
    th = math.radians(pitch)
    horizon = INTR.cy - INTR.fy * math.tan(th)  # rows below it see the ground
    for row in (int(horizon) + 5, 150, 239):
        yn = (row - INTR.cy) / INTR.fy
        expected = h / (math.sin(th) + yn * math.cos(th))
        # the whole row is one ground line: z does not depend on the column
        np.testing.assert_allclose(scene.depth[row], expected, rtol=1e-5)
    assert (scene.depth[: int(horizon) - 1] == 0).all()  # sky: no label


def test_sphere_nearest_point_and_silhouette():
    r, dist = 0.5, 4.0
    spec = SceneSpec(
        Camera(0.5, 0.0, 0.0), INTR, room=None, shapes=(Shape("sphere", (0.0, 0.5, dist), (1, 1, 1)),)
    )
    scene = render(spec)
    assert scene.depth[120, 160] == pytest.approx(dist - r, rel=1e-6)
    # silhouette radius on the image: f * tan(asin(r / dist))
    radius_px = INTR.fx * math.tan(math.asin(r / dist))
    x0, y0, x1, y1 = scene.objects[0]["box"]
    assert (x1 - x0 + 1) / 2 == pytest.approx(radius_px, abs=1.0)
    assert (y1 - y0 + 1) / 2 == pytest.approx(radius_px, abs=1.0)
    assert (scene.masks == 1).sum() == scene.objects[0]["pixels"] > 0


def test_wall_facing_camera_has_constant_z_and_euclidean_ray():
    # a wall 5 m ahead, perpendicular to the view: z is 5 everywhere on it, the ray distance is
    # the Euclidean distance to the 3-D hit point
    scene = render(SceneSpec(Camera(1.5, 0.0, 0.0), INTR, room=(-50.0, 50.0, -50.0, 5.0), wall_height=30.0))
    wall = scene.depth[:100]  # above the horizon, only the wall is visible
    np.testing.assert_allclose(wall, 5.0, rtol=1e-6)
    ys, xs = np.mgrid[0:100, 0:320]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    ray = convert_depth(wall.ravel(), pts, INTR, "z", "ray")
    hit = np.stack([(pts[:, 0] - 160) / 300 * 5, (pts[:, 1] - 120) / 300 * 5, np.full(len(pts), 5.0)], axis=1)
    np.testing.assert_allclose(ray, np.linalg.norm(hit, axis=1), rtol=1e-6)


def test_box_front_face_depth():
    # an axis-aligned box whose near face is 3 m ahead, centred on the optical axis
    box = Shape("box", (0.0, 1.0, 3.5), (1.0, 2.0, 1.0))
    scene = render(SceneSpec(Camera(1.0, 0.0, 0.0), INTR, room=None, shapes=(box,)))
    np.testing.assert_allclose(scene.depth[110:131, 150:171], 3.0, rtol=1e-6)
    assert (scene.masks[110:131, 150:171] == 1).all()


def test_objects_lie_at_their_stated_distance_in_random_scenes():
    for seed in range(8):
        scene = render_scene(seed, size=(160, 120))
        ys, xs = np.mgrid[0:120, 0:160]
        scale = ray_scale(np.stack([xs.ravel(), ys.ravel()], axis=1), scene.intrinsics).reshape(120, 160)
        ray = scene.depth * scale
        for obj in scene.objects:
            if not obj["visible"]:
                continue
            reach = np.linalg.norm(obj["size_m"]) / 2 + 1e-3  # bounding sphere of the shape
            hit = ray[scene.masks == obj["id"]]
            assert hit.min() >= obj["distance_m"] - reach and hit.max() <= obj["distance_m"] + reach
            x0, y0, x1, y1 = obj["box"]
            m = scene.masks == obj["id"]
            assert m[y0 : y1 + 1, x0 : x1 + 1].sum() == m.sum() == obj["pixels"]


def test_deterministic_by_seed_and_focal_range_respected():
    a, b, c = render_scene(5), render_scene(5), render_scene(6)
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.depth, b.depth)
    assert a.objects == b.objects and a.intrinsics == b.intrinsics
    assert not np.array_equal(a.depth, c.depth)
    focals = [render_scene(s, size=(64, 48), focal_range=(150, 600)).intrinsics.fx for s in range(30)]
    assert 150 <= min(focals) and max(focals) <= 600 and max(focals) - min(focals) > 200


def test_easy_preset_fixes_camera_height_and_pitch():
    specs = [sample_scene(np.random.default_rng(s), preset="easy") for s in range(10)]
    assert {(s.camera.height, s.camera.pitch) for s in specs} == {(1.5, 15.0)}
    assert len({s.camera.yaw for s in specs}) == 10
    with pytest.raises(ValueError, match="preset"):
        sample_scene(np.random.default_rng(0), preset="hard")


def test_most_pixels_carry_depth_and_the_picture_is_not_flat():
    scene = render_scene(3)
    arr = np.asarray(scene.image)
    assert arr.shape == (240, 320, 3) and arr.std() > 20
    assert (scene.depth > 0).mean() > 0.5
    assert scene.depth.max() < 60  # rooms are at most 24 m across


def test_synthetic_source_records_carry_the_rendered_depth(tmp_path):
    out = tmp_path / "synth"
    data_builders.build(
        "synthetic", None, out, num_images=4, points_per_image=5, image_size=(96, 72), progress=False
    )
    records = read_records(out)
    assert len(records) == 4
    for rec in records:
        assert rec.depth_type == "z" and rec.dataset == "synthetic" and rec.split == "train"
        assert rec.intrinsics.size == (96, 72) and len(rec) == 5
        objects = rec.extras["objects"]
        assert isinstance(objects, list) and (out / rec.extras["masks"]).is_file()
    # frame 000002 is the scene of its documented seed: depths equal the rendered map at those pixels
    seed = int(np.random.SeedSequence([0, 0, 2]).generate_state(1)[0])
    scene = render_scene(seed, size=(96, 72))
    rec = next(r for r in records if r.id.endswith("/000002"))
    px = rec.points.astype(int)
    np.testing.assert_allclose(rec.depths, scene.depth[px[:, 1], px[:, 0]], atol=1e-6)
