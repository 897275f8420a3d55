"""One view step (depthlm.render.render_view) for every task, one marking step (mark_view).

What can go wrong when the view step is split out of render and the tasks stop borrowing the
marker-less template: a query the model trained on changes by a pixel (the crop drawn from the
rng, the resample, the marker's place, the words), or a task maps its extra pixels into the view
differently from render's own query pixel. So:

- GOLDEN holds digests of every task's queries (4 settings x 3 seeds x evaluation and training
  views), of render() and of depthlm.dense's prompts, computed by THE CODE BEFORE THE SPLIT
  (commit 3a789c6, extracted with ``git archive`` so it shares nothing with this change)::

      mkdir /tmp/old && git archive 3a789c6 | tar -x -C /tmp/old
      cp tests/test_render_views.py /tmp/golden.py
      (cd /tmp/old && PYTHONPATH=/tmp/old "$OLDPWD/.venv/bin/python" /tmp/golden.py)   # prints GOLDEN

  (the __main__ block below; it uses only API both trees have). The images are seeded noise, so
  any change in resampling, crop or marker shows.
- the tasks' views are compared with render() itself, the marker drawn by the task: the same
  pixels, the same place, with and without training crops;
- a camera where the pre-split tasks' own mapping (through the intrinsics) rounded a pixel
  lying exactly on a pixel border the other way than render: now every caller agrees with
  render, and with exact rational arithmetic there.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm import tasks
from depthlm.geometry import Intrinsics
from depthlm.records import Record, read_records
from depthlm.render import render
from depthlm.settings import RenderSettings

K_A = Intrinsics(559.62, 558.14, 361.87, 241.99, 640, 480)  # iBims-1 corridor_01's camera
K_B = Intrinsics(520.0, 470.0, 300.25, 250.5, 640, 480)  # non-square pixels, odd principal point
PANEL = (200, 150, 330, 260)  # object 1's inclusive box

SETTINGS = {
    "default": RenderSettings(),  # f_uni 1000: a 1148x861 frame, cropped to the pixel budget
    "f400": RenderSettings(f_uni=400.0),  # the whole image, padded to the grid
    "f700_small_budget": RenderSettings(
        f_uni=700.0, max_pixels=300 * 28 * 28, marker="circle", marker_size=15
    ),
    "reference": RenderSettings(f_uni=500.0, template="reference", marker="cross", marker_color="blue"),
}


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    """Seeded uniform noise: any change of resample, crop or marker changes the bytes."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_set(root: Path) -> Path:
    """A records file with every extras key (masks, depth map, second view) in images/ beside it."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    noise(K_A.size, 1).save(root / "images" / "a.png")
    noise(K_B.size, 2).save(root / "images" / "a-pair.png")
    masks = np.zeros((480, 640), np.uint8)
    masks[PANEL[1] : PANEL[3] + 1, PANEL[0] : PANEL[2] + 1] = 1
    Image.fromarray(masks).save(root / "images" / "a-masks.png")
    ys, xs = np.mgrid[0:480, 0:640]
    depth = 2.0 + xs / 640.0 + ys / 960.0
    depth[masks == 1] = 1.5
    np.save(root / "images" / "a-depth.npy", depth)
    grid = [(x, y) for y in range(17, 480, 41) for x in range(23, 640, 53)]
    rec = {
        "image": "images/a.png",
        "intrinsics": K_A.to_list(),
        "pixel_coords": grid,
        "depth": [float(depth[y, x]) for x, y in grid],
        "depth_type": "z",
        "dataset": "golden",
        "id": "golden/a",
        "extras": {
            "objects": [{"id": 1, "kind": "box", "box": list(PANEL)}],
            "masks": "images/a-masks.png",
            "depth_map": "images/a-depth.npy",
            "pair": {
                "image": "images/a-pair.png",
                "intrinsics": K_B.to_list(),
                "translation_m": [0.4, 0.0, 0.9],
            },
        },
    }
    (root / "records.jsonl").write_text(json.dumps(rec) + "\n")
    return root / "records.jsonl"


def _digest_query(h, q) -> None:
    for im in q.images:
        h.update(f"{im.mode}{im.size}".encode())
        h.update(im.tobytes())
    points = sorted((k, list(v)) for k, v in q.points.items())
    box = None if q.box is None else list(q.box)
    h.update(repr([k.to_list() for k in q.intrinsics]).encode())
    h.update(json.dumps([q.question, q.answer, q.truth, points, box]).encode())


def task_digests(records_file: Path) -> dict[str, str]:
    """One digest per (settings, task) over seeds 0-2, evaluation and training views."""
    rec = read_records(records_file)[0]
    out = {}
    for sname, s in SETTINGS.items():
        for name in tasks.names():
            h = hashlib.sha256()
            for seed in (0, 1, 2):
                for train in (False, True):
                    q = tasks.get(name).query(rec, s, np.random.default_rng(seed), train=train)
                    _digest_query(h, q)
            out[f"task/{sname}/{name}"] = h.hexdigest()[:16]
    return out


def render_digests() -> dict[str, str]:
    """render() at corners, a sub-pixel point and near borders, evaluation and two crops."""
    img = noise(K_B.size, 3)
    out = {}
    for sname, s in SETTINGS.items():
        h = hashlib.sha256()
        for pt in [(0, 0), (639, 479), (320.5, 240.25), (17, 402), (600, 12)]:
            for seed in (None, 0, 5):
                rng = None if seed is None else np.random.default_rng(seed)
                q = render(img, K_B, pt, s, depth=2.5, depth_type="z", rng=rng)
                h.update(q.image.tobytes())
                h.update(
                    json.dumps([q.point, q.intrinsics.to_list(), q.question, q.answer, q.depth]).encode()
                )
        out[f"render/{sname}"] = h.hexdigest()[:16]
    return out


def dense_digests() -> dict[str, str]:
    """depthlm.dense's prompts (one view reused for many markers), 1 and 4 points per query."""
    from depthlm.dense.strategy import build_prompts, group_points

    img = noise(K_A.size, 4)
    pts = np.array([(x, y) for y in range(5, 480, 67) for x in range(9, 640, 71)], float)
    out = {}
    for sname in ("default", "f700_small_budget"):
        s = SETTINGS[sname]
        for k in (1, 4):
            h = hashlib.sha256()
            for p in build_prompts(img, K_A, pts, group_points(pts, k, K_A, s), s, k):
                h.update(p.image.tobytes())
                h.update(json.dumps([p.question, [list(v) for v in p.view_pixels], p.labels]).encode())
            out[f"dense/{sname}/k{k}"] = h.hexdigest()[:16]
    return out


def all_digests(tmp: Path) -> dict[str, str]:
    return {**task_digests(write_set(tmp / "set")), **render_digests(), **dense_digests()}


# Printed by the __main__ block on commit 3a789c6 (before the view step was split out of render).
GOLDEN = {
    "dense/default/k1": "efcdaac6e9c1f273",
    "dense/default/k4": "8e97a0fb278e6340",
    "dense/f700_small_budget/k1": "38a01528531a23a8",
    "dense/f700_small_budget/k4": "952ed84f6ffef510",
    "render/default": "0c76696fe2ee5afe",
    "render/f400": "3e5e8a6024007792",
    "render/f700_small_budget": "4cc7d31399a02d51",
    "render/reference": "0ac5bc0b664d4adb",
    "task/default/closer": "0f14cc4cff34d844",
    "task/default/depth": "5a31cf64122f4757",
    "task/default/distance": "415dfb9d7cb91bc1",
    "task/default/hinted": "818c9d968923f52a",
    "task/default/motion": "415b5c03a183df52",
    "task/default/points": "39b2fcc18bf0c541",
    "task/default/region": "1bf59cfc23cff1d6",
    "task/default/time": "a75adfb920cf4b2c",
    "task/f400/closer": "3fa0c79cc53f5657",
    "task/f400/depth": "a1bba1dda04428e8",
    "task/f400/distance": "85d31421ac1981bc",
    "task/f400/hinted": "1f312e23eba8e4cf",
    "task/f400/motion": "268f601965cd3a28",
    "task/f400/points": "9a6bc2411a693f89",
    "task/f400/region": "c6488e2eaa6aeebe",
    "task/f400/time": "4453ab9f74bc1f48",
    "task/f700_small_budget/closer": "ac30bb4fcdec81e1",
    "task/f700_small_budget/depth": "a9b078cd4dc9ce03",
    "task/f700_small_budget/distance": "6e2b7ad14a8ea442",
    "task/f700_small_budget/hinted": "dba7f22d69a9bf25",
    "task/f700_small_budget/motion": "0cdd9a587fd2839b",
    "task/f700_small_budget/points": "5d163dbf6d9c196c",
    "task/f700_small_budget/region": "1308fa356778064f",
    "task/f700_small_budget/time": "90e55a2837a67756",
    "task/reference/closer": "0009430b83c59cfe",
    "task/reference/depth": "4526e915a9b913fb",
    "task/reference/distance": "c15c6c866a6e98de",
    "task/reference/hinted": "97c6c4cb4831240e",
    "task/reference/motion": "522f192ab10a3e98",
    "task/reference/points": "603ccdde846f1db4",
    "task/reference/region": "5becfc3a9a1e1355",
    "task/reference/time": "a10e820935131e2d",
}


def test_every_task_render_and_dense_query_is_byte_identical_to_before_the_split(tmp_path):
    now = all_digests(tmp_path)
    assert set(now) == set(GOLDEN)
    changed = sorted(k for k in GOLDEN if now[k] != GOLDEN[k])
    assert not changed, f"queries changed: {changed}"


# --- the tasks' views against render() itself ------------------------------------------------


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Record:
    return read_records(write_set(tmp_path_factory.mktemp("views")))[0]


def image_of(rec: Record) -> Image.Image:
    return Image.open(rec.image).convert("RGB")


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


def rng_of(seed: int | None) -> np.random.Generator | None:
    return None if seed is None else np.random.default_rng(seed)


@pytest.mark.parametrize("sname", list(SETTINGS))
def test_render_is_the_view_step_then_the_marking_step(sname):
    from depthlm.render import mark_view, render_view

    s, img = SETTINGS[sname], noise(K_B.size, 3)
    for pt in [(0, 0), (639, 479), (320.5, 240.25), (17, 402)]:
        for seed in (None, 0, 5):
            q = render(img, K_B, pt, s, depth=2.5, depth_type="z", rng=rng_of(seed))
            view = render_view(img, K_B, pt, s, rng_of(seed))
            marked, question = mark_view(view.image, view.anchor_px, s)
            assert same(q.image, marked) and (q.point, q.question) == (view.anchor_px, question)
            assert q.intrinsics == view.intrinsics and view.intrinsics.size == view.image.size
            # the view step draws nothing: it is render's view under the marker-less template
            bare = render(img, K_B, pt, s.with_(template="text_coords"), rng=rng_of(seed))
            assert same(view.image, bare.image)


def marked_pixels(query_image: Image.Image, bare: Image.Image) -> np.ndarray:
    """(N, 2) x, y of the pixels a task changed on the unmarked view."""
    diff = np.any(np.asarray(query_image) != np.asarray(bare), axis=-1)
    ys, xs = np.nonzero(diff)
    return np.stack([xs, ys], 1)


@pytest.mark.parametrize("sname", ["f400", "reference"])  # evaluation views of the whole image
@pytest.mark.parametrize("name", ["points", "distance", "closer", "hinted", "time"])
def test_tasks_mark_each_pixel_where_render_puts_it_and_change_nothing_else(record, sname, name):
    from depthlm.render import marker_size

    s, img, task = SETTINGS[sname], image_of(record), tasks.get(name)
    for seed in (0, 1, 2):
        q = task.query(record, s, np.random.default_rng(seed), image=img)
        src = record.points[q.meta["point_indices"]]
        labels = list(q.points)
        for label, p in zip(labels, src):
            alone = render(img, record.intrinsics, tuple(p), s)
            assert q.points[label] == alone.point, (label, p)
            assert q.intrinsics[0] == alone.intrinsics
        anchor = tuple((src.min(axis=0) + src.max(axis=0)) / 2)
        bare = render(img, record.intrinsics, anchor, s.with_(template="text_coords")).image
        changed = marked_pixels(q.images[0], bare)
        reach = 2 * marker_size(s)  # a marker and its letter
        centres = np.array(list(q.points.values()))
        near = np.min(np.abs(changed[:, None, :] - centres[None]).max(axis=2), axis=1) <= reach
        assert len(changed) and near.all(), f"pixels changed away from the markers: {changed[~near][:5]}"


@pytest.mark.parametrize("sname", list(SETTINGS))
@pytest.mark.parametrize("train", [False, True])
def test_time_is_renders_query_with_its_own_words(record, sname, train):
    """One marked pixel: the time task's image IS render's (view, crop drawn from the same rng
    state, marker), whatever the settings."""
    import copy

    s, img, task = SETTINGS[sname], image_of(record), tasks.get("time")
    s_marked = s.with_(template="plain") if sname != "reference" else s
    for seed in (0, 1, 2, 3):
        rng = np.random.default_rng(seed)
        sample = task.sample(record, rng, s)
        twin = copy.deepcopy(rng)
        q = task.build(record, sample, s, rng=rng if train else None, image=img)
        ref = render(
            img,
            record.intrinsics,
            tuple(record.points[sample.indices[0]]),
            s_marked,
            rng=twin if train else None,
        )
        assert (
            same(q.images[0], ref.image) and q.points[""] == ref.point and q.intrinsics[0] == ref.intrinsics
        )


@pytest.mark.parametrize("sname", list(SETTINGS))
@pytest.mark.parametrize("train", [False, True])
def test_motion_views_are_renders_unmarked_views_of_both_images(record, sname, train):
    import copy

    s, task = SETTINGS[sname], tasks.get("motion")
    second = Image.open(record.extras["pair"]["image"]).convert("RGB")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        sample = task.sample(record, rng, s)
        twin = copy.deepcopy(rng)
        q = task.build(record, sample, s, rng=rng if train else None)
        bare = s.with_(template="text_coords")
        for view, (im, k) in zip(q.images, [(image_of(record), K_A), (second, K_B)]):
            ref = render(im, k, ((k.width - 1) / 2, (k.height - 1) / 2), bare, rng=twin if train else None)
            assert same(view, ref.image)


@pytest.mark.parametrize("sname", list(SETTINGS))
def test_region_box_is_the_exact_cover_of_the_object_box_in_the_view(record, sname):
    """Ground truth in exact rational arithmetic: source pixel edge u maps to (u + 1/2) * Wn / W
    - 1/2 - left in the view (geometry's resize convention); the box is the view pixels whose
    centres lie inside the mapped edges."""
    from depthlm.geometry import focal_size

    s, img = SETTINGS[sname], image_of(record)
    q = tasks.get("region").query(record, s, np.random.default_rng(0), image=img)
    x0, y0, x1, y1 = PANEL
    anchor = ((x0 + x1) / 2, (y0 + y1) / 2)
    view = render(img, K_A, anchor, s.with_(template="text_coords"))
    wn, hn = focal_size(K_A, s.f_uni)
    # the view's offset in the frame, from the intrinsics it reports (exact: an integer shift)
    full = K_A.resized(wn, hn)
    left, top = round(full.cx - view.intrinsics.cx), round(full.cy - view.intrinsics.cy)

    def lo(u, n_out, n_in, off):  # first view pixel whose centre is right of / below edge u - 1/2
        return math.floor(Fraction(u) * n_out / n_in - off)

    def hi(u, n_out, n_in, off):  # last view pixel whose centre is left of / above edge u + 1/2
        return math.ceil(Fraction(u + 1) * n_out / n_in - 1 - off)

    want = (lo(x0, wn, 640, left), lo(y0, hn, 480, top), hi(x1, wn, 640, left), hi(y1, hn, 480, top))
    assert q.box == want
    assert q.intrinsics[0] == view.intrinsics


# --- a pixel exactly on a view pixel border ----------------------------------------------------

K_TIE = Intrinsics(267.97, 267.97, 152.72, 120.05, 320, 240)  # at f_uni 750: frame 896x672 (x2.8)
TIE = (104, 157)  # row (157 + 1/2) * 2.8 - 1/2 = 440.5: exactly on the border of rows 440 and 441


def test_a_pixel_on_a_border_is_placed_as_render_places_it_by_every_task_and_by_dense():
    """Before the split, tasks mapped pixels through the intrinsics (cx' + fx' (x - cx) / fx):
    the same value in exact arithmetic, but here it rounds to row 440 where render (and exact
    arithmetic) say 441 -- a labelled marker one row off the pixel render would mark. Now there
    is one mapping (render.points_to_view) and every caller agrees with render."""
    from depthlm.dense.strategy import single_point_prompts
    from depthlm.geometry import focal_size
    from depthlm.tasks import Sample

    s = RenderSettings(f_uni=750.0)
    wn, hn = focal_size(K_TIE, s.f_uni)
    assert (wn, hn) == (896, 672)  # the whole image is the view: no shift
    exact = tuple(math.floor(Fraction(2 * u + 1, 2) * n / m) for u, n, m in zip(TIE, (wn, hn), (320, 240)))
    assert exact == (292, 441)
    k = K_TIE.resized(wn, hn)
    old = math.floor(k.cy + k.fy * (TIE[1] - K_TIE.cy) / K_TIE.fy + 0.5)
    assert old == 440  # the pre-split tasks' rounding: this case is a real border case

    img = noise(K_TIE.size, 5)
    q = render(img, K_TIE, TIE, s)
    assert q.point == exact
    rec = Record("tie.png", K_TIE, [TIE, (250, 60), (40, 40)], [2.0, 3.0, 4.0], "z", id="tie")
    time = tasks.get("time").build(rec, Sample(indices=[0], info={"speed_m_s": 1.0}), s, image=img)
    assert time.points[""] == exact and same(time.images[0], q.image)
    points = tasks.get("points").build(rec, Sample(indices=[0, 1, 2], labels=["A", "B", "C"]), s, image=img)
    assert points.points["A"] == exact
    hinted = tasks.get("hinted").build(rec, Sample(indices=[1, 2, 0], labels=["A", "B"]), s, image=img)
    assert hinted.points[""] == exact
    dense = single_point_prompts(img, K_TIE, np.array([TIE], float), s)[0]
    assert dense.view_pixels == [exact] and same(dense.image, q.image)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(all_digests(Path(tmp)), indent=4, sort_keys=True))
