"""Evaluation: query selection, the resumable runner and its outputs, on the real iBims-1 sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from depthlm.errors import DepthLMError
from depthlm.evaluation import (
    PREDICTIONS_FILE,
    evaluate,
    load_config,
    load_datasets,
    plan_queries,
    read_predictions,
    select_points,
)
from depthlm.inference import make_backend
from depthlm.metrics import depth_metrics
from depthlm.parsing import parse_distance
from depthlm.settings import resolve_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ibims(ibims1):
    return load_datasets([f"ibims1={ibims1}"])


def test_points_come_from_every_depth_stratum_and_are_reproducible(ibims):
    rec = ibims[0].records[0]
    chosen = select_points(rec, 3, seed=0)
    assert len(chosen) == 3 == len(set(chosen))
    ranks = np.argsort(np.argsort(rec.depths, kind="stable"), kind="stable")
    thirds = np.linspace(0, len(rec), 4).astype(int)
    strata = sorted(int(np.searchsorted(thirds, ranks[i], side="right")) - 1 for i in chosen)
    assert strata == [0, 1, 2]  # one near, one middle, one far point
    assert select_points(rec, 3, seed=0) == chosen
    other_seeds = {tuple(select_points(rec, 3, seed=s)) for s in range(1, 6)}
    assert len(other_seeds | {tuple(chosen)}) > 1  # the seed matters
    assert select_points(rec, 10_000, seed=0) == list(range(len(rec)))  # asking for more takes all


def test_a_query_cap_still_covers_every_image(ibims):
    plan = plan_queries(ibims, points_per_image=3, max_queries=150, seed=0)
    assert len(plan) == 150
    per_image = np.bincount([it.record for it in plan], minlength=100)
    assert per_image.min() >= 1 and per_image.max() <= 2 and (per_image == 2).sum() == 50
    assert plan == plan_queries(ibims, points_per_image=3, max_queries=150, seed=0)
    # Ids do not depend on where the data lives, so a moved data folder still resumes.
    assert plan[0].id.startswith("ibims1/rgb/") and "#" in plan[0].id


def test_constant_baseline_run_writes_all_outputs(ibims, tmp_path):
    settings = resolve_settings(None, "default")
    backend = make_backend(None, "constant:2.0", settings)
    metrics = evaluate(backend, ibims, tmp_path, points_per_image=2, max_queries=60, progress=False)
    rows = read_predictions(tmp_path / PREDICTIONS_FILE)
    assert len(rows) == 60 and len({r["record_id"] for r in rows}) == 60  # 60 images, one point each
    row = rows[0]
    for key in ("id", "dataset", "image", "pixel", "gt", "text", "pred"):
        assert key in row
    assert row["pred"] == 2.0 and row["text"] == "The point is around 2.00 meters away from the camera."
    # Ground truth is the record's depth at that pixel (ray distance, as the question asks).
    rec = next(r for r in ibims[0].records if r.image == row["image"])
    assert row["gt"] == pytest.approx(rec.depths_as("ray")[row["point_index"]])
    expect = depth_metrics([2.0] * 60, [r["gt"] for r in rows])
    for name in ("delta1", "abs_rel", "rmse", "silog"):
        assert metrics["datasets"]["ibims1"][name] == pytest.approx(expect[name])
        assert metrics["average"][name] == pytest.approx(expect[name])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["datasets"]["ibims1"]["n"] == 60 and saved["average"]["parse_failure_rate"] == 0.0
    assert saved["generation"]["queries_per_second"] is None  # a baseline generates nothing
    assert (
        saved["settings"]["f_uni"] == 1000.0
        and saved["model"] == "constant:2"
        and "torch" in saved["versions"]
    )
    row_md = (tmp_path / "row.md").read_text().splitlines()
    assert row_md[0].startswith("| model | ibims1 | avg") and f"{expect['delta1']:.3f}" in row_md[2]
    for png in ("pred_vs_true.png", "delta1_by_depth.png", "datasets.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_rerun_with_other_settings_in_the_same_folder_is_refused(ibims, tmp_path):
    settings = resolve_settings(None, "default")
    evaluate(
        make_backend(None, "constant:2.0", settings),
        ibims,
        tmp_path,
        max_queries=5,
        plots=False,
        progress=False,
    )
    with pytest.raises(DepthLMError, match="different evaluation .*points_per_image"):
        evaluate(
            make_backend(None, "constant:2.0", settings),
            ibims,
            tmp_path,
            points_per_image=2,
            max_queries=5,
            progress=False,
        )


def test_bad_inputs_give_one_clear_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "depthlm.cli", "eval", "--model", "constant:2", "--out", str(tmp_path / "o")]
    res = subprocess.run(
        [*cmd, "--data", str(tmp_path / "missing.jsonl")], capture_output=True, text=True, env=env
    )
    assert res.returncode == 2 and "no such file or folder" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  - {name: x, path: '${DEPTHLM_SURELY_UNSET_VAR}/x'}\n")
    res = subprocess.run([*cmd, "--config", str(bad)], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "unset environment variable" in res.stderr


def test_records_that_cannot_be_used_are_listed_not_lost(ibims1, tmp_path):
    src = Path(ibims1, "ibims1_val.jsonl").read_text().splitlines()[:3]
    lines = [json.loads(x) for x in src]
    for obj in lines:
        obj["image"] = str(Path(ibims1, obj["image"]))
    lines[1]["image"] = str(tmp_path / "gone.png")
    data = tmp_path / "few.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    settings = resolve_settings(None, "default")
    metrics = evaluate(
        make_backend(None, "constant:2", settings),
        load_datasets([str(data)]),
        tmp_path / "o",
        plots=False,
        progress=False,
    )
    assert metrics["datasets"]["few"]["n"] == 2
    assert len(metrics["rejects"]["few"]) == 1 and "gone.png" in metrics["rejects"]["few"][0]


def test_config_file_drives_the_cli(ibims1, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLM_IBIMS1", str(ibims1))
    cfg = tmp_path / "quick.yaml"
    cfg.write_text(
        "name: quick\npoints_per_image: 2\nmax_queries: 8\ndatasets:\n  - {name: ib, path: '${DEPTHLM_IBIMS1}'}\n"
    )
    assert load_config(str(cfg))["data"] == [f"ib={ibims1}"]
    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "depthlm.cli",
            "eval",
            "--model",
            "median:" + str(ibims1),
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--no-plots",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["datasets"]["ib"]["n"] == 8 and saved["selection"]["points_per_image"] == 2
    preds = {r["pred"] for r in read_predictions(out / PREDICTIONS_FILE)}
    assert len(preds) == 1  # the median baseline answers one distance


def _eval_cmd(model: Path, out: Path, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "depthlm.cli",
        "eval",
        "--backend",
        "transformers",
        "--model",
        str(model),
        "--data",
        f"ibims1={data}",
        "--out",
        str(out),
        "--max-queries",
        "45",
        "--max-pixels",
        "40000",
        "--chunk-size",
        "3",
        "--max-tokens",
        "6",
        "--no-plots",
    ]


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_and_matches_an_uninterrupted_run(
    tiny_model_dir, ibims1_any, tmp_path
):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_eval_cmd(tiny_model_dir, full, ibims1_any), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(
        _eval_cmd(tiny_model_dir, killed, ibims1_any),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pred = killed / PREDICTIONS_FILE
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if pred.is_file() and len(pred.read_text().splitlines()) >= 9:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = pred.read_text().splitlines()
    assert 9 <= len(before) < 45, "the run finished before it could be killed"
    # Also a chunk cut short and a torn line, as a kill in the middle of writing would leave.
    pred.write_text("\n".join(before[:-1]) + '\n{"id": "ibims1/rgb/x.png#1", "chu')
    kept = before[: (len(before) - 1) // 3 * 3]

    subprocess.run(_eval_cmd(tiny_model_dir, killed, ibims1_any), check=True, env=env, capture_output=True)
    after = pred.read_text().splitlines()
    assert after[: len(kept)] == kept  # finished chunks kept byte for byte (timings included): not recomputed
    assert len(after) == 45 and len({json.loads(x)["id"] for x in after}) == 45
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, killed))
    assert a["datasets"] == b["datasets"] and a["average"] == b["average"]
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in after}
    for line in (full / PREDICTIONS_FILE).read_text().splitlines():
        row = json.loads(line)
        assert texts[row["id"]] == row["text"]
        assert row["pred"] == parse_distance(row["text"])
