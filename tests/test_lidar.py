"""data_builders.lidar: transforms, projection, z-buffer, occlusion test, lens distortion."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_lidar import opencv_distort
from PIL import Image, ImageDraw
from scipy.spatial.transform import Rotation

from data_builders.lidar import (
    Distortion,
    VisibilityConfig,
    apply,
    chain,
    interpolate_pose,
    invert,
    occluded,
    quat_to_matrix,
    se3,
    undistort_image,
    undistort_pixels,
    visible_points,
)
from depthlm.geometry import Intrinsics

INTR = Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240)


def test_quaternion_orders_match_scipy():
    rots = Rotation.random(20, random_state=0)
    for r in rots:
        x, y, z, w = r.as_quat()
        np.testing.assert_allclose(quat_to_matrix([w, x, y, z], "wxyz"), r.as_matrix(), atol=1e-12)
        np.testing.assert_allclose(quat_to_matrix([x, y, z, w], "xyzw"), r.as_matrix(), atol=1e-12)
    # a wrong order is a different rotation: the test above can fail
    x, y, z, w = rots[0].as_quat()
    assert not np.allclose(quat_to_matrix([x, y, z, w], "wxyz"), rots[0].as_matrix(), atol=1e-3)
    with pytest.raises(ValueError):
        quat_to_matrix([0, 0, 0, 0])


def test_chain_invert_apply_round_trip():
    a = se3(Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix(), [1, 2, 3])
    b = se3(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [0, -1, 0])
    pts = np.random.default_rng(0).normal(size=(50, 3))
    np.testing.assert_allclose(apply(chain(a, b), pts), apply(a, apply(b, pts)))
    np.testing.assert_allclose(apply(chain(invert(a), a), pts), pts, atol=1e-12)


def test_interpolate_pose_between_samples():
    p0 = se3(np.eye(3), [0, 0, 0])
    p1 = se3(Rotation.from_euler("z", 10, degrees=True).as_matrix(), [2, 0, 0])
    mid = interpolate_pose(np.array([0, 100]), np.stack([p0, p1]), 50)
    np.testing.assert_allclose(mid[:3, 3], [1, 0, 0])
    np.testing.assert_allclose(
        Rotation.from_matrix(mid[:3, :3]).as_euler("xyz", degrees=True), [0, 0, 5], atol=1e-3
    )
    np.testing.assert_array_equal(interpolate_pose(np.array([0, 100]), np.stack([p0, p1]), 100), p1)
    with pytest.raises(ValueError, match="outside the pose log"):
        interpolate_pose(np.array([0, 100]), np.stack([p0, p1]), 1000)


def test_visible_points_zbuffer_keeps_nearest_and_drops_outside():
    pixels = np.array(
        [[10.2, 20.4], [9.8, 19.6], [10.0, 20.0], [-3.0, 5.0], [319.6, 5.0], [50.0, 50.0], [60.0, 60.0]]
    )
    depths = np.array([8.0, 5.0, 6.0, 3.0, 3.0, 0.1, 7.0])
    pix, d, stats = visible_points(pixels, depths, (320, 240), VisibilityConfig(window=1))
    # (10, 20) holds three points -> nearest (5 m); x=-3 and x=319.6 (pixel 320) are outside; 0.1 m is at the lens
    assert pix.tolist() == [[10, 20], [60, 60]]
    assert d.tolist() == [5.0, 7.0]
    assert stats.as_dict() == {"total": 7, "in_front": 6, "in_image": 4, "nearest_per_pixel": 2, "kept": 2}


def test_occlusion_drops_see_through_points_only():
    # a foreground point at 10 m; background points at 30 m at 2 px (inside a 7 px window) and at 10 px
    ij = np.array([[100, 100], [102, 100], [110, 100], [100, 103]])
    d = np.array([10.0, 30.0, 30.0, 10.5])
    mask = occluded(ij, d, (320, 240), window=7, rel_tol=0.1)
    assert mask.tolist() == [False, True, False, False]  # 10.5 m is the same surface (within 10 %)
    pix, _, stats = visible_points(ij.astype(float), d, (320, 240), VisibilityConfig(window=7))
    assert [102, 100] not in pix.tolist() and stats.kept == 3
    pix, _, _ = visible_points(ij.astype(float), d, (320, 240), VisibilityConfig(window=1))
    assert [102, 100] in pix.tolist()  # window 1 disables the test


DIST = Distortion(k1=-0.12, k2=0.02, p1=0.001, p2=-0.0015, k3=0.0)


def test_undistort_pixels_maps_forward():
    """A ray's raw (distorted) pixel maps to its pinhole pixel; mapping backwards is ~px off."""
    rng = np.random.default_rng(0)
    xn, yn = rng.uniform(-0.5, 0.5, 200), rng.uniform(-0.38, 0.38, 200)
    pinhole = np.stack([300 * xn + 159.5, 300 * yn + 119.5], 1)
    xd, yd = opencv_distort(xn, yn, k1=DIST.k1, k2=DIST.k2, p1=DIST.p1, p2=DIST.p2, k3=DIST.k3)
    raw = np.stack([300 * xd + 159.5, 300 * yd + 119.5], 1)
    np.testing.assert_allclose(undistort_pixels(raw, INTR, DIST), pinhole, atol=1e-6)
    # the reference's direction (applying the distortion to labelled pixels) is measurably wrong
    xw, yw = opencv_distort((raw[:, 0] - 159.5) / 300, (raw[:, 1] - 119.5) / 300, **DIST.__dict__)
    backwards = np.stack([300 * xw + 159.5, 300 * yw + 119.5], 1)
    err = np.linalg.norm(backwards - pinhole, axis=1)
    assert err.max() > 5.0


def test_undistort_image_agrees_with_undistort_pixels():
    """A dot drawn where a ray lands in the raw image appears where its label goes."""
    xn, yn = 0.42, -0.3  # near a corner: large distortion
    xd, yd = opencv_distort(np.array([xn]), np.array([yn]), **DIST.__dict__)
    raw_px = (300 * xd[0] + 159.5, 300 * yd[0] + 119.5)
    raw = Image.new("RGB", (320, 240))
    ImageDraw.Draw(raw).ellipse(
        [raw_px[0] - 2, raw_px[1] - 2, raw_px[0] + 2, raw_px[1] + 2], fill=(255, 255, 255)
    )
    out = np.asarray(undistort_image(raw, INTR, DIST), dtype=float).sum(axis=2)
    ys, xs = np.nonzero(out > 0.5 * out.max())
    centre = np.array([np.average(xs, weights=out[ys, xs]), np.average(ys, weights=out[ys, xs])])
    label = undistort_pixels(np.array([raw_px]), INTR, DIST)[0]
    np.testing.assert_allclose(centre, label, atol=0.5)
    np.testing.assert_allclose(label, [300 * xn + 159.5, 300 * yn + 119.5], atol=1e-6)
    assert np.linalg.norm(np.array(raw_px) - label) > 5  # the distortion is not negligible here
