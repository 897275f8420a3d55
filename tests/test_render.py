import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, focal_size, grid_box, resize_image, resize_points
from depthlm.records import Record, read_records
from depthlm.render import render, render_record
from depthlm.settings import SETTINGS_FILE, RenderSettings, resolve_settings


def textured(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


K = Intrinsics(fx=300.0, fy=260.0, cx=159.5, cy=119.5, width=320, height=240)


def test_eval_view_is_on_the_grid_within_budget_and_never_resized_by_the_processor():
    s = RenderSettings(f_uni=500, grid=28)
    q = render(textured(320, 240), K, (200, 100), s, depth=2.0, depth_type="z")
    w, h = q.image.size
    assert w % 28 == 0 and h % 28 == 0 and w * h <= s.max_pixels
    assert smart_resize(h, w, factor=28, min_pixels=s.min_pixels, max_pixels=s.max_pixels) == (h, w)
    assert q.intrinsics.size == (w, h)
    assert q.intrinsics.fx == pytest.approx(500, abs=1) and q.intrinsics.fy == pytest.approx(500, abs=1)


def test_query_pixel_lands_where_geometry_says_and_the_marker_tip_is_there():
    s = RenderSettings(f_uni=500, grid=28, marker_size=15)
    img = textured(320, 240)
    q = render(img, K, (200, 100), s, depth=2.0, depth_type="z")
    size_n = focal_size(K, 500)
    pts_n = resize_points(np.array([[200.0, 100.0]]), K.size, size_n)
    left, top, _, _ = grid_box(size_n, 28, s.max_pixels)
    assert q.point == (round(pts_n[0, 0] - left), round(pts_n[0, 1] - top))
    assert tuple(np.asarray(q.image)[q.point[1], q.point[0]]) == (255, 0, 0)
    # the query pixel keeps its scene ray: same normalised image coordinates before and after
    x_ray = (q.point[0] - q.intrinsics.cx) / q.intrinsics.fx
    assert x_ray == pytest.approx((200 - K.cx) / K.fx, abs=0.6 / 500)


def normalise_then_crop(img: Image.Image, k: Intrinsics, point, f_uni: float, box):
    """The textbook path, as a reference: resize the WHOLE image so fx = fy = f_uni, then cut
    the box (black where it leaves the frame). render must give the same pixels without
    ever allocating the whole frame."""
    size_n = focal_size(k, f_uni)
    norm = resize_image(img, size_n)
    left, top, w, h = box
    out = Image.new("RGB", (w, h))
    out.paste(norm, (-left, -top))
    pt = resize_points(np.array([point], dtype=float), k.size, size_n)[0] - [left, top]
    return out, k.resized(*size_n).cropped(left, top, w, h), pt


@pytest.mark.parametrize("whole_frame_ratio", [4.0, 0.0])  # 0: the region path even for small frames
def test_one_resample_equals_normalise_then_crop(monkeypatch, whole_frame_ratio):
    import depthlm.geometry as geometry
    from depthlm.geometry import random_crop_box

    monkeypatch.setattr(geometry, "_WHOLE_FRAME_MAX_RATIO", whole_frame_ratio)

    s = RenderSettings(f_uni=400, grid=28, template="text_coords")  # no marker: compare raw pixels
    img = textured(320, 240, seed=3)
    for seed in range(8):
        q = render(img, K, (100, 50), s, rng=np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        size_n = focal_size(K, 400)
        p_n = resize_points(np.array([[100.0, 50.0]]), K.size, size_n)[0]
        box = random_crop_box(size_n, (400, 560), (280, 480), rng, 28, s.max_pixels, (p_n[0], p_n[1]))
        ref, k_ref, pt = normalise_then_crop(img, K, (100, 50), 400, box)
        assert 0 <= pt[0] < ref.width and 0 <= pt[1] < ref.height
        assert q.image.size == ref.size and q.intrinsics == k_ref
        assert np.array_equal(np.asarray(q.image), np.asarray(ref))
    # evaluation views, which pad past the frame's border
    q = render(img, K, (300, 230), s)
    ref, k_ref, _ = normalise_then_crop(
        img, K, (300, 230), 400, grid_box(focal_size(K, 400), 28, s.max_pixels)
    )
    assert q.intrinsics == k_ref and np.array_equal(np.asarray(q.image), np.asarray(ref))


def test_training_views_vary_with_the_seed_and_always_contain_the_query():
    s = RenderSettings(f_uni=500, grid=28)
    img = textured(320, 240)
    views = set()
    for seed in range(20):
        q = render(img, K, (310, 230), s, depth=2.0, depth_type="ray", rng=np.random.default_rng(seed))
        assert 0 <= q.point[0] < q.image.width and 0 <= q.point[1] < q.image.height
        assert q.image.width % 28 == 0 and q.image.height % 28 == 0
        views.add((q.image.size, q.point))
    assert len(views) > 5


def test_answer_asks_for_ray_distance_by_default_and_z_on_request():
    img = textured(320, 240)
    off_axis = (K.cx + 0.5 * K.fx, K.cy)  # tan = 0.5: ray = z * sqrt(1.25)
    q_ray = render(img, K, off_axis, RenderSettings(f_uni=300), depth=2.0, depth_type="z")
    q_z = render(img, K, off_axis, RenderSettings(f_uni=300, depth_target="z"), depth=2.0, depth_type="z")
    assert q_ray.depth == pytest.approx(2 * np.sqrt(1.25)) and "2.24 meters" in q_ray.answer
    assert q_z.depth == pytest.approx(2.0) and "2.00 meters" in q_z.answer


def test_templates_shape_question_answer_and_marker():
    img = textured(320, 240)
    ref = render(
        img, K, (100, 100), RenderSettings(f_uni=300, template="reference"), depth=3.4213, depth_type="ray"
    )
    assert (
        ref.answer
        == "<think> The point is around 3.42 meters away from the camera. </think>\n\n<answer> 3.42 </answer>"
    )
    assert "pointed by the red arrow" in ref.question
    txt = render(
        img, K, (100, 100), RenderSettings(f_uni=300, template="text_coords"), depth=3.4, depth_type="ray"
    )
    assert f"column {txt.point[0]}, row {txt.point[1]}" in txt.question
    plain_view = render(img, K, (100, 100), RenderSettings(f_uni=300, template="plain")).image
    assert np.any(
        np.asarray(plain_view) != np.asarray(txt.image)
    )  # marker drawn only when the template wants it


def test_chat_formats():
    q = render(textured(320, 240), K, (100, 100), RenderSettings(f_uni=300), depth=1.0, depth_type="ray")
    ex = q.sft_example()
    assert ex["images"] == [q.image] and [m["role"] for m in ex["messages"]] == ["user", "assistant"]
    assert ex["messages"][0]["content"][0] == {"type": "image"}
    assert [m["role"] for m in q.prompt_example()["prompt"]] == ["user"]
    unlabelled = render(textured(320, 240), K, (100, 100), RenderSettings(f_uni=300))
    assert unlabelled.answer is None
    with pytest.raises(DepthLMError, match="no known depth"):
        unlabelled.sft_example()


def test_oversized_views_are_cropped_around_the_query_not_resized():
    s = RenderSettings(f_uni=2000, grid=28, max_pixels=200_000, min_pixels=3136)
    q = render(textured(320, 240), K, (300, 20), s, depth=5.0, depth_type="ray")
    assert q.image.width * q.image.height <= 200_000
    assert q.intrinsics.fx == pytest.approx(2000, abs=5)  # focal kept: never a silent downscale
    assert 0 <= q.point[0] < q.image.width and 0 <= q.point[1] < q.image.height


def test_bad_query_is_a_clear_error():
    with pytest.raises(DepthLMError, match="outside the 320x240 image"):
        render(textured(320, 240), K, (320, 10), RenderSettings())
    rec = Record("x.png", K, [[1, 1]], [1.0])
    with pytest.raises(DepthLMError, match="point index 3 out of range"):
        render_record(rec, 3, RenderSettings())


def test_settings_travel_with_a_model_folder(tmp_path):
    s = RenderSettings(f_uni=750, template="reference", marker="circle", grid=32)
    s.save(tmp_path)
    assert (tmp_path / SETTINGS_FILE).is_file()
    assert RenderSettings.load(tmp_path) == s
    assert resolve_settings(tmp_path) == s  # recorded settings win over presets
    assert resolve_settings(tmp_path, "default", f_uni=900).f_uni == 900
    assert resolve_settings(tmp_path / "nothing", "reference").template == "reference"
    with pytest.raises(DepthLMError, match="unknown prompt template"):
        RenderSettings(template="nope")


def test_every_real_ibims_query_renders_on_target(ibims1):
    recs = read_records(ibims1 / "ibims1_val.jsonl")
    s = RenderSettings()
    rng = np.random.default_rng(0)
    for rec in recs:
        q = render_record(rec, int(rng.integers(len(rec))), s)
        i = q.meta["point_index"]
        assert (
            q.image.width % 28 == 0
            and q.image.height % 28 == 0
            and q.image.width * q.image.height <= s.max_pixels
        )
        u = (rec.points[i, 0] - rec.intrinsics.cx) / rec.intrinsics.fx
        assert (q.point[0] - q.intrinsics.cx) / q.intrinsics.fx == pytest.approx(u, abs=0.6 / 1000)
        t = render_record(rec, i, s, rng=rng)
        assert (
            t.depth == q.depth and t.image.width % 28 == 0 and t.image.width * t.image.height <= s.max_pixels
        )


MEMORY_PROBE = """
import resource, sys
import numpy as np
from PIL import Image
from depthlm.geometry import Intrinsics
from depthlm.render import render
from depthlm.settings import RenderSettings

fx = float(sys.argv[1])
image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
k = Intrinsics(fx, fx, 319.5, 239.5, 640, 480)
s = RenderSettings(f_uni=1000.0)
normal = Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
render(image, normal, (320, 240), s, depth=2.0, depth_type="z")  # warm-up: imports, torch kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for seed in range(3):
    q = render(image, k, (5, 470), s, depth=2.0, depth_type="z", rng=np.random.default_rng(seed))
    q = render(image, k, (600, 10), s, depth=2.0, depth_type="z")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, q.image.size)
"""


@pytest.mark.parametrize("fov", [60.0, 168.0])
def test_render_memory_is_bounded_by_the_view_not_the_normalised_frame(fov):
    """At a 168-degree field of view (inside the plausible range) the normalised frame of a
    640x480 photo is 19k x 14k pixels, 0.8 GB as RGB: rendering must not allocate it."""
    import math
    import subprocess
    import sys

    fx = 320 / math.tan(math.radians(fov / 2))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(fx)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    grown_mb = int(out.stdout.split()[0])
    assert grown_mb < 150, f"render grew the process by {grown_mb} MB at a {fov} deg field of view"


@pytest.mark.parametrize(
    "fx, size, match",
    [
        (5.0, (640, 480), "field of view"),  # 37 GB before
        (1e-9, (640, 480), "field of view"),
        (500.0, (10**12, 10**12), "image size"),
        (float("nan"), (640, 480), "not finite"),
    ],
)
def test_implausible_intrinsics_are_one_clear_error_before_any_allocation(fx, size, match):
    k = Intrinsics(fx, fx, 319.5, 239.5, *size)
    with pytest.raises(DepthLMError, match=match):
        render(textured(64, 48), k, (1, 1), RenderSettings())


@pytest.mark.parametrize(
    "field, value",
    [
        ("f_uni", float("nan")),
        ("f_uni", float("inf")),
        ("f_uni", "1000"),
        ("f_uni", 1e-9),
        ("f_uni", True),
        ("grid", 28.5),
        ("max_pixels", "lots"),
        ("crop_width", (1.4, 1.0)),
        ("crop_height", "0.7"),
        ("marker_size", float("nan")),
        ("marker_color", "octarine"),
        ("train_crop", "no"),
        ("template", 3),
    ],
)
def test_render_settings_refuse_nan_infinity_strings_with_one_clear_error(field, value):
    with pytest.raises(DepthLMError, match=field):
        RenderSettings(**{field: value})
    with pytest.raises(DepthLMError, match=field):
        RenderSettings.from_dict({field: value})


def test_cli_refuses_absurd_cameras_in_one_line(tmp_path):
    """`depthlm render` on a record with fx=5 (37 GB before) and `ask --fov 179` (118 GB before)."""
    import json
    import subprocess
    import sys

    textured(640, 480).save(tmp_path / "p.png")
    row = {
        "image": "p.png",
        "intrinsics": [5, 5, 319.5, 239.5, 640, 480],
        "pixel_coords": [[1, 1]],
        "depth": [1],
    }
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    cli = [sys.executable, "-m", "depthlm.cli"]
    runs = {
        "render": cli + ["render", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "v.png")],
        "ask": cli
        + ["ask", "--model", "constant:2", "--image", str(tmp_path / "p.png"), "--point", "1,1"]
        + ["--fov", "179"],
    }
    for cmd in runs.values():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        error = [ln for ln in out.stderr.splitlines() if "error:" in ln]
        assert out.returncode == 2 and len(error) == 1 and "Traceback" not in out.stderr, out.stderr
        assert "field of view" in error[0] and "170" in error[0], error[0]
