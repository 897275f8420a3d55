"""DepthLMBench jsonl depth conventions: the per-dataset table, the override order, and the
plane-fit detector, on the real iBims-1 sample and on files of known convention made here.

The synthetic files describe a box-shaped room seen by a camera with fx != fy; every label is
computed by this test from the ray-plane intersection (z-depth = the ray parameter t for a
direction (xn, yn, 1); ray distance = t * |(xn, yn, 1)|), independently of depthlm.geometry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_builders import build
from depthlm.conventions import canonical_dataset, detect, guess_dataset, reference_depth_type
from depthlm.records import read_records

IBIMS1 = os.environ.get("DEPTHLM_IBIMS1")
FX, FY, CX, CY, W, H = 300.0, 330.0, 158.3, 121.7, 320, 240
# room planes n . X = c in camera axes (x right, y down, z forward)
PLANES = [((1, 0, 0), 2.0), ((-1, 0, 0), 1.6), ((0, 1, 0), 1.2), ((0, -1, 0), 1.4), ((0, 0, 1), 5.5)]


def room_depths(pixels: np.ndarray, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(z, ray) of the nearest room plane along each pixel's ray."""
    d = np.stack([(pixels[:, 0] - CX) / FX, (pixels[:, 1] - CY) / FY, np.ones(len(pixels))], 1)
    t = np.full(len(pixels), np.inf)
    for n, c in PLANES:
        denom = d @ np.asarray(n, float)
        with np.errstate(divide="ignore"):
            ti = np.where(denom > 1e-9, (c + offset) / denom, np.inf)
        t = np.minimum(t, ti)
    return t, t * np.linalg.norm(d, axis=1)


def write_file(path: Path, kind: str, images: int = 12, points: int = 100, extra: dict | None = None) -> list:
    """A DepthLMBench file holding `kind` ("z" or "ray"); returns the true z per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "rgb").mkdir(exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    truth = []
    with open(path, "w") as fh:
        for i in range(images):
            name = f"rgb/{path.stem}_{i}.png"
            Image.new("RGB", (W, H), (90, 90, 90)).save(path.parent / name)
            pix = np.stack([rng.integers(5, W - 5, points), rng.integers(5, H - 5, points)], 1)
            z, ray = room_depths(pix.astype(float), offset=0.1 * i)
            truth.append(z)
            obj = {
                "image": name,
                "intrinsics": [FX, FY, CX, CY, W, H],
                "pixel_coords": pix.tolist(),
                "depth": np.round(z if kind == "z" else ray, 6).tolist(),
                **(extra or {}),
            }
            fh.write(json.dumps(obj) + "\n")
    return truth


@pytest.mark.parametrize("kind", ["z", "ray"])
def test_detector_names_the_convention_of_a_file_it_did_not_write(tmp_path, kind):
    write_file(tmp_path / "scene.jsonl", kind)
    rep = detect(tmp_path / "scene.jsonl")
    other = "ray" if kind == "z" else "z"
    assert rep.verdict == kind, str(rep)
    assert rep.on_planes[kind] > 0.8 * rep.points  # planes seen by < 10 points are not counted
    assert rep.on_planes[kind] > 3 * rep.on_planes[other]
    assert rep.images_won[kind] == rep.images


def test_detector_says_unclear_without_planes(tmp_path):
    path = tmp_path / "noise.jsonl"
    write_file(path, "z")
    rng = np.random.default_rng(0)
    lines = [json.loads(t) for t in path.read_text().splitlines()]
    for obj in lines:
        obj["depth"] = rng.uniform(1, 8, len(obj["depth"])).tolist()
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    assert detect(path).verdict == "unclear"


@pytest.mark.skipif(not IBIMS1, reason="DEPTHLM_IBIMS1 not set (the real iBims-1 sample)")
def test_real_ibims1_file_holds_z_depth():
    rep = detect(Path(IBIMS1) / "ibims1_val.jsonl")
    assert rep.verdict == "z", str(rep)
    assert rep.on_planes["z"] > 4 * rep.on_planes["ray"]
    assert rep.images_won["z"] >= 90
    assert reference_depth_type("ibims1") == "z"


@pytest.mark.skipif(not IBIMS1, reason="DEPTHLM_IBIMS1 not set (the real iBims-1 sample)")
def test_real_ibims1_labels_are_the_file_values(tmp_path):
    """The docs example: 2.417792 m in the file must stay 2.417792 m (was 2.284783 m)."""
    src = Path(IBIMS1) / "ibims1_val.jsonl"
    first = json.loads(src.read_text().splitlines()[0])
    recs = read_records(src, check_images=False)
    assert recs[0].depths_as("z")[0] == pytest.approx(first["depth"][0], abs=1e-9)
    build("jsonl", src, tmp_path / "out", split="val", progress=False, max_images=2)
    rec = read_records(tmp_path / "out")[0]
    np.testing.assert_allclose(rec.depths, first["depth"], atol=1e-6)


def test_table_and_names():
    assert [reference_depth_type(n) for n in ("NYUv2", "sunRGBD", "matterport", "argoverse2_val")] == [
        "ray"
    ] * 4
    assert [reference_depth_type(n) for n in ("nuscenes_eval", "ddad", "ibims1_val")] == ["z"] * 3
    assert reference_depth_type("my_own_set") == "ray"  # unknown: records.REFERENCE_DEPTH_TYPE
    assert canonical_dataset("ScanNet++") == "scannetpp"
    assert guess_dataset("/data/ibims1/val.jsonl") == "ibims1"


def test_read_records_reads_each_dataset_by_its_convention(tmp_path):
    z_truth = write_file(tmp_path / "a" / "ibims1_val.jsonl", "z", images=2)
    ray_truth = write_file(tmp_path / "b" / "NYUv2.jsonl", "ray", images=2)
    for folder, truth in (("a", z_truth), ("b", ray_truth)):
        recs = read_records(tmp_path / folder)
        for rec, z in zip(recs, truth):
            np.testing.assert_allclose(rec.depths_as("z"), z, rtol=1e-6)
    # the line's dataset wins over the file name; the caller's override wins over both
    write_file(tmp_path / "c" / "ibims1.jsonl", "ray", images=1, extra={"dataset": "nyuv2"})
    rec = read_records(tmp_path / "c")[0]
    assert rec.depth_type == "ray"
    rec = read_records(tmp_path / "c", default_depth_type="z")[0]
    assert rec.depth_type == "z"


def test_build_jsonl_applies_the_convention_and_overrides(tmp_path, capsys):
    z_truth = write_file(tmp_path / "in" / "ibims1_val.jsonl", "z", images=3)
    build("jsonl", tmp_path / "in" / "ibims1_val.jsonl", tmp_path / "auto", split="val", progress=False)
    recs = read_records(tmp_path / "auto")
    for rec, z in zip(recs, z_truth):
        np.testing.assert_allclose(rec.depths, z, rtol=1e-6)
    assert "warning" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    (rep,) = summary["depth_conventions"].values()
    assert rep["verdict"] == "z" and rep["applied_to_lines_without_depth_type"] == "z"

    # a flag that contradicts the measurement is applied, and the build says so
    build(
        "jsonl",
        tmp_path / "in" / "ibims1_val.jsonl",
        tmp_path / "forced",
        split="val",
        progress=False,
        depth_type="ray",
    )
    err = capsys.readouterr().err
    assert "look like z-depth" in err and "--depth-type z" in err
    forced = read_records(tmp_path / "forced")
    assert np.all(forced[0].depths <= z_truth[0] * (1 + 1e-6))
    assert forced[0].depths.mean() < 0.97 * z_truth[0].mean()

    # --dataset names the convention of a file whose name does not
    ray_truth = write_file(tmp_path / "in2" / "eval.jsonl", "ray", images=2)
    build(
        "jsonl",
        tmp_path / "in2" / "eval.jsonl",
        tmp_path / "named",
        split="val",
        progress=False,
        dataset="sunrgbd",
    )
    for rec, z in zip(read_records(tmp_path / "named"), ray_truth):
        np.testing.assert_allclose(rec.depths, z, rtol=1e-6)


def test_evaluation_scores_against_ray_distance_read_by_the_convention(tmp_path):
    """A z file of iBims-1 (the file's name says so) evaluated as is: the ground truth in
    predictions.jsonl is the ray distance the test computes, and metrics.json says what each file held."""
    from depthlm.evaluation import evaluate, load_datasets
    from depthlm.inference import make_backend
    from depthlm.settings import RenderSettings

    z_truth = write_file(tmp_path / "ibims1" / "ibims1_val.jsonl", "z", images=2, points=5)
    write_file(tmp_path / "nyu" / "NYUv2.jsonl", "ray", images=2, points=5)
    settings = RenderSettings()
    assert settings.depth_target == "ray"
    datasets = load_datasets([str(tmp_path / "ibims1"), str(tmp_path / "nyu")])
    metrics = evaluate(
        make_backend(None, "constant:2.0", settings),
        datasets,
        tmp_path / "run",
        points_per_image=5,
        plots=False,
        progress=False,
    )
    conv = metrics["label_conventions"]
    assert conv["ibims1"] == {"records_read_as": {"z": 2, "ray": 0}, "reference_file_holds": "z"}
    assert conv["nyu"]["reference_file_holds"] == "ray" and conv["nyu"]["records_read_as"]["ray"] == 2
    lines = [json.loads(t) for t in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    rows = [r for r in lines if r["dataset"] == "ibims1"]
    src = [json.loads(t) for t in (tmp_path / "ibims1" / "ibims1_val.jsonl").read_text().splitlines()]
    for row in rows:
        i = next(k for k, o in enumerate(src) if Path(row["image"]).name == Path(o["image"]).name)
        x, y = row["pixel"]
        j = next(k for k, p in enumerate(src[i]["pixel_coords"]) if p == [x, y])
        scale = np.sqrt(((x - CX) / FX) ** 2 + ((y - CY) / FY) ** 2 + 1)
        assert row["gt"] == pytest.approx(z_truth[i][j] * scale, rel=1e-6)
