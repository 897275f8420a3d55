"""The build framework: accounting, rejects, sampling, determinism, shards, resume, export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data_builders
from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.framework import reason_category
from data_builders.sampling import SamplingConfig, _spread, _spread_at, sample_dense, sample_sparse
from data_builders.sources._checks import check_same_size, image_size
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, ray_scale
from depthlm.records import extras_files, read_records

REPO = Path(__file__).resolve().parents[1]
INTR = Intrinsics(10.0, 10.0, 3.5, 2.5, 8, 6)


def known_depth() -> np.ndarray:
    ys, xs = np.mgrid[0:6, 0:8]
    return (1.0 + xs + 10.0 * ys).astype(np.float32)


@register_source("test-defects")
class DefectSource(Source):
    """One good dense frame, one good sparse frame, and one frame of each defect."""

    needs_root = False
    KEYS = ["absurd", "corrupt", "crash", "dense", "missing", "nan", "sizes", "sparse"]

    def list_frames(self) -> list[str]:
        return list(self.KEYS)

    def load(self, key: str) -> Frame:
        image = Image.new("RGB", (8, 6), (90, 120, 200))
        if key == "dense":
            depth = known_depth()
            depth[0, 0] = np.nan
            depth[0, 1] = 0.0
            valid = np.ones((6, 8), dtype=bool)
            valid[5, 7] = False
            return Frame(key, INTR, image=image, depth=depth, valid=valid, extras={"note": "kept"})
        if key == "sparse":
            pts = np.array([[1, 1], [2, 3], [7, 5], [8, 2], [3, 3], [-1, 0]], dtype=float)
            ray = np.array([2.0, 3.0, 4.0, 5.0, np.nan, 1.0])
            return Frame(key, INTR, image=image, points=pts, point_depths=ray, depth_type="ray")
        if key == "corrupt":
            path = Path(self.root) / "corrupt.png"
            buf = Path(self.root) / "full.png"
            image.save(buf)
            path.write_bytes(buf.read_bytes()[:40])  # a truncated PNG
            return Frame(key, INTR, image_path=path, depth=known_depth())
        if key == "missing":
            raise SkipFrame(f"depth file missing: {self.root}/depth/missing.png")
        if key == "nan":
            return Frame(key, INTR, image=image, depth=np.full((6, 8), np.nan, dtype=np.float32))
        if key == "absurd":
            return Frame(key, Intrinsics(-5.0, 10.0, 3.5, 2.5, 8, 6), image=image, depth=known_depth())
        if key == "sizes":
            return Frame(key, INTR, image=image, depth=np.ones((3, 4), dtype=np.float32))
        raise RuntimeError("boom")


def build_defects(tmp_path: Path, **kw):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    out = tmp_path / "out"
    opts = dict(points_per_image=0, edge_threshold=0.0, progress=False)
    opts.update(kw)
    return data_builders.build("test-defects", raw, out, **opts), out


def read_jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_frame_and_label_is_kept_or_rejected_with_a_reason(tmp_path):
    summary, out = build_defects(tmp_path)
    assert summary["frames"] == {"input": 8, "kept": 2, "rejected": 6}
    rejects = read_jsonl(out / "rejects.jsonl")
    frame_reasons = {r["key"]: r["reason"] for r in rejects if r.get("frame")}
    assert set(frame_reasons) == {"absurd", "corrupt", "crash", "missing", "nan", "sizes"}
    assert "absurd intrinsics" in frame_reasons["absurd"]
    assert "unreadable image" in frame_reasons["corrupt"] and "corrupt.png" in frame_reasons["corrupt"]
    assert frame_reasons["crash"] == "error in source: RuntimeError: boom"
    assert frame_reasons["missing"].startswith("depth file missing")
    assert frame_reasons["nan"] == "no valid point left"
    assert "depth size mismatch: expected 8x6 (the image), found a 4x3 depth map" in frame_reasons["sizes"]
    assert sum(summary["frame_rejects"].values()) == 6
    assert summary["frame_rejects"]["depth file missing"] == 1

    labels = summary["labels"]
    assert labels["input"] == 48 + 6 + 48  # dense pixels, sparse points, the all-NaN frame's pixels
    assert labels["sampled"] + labels["unsampled"] + labels["rejected"] == labels["input"]
    assert labels["rejected"] == sum(r["labels"] for r in rejects if not r.get("frame"))
    assert summary["label_rejects"] == {"invalid mask": 1, "no depth": 2 + 1 + 48, "outside image": 2}
    sparse_rejects = {
        r["reason"]: r["points"] for r in rejects if r["key"] == "sparse" and not r.get("frame")
    }
    assert sparse_rejects == {"no depth": [4], "outside image": [3, 5]}


def test_records_hold_known_z_depths_at_known_pixels(tmp_path):
    _, out = build_defects(tmp_path)
    records = {r.id: r for r in read_records(out)}
    dense = records["test-defects/train/dense"]
    assert dense.depth_type == "z" and dense.extras == {"note": "kept"}
    assert not os.path.isabs(read_jsonl(out / "records-00000.jsonl")[0]["image"])
    assert len(dense) == 48 - 3
    x, y = dense.points[:, 0].astype(int), dense.points[:, 1].astype(int)
    np.testing.assert_allclose(dense.depths, 1.0 + x + 10.0 * y)
    sparse = records["test-defects/train/sparse"]
    np.testing.assert_array_equal(sparse.points, [[1, 1], [2, 3], [7, 5]])
    # the source gave ray distances; records hold z = ray / |ray direction|
    np.testing.assert_allclose(
        sparse.depths, np.array([2.0, 3.0, 4.0]) / ray_scale(sparse.points, INTR), rtol=1e-6
    )
    np.testing.assert_allclose(sparse.depths_as("ray"), [2.0, 3.0, 4.0], rtol=1e-6)


def test_reason_categories_drop_keys_paths_and_numbers():
    assert reason_category("nyuv2/0001: depth file missing: /a/b.png", "nyuv2/0001") == "depth file missing"
    assert reason_category("absurd focal length fx=3.5 px") == "absurd focal length fx=# px"


@pytest.mark.parametrize(
    "reasons, category",
    [
        (  # path inside the first part, and again in Pillow's message
            [
                (
                    "s1/0001",
                    "unreadable image /data/s1/0001.png: cannot identify image file '/data/s1/0001.png'",
                ),
                (
                    "s2/0417",
                    "unreadable image /data/s2/0417.png: cannot identify image file '/data/s2/0417.png'",
                ),
                ("s2/0418", "s2/0418: unreadable image: /d/s2/0418.jpg: image file is truncated (3 bytes)"),
            ],
            "unreadable image",
        ),
        (  # a key without a slash, followed by the file it names
            [
                ("0001", "0001 (depth_0001.png): size mismatch: expected 640x480 (the image), found 320x240"),
                ("0002", "0002 (depth_0002.png): size mismatch: expected 640x480 (the image), found 320x200"),
            ],
            "size mismatch",
        ),
        (  # a key that is also a word of the reason; Windows and relative paths
            [
                ("missing", "depth file missing: /tmp/raw/depth/missing.png"),
                ("k", r"depth file missing: C:\raw\depth\k.png"),
                ("seg/7", "depth file missing: ../raw/seg/7.npy"),
            ],
            "depth file missing",
        ),
        (  # a path with a line number first
            [("a", "/d/x.jsonl:12: invalid JSON: Expecting value: line 1 column 1 (char 0)")],
            "invalid JSON",
        ),
        (
            [
                ("seg/1/FRONT", "seg/1/FRONT: camera FRONT missing from calib/1005081002024_5313.parquet"),
                ("seg/2/FRONT", "seg/2/FRONT: camera FRONT missing from calib/2995081002024_1.parquet"),
            ],
            "camera FRONT missing from",
        ),
        ([("k", "points/depths mismatch: 5 points, 6 depths")], "points/depths mismatch"),
        ([("k", "error in source: KeyError: 'frame_000123'")], "error in source"),
        ([("k", "/a/b/c.png")], "other"),
    ],
)
def test_reason_categories_are_one_per_kind_of_problem(reasons, category):
    assert {reason_category(reason, key) for key, reason in reasons} == {category}


def test_size_reasons_say_what_was_expected_and_what_was_found(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (48, 32)).save(path)
    assert image_size(path, "k") == (48, 32)
    with pytest.raises(SkipFrame) as err:
        image_size(path, "scene/k", expected=(96, 64), described_by="its camera")
    assert (
        str(err.value) == f"scene/k: image size mismatch: expected 96x64 (its camera), found 48x32 in {path}"
    )
    path.write_bytes(b"not an image")
    with pytest.raises(SkipFrame) as err:
        image_size(path, "k")
    assert str(err.value).startswith(f"k: unreadable image: {path} is not an image Pillow can read (")
    assert str(err.value).count(str(path)) == 1
    with pytest.raises(SkipFrame, match="image file missing: expected an image at .*, found no file"):
        image_size(tmp_path / "none.png", "k")
    with pytest.raises(SkipFrame) as err:
        check_same_size((640, 480), np.zeros((240, 320)), "k (d.png)")
    assert str(err.value) == "k (d.png): size mismatch: expected 640x480 (the image), found 320x240"


# --- sampling ---------------------------------------------------------------------------------


def test_discontinuity_test_rejects_both_sides_of_a_depth_step():
    depth = np.full((10, 12), 2.0)
    depth[:, 6:] = 6.0
    intr = Intrinsics(10, 10, 5.5, 4.5, 12, 10)
    sel = sample_dense(depth, intr, "z", SamplingConfig(points_per_image=0), np.random.default_rng(0))
    rejected = sel.rejected["depth discontinuity"]
    assert sorted(set(rejected % 12)) == [5, 6] and len(rejected) == 20
    assert len(sel.points) == 100
    off = sample_dense(depth, intr, "z", SamplingConfig(0, edge_threshold=0), np.random.default_rng(0))
    assert len(off.points) == 120 and not off.rejected


def test_depth_range_and_border_bound_the_labels():
    depth = np.tile(np.linspace(0.5, 12.0, 12), (10, 1))
    intr = Intrinsics(10, 10, 5.5, 4.5, 12, 10)
    cfg = SamplingConfig(0, min_depth=1.0, max_depth=10.0, edge_threshold=0, border=2)
    sel = sample_dense(depth, intr, "z", cfg, np.random.default_rng(0))
    assert sel.depths.min() >= 1.0 and sel.depths.max() <= 10.0
    assert sel.points[:, 0].min() >= 2 and sel.points[:, 1].max() <= 7
    assert len(sel.points) + sel.n_rejected == 120


def test_stratified_sampling_balances_near_and_far():
    depth = np.full((20, 20), 10.0)
    depth[:2] = 1.0  # 10 % near pixels
    intr = Intrinsics(20, 20, 9.5, 9.5, 20, 20)
    near = {}
    for mode in ("uniform", "stratified"):
        cfg = SamplingConfig(1, mode=mode, edge_threshold=0)
        picks = [sample_dense(depth, intr, "z", cfg, np.random.default_rng(s)).depths[0] for s in range(300)]
        near[mode] = np.mean(np.array(picks) < 5)
    assert near["uniform"] < 0.2 and near["stratified"] > 0.35


def test_sparse_discontinuity_uses_neighbouring_points():
    intr = Intrinsics(50, 50, 20, 20, 40, 40)
    pts = np.array([[10, 10], [11, 10], [30, 30]], dtype=float)
    sel = sample_sparse(
        pts, np.array([2.0, 5.0, 3.0]), intr, "z", SamplingConfig(0), np.random.default_rng(0)
    )
    assert sel.rejected["depth discontinuity"].tolist() == [0, 1]
    assert sel.points.tolist() == [[30, 30]]


def step_map() -> tuple[np.ndarray, Intrinsics]:
    """A 30x40 map: a near box (1 m) in front of a far wall (4 m), a hole, an invalid corner."""
    depth = np.full((30, 40), 4.0)
    depth[8:20, 10:25] = 1.0
    depth[25:, 30:] = np.nan
    return depth, Intrinsics(40, 40, 19.5, 14.5, 40, 30)


@pytest.mark.parametrize("mode", ["uniform", "stratified"])
def test_dense_maps_test_neighbourhoods_only_where_the_draw_goes(mode):
    depth, intr = step_map()
    full = sample_dense(depth, intr, "z", SamplingConfig(0, mode=mode), np.random.default_rng(0))
    steep = set(full.rejected["depth discontinuity"].tolist())
    passing = {int(y) * 40 + int(x) for x, y in full.points}
    picks = []
    for seed in range(400):
        sel = sample_dense(depth, intr, "z", SamplingConfig(2, mode=mode), np.random.default_rng(seed))
        assert len(sel.points) == 2 and len(sel.points) + sel.n_unsampled + sel.n_rejected == sel.n_input
        failed = sel.rejected.get("depth discontinuity", np.empty(0, int)).tolist()
        assert set(failed) <= steep and len(failed) < 20  # only the drawn pixels were tested
        chosen = [int(y) * 40 + int(x) for x, y in sel.points]
        assert set(chosen) <= passing
        picks += chosen
    near = np.mean([depth.flat[i] < 2 for i in picks])
    if mode == "uniform":  # picks spread over the passing pixels, near ones at their share (12 %)
        assert len(set(picks)) > 0.45 * len(passing) and 0.07 < near < 0.2  # 800 picks of 1042
    else:  # near and far share the picks even though near pixels are few
        assert 0.4 < near < 0.6


def test_without_a_failing_test_a_seed_draws_as_it_always_did():
    """The lazy draw must not change a seed's output where nothing fails the neighbourhood test:
    one rng.choice among the candidates, as before (sparse frames, edge test off)."""
    depth, intr = step_map()
    cfg = SamplingConfig(5, edge_threshold=0)
    sel = sample_dense(depth, intr, "z", cfg, np.random.default_rng(7))
    candidates = np.flatnonzero(np.isfinite(depth).ravel())
    expected = np.sort(np.random.default_rng(7).choice(candidates, size=5, replace=False))
    np.testing.assert_array_equal(sel.points, np.stack([expected % 40, expected // 40], axis=1))
    pts = np.random.default_rng(1).uniform(0, 29, (300, 2))
    sel = sample_sparse(pts, np.full(300, 3.0), intr, "z", SamplingConfig(4), np.random.default_rng(7))
    np.testing.assert_array_equal(
        sel.points, pts[np.sort(np.random.default_rng(7).choice(300, 4, replace=False))]
    )


@pytest.mark.parametrize("radius", [1, 2])
def test_spread_at_some_pixels_equals_the_whole_map_filter(radius):
    rng = np.random.default_rng(radius)
    zmap = rng.uniform(0.5, 10, (23, 31))
    zmap[rng.random(zmap.shape) < 0.3] = np.nan
    idx = np.flatnonzero(np.isfinite(zmap))
    np.testing.assert_array_equal(_spread_at(zmap, idx, radius), _spread(zmap, radius).ravel()[idx])


# --- determinism, shards, resume -------------------------------------------------------------


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


SYNTH = dict(num_images=12, image_size=(64, 48), points_per_image=3, chunk_size=5, progress=False)


def test_same_seed_same_bytes_for_any_num_proc_and_sharding(tmp_path):
    data_builders.build("synthetic", None, tmp_path / "one", **SYNTH)
    data_builders.build("synthetic", None, tmp_path / "two", num_proc=2, **SYNTH)
    first = data_builders.build("synthetic", None, tmp_path / "sharded", shard="1/2", **SYNTH)
    assert first["complete"] is False and not (tmp_path / "sharded" / "summary.json").exists()
    data_builders.build("synthetic", None, tmp_path / "sharded", shard="0/2", **SYNTH)
    one = tree(tmp_path / "one")
    assert len([k for k in one if k.startswith("records-")]) == 3
    assert tree(tmp_path / "two") == one
    assert tree(tmp_path / "sharded") == one
    other = data_builders.build("synthetic", None, tmp_path / "seed1", seed=1, **SYNTH)
    assert other["images"] == 12 and tree(tmp_path / "seed1") != one


def test_rebuilding_with_other_settings_into_the_same_folder_is_refused(tmp_path):
    data_builders.build("synthetic", None, tmp_path / "o", **SYNTH)
    with pytest.raises(DepthLMError, match="other settings.*seed"):
        data_builders.build("synthetic", None, tmp_path / "o", **{**SYNTH, "progress": False}, seed=3)


def _build_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "depthlm.cli",
        "build",
        "synthetic",
        "--out",
        str(out),
        "--num-images",
        "150",
        "--chunk-size",
        "3",
        "--points-per-image",
        "2",
        "--no-progress",
    ]


def test_killed_build_resumes_without_redoing_finished_chunks(tmp_path):
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(_build_cmd(killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / ".build"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(state.glob("chunk-*.json"))) < 4 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(state.glob("chunk-*.json"))
    assert 4 <= len(done) < 50, "the build must be killed part-way"
    assert not (killed / "summary.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in killed.glob("records-*.jsonl")}
    finished = [f"records-{p.stem.split('-')[1]}.jsonl" for p in done]

    subprocess.run(_build_cmd(killed), cwd=REPO, check=True, capture_output=True)
    for name in finished:  # finished chunks were not written again
        assert (killed / name).stat().st_mtime_ns == stamps[name]
    subprocess.run(_build_cmd(full), cwd=REPO, check=True, capture_output=True)
    assert tree(killed) == tree(full)
    assert len(read_records(killed)) == 150


def test_memory_stays_flat_as_the_build_grows(tmp_path):
    peaks = []
    for n in (8, 32):
        tracemalloc.start()
        data_builders.build(
            "synthetic",
            None,
            tmp_path / f"m{n}",
            num_images=n,
            image_size=(96, 72),
            chunk_size=4,
            progress=False,
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0]


# --- export ----------------------------------------------------------------------------------


def test_parquet_export_round_trips_records_and_images(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path / "cache"))
    from data_builders.export import read_hf_records, to_hf_dataset

    out = tmp_path / "recs"
    data_builders.build("synthetic", None, out, **{**SYNTH, "export_hf": tmp_path / "hf"})
    files = sorted((tmp_path / "hf" / "data").glob("*.parquet"))
    assert [f.name for f in files] == ["train-00000-of-00001.parquet"]
    info = to_hf_dataset(out, tmp_path / "hf5", rows_per_shard=5)
    assert info["rows"] == 12 and len(info["files"]) == 3
    original = read_records(out)
    back = list(read_hf_records(tmp_path / "hf5"))
    assert [r.id for r, _ in back] == [r.id for r in original]
    for (rec, image), orig in zip(back, original):
        np.testing.assert_array_equal(rec.points, orig.points)
        np.testing.assert_array_equal(rec.depths, orig.depths)
        assert rec.intrinsics == orig.intrinsics and rec.extras["objects"] == orig.extras["objects"]
        embedded = extras_files(rec.extras)  # cached copies of the files the record named
        assert [k for k, _ in embedded] == [k for k, _ in extras_files(orig.extras)] != []
        for (_, cached), (_, path) in zip(embedded, extras_files(orig.extras)):
            assert Path(cached).read_bytes() == Path(path).read_bytes()
        assert image.tobytes() == Image.open(orig.image).convert("RGB").tobytes()


@register_source("test-pairs")
class PairSource(Source):
    """Frames whose second view is an image file of the release (a pathlib.Path in extras)."""

    needs_root = True

    def list_frames(self) -> list[str]:
        return ["a", "b"]

    def load(self, key: str) -> Frame:
        first = Path(self.root) / f"{key}-1.png"
        Image.new("RGB", (8, 6), (10, 20, 30)).save(first)
        second = Path(self.root) / f"{key}-2.png"
        if key == "a":
            Image.new("RGB", (8, 6), (200, 100, 50)).save(second)
        pair = {"image": second, "intrinsics": INTR.to_list(), "translation_m": [0.5, 0.0, 0.0]}
        return Frame(key, INTR, image_path=first, depth=known_depth(), extras={"pair": pair})


@pytest.mark.parametrize("copy_images", [False, True])
def test_a_second_view_on_disk_is_referenced_like_the_frame_image(tmp_path, copy_images):
    raw = tmp_path / "raw"
    raw.mkdir()
    out = tmp_path / "out"
    data_builders.build(
        "test-pairs",
        raw,
        out,
        points_per_image=0,
        edge_threshold=0.0,
        progress=False,
        copy_images=copy_images,
    )
    (rec,) = read_jsonl(out / "records-00000.jsonl")
    second = out / rec["extras"]["pair"]["image"]
    assert not os.path.isabs(rec["extras"]["pair"]["image"])
    assert Image.open(second).getpixel((0, 0)) == (200, 100, 50)
    assert (second.resolve().parent == (out / "images").resolve()) is copy_images
    rejects = read_jsonl(out / "rejects.jsonl")
    assert [r["key"] for r in rejects if r.get("frame")] == ["b"]
    assert "file not found" in rejects[0]["reason"] and "b-2.png" in rejects[0]["reason"]


def test_a_build_started_before_a_new_source_option_resumes_while_the_option_is_at_its_default(tmp_path):
    """A build folder written by an older depthlm (its settings lack an option added since, e.g.
    synthetic's --depth-map) resumes to the same bytes when the option is at its default; asking for
    the new option's other value there is still refused."""
    import json

    opts = dict(num_images=6, image_size=(64, 48), chunk_size=2, progress=False, points_per_image=3)
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    data_builders.build("synthetic", None, old, **opts)
    data_builders.build("synthetic", None, fresh, **opts)
    state = old / ".build" / "settings.json"
    recorded = json.loads(state.read_text())
    for name in ("depth_map", "second_view"):  # as a build of before these options were written
        del recorded["settings"]["source_options"][name]
    state.write_text(json.dumps(recorded))
    (old / ".build" / "chunk-00002.json").unlink()  # the last chunk unfinished: a killed build
    (old / "records-00002.jsonl").unlink()
    (old / "summary.json").unlink()
    data_builders.build("synthetic", None, old, **opts)
    assert read_jsonl(old / "records-00002.jsonl") == read_jsonl(fresh / "records-00002.jsonl")
    assert json.loads((old / "summary.json").read_text())["images"] == 6
    state.write_text(json.dumps(recorded))
    with pytest.raises(
        DepthLMError, match=r"other settings or frames \(settings\.source_options\.depth_map: "
    ):
        data_builders.build("synthetic", None, old, depth_map=True, **opts)
