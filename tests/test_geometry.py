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
    focal_size,
    grid_box,
    inside,
    random_crop_box,
    ray_scale,
    resample_view,
    resize_image,
    resize_points,
    unproject,
)

K = Intrinsics(fx=500.0, fy=400.0, cx=319.5, cy=239.5, width=640, height=480)


def project(xyz: np.ndarray, k: Intrinsics) -> np.ndarray:
    return np.stack([xyz[:, 0] / xyz[:, 2] * k.fx + k.cx, xyz[:, 1] / xyz[:, 2] * k.fy + k.cy], axis=1)


def normalize_focal(k: Intrinsics, points: np.ndarray, f_uni: float):
    """What render does to the geometry: the frame size, its intrinsics, the points in it."""
    size = focal_size(k, f_uni)
    return size, k.resized(*size), resize_points(points, k.size, size)


def test_normalize_focal_makes_both_focals_f_uni_and_keeps_points_on_their_rays():
    xyz = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 1.0]])
    pts = project(xyz, K)
    size, k2, pts2 = normalize_focal(K, pts, f_uni=1000.0)
    assert size == (1280, 1200) == k2.size
    # both axes normalised (the reference scales y by f/fx too, leaving fy at 800 here)
    assert k2.fx == pytest.approx(1000.0) and k2.fy == pytest.approx(1000.0)
    np.testing.assert_allclose(pts2, project(xyz, k2), atol=1e-9)


def test_rounding_is_described_exactly_by_the_returned_intrinsics():
    k = Intrinsics(559.62, 558.14, 361.87, 241.99, 640, 480)
    xyz = np.array([[0.7, 0.1, 3.0]])
    _, k2, pts2 = normalize_focal(k, project(xyz, k), 1000.0)
    assert (k2.width, k2.height) == (1144, 860)
    assert abs(k2.fx - 1000) < 0.5 and abs(k2.fy - 1000) < 0.5
    np.testing.assert_allclose(pts2, project(xyz, k2), atol=1e-9)


def test_pixel_centre_convention_maps_corners_to_corners():
    pts = np.array([[-0.5, -0.5], [639.5, 479.5]])
    np.testing.assert_allclose(resize_points(pts, (640, 480), (1280, 960)), [[-0.5, -0.5], [1279.5, 959.5]])


def test_a_view_shifts_the_principal_point_and_keeps_points_on_their_rays():
    pts = np.array([[10.0, 10.0], [300.0, 200.0], [639.0, 479.0]])
    k2 = K.cropped(100, 50, 400, 300)
    assert k2.size == (400, 300) and (k2.cx, k2.cy) == (K.cx - 100, K.cy - 50)
    shifted = pts - [100, 50]
    assert inside(shifted, k2.size).tolist() == [False, True, False]
    np.testing.assert_allclose(ray_scale(shifted, k2), ray_scale(pts, K))


@pytest.mark.parametrize("whole_frame_ratio", [4.0, 0.0])  # 0: never the whole frame, even when small
def test_resample_view_equals_resize_then_crop_and_pads_black_beyond_the_frame(
    monkeypatch, whole_frame_ratio
):
    import depthlm.geometry as geometry

    monkeypatch.setattr(geometry, "_WHOLE_FRAME_MAX_RATIO", whole_frame_ratio)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for frame, box in [
        ((120, 90), (10, 20, 56, 28)),  # upscale, inside
        ((31, 19), (-3, -2, 40, 30)),  # downscale, padded on every side
        ((53, 37), (5, 5, 20, 20)),  # same size: a plain crop
        ((200, 37), (150, -4, 80, 50)),  # one axis only
    ]:
        ref = np.zeros((box[3], box[2], 3), np.uint8)
        full = np.asarray(resize_image(image, frame))
        left, top, w, h = box
        xs, ys = slice(max(left, 0), min(left + w, frame[0])), slice(max(top, 0), min(top + h, frame[1]))
        ref[ys.start - top : ys.stop - top, xs.start - left : xs.stop - left] = full[ys, xs]
        np.testing.assert_array_equal(np.asarray(resample_view(image, frame, box)), ref)
    assert np.asarray(resample_view(image, (50, 50), (60, 60, 10, 10))).max() == 0  # wholly outside


def test_resample_view_in_narrow_strips_gives_the_same_pixels(monkeypatch):
    import depthlm.geometry as geometry

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (41, 67, 3), dtype=np.uint8))
    expected = np.asarray(resample_view(image, (300, 180), (40, 30, 150, 120)))
    monkeypatch.setattr(geometry, "_STRIP_PIXELS", 700)  # a few rows / columns per pass
    monkeypatch.setattr(geometry, "_WHOLE_FRAME_MAX_RATIO", 0.0)
    np.testing.assert_array_equal(np.asarray(resample_view(image, (300, 180), (40, 30, 150, 120))), expected)


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


PLAUSIBILITY_CASES = [
    ((500.0, 500.0, 319.5, 239.5, 640, 480), True),
    ((559.62, 558.14, 361.87, 241.99, 640, 480), True),  # iBims-1
    ((5.0, 5.0, 319.5, 239.5, 640, 480), False),  # 178 deg: build rejected it, eval took it
    ((1e-9, 1e-9, 319.5, 239.5, 640, 480), False),
    ((56000.0, 56000.0, 319.5, 239.5, 640, 480), False),  # 0.65 deg: a unit error
    ((500.0, 200.0, 319.5, 239.5, 640, 480), False),  # fx/fy 2.5
    ((500.0, 500.0, 700.0, 239.5, 640, 480), False),  # principal point outside
    ((500.0, 500.0, 319.5, 239.5, 10**12, 10**12), False),
]


@pytest.mark.parametrize("values, plausible", PLAUSIBILITY_CASES)
def test_build_eval_render_ask_and_the_app_share_one_plausibility_range(values, plausible, tmp_path):
    """Intrinsics accepted by one path and refused by another (eval took what build refused)
    is how a bad camera slips through: every path must give the same verdict."""
    from data_builders import framework
    from data_builders.base import SkipFrame
    from data_builders.sources import _checks
    from depthlm.errors import DepthLMError
    from depthlm.intrinsics_guess import guess_camera
    from depthlm.records import parse_record
    from depthlm.render import render
    from depthlm.settings import RenderSettings

    k = Intrinsics.from_list(values)
    verdicts = {}

    def verdict(name, fn, errors):
        try:
            fn()
            verdicts[name] = True
        except errors as err:
            assert "\n" not in str(err)
            verdicts[name] = False

    obj = {"image": "x.png", "intrinsics": list(values), "pixel_coords": [[1, 1]], "depth": [1.0]}
    verdict("records", lambda: parse_record(obj, tmp_path, check_image=False), DepthLMError)
    verdict("build", lambda: framework.check_intrinsics(k), SkipFrame)
    verdict("sources", lambda: _checks.check_intrinsics(k, "frame"), SkipFrame)
    verdict("ask/app", lambda: guess_camera(k.size, intrinsics=k), DepthLMError)
    image = Image.new("RGB", (64, 48))
    small = Intrinsics(k.fx * 0.1, k.fy * 0.1, k.cx * 0.1, k.cy * 0.1, 64, 48) if k.width == 640 else k
    verdict("render", lambda: render(image, small, (1, 1), RenderSettings(f_uni=100)), DepthLMError)
    assert verdicts == dict.fromkeys(verdicts, plausible)


@pytest.mark.parametrize(
    "src, frame", [((1, 2), (1, 1)), ((1, 5), (3, 9)), ((4, 1), (1, 1)), ((2, 2), (1, 7))]
)
def test_resample_view_of_one_pixel_wide_images(src, frame, monkeypatch):
    """Found by the fuzz tests: torch's AVX kernel asserts on a 1-pixel-wide contiguous strip."""
    import depthlm.geometry as geometry

    monkeypatch.setattr(geometry, "_WHOLE_FRAME_MAX_RATIO", 0.0)
    image = Image.fromarray(np.arange(src[0] * src[1] * 3, dtype=np.uint8).reshape(src[1], src[0], 3))
    ref = np.asarray(resize_image(image, frame))
    np.testing.assert_array_equal(np.asarray(resample_view(image, frame, (0, 0, *frame))), ref)
