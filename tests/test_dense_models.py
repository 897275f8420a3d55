"""depthlm dense with the tiny model on the real backends (transformers in-process, vLLM as
the command runs it). A random model's answers say nothing about depth; these check that
every query reaches the model and comes back as a file a viewer reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import plyfile
import pytest
from PIL import Image

from depthlm import cli

W, H = 96, 72


def photo(tmp_path):
    rng = np.random.default_rng(0)
    pixels = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    pixels[20:50, 30:70] = (230, 140, 30)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def common(model, image, out):
    return ["--model", str(model), "--image", str(image), "--fov", "60", "--out", str(out)]


@pytest.mark.slow
def test_transformers_backend_single_and_points_queries(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = photo(tmp_path)
    for k, out in ((1, tmp_path / "k1"), (4, tmp_path / "k4")):
        argv = ["dense", *common(tiny_model_dir, image, out), "--backend", "transformers", "--grid", "4x3"]
        argv += [
            "--points-per-query",
            str(k),
            "--max-pixels",
            "40000",
            "--f-uni",
            "200",
            "--dtype",
            "float32",
            "--no-progress",
        ]
        assert cli.main(argv) == 0
        summary = json.loads((out / "dense.json").read_text())
        rows = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
        assert summary["stats"]["points"] == 12 and sum(len(r["pixels"]) for r in rows) == 12
        assert len(rows) == summary["stats"]["queries"] == (12 if k == 1 else 3)
        assert summary["stats"]["answered_points"] + summary["stats"]["missing_points"] == 12
        assert all(isinstance(r["text"], str) and r["new_tokens"] >= 1 for r in rows)
        assert summary["backend"]["kind"] == "transformers" and summary["strategy"]["k"] == k


@pytest.mark.slow
def test_vllm_backend_structured_gives_a_full_map_and_cloud(tiny_model_dir, tmp_path):
    """With structured decoding every answer of even a random model parses, K = 4 labelled points a
    query included (each held to its own labels): a depth at every pixel, one PLY vertex per pixel.
    (K = 1 structured is the depth template's, covered by tests/test_structured_tasks.py.)"""
    image = photo(tmp_path)
    out = tmp_path / "v"
    cmd = [sys.executable, "-m", "depthlm.cli", "dense", *common(tiny_model_dir, image, out)]
    cmd += [
        "--grid",
        "4x3",
        "--max-pixels",
        "40000",
        "--f-uni",
        "200",
        "--dtype",
        "float32",
        "--structured",
        "--points-per-query",
        "4",
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "dense.json").read_text())
    assert summary["backend"]["kind"] == "vllm" and summary["strategy"]["k"] == 4
    assert summary["stats"]["answered_points"] == 12 and summary["stats"]["missing_points"] == 0
    depth = np.load(out / "depth.npy")
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert plyfile.PlyData.read(str(out / "cloud.ply"))["vertex"].count == W * H
