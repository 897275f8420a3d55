"""depthlm dense: queries identical to eval's, writers read back by real readers, resume,
edge-aware interpolation, and dense / region / flying-point metrics against loop versions."""

from __future__ import annotations

import json

import numpy as np
import plyfile
import pytest
from PIL import Image

from depthlm import cli
from depthlm.dense import DenseOptions, dense_depth, run_dense
from depthlm.dense import metrics as dm
from depthlm.dense.interpolate import densify
from depthlm.dense.sampling import adaptive_points, grid_points, parse_box
from depthlm.dense.strategy import _task_points_prompt, group_points, points_prompts, single_point_prompts
from depthlm.dense.writers import cloud, write_ply, write_png_mm
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, ray_scale
from depthlm.inference import make_backend
from depthlm.render import render
from depthlm.settings import RenderSettings

# ---------------------------------------------------------------------------- an analytic scene

W, H = 64, 48
K = Intrinsics(60.0, 60.0, 31.5, 23.5, W, H)
BOX = (20, 14, 41, 33)  # inclusive x0, y0, x1, y1 of a block at 1.5 m in front of a wall at 4 m
SMALL = RenderSettings(f_uni=120.0, max_pixels=160 * 28 * 28, min_pixels=4 * 28 * 28)  # small, fast views


def scene(second: bool = False) -> tuple[Image.Image, np.ndarray, list[np.ndarray]]:
    """Photo, z-depth and object masks: a wall (4 m, grey-blue with a gentle shade) and a block
    (1.5 m, orange); with `second` a second block (2.5 m, green) at the lower left."""
    z = np.full((H, W), 4.0)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[...] = (90, 110, 150)
    rgb[..., 2] += (np.arange(W) // 8).astype(np.uint8)
    x0, y0, x1, y1 = BOX
    masks = [np.zeros((H, W), dtype=bool)]
    masks[0][y0 : y1 + 1, x0 : x1 + 1] = True
    if second:
        masks.append(np.zeros((H, W), dtype=bool))
        masks[1][36:46, 2:14] = True
        z[masks[1]], rgb[masks[1]] = 2.5, (40, 170, 60)
    z[masks[0]], rgb[masks[0]] = 1.5, (230, 140, 30)
    return Image.fromarray(rgb), z, masks


def ray_at(z: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    ix = np.rint(pixels).astype(int)
    return z[ix[:, 1], ix[:, 0]] * ray_scale(pixels, K)


class Oracle:
    """A backend that knows the scene: answers each queried pixel's true ray distance, in the
    depth template's words (one point) or the points task's lines (K points); labels in
    `drop` are left out of the answer."""

    kind = "oracle"
    model = "oracle"

    def __init__(self, z: np.ndarray, settings: RenderSettings, drop: tuple[str, ...] = ()):
        self.z, self.settings, self.drop, self.calls, self.asked = z, settings, drop, 0, 0
        self.fail_after: int | None = None

    def generate(self, prompts, max_tokens=None, structured=False):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # a killed run
        self.calls += 1
        self.asked += len(prompts)
        texts = []
        for p in prompts:
            metres = ray_at(self.z, np.array(p.pixels))
            if p.labels == [""]:
                texts.append(f"The point is around {metres[0]:.2f} meters away from the camera.")
            else:
                texts.append(
                    "\n".join(f"{a}: {m:.2f} m" for a, m in zip(p.labels, metres) if a not in self.drop)
                )
        self.last_token_counts = [5] * len(texts)
        return texts

    def describe(self):
        return {"kind": self.kind}

    def close(self):
        pass


# ---------------------------------------------------------------------------- what is asked


def test_grid_and_adaptive_points_lie_in_the_photo_and_the_box():
    pts = grid_points((W, H), (8, 6))
    assert pts.shape == (48, 2) and len(np.unique(pts, axis=0)) == 48
    assert pts[:, 0].min() >= 0 and pts[:, 0].max() < W and pts[:, 1].max() < H
    inside = grid_points((W, H), (4, 4), BOX)
    assert np.all((inside >= BOX[:2]) & (inside <= BOX[2:]))
    image, _, _ = scene()
    ad = adaptive_points(image, 200, box=BOX, seed=1)
    assert 190 <= len(ad) <= 200 and len(np.unique(ad, axis=0)) == len(ad)
    in_box = np.all((ad >= BOX[:2]) & (ad <= BOX[2:]), axis=1).mean()
    assert in_box > 2 * ((BOX[2] - BOX[0] + 1) * (BOX[3] - BOX[1] + 1)) / (W * H)  # denser in the box
    assert np.array_equal(ad, adaptive_points(image, 200, box=BOX, seed=1))
    with pytest.raises(DepthLMError, match="box"):
        parse_box("10,10,5,20", (W, H))


@pytest.mark.parametrize("settings", [SMALL, SMALL.with_(max_pixels=6 * 28 * 28)], ids=["whole", "cropped"])
def test_single_point_queries_are_exactly_what_eval_renders(settings):
    """The shared-view fast path gives render()'s image, marker pixel and words for every pixel,
    also when the photo exceeds the pixel budget and views are crops around each pixel."""
    image, _, _ = scene()
    pts = grid_points((W, H), (8, 6))
    for p, q in zip(pts, single_point_prompts(image, K, pts, settings)):
        r = render(image, K, tuple(p), settings)
        assert np.array_equal(np.asarray(r.image), np.asarray(q.image))
        assert (r.point, r.question) == (q.view_pixels[0], q.question)
        assert r.messages(with_answer=False) == q.messages()


def test_points_queries_are_exactly_the_points_task():
    image, _, _ = scene()
    pts = grid_points((W, H), (8, 6))
    groups = group_points(pts, 4, K, SMALL)
    assert sorted(i for g in groups for i in g) == list(range(len(pts)))
    assert all(len(g) <= 4 for g in groups) and len(groups) <= len(pts) // 4 + 4
    fast = points_prompts(image, K, [pts[g] for g in groups], SMALL)
    for g, q in zip(groups, fast):
        ref = _task_points_prompt(image, K, pts[g], SMALL)
        assert np.array_equal(np.asarray(ref.image), np.asarray(q.image))
        assert (ref.view_pixels, ref.question, ref.labels) == (q.view_pixels, q.question, q.labels)


# ---------------------------------------------------------------------------- answers -> map


@pytest.mark.parametrize("k", [1, 4])
def test_oracle_answers_give_the_true_depth_at_every_queried_pixel(k, tmp_path):
    image, z, _ = scene()
    result = run_dense(Oracle(z, SMALL), image, K, SMALL, DenseOptions(grid=(16, 12), k=k), progress=False)
    pts = result.points
    assert len(pts) == 192 and result.stats["missing_points"] == 0
    ix = np.rint(pts).astype(int)
    # answers are given to 2 decimals of ray distance; the map holds z at the samples
    assert np.allclose(result.depth[ix[:, 1], ix[:, 0]], z[ix[:, 1], ix[:, 0]], atol=0.006)
    assert result.strategy["k"] == k and result.stats["queries"] == (
        192 if k == 1 else len(group_points(grid_points((W, H), (16, 12)), 4, K, SMALL))
    )


def test_a_label_missing_from_an_answer_is_counted_not_fatal():
    image, z, _ = scene()
    result = run_dense(
        Oracle(z, SMALL, drop=("B",)), image, K, SMALL, DenseOptions(grid=(8, 6), k=4), progress=False
    )
    missing = [s for s in result.samples if s["metres"] is None]
    assert missing and all(s["label"] == "B" for s in missing)
    assert result.stats["missing_points"] == len(missing) and np.isfinite(result.depth).all()


def test_edge_aware_interpolation_keeps_depth_steps_at_colour_edges():
    """The joint bilateral map has far fewer flying points at the block's edge than linear
    interpolation of the same answers, and is closer to the truth overall."""
    image, z, _ = scene()
    pts = grid_points((W, H), (16, 12))
    ix = np.rint(pts).astype(int)
    vals = z[ix[:, 1], ix[:, 0]]
    jbu, lin = densify(pts, vals, image, "jbu"), densify(pts, vals, image, "linear")
    fly_jbu, fly_lin = dm.flying_points(jbu, z), dm.flying_points(lin, z)
    assert fly_lin["flying_rate"] > 0.2
    assert fly_jbu["flying_rate"] < fly_lin["flying_rate"] / 3
    assert dm.dense_metrics(jbu, z)["abs_rel"] < dm.dense_metrics(lin, z)["abs_rel"]
    assert np.allclose(densify(pts, np.full(len(pts), 2.0), image, "jbu"), 2.0)


# ---------------------------------------------------------------------------- files


def test_ply_read_by_plyfile_reprojects_every_point_to_its_pixel_at_its_depth(tmp_path):
    image, z, _ = scene()
    depth = z.astype(np.float32)
    depth[0, :5] = np.nan  # no depth: no point
    xyz, rgb = cloud(depth, K, image)
    write_ply(xyz, rgb, tmp_path / "c.ply")
    ply = plyfile.PlyData.read(str(tmp_path / "c.ply"))
    assert ply.text is False and ply.byte_order == "<"
    v = ply["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z", "red", "green", "blue"]
    x, y, zz = (np.asarray(v[c], dtype=np.float64) for c in "xyz")
    v_, u_ = np.nonzero(np.isfinite(depth))  # row-major order, as written
    assert len(x) == len(u_) == W * H - 5
    assert np.allclose(K.fx * x / zz + K.cx, u_, atol=1e-3) and np.allclose(
        K.fy * y / zz + K.cy, v_, atol=1e-3
    )
    assert np.allclose(zz, depth[v_, u_], atol=1e-6)
    photo = np.asarray(image)
    assert np.array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), photo[v_, u_])


def test_png_is_16_bit_millimetres(tmp_path):
    depth = np.array([[1.2344, 0.0], [np.nan, 70.0]], dtype=np.float32)
    write_png_mm(depth, tmp_path / "d.png")
    png = Image.open(tmp_path / "d.png")
    assert png.mode.startswith("I;16") or png.mode == "I"
    assert np.asarray(png).tolist() == [[1234, 0], [0, 65535]]


def test_cli_dry_run_writes_every_file(tmp_path, capsys):
    image, _, _ = scene()
    image.save(tmp_path / "photo.png")
    out = tmp_path / "out"
    argv = ["dense", "--model", "constant:2.0", "--image", str(tmp_path / "photo.png"), "--fov", "56"]
    assert cli.main([*argv, "--out", str(out), "--grid", "8x6", "--no-progress"]) == 0
    summary = json.loads((out / "dense.json").read_text())
    assert summary["strategy"]["grid"] == [8, 6] and summary["strategy"]["k"] == 1
    assert set(summary["timing_s"]) == {"sample", "render", "generate", "interpolate", "write"}
    assert summary["stats"]["points"] == 48 and summary["stats"]["answered_points"] == 48
    points = json.loads((out / "points.json").read_text())["points"]
    assert points[0]["metres"] == 2.0 and "2.00 meters" in points[0]["text"]
    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    # constant 2 m of ray distance: z = 2 / |ray| at every sample, and nothing beyond 2 m
    assert np.nanmax(depth) <= 2.0 + 1e-6 and np.nanmin(depth) > 1.5
    for name in ("depth.png", "sparse.npy", "preview.png", "cloud.ply"):
        assert (out / name).stat().st_size > 0
    assert Image.open(out / "preview.png").size[0] > W
    # K points per query through the points task, recorded
    assert (
        cli.main(
            [
                *argv,
                "--out",
                str(tmp_path / "k4"),
                "--grid",
                "8x6",
                "--points-per-query",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "k4" / "dense.json").read_text())["strategy"]["query"].startswith(
        "points task"
    )
    k4 = json.loads((tmp_path / "k4" / "points.json").read_text())["points"]
    assert len(k4) == 48 and all(p["metres"] == 2.0 for p in k4)
    assert k4[0]["text"].startswith("A: 2.00 m\nB: 2.00 m")  # the constant in the points task's words


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    image, _, _ = scene()
    image.save(tmp_path / "photo.png")
    argv = [
        "dense",
        "--model",
        "constant:2.0",
        "--image",
        str(tmp_path / "photo.png"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main([*argv, "--box", "50,10,10,20"]) == 2
    assert cli.main([*argv, "--grid", "8by6"]) == 2
    assert cli.main([*argv, "--points-per-query", "27"]) == 2
    assert (
        cli.main(["dense", "--model", "constant:2.0", "--image", str(tmp_path / "nope.jpg"), "--out", "o"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("depthlm dense: error:") for line in err)
    assert "nope.jpg" in err[3] and "box" in err[0] and "--grid" in err[1]


def test_a_killed_run_continues_its_queries(tmp_path):
    """Killed after 2 of 6 chunks, the rerun asks only the 4 left and ends with the map and
    answers of an uninterrupted run."""
    image, z, _ = scene()
    opts = DenseOptions(grid=(8, 6), k=1, chunk_size=8)
    killed = Oracle(z, SMALL)
    killed.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        run_dense(killed, image, K, SMALL, opts, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "answers.jsonl", "a") as fh:
        fh.write('{"query": 16, "chunk": 2, "pix')  # torn line of a write in progress
    again = Oracle(z, SMALL)
    resumed = run_dense(again, image, K, SMALL, opts, tmp_path / "run", progress=False)
    assert again.asked == 48 - 16 and resumed.stats["resumed_queries"] == 16
    whole = run_dense(Oracle(z, SMALL), image, K, SMALL, opts, tmp_path / "whole", progress=False)
    assert np.array_equal(resumed.depth, whole.depth)
    assert [s["text"] for s in resumed.samples] == [s["text"] for s in whole.samples]
    with pytest.raises(DepthLMError, match="another photo, model or strategy"):
        run_dense(
            Oracle(z, SMALL), image, K, SMALL, DenseOptions(grid=(4, 4)), tmp_path / "run", progress=False
        )


def test_python_api_with_a_photo_path(tmp_path):
    image, _, _ = scene()
    image.save(tmp_path / "p.png")
    backend = make_backend(None, "constant:3.0", SMALL)
    result, files = dense_depth(
        backend,
        tmp_path / "p.png",
        intrinsics="60,60,31.5,23.5",
        options=DenseOptions(grid=(4, 3)),
        out_dir=tmp_path / "o",
        progress=False,
    )
    assert result.stats["points"] == 12 and files["cloud"].is_file()
    assert result.intrinsics == K


# ---------------------------------------------------------------------------- metrics, against loops


def loop_metrics(pred, gt, where=None):
    """delta1 over valid ground-truth pixels (a missing prediction is a miss), AbsRel over
    pixels where both are valid: plain loops."""
    n = hits = 0
    rel = []
    for v in range(gt.shape[0]):
        for u in range(gt.shape[1]):
            g = gt[v, u]
            if not (np.isfinite(g) and g > 0) or (where is not None and not where[v, u]):
                continue
            n += 1
            p = pred[v, u]
            if np.isfinite(p) and p > 0:
                rel.append(abs(p - g) / g)
                hits += max(p / g, g / p) < 1.25
    return hits / n, float(np.mean(rel))


def loop_band(mask, band=10):
    """Brute force: each pixel's distance to the nearest pixel on the other side of the mask."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    coords = {side: np.argwhere(mask == side) for side in (True, False)}
    for v in range(h):
        for u in range(w):
            other = coords[not mask[v, u]]
            out[v, u] = np.sqrt(((other - (v, u)) ** 2).sum(1)).min() <= band
    return out


def loop_flying(pred, gt, ratio=1.25, radius=2, tol=0.05):
    h, w = gt.shape
    ok = np.isfinite(gt) & (gt > 0)
    edges = flying = 0
    for v in range(h):
        for u in range(w):
            if not ok[v, u]:
                continue
            steps = [
                max(gt[v, u] / gt[q, r], gt[q, r] / gt[v, u]) > ratio
                for q, r in ((v - 1, u), (v + 1, u), (v, u - 1), (v, u + 1))
                if 0 <= q < h and 0 <= r < w and ok[q, r]
            ]
            if not any(steps):
                continue
            edges += 1
            window = [
                gt[q, r]
                for q in range(v - radius, v + radius + 1)
                for r in range(u - radius, u + radius + 1)
                if 0 <= q < h and 0 <= r < w and ok[q, r]
            ]
            p = pred[v, u]
            flying += bool(np.isfinite(p) and min(window) * (1 + tol) < p < max(window) * (1 - tol))
    return edges, flying


def noisy_prediction(z):
    rng = np.random.default_rng(3)
    pred = z * np.exp(rng.normal(0, 0.2, z.shape))
    pred[rng.random(z.shape) < 0.05] = np.nan  # holes in the map
    return pred


def test_dense_and_region_metrics_match_loops():
    image, z, masks = scene(second=True)
    gt = z.copy()
    gt[:3, :] = np.nan  # invalid ground truth is left out
    pred = noisy_prediction(z)
    d1, ar = loop_metrics(pred, gt)
    ours = dm.dense_metrics(pred, gt)
    assert ours["delta1"] == pytest.approx(d1) and ours["abs_rel"] == pytest.approx(ar)
    regions = dm.region_metrics(pred, gt, masks)
    per = []
    for m in masks:
        band = loop_band(m)
        assert np.array_equal(dm.boundary_band(m), band)
        per.append(
            {
                "foreground": loop_metrics(pred, gt, m),
                "boundary": loop_metrics(pred, gt, band),
                "global": (d1, ar),
            }
        )
    for name in dm.REGIONS:
        assert regions["median"][name]["delta1"] == pytest.approx(np.median([p[name][0] for p in per]))
        assert regions["median"][name]["abs_rel"] == pytest.approx(np.median([p[name][1] for p in per]))
    assert regions["targets"] == 2


def test_flying_points_match_loops():
    image, z, _ = scene(second=True)
    pts = grid_points((W, H), (12, 9))
    ix = np.rint(pts).astype(int)
    for pred in (densify(pts, z[ix[:, 1], ix[:, 0]], image, "linear"), noisy_prediction(z)):
        edges, flying = loop_flying(pred, z)
        ours = dm.flying_points(pred, z)
        assert (ours["edge_pixels"], ours["flying_pixels"]) == (edges, flying)
        assert edges > 50
    assert dm.flying_points(z, z)["flying_pixels"] == 0


# ---------------------------------------------------------------------------- dense evaluation


def test_dense_evaluation_on_records_with_depth_maps(tmp_path):
    from depthlm.dense.evaluate import evaluate_dense
    from depthlm.records import Record

    image, z, masks = scene(second=True)
    image.save(tmp_path / "img.png")
    np.save(tmp_path / "depth.npy", z.astype(np.float32))
    labels = np.zeros((H, W), dtype=np.uint8)
    for k, m in enumerate(masks, start=1):
        labels[m] = k
    Image.fromarray(labels).save(tmp_path / "masks.png")
    pts = np.array([[10.0, 10.0], [30.0, 20.0]])
    extras = {"depth_map": "depth.npy", "masks": "masks.png", "objects": [{"id": 1}, {"id": 2}]}
    rec = Record("img.png", K, pts, z[[10, 20], [10, 30]], "z", dataset="synth", extras=extras)
    plain = Record("img.png", K, pts, z[[10, 20], [10, 30]], "z", dataset="synth", id="no-map")
    with open(tmp_path / "records.jsonl", "w") as fh:
        for r in (rec, plain):
            fh.write(json.dumps(r.to_json()) + "\n")
    summary = evaluate_dense(
        Oracle(z, SMALL),
        tmp_path / "records.jsonl",
        tmp_path / "ev",
        DenseOptions(grid=(16, 12)),
        progress=False,
    )
    assert summary["records"] == 1 and summary["targets"] == 2
    assert summary["skipped"] == [{"record": "no-map", "reason": "no extras.depth_map (dense ground truth)"}]
    row = summary["per_record"][0]
    pred = np.load(tmp_path / "ev" / row["folder"] / "depth.npy")
    assert row["dense"]["delta1"] == pytest.approx(loop_metrics(pred, z)[0])
    assert summary["mean"]["delta1"] > 0.9 and summary["regions_median"]["foreground"]["delta1"] > 0.9
    assert (tmp_path / "ev" / row["folder"] / "side_by_side.png").is_file()
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["records"] == 1


def test_box_and_adaptive_runs_and_the_app_view(tmp_path):
    """--box with a grid maps only the box; --adaptive spends points in it; the app's view
    function returns a preview and the files to download."""
    from depthlm.dense import depth_map_view

    image, z, _ = scene()
    boxed = run_dense(Oracle(z, SMALL), image, K, SMALL, DenseOptions(grid=(6, 6), box=BOX), progress=False)
    inside = np.zeros((H, W), dtype=bool)
    inside[BOX[1] : BOX[3] + 1, BOX[0] : BOX[2] + 1] = True
    assert np.isfinite(boxed.depth[inside]).all() and np.isnan(boxed.depth[~inside]).all()
    assert np.allclose(boxed.depth[inside], 1.5, atol=0.006)  # every sample is on the block
    adaptive = run_dense(
        Oracle(z, SMALL), image, K, SMALL, DenseOptions(adaptive=120, box=BOX), progress=False
    )
    assert adaptive.strategy["sampling"] == "adaptive" and 110 <= adaptive.stats["points"] <= 120
    preview, files = depth_map_view(make_backend(None, "constant:2.0", SMALL), image, K, tmp_path / "app")
    assert preview.size[0] > W and {"png", "npy", "ply", "json"} <= set(files)
    assert all(p.is_file() for p in files.values())


def test_cli_eval_prints_the_scores(tmp_path, capsys):
    from depthlm.records import Record

    image, z, _ = scene()
    image.save(tmp_path / "img.png")
    np.save(tmp_path / "depth.npy", z.astype(np.float32))
    rec = Record("img.png", K, [[10.0, 10.0]], [4.0], "z", dataset="synth", extras={"depth_map": "depth.npy"})
    (tmp_path / "r.jsonl").write_text(json.dumps(rec.to_json()) + "\n")
    argv = [
        "dense",
        "--model",
        "constant:4.0",
        "--eval",
        str(tmp_path / "r.jsonl"),
        "--out",
        str(tmp_path / "ev"),
    ]
    assert cli.main([*argv, "--grid", "8x6", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        printed["records"] == 1 and 0 < printed["mean"]["delta1"] < 1
    )  # 4 m ray: right on the wall, not the block


def test_eval_dense_scores_each_record_set_like_dense_eval(tmp_path, capsys):
    """`depthlm eval --dense` runs the same dense evaluation per record set as `depthlm dense --eval`
    (same metrics.json), under OUT/dense/<dataset>/, and refuses --shard in one line."""
    from depthlm.records import Record

    image, z, _ = scene()
    image.save(tmp_path / "img.png")
    np.save(tmp_path / "depth.npy", z.astype(np.float32))
    rec = Record("img.png", K, [[10.0, 10.0]], [4.0], "z", dataset="synth", extras={"depth_map": "depth.npy"})
    (tmp_path / "r.jsonl").write_text(json.dumps(rec.to_json()) + "\n")
    common = ["--model", "constant:4.0", "--out"]
    assert (
        cli.main(
            [
                "dense",
                *common,
                str(tmp_path / "a"),
                "--eval",
                str(tmp_path / "r.jsonl"),
                "--grid",
                "8x6",
                "--no-progress",
            ]
        )
        == 0
    )
    argv = [
        "eval",
        *common,
        str(tmp_path / "b"),
        "--data",
        f"synth={tmp_path / 'r.jsonl'}",
        "--dense",
        "--dense-grid",
        "8x6",
    ]
    assert cli.main(argv) == 0
    assert "synth: dense delta1" in capsys.readouterr().out
    by_dense = json.loads((tmp_path / "a" / "metrics.json").read_text())
    by_eval = json.loads((tmp_path / "b" / "dense" / "synth" / "metrics.json").read_text())
    assert by_eval["mean"] == by_dense["mean"] and by_eval["records"] == 1
    assert cli.main([*argv, "--shard", "0/2"]) == 2
    assert "--dense runs whole record sets" in capsys.readouterr().err


def test_the_docs_and_help_commands_parse():
    """Every `depthlm dense` line in docs/dense.md, the README and the command's docstring parses."""
    import argparse
    import re
    import shlex
    from pathlib import Path

    from depthlm.commands import dense as dense_cmd

    repo = Path(__file__).resolve().parents[1]
    text = "\n".join(
        [(repo / "docs" / "dense.md").read_text(), (repo / "README.md").read_text(), dense_cmd.__doc__]
    )
    lines = [re.sub(r"\s+#.*$", "", line.strip()) for line in re.sub(r"\\\n\s*", " ", text).splitlines()]
    commands = [shlex.split(line)[2:] for line in lines if line.startswith("depthlm dense --")]
    assert len(commands) >= 10
    for argv in commands:
        parser = argparse.ArgumentParser(prog="depthlm dense", exit_on_error=False)
        dense_cmd.add_arguments(parser)
        args = parser.parse_args(argv)
        assert args.out and args.model, argv
