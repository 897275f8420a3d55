import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, crop, grid_box, normalize_focal
from depthlm.records import Record, read_records
from depthlm.render import render, render_record
from depthlm.settings import SETTINGS_FILE, RenderSettings, resolve_settings

IBIMS = os.environ.get("DEPTHLM_IBIMS1")


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
    _, k_n, pts_n = normalize_focal(img, K, np.array([[200.0, 100.0]]), 500)
    left, top, _, _ = grid_box(k_n.size, 28, s.max_pixels)
    assert q.point == (round(pts_n[0, 0] - left), round(pts_n[0, 1] - top))
    assert tuple(np.asarray(q.image)[q.point[1], q.point[0]]) == (255, 0, 0)
    # the query pixel keeps its scene ray: same normalised image coordinates before and after
    x_ray = (q.point[0] - q.intrinsics.cx) / q.intrinsics.fx
    assert x_ray == pytest.approx((200 - K.cx) / K.fx, abs=0.6 / 500)


def test_one_resample_equals_normalise_then_crop():
    s = RenderSettings(f_uni=400, grid=28, template="text_coords")  # no marker: compare raw pixels
    img = textured(320, 240, seed=3)
    q = render(img, K, (100, 50), s, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    from depthlm.geometry import random_crop_box

    norm, k_n, p_n = normalize_focal(img, K, np.array([[100.0, 50.0]]), 400)
    box = random_crop_box(norm.size, (400, 560), (280, 480), rng, 28, s.max_pixels, (p_n[0, 0], p_n[0, 1]))
    ref, k_ref, _, keep = crop(norm, k_n, p_n, box)
    assert keep[0] and q.image.size == ref.size and q.intrinsics == k_ref
    assert np.array_equal(np.asarray(q.image), np.asarray(ref))


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


@pytest.mark.skipif(not IBIMS, reason="DEPTHLM_IBIMS1 not set")
def test_every_real_ibims_query_renders_on_target():
    recs = read_records(Path(IBIMS) / "ibims1_val.jsonl")
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
