"""The task registry on an analytic scene: ground truth from the test's own geometry.

The scene (320x240, fx=300, fy=260: non-square pixels, so focal normalisation matters): a
tilted wall z = C / (1 - S * xn) (the plane z - S*x = C) and, in front of it, a fronto-parallel
square panel at Z_PANEL covering a pixel box. Records carry z-depths of a grid of pixels; the
tests compute 3D points by intersecting each pixel's ray with those planes themselves.
"""

from __future__ import annotations

import collections
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm import markers, tasks
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.records import Record, read_records
from depthlm.render import render, render_record
from depthlm.rewards import task_reward
from depthlm.settings import RenderSettings
from depthlm.tasks import TaskError
from depthlm.tasks.closer import MARGIN
from depthlm.tasks.extras import read_masks

K = Intrinsics(fx=300.0, fy=260.0, cx=159.5, cy=119.5, width=320, height=240)
C, S = 3.0, 0.5  # wall: z - S * x = C
Z_PANEL = 2.0
PANEL = (100, 80, 180, 150)  # inclusive pixel box of the panel (object 1)
GREY = (128, 128, 128)
SETTINGS = RenderSettings(f_uni=500, marker_size=15)


def ray(x, y):
    return np.array([(x - K.cx) / K.fx, (y - K.cy) / K.fy, 1.0])


def on_panel(x, y) -> bool:
    return PANEL[0] <= x <= PANEL[2] and PANEL[1] <= y <= PANEL[3]


def scene_point(x, y) -> np.ndarray:
    """3D point seen at pixel (x, y): ray-plane intersection, the test's own geometry."""
    d = ray(x, y)
    if on_panel(x, y):
        return d * Z_PANEL / d[2]
    t = C / (d[2] - S * d[0])  # (t d) . (-S, 0, 1) = C
    return t * d


def z_map() -> np.ndarray:
    return np.array([[scene_point(x, y)[2] for x in range(K.width)] for y in range(K.height)])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """(record folder, record) with image, masks and dense depth map on disk; points every 20 px.
    The record is read back from a records file in the folder (extras paths relative to it)."""
    root = tmp_path_factory.mktemp("scene")
    (root / "images").mkdir()
    Image.new("RGB", K.size, GREY).save(root / "images" / "a.png")
    masks = np.zeros((K.height, K.width), np.uint8)
    masks[PANEL[1] : PANEL[3] + 1, PANEL[0] : PANEL[2] + 1] = 1
    Image.fromarray(masks).save(root / "images" / "a-masks.png")
    np.save(root / "images" / "a-depth.npy", z_map())
    grid = [(x, y) for y in range(10, 240, 20) for x in range(10, 320, 20)]
    extras = {
        "masks": "images/a-masks.png",
        "depth_map": "images/a-depth.npy",
        "objects": [{"id": 1, "kind": "box", "box": list(PANEL), "visible": True, "pixels": 81 * 71}],
    }
    line = {
        "image": "images/a.png",
        "intrinsics": K.to_list(),
        "pixel_coords": grid,
        "depth": [float(scene_point(x, y)[2]) for x, y in grid],
        "depth_type": "z",
        "dataset": "analytic",
        "extras": extras,
    }
    (root / "records.jsonl").write_text(json.dumps(line) + "\n")
    (rec,) = read_records(root / "records.jsonl", strict=True)
    assert rec.extras["masks"] == str(root / "images" / "a-masks.png")  # absolute since read
    return root, rec


def ray_distance(x, y) -> float:
    return float(np.linalg.norm(scene_point(x, y)))


def source_pixel(rec: Record, i: int) -> tuple[int, int]:
    return int(rec.points[i][0]), int(rec.points[i][1])


def render_pixel(x, y, rng=None) -> tuple[int, int]:
    """Where depthlm.render puts a query pixel in the evaluation view (the one rendering path)."""
    return render(Image.new("RGB", K.size, GREY), K, (x, y), SETTINGS, rng=rng).point


def colour_centre(image: Image.Image, point, rgb, reach: int) -> tuple[float, float]:
    """Centre of the bounding box of pixels of exactly `rgb` within `reach` px of point."""
    a = np.asarray(image).astype(int)
    x, y = point
    win = a[y - reach : y + reach + 1, x - reach : x + reach + 1]
    ys, xs = np.nonzero(np.all(win == rgb, axis=-1))
    assert len(xs), f"no pixel of colour {rgb} near {point}"
    return x - reach + (xs.min() + xs.max()) / 2, y - reach + (ys.min() + ys.max()) / 2


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_the_eight_tasks_by_name_with_their_answer_kinds():
    assert tasks.names() == ["depth", "points", "distance", "closer", "region", "hinted", "time", "motion"]
    kinds = {name: tasks.get(name).answer_kind for name in tasks.names()}
    assert kinds["closer"] == "choice" and kinds["points"] == "labelled" and kinds["time"] == "seconds"
    assert tasks.get("closer").metric_names == ("accuracy",)
    with pytest.raises(DepthLMError, match="unknown task 'speed'.*depth"):
        tasks.get("speed")


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_answers_in_its_own_format_and_parses_back_its_truth(scene, name):
    root, rec = scene
    rec = pair_record(root) if name == "motion" else rec
    task = tasks.get(name)
    q = task.query(rec, SETTINGS, np.random.default_rng(0))
    assert re.fullmatch(task.answer_regex(SETTINGS), q.answer)
    parsed = task.parse(q.answer)
    if isinstance(q.truth, dict):
        assert parsed.keys() == q.truth.keys()
        assert all(parsed[k] == pytest.approx(q.truth[k], abs=0.005) for k in q.truth)
    elif isinstance(q.truth, str):
        assert parsed == q.truth
    else:
        assert parsed == pytest.approx(q.truth, abs=0.005)
    assert task.reward(q.answer, q.truth) == pytest.approx(1.0, abs=0.01)
    assert task.reward("I cannot see that.", q.truth) == 0.0
    row = q.prompt_example()  # what GRPO gets: the task reward reads these columns
    assert task_reward([q.answer], task=[row["task"]], truth=[row["truth"]]) == [
        task.reward(q.answer, q.truth)
    ]
    assert q.sft_example()["messages"][-1]["content"][0]["text"] == q.answer


def test_the_same_seed_picks_the_same_query_and_another_seed_another(scene):
    _, rec = scene
    task = tasks.get("points")
    a = task.sample(rec, np.random.default_rng(7), SETTINGS)
    b = task.sample(rec, np.random.default_rng(7), SETTINGS)
    c = task.sample(rec, np.random.default_rng(8), SETTINGS)
    assert a.indices == b.indices and a.indices != c.indices


# --- depth ----------------------------------------------------------------------------------


def test_depth_task_is_todays_query_unchanged(scene):
    _, rec = scene
    picked = tasks.get("depth").sample(rec, np.random.default_rng(3), SETTINGS)
    q = tasks.get("depth").build(rec, picked, SETTINGS)
    old = render_record(rec, picked.indices[0], SETTINGS)
    assert (q.question, q.answer, q.truth) == (old.question, old.answer, old.depth)
    assert q.images[0].tobytes() == old.image.tobytes()
    assert q.truth == pytest.approx(ray_distance(*source_pixel(rec, picked.indices[0])), rel=1e-9)


# --- points ---------------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
def test_points_markers_land_on_the_view_pixels_and_truth_is_each_ray_distance(scene, train):
    _, rec = scene
    task = type(tasks.get("points"))(k=6)
    for seed in range(4):
        q = task.query(rec, SETTINGS, np.random.default_rng(seed), train=train)
        assert list(q.truth) == ["A", "B", "C", "D", "E", "F"]
        assert q.question == "How far from the camera is each of the points marked A, B, C, D, E and F?"
        idx = q.meta["point_indices"]
        for n, (label, px) in enumerate(q.points.items()):
            x, y = source_pixel(rec, idx[n])
            assert q.truth[label] == pytest.approx(ray_distance(x, y), rel=1e-9)
            if not train:  # same pixel as depthlm.render's own query pixel
                assert px == render_pixel(x, y)
            _, rgb = markers.labelled_style(n)
            cx, cy = colour_centre(q.images[0], px, rgb, reach=15 // 3)
            assert abs(cx - px[0]) <= 0.5 and abs(cy - px[1]) <= 0.5


def test_points_labels_sit_apart_so_markers_never_cover_each_other(scene):
    _, rec = scene
    task = type(tasks.get("points"))(k=8)
    q = task.query(rec, SETTINGS, np.random.default_rng(1))
    pts = np.array(list(q.points.values()), float)
    gaps = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e9
    assert gaps.min() >= 2 * 15 - 2  # two marker sizes, less view rounding


def test_points_need_enough_points_and_say_so(scene):
    _, rec = scene
    few = Record(rec.image, K, rec.points[:3], rec.depths[:3], depth_type="z", id="few")
    task = type(tasks.get("points"))(k=4)
    assert task.check(few) == "needs 4 labelled points, record has 3"
    with pytest.raises(TaskError, match="few: points: needs 4 labelled points"):
        task.query(few, SETTINGS, np.random.default_rng(0))


# --- distance -------------------------------------------------------------------------------


def test_distance_truth_is_the_3d_distance_of_the_two_scene_points(scene):
    _, rec = scene
    task = tasks.get("distance")
    for seed in range(5):
        q = task.query(rec, SETTINGS, np.random.default_rng(seed))
        (i, j) = q.meta["point_indices"]
        want = np.linalg.norm(scene_point(*source_pixel(rec, i)) - scene_point(*source_pixel(rec, j)))
        assert q.truth == pytest.approx(want, rel=1e-9)
        assert q.points["A"] == render_pixel(*source_pixel(rec, i))
        assert q.points["B"] == render_pixel(*source_pixel(rec, j))


# --- closer ---------------------------------------------------------------------------------


def test_closer_answers_the_nearer_label_and_never_asks_pairs_within_the_margin(scene):
    _, rec = scene
    task = tasks.get("closer")
    answers = set()
    for seed in range(20):
        q = task.query(rec, SETTINGS, np.random.default_rng(seed))
        da, db = (ray_distance(*source_pixel(rec, i)) for i in q.meta["point_indices"])
        assert max(da, db) >= (1 + MARGIN) * min(da, db)
        assert q.truth == ("A" if da < db else "B")
        answers.add(q.truth)
    assert answers == {"A", "B"}  # not always the first label


def test_closer_refuses_a_record_whose_points_are_all_equally_far(scene):
    _, rec = scene
    flat = Record(
        rec.image, K, [[60, 60], [260, 60], [60, 180]], [4.0, 4.1, 4.2], depth_type="ray", id="flat"
    )
    with pytest.raises(TaskError, match="flat: closer: no 2 labelled points"):
        tasks.get("closer").query(flat, SETTINGS, np.random.default_rng(0))


# --- region ---------------------------------------------------------------------------------


def test_region_truth_is_the_median_ray_distance_over_the_panel_and_the_box_is_drawn_around_it(scene):
    _, rec = scene
    q = tasks.get("region").query(rec, SETTINGS, np.random.default_rng(0))
    xs, ys = np.meshgrid(np.arange(PANEL[0], PANEL[2] + 1), np.arange(PANEL[1], PANEL[3] + 1))
    want = np.median([ray_distance(x, y) for x, y in zip(xs.ravel(), ys.ravel())])
    assert q.truth == pytest.approx(want, rel=1e-9)
    assert q.question == "How far from the camera is the block inside the green box?"
    x0, y0, x1, y1 = q.box
    tl, br = render_pixel(PANEL[0], PANEL[1]), render_pixel(PANEL[2], PANEL[3])
    assert abs(x0 - tl[0]) <= 1 and abs(y0 - tl[1]) <= 1 and abs(x1 - br[0]) <= 1 and abs(y1 - br[1]) <= 1
    a = np.asarray(q.images[0])
    box_rgb = (0, 158, 115)
    mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
    for px, py in ((x0 - 1, mid_y), (x1 + 1, mid_y), (mid_x, y0 - 1), (mid_x, y1 + 1)):
        assert tuple(a[py, px]) == box_rgb
    assert tuple(a[mid_y, mid_x]) == GREY and tuple(a[y0, mid_x]) == GREY  # the object stays unpainted


def test_region_without_a_depth_map_uses_the_labelled_points_on_the_object(scene):
    _, rec = scene
    sparse = Record(
        rec.image, K, rec.points, rec.depths, depth_type="z", id="sparse", extras=dict(rec.extras)
    )
    del sparse.extras["depth_map"]
    q = tasks.get("region").query(sparse, SETTINGS, np.random.default_rng(0))
    on = [(int(x), int(y)) for x, y in rec.points if on_panel(x, y)]
    assert len(on) >= 5 and q.meta["support"] == len(on)
    assert q.truth == pytest.approx(np.median([ray_distance(x, y) for x, y in on]), rel=1e-9)


def test_region_reports_missing_masks_and_files_with_the_record(scene):
    _, rec = scene
    bare = Record(rec.image, K, rec.points, rec.depths, depth_type="z", id="bare")
    assert tasks.get("region").check(bare) == "needs extras objects, masks"
    lost = Record(rec.image, K, rec.points, rec.depths, depth_type="z", id="lost", extras=dict(rec.extras))
    lost.extras["masks"] = "images/nowhere.png"
    with pytest.raises(TaskError, match=r"^lost: region: extras masks file not found: images/nowhere.png$"):
        tasks.get("region").query(lost, SETTINGS, np.random.default_rng(0))
    with pytest.raises(TaskError, match=r"^lost: extras\['masks'\]: file not found: images/nowhere.png \("):
        read_masks(lost)  # what build reads, for a sample made by hand


# --- hinted ---------------------------------------------------------------------------------


def test_hinted_states_the_hint_distances_and_asks_the_red_point(scene):
    _, rec = scene
    q = tasks.get("hinted").query(rec, SETTINGS, np.random.default_rng(2))
    *hints, asked = q.meta["point_indices"]
    ha, hb = (ray_distance(*source_pixel(rec, i)) for i in hints)
    assert q.question == (
        f"Points A and B are {ha:.2f} m and {hb:.2f} m from the camera, in that order. "
        "How far is the point marked by the red arrow from the camera?"
    )
    assert q.truth == pytest.approx(ray_distance(*source_pixel(rec, asked)), rel=1e-9)
    tip = q.points[""]
    assert tip == render_pixel(*source_pixel(rec, asked))
    assert tuple(np.asarray(q.images[0])[tip[1], tip[0]]) == (255, 0, 0)


# --- time -----------------------------------------------------------------------------------


def test_time_is_distance_over_the_stated_speed(scene):
    _, rec = scene
    q = tasks.get("time").query(rec, SETTINGS, np.random.default_rng(4))
    speed = float(re.search(r"at (\d+\.\d) m/s", q.question).group(1))
    assert 0.5 <= speed <= 3.0
    (i,) = q.meta["point_indices"]
    assert q.truth == pytest.approx(ray_distance(*source_pixel(rec, i)) / speed, rel=1e-9)
    assert tuple(np.asarray(q.images[0])[q.points[""][1], q.points[""][0]]) == (255, 0, 0)


# --- motion ---------------------------------------------------------------------------------


def pair_record(root, **pair) -> Record:
    Image.new("RGB", (400, 300), GREY).save(root / "images" / "b.png")
    base = {
        "image": str(root / "images" / "b.png"),
        "intrinsics": [350, 350, 199.5, 149.5, 400, 300],
        "translation_m": [0.3, 0.0, 1.2],
    }
    base.update(pair)
    return Record(
        str(root / "images" / "a.png"), K, [[10, 10]], [3.0], depth_type="z", id="pair", extras={"pair": base}
    )


def test_motion_shows_both_views_at_f_uni_and_asks_the_translation_length(scene):
    root, _ = scene
    q = tasks.get("motion").query(pair_record(root), SETTINGS, np.random.default_rng(0))
    assert q.truth == pytest.approx(math.hypot(0.3, 1.2))
    assert len(q.images) == 2 and [im.size for im in q.images] == [k.size for k in q.intrinsics]
    for k in q.intrinsics:
        assert k.fx == pytest.approx(500, abs=1) and k.fy == pytest.approx(500, abs=1)
    user = q.messages(with_answer=False)[-1]["content"]
    assert [part["type"] for part in user] == ["image", "image", "text"]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ({"translation_m": [0.3, float("nan"), 1]}, r"translation_m'\] must be 3 finite numbers"),
        ({"translation_m": [0.01, 0.0, 0.0]}, "moved 0.010 m, under 0.05 m"),
        ({"rotation": [[2, 0, 0], [0, 1, 0], [0, 0, 1]]}, "must be a 3x3 rotation matrix"),
        ({"image": "images/missing.png"}, "file not found: images/missing.png"),
        ({"intrinsics": [0, 350, 1, 1, 400, 300]}, "positive focal"),
    ],
)
def test_motion_rejects_bad_pairs_with_one_line_naming_the_record(scene, pair, message):
    root, _ = scene
    with pytest.raises(TaskError, match=f"^pair: .*{message}"):
        tasks.get("motion").query(pair_record(root, **pair), SETTINGS, np.random.default_rng(0))


# --- parsing, metrics and rewards on real-looking answers -----------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("A: 2.31 m\nB: 4.02 m\nC: 1.10 m", {"A": 2.31, "B": 4.02, "C": 1.10}),
        ("Point A is about 2 m away; B is 90 cm away.", {"A": 2.0, "B": 0.9}),
        ("<answer>A: 2, B: 3.5</answer> C: 9 m", {"A": 2.0, "B": 3.5}),
        ("A point near the wall... A = 3 meters, B: around 4 feet", {"A": 3.0, "B": 4 * 0.3048}),
        ("A: 2 m, B: no idea, D: 5 m", {"A": 2.0, "D": 5.0}),
        ("A 2.3 m, B ~4.1 m", {"A": 2.3, "B": 4.1}),
        ("I can't tell the distances.", None),
    ],
)
def test_points_parse_real_looking_lists(text, want):
    got = tasks.get("points").parse(text)
    assert got == (None if want is None else pytest.approx(want))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Point B is closer to the camera.", "B"),
        ("(A)", "A"),
        ("<answer> B </answer>", "B"),
        ("A is closer than B.", "A"),
        ("B is farther away than A.", "A"),
        ("A point on the left looks far; B, however, is nearer.", "B"),
        ("A or B, hard to say.", None),
        ("Neither.", None),
    ],
)
def test_closer_parses_real_looking_choices(text, want):
    assert tasks.get("closer").parse(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("It would take about 2.5 seconds.", 2.5),
        ("1 min 20 s", 80.0),
        ("roughly 3-4 s", 3.5),
        ("between two and three seconds", 2.5),
        ("<answer> 12 </answer>", 12.0),
        ("It is 5 m away, so 2 s at that speed.", 2.0),
        ("ninety seconds", 90.0),
        ("soon", None),
        ("-3 seconds", None),
    ],
)
def test_time_parses_real_looking_durations(text, want):
    assert tasks.get("time").parse(text) == (None if want is None else pytest.approx(want))


def test_points_metrics_and_reward_count_missing_and_extra_labels_as_misses():
    task = tasks.get("points")
    truth = [{"A": 2.0, "B": 4.0}, {"A": 1.0, "B": 3.0}]
    pred = [{"A": 2.1, "B": 4.1}, {"A": 1.0, "Z": 3.0}]  # second: B missing, Z extra
    m = task.metrics(pred, truth)
    assert (m["n"], m["n_missing"], m["n_extra"]) == (5, 1, 1)
    assert m["delta1"] == pytest.approx(3 / 5)
    assert m["abs_rel"] == pytest.approx((0.05 + 0.025 + 0.0) / 3)
    assert task.reward("A: 1.0 m, Z: 3.0 m", truth[1]) == pytest.approx(1 / 3)
    assert task.reward("A: 1.0 m\nB: 3.0 m", truth[1]) == pytest.approx(1.0)


def test_closer_metrics_are_accuracy_with_failures_counted():
    m = tasks.get("closer").metrics(["A", None, "B", "B"], ["A", "A", "A", "B"])
    assert m == {"accuracy": 0.5, "n": 4, "n_valid": 3, "parse_failure_rate": 0.25}


def test_task_reward_mixes_tasks_in_one_batch_and_needs_its_columns():
    out = task_reward(
        ["Point A is closer to the camera.", "The two points are around 1.00 meters apart.", "garbage"],
        task=["closer", "distance", "time"],
        truth=[json.dumps("A"), json.dumps(2.0), json.dumps(3.0)],
    )
    assert out == [1.0, pytest.approx(0.75), 0.0]
    with pytest.raises(DepthLMError, match="'task' and 'truth' columns"):
        task_reward(["x"], task=["depth"])


def test_points_spread_over_a_huge_image_are_picked_within_one_budget_view(scene):
    """fx = 60 px at f_uni 500: the normalised frame is 2667x2000, over the pixel budget, so the
    evaluation view is a crop; every query still shows all its markers."""
    _, rec = scene
    wide = Intrinsics(fx=60.0, fy=60.0, cx=159.5, cy=119.5, width=320, height=240)
    big = Record(rec.image, wide, rec.points, rec.depths, depth_type="z", id="wide")
    for seed in range(6):
        q = type(tasks.get("points"))(k=6).query(
            big, SETTINGS, np.random.default_rng(seed), train=seed % 2 == 1
        )
        w, h = q.images[0].size
        assert w * h <= SETTINGS.max_pixels < (320 * 500 / 60) * (240 * 500 / 60)
        assert all(0 <= x < w and 0 <= y < h for x, y in q.points.values())


def test_region_reads_a_16_bit_millimetre_depth_png(scene, tmp_path):
    root, rec = scene
    Image.fromarray(np.round(z_map() * 1000).astype(np.uint16)).save(root / "images" / "a-depth.png")
    mm = Record(rec.image, K, rec.points, rec.depths, depth_type="z", id="mm", extras=dict(rec.extras))
    mm.extras["depth_map"] = str(root / "images" / "a-depth.png")
    exact = tasks.get("region").query(rec, SETTINGS, np.random.default_rng(0)).truth
    assert tasks.get("region").query(mm, SETTINGS, np.random.default_rng(0)).truth == pytest.approx(
        exact, abs=0.002
    )


# --- the markers the tasks draw -------------------------------------------------------------


def test_labelled_markers_differ_in_colour_and_shape_and_are_drawn_even_in_corners():
    styles = [markers.labelled_style(i) for i in range(16)]
    assert all(a != b for a, b in zip(styles, styles[1:]))  # neighbours never look alike
    assert all(rgb != (255, 0, 0) for _, rgb in styles)  # red is the query marker's
    image = Image.new("RGB", (120, 80), GREY)
    pts = [(2, 2), (117, 77), (117, 2), (60, 40)]
    out = markers.draw_labelled_markers(image, pts, ["A", "B", "C", "D"], size=15)
    assert image.getpixel((60, 40)) == GREY  # input untouched
    for i in range(len(pts)):
        _, rgb = markers.labelled_style(i)
        assert (np.asarray(out) == rgb).all(axis=-1).sum() > 10, f"marker {i} missing"
    with pytest.raises(DepthLMError, match="2 points but 1 labels"):
        markers.draw_labelled_markers(image, pts[:2], ["A"])


def test_box_is_drawn_just_outside_the_box_pixels():
    out = np.asarray(
        markers.draw_box(Image.new("RGB", (60, 40), GREY), (10, 8, 30, 20), (0, 158, 115), width=2)
    )
    assert tuple(out[14, 9]) == tuple(out[14, 8]) == (0, 158, 115)  # two pixels left of x0
    assert tuple(out[14, 10]) == GREY and tuple(out[8, 20]) == GREY  # the box's own pixels stay
    assert tuple(out[21, 20]) == (0, 158, 115) and tuple(out[14, 31]) == (0, 158, 115)
    with pytest.raises(DepthLMError, match="empty box"):
        markers.draw_box(Image.new("RGB", (60, 40)), (30, 8, 10, 20))


# --- task mixes -----------------------------------------------------------------------------


def test_task_weights_parse_from_yaml_maps_and_flags_with_clear_errors():
    from depthlm.tasks.mix import parse_weights

    assert parse_weights(None) == {"depth": 1.0}
    assert parse_weights("depth=1, distance=0.3") == {"depth": 1.0, "distance": 0.3}
    assert parse_weights({"depth": 1, "closer": 0}) == {"depth": 1.0}
    assert list(parse_weights("all")) == tasks.names()
    for bad, message in [
        ("depth=x", "task weight must be a number: 'depth=x'"),
        ({"speed": 1}, "unknown task 'speed'"),
        ({"depth": -1}, "weight must be >= 0"),
        ({"depth": 0}, "no task with a positive weight"),
    ]:
        with pytest.raises(DepthLMError, match=message):
            parse_weights(bad)


def test_task_mix_follows_the_weights_among_usable_tasks_and_counts_the_rest(scene):
    from depthlm.tasks.mix import TaskMix

    root, rec = scene
    mix = TaskMix({"depth": 1.0, "closer": 3.0, "motion": 5.0})  # motion cannot use rec
    rng = np.random.default_rng(0)
    picked = collections.Counter(mix.query(rec, SETTINGS, rng).task for _ in range(200))
    assert set(picked) == {"depth", "closer"}
    assert picked["closer"] / 200 == pytest.approx(0.75, abs=0.08)
    assert mix.stats() == {"asked": dict(picked), "skipped": {"motion": {"needs extras pair": 200}}}
    flat = Record(rec.image, K, [[60, 60], [260, 60]], [4.0, 4.1], depth_type="ray", id="flat")
    only_closer = TaskMix("closer")
    assert only_closer.query(flat, SETTINGS, rng) is None
    assert only_closer.stats()["skipped"] == {
        "closer": {"no 2 labelled points at least 30 view pixels apart that the task can ask about": 1}
    }


# --- chat: queries about pixels the user picked, depth unknown -------------------------------


def chat_record(root, depths) -> Record:
    """A photo with user-picked points whose depths are unknown (NaN) or given (hints)."""
    pair = {"image": str(root / "images" / "b.png"), "intrinsics": [350, 350, 199.5, 149.5, 400, 300]}
    Image.new("RGB", (400, 300), GREY).save(root / "images" / "b.png")
    pts = [[40, 40], [250, 60], [160, 200]]
    return Record(
        str(root / "images" / "a.png"), K, pts, depths, depth_type="ray", id="chat", extras={"pair": pair}
    )


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("depth", tasks.Sample(indices=[2])),
        ("points", tasks.Sample(indices=[0, 1, 2], labels=["A", "B", "C"])),
        ("distance", tasks.Sample(indices=[0, 1], labels=["A", "B"])),
        ("closer", tasks.Sample(indices=[0, 1], labels=["A", "B"])),
        ("region", tasks.Sample(info={"box": list(PANEL), "name": "chair"})),
        ("hinted", tasks.Sample(indices=[0, 1, 2], labels=["A", "B"])),
        ("time", tasks.Sample(indices=[2], info={"speed_m_s": 1.4})),
        ("motion", tasks.Sample()),
    ],
)
def test_every_task_asks_about_user_picked_pixels_without_ground_truth(scene, name, sample):
    root, _ = scene
    hints = [2.0, 3.0] if name == "hinted" else [math.nan, math.nan]
    q = tasks.get(name).build(chat_record(root, [*hints, math.nan]), sample, SETTINGS)
    assert q.truth is None and q.answer is None
    assert q.prompt_example()["prompt"][-1]["content"][-1]["text"] == q.question
    with pytest.raises(DepthLMError, match="no ground truth"):
        q.sft_example()
    for label, px in q.points.items():  # every marker where depthlm.render puts that pixel
        n = "ABC".index(label) if label else -1
        assert px == render_pixel(*chat_record(root, [1, 1, 1]).points[n].astype(int))
    if name == "hinted":
        assert q.question.startswith("Points A and B are 2.00 m and 3.00 m from the camera")
    if name == "region":
        assert q.question == "How far from the camera is the chair inside the green box?"
    if name == "time":
        assert "at 1.4 m/s" in q.question


def test_the_tiny_models_processor_takes_every_task_query_including_two_images(scene, tiny_model_dir):
    """Each query's messages and images go through the Qwen-VL chat template and processor:
    one block of image tokens per image, as many as the views' grids say."""
    from depthlm.models import load_processor

    processor = load_processor(tiny_model_dir)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    root, rec = scene
    for name in tasks.names():
        q = tasks.get(name).query(
            pair_record(root) if name == "motion" else rec, SETTINGS, np.random.default_rng(0)
        )
        text = processor.apply_chat_template(q.messages(), tokenize=False)
        batch = processor(text=[text], images=q.images, return_tensors="np")
        want = sum(im.width * im.height // 28**2 for im in q.images)
        assert (batch["input_ids"][0] == pad).sum() == want, name
        assert text.count("<|vision_start|>") == len(q.images)


def test_time_uses_the_straight_line_distance_even_when_depth_questions_ask_z(scene):
    _, rec = scene
    q = tasks.get("time").query(rec, SETTINGS.with_(depth_target="z"), np.random.default_rng(4))
    (i,) = q.meta["point_indices"]
    assert q.truth == pytest.approx(ray_distance(*source_pixel(rec, i)) / q.meta["speed_m_s"], rel=1e-9)


def test_region_asks_only_about_objects_whose_box_fits_one_view(scene):
    """A wall as wide as the image does not fit the pixel budget's view at a large f_uni: the task
    picks the objects that fit, and says why when none does (no failure deep in rendering)."""
    _, rec = scene
    tight = SETTINGS.with_(max_pixels=160 * 28 * 28)  # a view about 30% narrower than the image
    wall = {"id": 2, "kind": "box", "box": [0, 0, K.width - 1, 120]}
    masks = np.asarray(Image.open(rec.extras["masks"])).copy()
    masks[0:121, :][masks[0:121, :] == 0] = 2
    folder = Path(rec.extras["masks"]).parent
    Image.fromarray(masks).save(folder / "a-masks-wall.png")
    both = Record(rec.image, K, rec.points, rec.depths, depth_type="z", id="both", extras=dict(rec.extras))
    both.extras["masks"] = str(folder / "a-masks-wall.png")
    both.extras["objects"] = [*rec.extras["objects"], wall]
    region = tasks.get("region")
    picked = {region.sample(both, np.random.default_rng(s), tight).info["object_id"] for s in range(20)}
    assert picked == {1}
    assert {region.sample(both, np.random.default_rng(s), SETTINGS).info["object_id"] for s in range(20)} == {
        1,
        2,
    }
    for s in range(3):
        region.query(both, tight, np.random.default_rng(s))  # renders: the box fits
    only_wall = Record(
        rec.image, K, rec.points, rec.depths, depth_type="z", id="wall", extras=dict(both.extras)
    )
    only_wall.extras["objects"] = [wall]
    with pytest.raises(TaskError, match=r"^wall: region: .* fits one view \(1 larger than one view"):
        region.sample(only_wall, np.random.default_rng(0), tight)
