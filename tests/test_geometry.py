import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from depthlm.geometry import (
    Intrinsics,
    convert_depth,
    crop,
    grid_box,
    inside,
    normalize_focal,
    random_crop_box,
    ray_scale,
    resize_image,
    resize_points,
    unproject,
)

K = Intrinsics(fx=500.0, fy=400.0, cx=319.5, cy=239.5, width=640, height=480)


def project(xyz: np.ndarray, k: Intrinsics) -> np.ndarray:
    return np.stack([xyz[:, 0] / xyz[:, 2] * k.fx + k.cx, xyz[:, 1] / xyz[:, 2] * k.fy + k.cy], axis=1)


def test_normalize_focal_makes_both_focals_f_uni_and_keeps_points_on_their_rays():
    image = Image.new("RGB", K.size)
    xyz = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 1.0]])
    pts = project(xyz, K)
    out, k2, pts2 = normalize_focal(image, K, pts, f_uni=1000.0)
    assert out.size == (1280, 1200) == k2.size
    # both axes normalised (the reference scales y by f/fx too, leaving fy at 800 here)
    assert k2.fx == pytest.approx(1000.0) and k2.fy == pytest.approx(1000.0)
    np.testing.assert_allclose(pts2, project(xyz, k2), atol=1e-9)


def test_rounding_is_described_exactly_by_the_returned_intrinsics():
    k = Intrinsics(559.62, 558.14, 361.87, 241.99, 640, 480)
    xyz = np.array([[0.7, 0.1, 3.0]])
    _, k2, pts2 = normalize_focal(Image.new("RGB", k.size), k, project(xyz, k), 1000.0)
    assert (k2.width, k2.height) == (1144, 860)
    assert abs(k2.fx - 1000) < 0.5 and abs(k2.fy - 1000) < 0.5
    np.testing.assert_allclose(pts2, project(xyz, k2), atol=1e-9)


def test_pixel_centre_convention_maps_corners_to_corners():
    pts = np.array([[-0.5, -0.5], [639.5, 479.5]])
    np.testing.assert_allclose(resize_points(pts, (640, 480), (1280, 960)), [[-0.5, -0.5], [1279.5, 959.5]])


def test_crop_drops_points_that_leave_and_shifts_the_principal_point():
    image = Image.new("RGB", K.size)
    pts = np.array([[10.0, 10.0], [300.0, 200.0], [639.0, 479.0]])
    out, k2, pts2, keep = crop(image, K, pts, (100, 50, 400, 300))
    assert out.size == (400, 300) == k2.size
    assert keep.tolist() == [False, True, False]
    assert (k2.cx, k2.cy) == (K.cx - 100, K.cy - 50)
    np.testing.assert_allclose(pts2[1], [200.0, 150.0])


def test_crop_beyond_the_image_pads():
    image = Image.new("RGB", (10, 10), (255, 255, 255))
    out, k2, _, _ = crop(image, Intrinsics(10, 10, 4.5, 4.5, 10, 10), np.zeros((0, 2)), (-3, -2, 16, 14))
    arr = np.asarray(out)
    assert out.size == (16, 14) and arr[0, 0].tolist() == [0, 0, 0] and arr[5, 5].tolist() == [255, 255, 255]
    assert (k2.cx, k2.cy) == (7.5, 6.5)


def test_random_crop_keeps_the_query_and_lands_on_the_grid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = (float(rng.uniform(0, 1143)), float(rng.uniform(0, 859)))
        left, top, w, h = random_crop_box(
            (1144, 860), (1000, 1400), (700, 1200), rng, grid=28, must_contain=q
        )
        assert w % 28 == 0 and h % 28 == 0 and w <= 1144 and h <= 860
        assert inside(np.array([[q[0] - left, q[1] - top]]), (w, h))[0]


def test_random_crop_respects_pixel_budget():
    box = random_crop_box(
        (3000, 3000), (2000, 2800), (2000, 2800), np.random.default_rng(1), 28, max_pixels=500_000
    )
    assert box[2] * box[3] <= 500_000


def test_grid_box_pads_to_grid_and_crops_around_center_over_budget():
    assert grid_box((1144, 860), 28, 10**7) == (-2, -4, 1148, 868)
    left, top, w, h = grid_box((2000, 1500), 28, 1_000_000, center=(1900.0, 100.0))
    assert w * h <= 1_000_000 and w % 28 == 0 and left + w == 2000 and top == 0


def test_z_and_ray_roundtrip_and_values():
    pts = np.array([[K.cx, K.cy], [K.cx + K.fx, K.cy]])  # optical centre; 45 degrees to the right
    np.testing.assert_allclose(ray_scale(pts, K), [1.0, np.sqrt(2)])
    ray = convert_depth([2.0, 2.0], pts, K, "z", "ray")
    np.testing.assert_allclose(ray, [2.0, 2 * np.sqrt(2)])
    np.testing.assert_allclose(convert_depth(ray, pts, K, "ray", "z"), [2.0, 2.0])


def test_unproject_inverts_projection_for_both_depth_types():
    xyz = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    pts = project(xyz, K)
    np.testing.assert_allclose(unproject(pts, xyz[:, 2], K, "z"), xyz)
    np.testing.assert_allclose(unproject(pts, np.linalg.norm(xyz, axis=1), K, "ray"), xyz)


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth shading plus fine noise: shrinking it without antialiasing aliases the noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 128 + 100 * np.sin(xx / 37.0)[..., None] * np.cos(yy / 23.0)[..., None] * np.array(
        [1.0, 0.6, -0.8]
    )
    return Image.fromarray(np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "src, dst", [((640, 480), (1148, 862)), ((1600, 1200), (300, 225)), ((333, 250), (333, 251))]
)
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_resize_image_is_pillows_antialiased_bicubic_within_two_levels(src, dst, mode):
    image = photo_like(*src).convert(mode)
    ours = resize_image(image, dst)
    assert ours.mode == mode and ours.size == dst
    diff = np.abs(
        np.asarray(ours, dtype=int) - np.asarray(image.resize(dst, Image.Resampling.BICUBIC), dtype=int)
    )
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_resize_image_leaves_other_modes_to_pillow_and_same_size_alone():
    depth = Image.fromarray(np.linspace(0.5, 9.0, 64 * 48, dtype=np.float32).reshape(48, 64))
    out = resize_image(depth, (32, 24))
    assert out.mode == "F" and np.allclose(
        np.asarray(out), np.asarray(depth.resize((32, 24), Image.Resampling.BICUBIC))
    )
    image = photo_like(64, 48)
    assert resize_image(image, (64, 48)) is image


def test_resize_image_gives_the_same_pixels_with_and_without_simd(tmp_path):
    """Every machine renders the same view: torch's generic kernel equals its SIMD one bit for bit."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from PIL import Image
        from depthlm.geometry import resize_image
        noise = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        for size in ((1148, 862), (300, 225)):
            np.save(f"{sys.argv[1]}_{size[0]}.npy", np.asarray(resize_image(Image.fromarray(noise), size)))
        """
    )
    for capability in ("default", None):  # None: the best this CPU has (AVX2/AVX512 here)
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        run = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / (capability or "best"))],
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
    for width in (1148, 300):
        assert np.array_equal(
            np.load(tmp_path / f"default_{width}.npy"), np.load(tmp_path / f"best_{width}.npy")
        )
